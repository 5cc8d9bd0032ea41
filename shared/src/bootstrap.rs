//! Building the app state for a process: the Lambda functions (from the
//! environment, once per cold start) and the local server.

use std::path::Path;
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
        .force_path_style(endpoint.is_some());
    aws_sdk_s3::Client::from_conf(config.build())
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

/// State of a deployed function: bot definitions from HOOKLINE_BOTS (see
/// [`bot_registry`]; secrets only from the environment), the DynamoDB table
/// HOOKLINE_TABLE, the FIFO queue HOOKLINE_QUEUE_URL, limits from
/// [`Settings::from_env`], AWS itself or HOOKLINE_AWS_ENDPOINT.
pub async fn lambda_state() -> Result<AppState, String> {
    Ok(lambda_state_with_queue().await?.0)
}

/// [`lambda_state`], and the queue itself for the worker.
pub async fn lambda_state_with_queue() -> Result<(AppState, Arc<SqsQueue>), String> {
    let endpoint = local_endpoint();
    let registry = bot_registry(&required("HOOKLINE_BOTS")?, endpoint.as_deref()).await?;
    let settings = Settings::from_env()?;
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

/// At most this many definition files, of at most this many bytes each, in S3.
const MAX_S3_DEFINITIONS: usize = 100;
const MAX_S3_DEFINITION_BYTES: i64 = 1 << 20;

/// Bot definitions from `location`: a file, a directory (its .yaml and .yml
/// files), or `s3://bucket/folder/` (the .yaml and .yml objects directly in
/// it). Read once per cold start; the instance keeps them for its life.
async fn bot_registry(location: &str, endpoint: Option<&str>) -> Result<Registry, String> {
    let Some(rest) = location.strip_prefix("s3://") else {
        return Registry::load(Path::new(location), Purpose::Deployed).map_err(|e| e.to_string());
    };
    let (bucket, folder) = rest.split_once('/').unwrap_or((rest, ""));
    let folder = if folder.is_empty() || folder.ends_with('/') { folder.to_string() } else { format!("{folder}/") };
    let client = s3_client(endpoint).await;
    let failed = |e: &dyn std::fmt::Display| format!("reading the bot definitions in {location}: {e}");
    let mut keys = Vec::new();
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(&folder).delimiter("/").into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| failed(&s3_error(e)))?;
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            if !(key.ends_with(".yaml") || key.ends_with(".yml")) {
                continue;
            }
            if object.size().unwrap_or_default() > MAX_S3_DEFINITION_BYTES {
                return Err(failed(&format!("s3://{bucket}/{key} is larger than {MAX_S3_DEFINITION_BYTES} bytes")));
            }
            if keys.len() == MAX_S3_DEFINITIONS {
                return Err(failed(&format!("more than {MAX_S3_DEFINITIONS} definition files")));
            }
            keys.push(key.to_string());
        }
    }
    if keys.is_empty() {
        return Err(failed(&"no bot definition files (.yaml, .yml) there"));
    }
    // S3 lists keys in order, so diagnostics come in file order as from a directory.
    let mut sources = Vec::new();
    for key in keys {
        let object = client.get_object().bucket(bucket).key(&key).send().await;
        let object = object.map_err(|e| failed(&s3_error(e)))?;
        let bytes = object.body.collect().await.map_err(|e| failed(&e))?.into_bytes();
        let source = String::from_utf8(bytes.to_vec()).map_err(|_| failed(&format!("{key} is not UTF-8 text")))?;
        sources.push((format!("s3://{bucket}/{key}"), source));
    }
    Registry::from_sources(&sources, Purpose::Deployed).map_err(|e| e.to_string())
}

/// The service's code and message (what a reader of a failed cold start
/// needs), or the whole chain for errors without one (no connection).
fn s3_error<E, R>(e: aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or_default()),
        None => aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}
