//! Building the app state for a process: the Lambda functions (from the
//! environment, once per cold start) and the local server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{Credentials, Region};

use crate::api::{AppState, Settings};
use crate::config::{Purpose, Registry};
use crate::store::DynamoStore;

/// A DynamoDB client from the standard AWS environment (region, credentials,
/// AWS_ENDPOINT_URL). With `endpoint`, talks to a local DynamoDB-compatible
/// server and falls back to dummy credentials and us-east-1 when none are set.
pub async fn dynamodb_client(endpoint: Option<&str>) -> aws_sdk_dynamodb::Client {
    // Bounded calls: a turn's write, once started, is awaited (never abandoned
    // at the sync deadline), so it must not be able to hang.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(4))
        .operation_timeout(Duration::from_secs(10))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::v2026_01_12()).timeout_config(timeouts);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            loader = loader.region(Region::new("us-east-1"));
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(Credentials::new("local", "local", None, None, "hookline-local"));
        }
    }
    aws_sdk_dynamodb::Client::new(&loader.load().await)
}

fn required(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

/// State of a deployed function: bot definitions from HOOKLINE_BOTS (a file
/// or directory; secrets only from the environment), the DynamoDB table
/// HOOKLINE_TABLE, limits from [`Settings::from_env`].
pub async fn lambda_state() -> Result<AppState, String> {
    let bots = PathBuf::from(required("HOOKLINE_BOTS")?);
    let registry = Registry::load(&bots, Purpose::Deployed).map_err(|e| e.to_string())?;
    let settings = Settings::from_env()?;
    let client = dynamodb_client(None).await;
    let store = DynamoStore::new(client, required("HOOKLINE_TABLE")?);
    AppState::new(registry, Arc::new(store), settings)
}
