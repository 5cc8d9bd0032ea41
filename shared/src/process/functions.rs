//! The deployed functions' state, built once per cold start from the
//! environment: bot definitions from HOOKLINE_BOTS (a file, a directory or
//! `s3://bucket/folder/`; secrets only from the environment), the DynamoDB
//! table HOOKLINE_TABLE, the FIFO queue HOOKLINE_QUEUE_URL, the bucket
//! HOOKLINE_BUCKET, settings from [`Settings::from_env`]; AWS itself or
//! HOOKLINE_AWS_ENDPOINT. Each function builds only the clients it uses.

use std::path::Path;
use std::sync::Arc;

use super::aws;
use super::settings::{ConfigError, Settings};
use crate::adapters::blobs::S3Blobs;
use crate::adapters::outbound::HttpOutbound;
use crate::adapters::queue::SqsQueue;
use crate::adapters::store::{DynamoStore, ItemFormat};
use crate::api::{FilesState, PollState, WebhookState};
use crate::app::files::Files;
use crate::app::turn::Turns;
use crate::app::worker::Worker;
use crate::definition::{Purpose, Registry};

/// HOOKLINE_AWS_ENDPOINT: a local AWS-compatible server for the deployed
/// functions run locally (`sam local` passes only the variables the template
/// declares, and the template declares this one, empty on AWS).
fn local_endpoint() -> Option<String> {
    std::env::var("HOOKLINE_AWS_ENDPOINT").ok().filter(|e| !e.trim().is_empty())
}

/// How conversations and log entries are written: `compact` (the default)
/// or `legacy`.
const ITEM_FORMAT: &str = "HOOKLINE_ITEM_FORMAT";

fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|_| ConfigError::Missing(name))
}

/// What every function reads: the AWS configuration (loaded once), the bots
/// and the settings.
struct Common {
    aws: aws::Config,
    bots: Arc<Registry>,
    settings: Settings,
}

impl Common {
    async fn read() -> Result<Self, ConfigError> {
        crate::metrics::keep_invocation_values();
        let aws = aws::from_environment(local_endpoint().as_deref())?;
        let bots = Arc::new(bot_registry(&required("HOOKLINE_BOTS")?, &aws).await?);
        Ok(Self { aws, bots, settings: Settings::from_env()? })
    }

    fn table(&self) -> Result<Arc<DynamoStore>, ConfigError> {
        let store = DynamoStore::new(self.aws.dynamodb(), required("HOOKLINE_TABLE")?);
        // While a stack whose functions read only an older form is upgraded.
        let format = match std::env::var(ITEM_FORMAT).ok().as_deref().map(str::trim) {
            None | Some("" | "compact") => ItemFormat::Compact,
            Some("turns") => ItemFormat::Turns,
            Some("legacy") => ItemFormat::Legacy,
            Some(other) => {
                let (name, allowed, value) = (ITEM_FORMAT, "compact, turns, legacy", other.to_string());
                return Err(ConfigError::NotOneOf { name, allowed, value });
            }
        };
        Ok(Arc::new(store.writing(format)))
    }

    fn queue(&self) -> Result<Arc<SqsQueue>, ConfigError> {
        Ok(Arc::new(SqsQueue::new(self.aws.sqs(), required("HOOKLINE_QUEUE_URL")?)))
    }
}

/// The webhook function: table, queue and outbound HTTP; and its polls,
/// which reach it through its function URL (through the HTTP API, the poll
/// function has them).
pub async fn webhook_state() -> Result<(WebhookState, PollState), ConfigError> {
    let common = Common::read().await?;
    let (table, queue) = (common.table()?, common.queue()?);
    let turns = Arc::new(Turns::new(table.clone(), Arc::new(HttpOutbound::new())));
    let http = Arc::new(common.settings.http);
    let (polls, conversations) = (table.clone(), table.clone());
    let (bots, seen_tokens) = (common.bots.clone(), table.clone());
    let poll = PollState { bots, polls, conversations, queue: queue.clone(), seen_tokens, http: http.clone() };
    let (files, seen_tokens, counters, keys) = (table.clone(), table.clone(), table.clone(), table);
    let webhook = WebhookState { bots: common.bots, turns, queue, files, seen_tokens, counters, keys, http };
    Ok((webhook, poll))
}

