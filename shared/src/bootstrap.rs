//! Building the app state for a process: the Lambda functions (from the
//! environment, once per cold start) and the local server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{Credentials, Region};

use crate::api::{AppState, Settings};
use crate::blobs::{Blobs, S3Blobs};
use crate::config::{Purpose, Registry};
use crate::queue::SqsQueue;
use crate::store::DynamoStore;

/// AWS configuration from the standard environment (region, credentials,
/// AWS_ENDPOINT_URL). With `endpoint`, talks to a local AWS-compatible server
/// and falls back to dummy credentials and us-east-1 when none are set.
async fn aws_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
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
    loader.load().await
}

pub async fn dynamodb_client(endpoint: Option<&str>) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&aws_config(endpoint).await)
}

/// With a local endpoint, path-style addressing (emulators serve no bucket
/// subdomains). Chunks and upload parts are megabytes: longer timeouts than
/// the table's, within the files function's 29 s.
pub async fn s3_client(endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(25))
        .build();
    let config = aws_sdk_s3::config::Builder::from(&aws_config(endpoint).await)
        .timeout_config(timeouts)
        .force_path_style(endpoint.is_some() || custom_endpoint());
    aws_sdk_s3::Client::from_conf(config.build())
}

/// An endpoint set in the environment (AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3,
/// as `sam local` and local emulators use): local S3 look-alikes want path style.
fn custom_endpoint() -> bool {
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"].iter().any(|name| std::env::var_os(name).is_some())
}

pub async fn sqs_client(endpoint: Option<&str>) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&aws_config(endpoint).await)
}

/// HOOKLINE_AWS_ENDPOINT: a local AWS-compatible server for the deployed
/// functions run locally (`sam local` passes only the variables the template
/// declares, and the template declares this one, empty on AWS).
fn local_endpoint() -> Option<String> {
    std::env::var("HOOKLINE_AWS_ENDPOINT").ok().filter(|e| !e.trim().is_empty())
}

fn required(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

/// State of a deployed function: bot definitions from HOOKLINE_BOTS (a file
/// or directory; secrets only from the environment), the DynamoDB table
/// HOOKLINE_TABLE, the FIFO queue HOOKLINE_QUEUE_URL, limits from
/// [`Settings::from_env`], AWS itself or HOOKLINE_AWS_ENDPOINT.
pub async fn lambda_state() -> Result<AppState, String> {
    Ok(lambda_state_with_queue().await?.0)
}

/// [`lambda_state`], and the queue itself for the worker.
pub async fn lambda_state_with_queue() -> Result<(AppState, Arc<SqsQueue>), String> {
    let bots = PathBuf::from(required("HOOKLINE_BOTS")?);
    let registry = Registry::load(&bots, Purpose::Deployed).map_err(|e| e.to_string())?;
    let settings = Settings::from_env()?;
    let endpoint = local_endpoint();
    let store = DynamoStore::new(dynamodb_client(endpoint.as_deref()).await, required("HOOKLINE_TABLE")?);
    let queue = Arc::new(SqsQueue::new(sqs_client(endpoint.as_deref()).await, required("HOOKLINE_QUEUE_URL")?));
    let state = AppState::new(registry, Arc::new(store), queue.clone(), settings)?;
    Ok((state, queue))
}

/// The files bucket HOOKLINE_BUCKET of a deployed function.
pub async fn lambda_blobs() -> Result<Arc<dyn Blobs>, String> {
    let client = s3_client(local_endpoint().as_deref()).await;
    Ok(Arc::new(S3Blobs::new(client, required("HOOKLINE_BUCKET")?)))
}
