//! AWS clients: configured from the standard environment, bounded in time,
//! optionally pointed at a local AWS-compatible server.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider};

use super::settings::ConfigError;

/// The longest a DynamoDB or SQS request may take, retries included. A
/// function's timeout leaves room for its deadline plus this, so that a
/// write started just before the deadline is never cut off.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// AWS configuration from the standard environment (region, credentials,
/// AWS_ENDPOINT_URL). With `endpoint`, talks to a local AWS-compatible server
/// and falls back to dummy credentials and us-east-1 when none are set.
///
/// Each load builds an HTTPS client, which reads the system's root
/// certificates: most of a function's cold start. A process loads it once
/// and builds every client it needs from it (they share the HTTPS client).
pub async fn config(endpoint: Option<&str>) -> Config {
    let mut loader = aws_config::defaults(behavior()).timeout_config(timeouts());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        if region_from_env().is_none() {
            loader = loader.region(Region::new(LOCAL_REGION));
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(local_credentials());
        }
    }
    Config { sdk: loader.load().await, local: endpoint.is_some() }
}

/// The functions' configuration: Lambda hands a function its region and
/// credentials in the environment (AWS_REGION, AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), so the functions read only
/// those. The default chain's other sources (profile files, SSO, STS,
/// instance metadata) are neither consulted at a cold start nor linked into
/// the function binaries. With `endpoint`, as [`config`].
pub fn from_environment(endpoint: Option<&str>) -> Result<Config, ConfigError> {
    let region = match (region_from_env(), endpoint) {
        (Some(region), _) => region,
        (None, Some(_)) => LOCAL_REGION.to_string(),
        (None, None) => return Err(ConfigError::Missing("AWS_REGION")),
    };
    let credentials = match endpoint.is_some() && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        true => SharedCredentialsProvider::new(local_credentials()),
        false => SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()),
    };
    let mut sdk = aws_config::SdkConfig::builder()
        .behavior_version(behavior())
        .region(Region::new(region))
        .credentials_provider(credentials)
        .timeout_config(timeouts());
    sdk.set_endpoint_url(endpoint.map(str::to_string));
    Ok(Config { sdk: sdk.build(), local: endpoint.is_some() })
}

fn behavior() -> BehaviorVersion {
    BehaviorVersion::v2026_01_12()
}
const LOCAL_REGION: &str = "us-east-1";

/// Bounded calls: a turn's write, once started, is awaited (never abandoned
/// at the sync deadline), so it must not be able to hang.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(4))
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

fn region_from_env() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"].into_iter().find_map(|name| std::env::var(name).ok().filter(|r| !r.is_empty()))
}

fn local_credentials() -> Credentials {
    Credentials::new("local", "local", None, None, "hookline-local")
}

/// One process's AWS configuration, from which its clients are built.
#[derive(Clone)]
pub struct Config {
    sdk: aws_config::SdkConfig,
    /// A local AWS-compatible server, not AWS itself.
    local: bool,
}

impl Config {
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// Reads the table's stream, for processes that relay on their own.
    pub fn dynamodb_streams(&self) -> aws_sdk_dynamodbstreams::Client {
        aws_sdk_dynamodbstreams::Client::new(&self.sdk)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    /// Locally, path-style addressing (emulators serve no bucket
    /// subdomains). Chunks and upload parts are megabytes: longer timeouts
    /// than the table's, within the files function's 29 s.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(Duration::from_secs(20))
            .operation_timeout(Duration::from_secs(25))
            .build();
        let config = aws_sdk_s3::config::Builder::from(&self.sdk).timeout_config(timeouts).force_path_style(self.local);
        aws_sdk_s3::Client::from_conf(config.build())
    }
}

/// A DynamoDB client of its own (a process that needs one client only).
pub async fn dynamodb_client(endpoint: Option<&str>) -> aws_sdk_dynamodb::Client {
    config(endpoint).await.dynamodb()
}

pub async fn s3_client(endpoint: Option<&str>) -> aws_sdk_s3::Client {
    config(endpoint).await.s3()
}

pub async fn sqs_client(endpoint: Option<&str>) -> aws_sdk_sqs::Client {
    config(endpoint).await.sqs()
}