/// The poll function: table and queue.
pub async fn poll_state() -> Result<PollState, ConfigError> {
    let common = Common::read().await?;
    let (table, queue) = (common.table()?, common.queue()?);
    let http = Arc::new(common.settings.http);
    let (polls, conversations) = (table.clone(), table.clone());
    Ok(PollState { bots: common.bots, polls, conversations, queue, seen_tokens: table, http })
}

/// The files function: table and bucket.
pub async fn files_state() -> Result<FilesState, ConfigError> {
    let common = Common::read().await?;
    let table = common.table()?;
    let client = common.aws.s3();
    let blobs = Arc::new(S3Blobs::new(client, required("HOOKLINE_BUCKET")?));
    let files = Files::new(table.clone(), blobs, table.clone(), common.settings.files);
    let (seen_tokens, keys) = (table.clone(), table);
    Ok(FilesState { bots: common.bots, files, seen_tokens, keys, http: Arc::new(common.settings.http) })
}

/// The worker function: table, queue and outbound HTTP; the queue itself
/// too, to set each failed message's backoff.
pub async fn worker() -> Result<(Arc<Worker>, Arc<SqsQueue>), ConfigError> {
    let common = Common::read().await?;
    let (table, queue) = (common.table()?, common.queue()?);
    let outbound = Arc::new(HttpOutbound::new());
    let turns = Arc::new(Turns::new(table.clone(), outbound.clone()));
    let worker = Worker::new(common.bots, turns, table, queue.clone(), outbound, common.settings.worker);
    Ok((worker, queue))
}

/// At most this many definition files, of at most this many bytes each, in S3.
const MAX_S3_DEFINITIONS: usize = 100;
const MAX_S3_DEFINITION_BYTES: i64 = 1 << 20;

/// Bot definitions from `location`: a file, a directory (its .yaml and .yml
/// files), or `s3://bucket/folder/` (the .yaml and .yml objects directly in
/// it). Read once per cold start; the instance keeps them for its life.
async fn bot_registry(location: &str, aws: &aws::Config) -> Result<Registry, ConfigError> {
    let Some(rest) = location.strip_prefix("s3://") else {
        return Ok(Registry::load(Path::new(location), Purpose::Deployed)?);
    };
    let (bucket, folder) = rest.split_once('/').unwrap_or((rest, ""));
    let folder = if folder.is_empty() || folder.ends_with('/') { folder.to_string() } else { format!("{folder}/") };
    let client = aws.s3();
    let failed = |e: &dyn std::fmt::Display| ConfigError::DefinitionsUnreadable {
        location: location.to_string(),
        reason: e.to_string(),
    };
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
    Ok(Registry::from_sources(&sources, Purpose::Deployed)?)
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

/// An HTTP function's router that prints, after each request, what it added
/// to the metrics ([`crate::metrics::embedded_metrics`]).
pub fn with_metrics(router: axum::Router, function: &'static str) -> axum::Router {
    router.layer(axum::middleware::map_response(move |response: axum::response::Response| async move {
        print_metrics(function);
        response
    }))
}

/// Prints what the invocation added to the metrics, for CloudWatch to read
/// from the function's log, in the namespace HOOKLINE_METRICS_NAMESPACE
/// (the template gives each stack its own; `Hookline` without it).
pub fn print_metrics(function: &str) {
    static NAMESPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let namespace = NAMESPACE.get_or_init(|| {
        std::env::var("HOOKLINE_METRICS_NAMESPACE").ok().filter(|n| !n.trim().is_empty()).unwrap_or("Hookline".into())
    });
    for line in crate::metrics::embedded_metrics(namespace, function, chrono::Utc::now().timestamp_millis()) {
        println!("{line}");
    }
}
