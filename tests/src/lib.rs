//! Test harness: a served router on a loopback port over either store, a
//! DynamoDB store on the emulator started by the test command, and tokens
//! signed independently of the product's own code.

pub mod proxy;
pub mod runtime_api;

use std::sync::Arc;

use hookline_core::adapters::blobs::{LocalBlobs, S3Blobs};
use hookline_core::adapters::queue::{MemoryQueue, SqsQueue};
use hookline_core::adapters::store::{DynamoStore, MemoryStore};
use hookline_core::api;
use hookline_core::app::files::Blobs;
use hookline_core::app::queue::{Job, Queue, QueueMessage};
use hookline_core::app::store::Stores;
use hookline_core::app::worker::Worker;
use hookline_core::definition::{DEMO_BOT, Purpose, Registry};
use hookline_core::process::{Embedded, Settings, aws, sqs_worker};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

pub const TEST_BOT: &str = "st-test-bot";
pub const OTHER_BOT: &str = "st-other-bot";
pub const HS256_SECRET: &str = "test-hs256-secret-0123456789-abcdef";
pub const HS512_SECRET: &str = "test-hs512-secret-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-ABCDEF";
pub const ANON_SECRET: &str = "test-anonymous-secret-0123456789-abcdef";
pub const RESTRICTED_SECRET: &str = "test-restricted-secret-0123456789-abcdef";
pub const OTHER_BOT_SECRET: &str = "other-bot-secret-0123456789-abcdefghij";
pub const OTHER_ONLY_SECRET: &str = "other-bot-only-secret-0123456789-abcdef";
pub const CLIENT_RSA_PRIVATE: &str = include_str!("../fixtures/keys/client-rsa.pem");
pub const OTHER_RSA_PRIVATE: &str = include_str!("../fixtures/keys/other-rsa.pem");

pub fn registry() -> Registry {
    registry_with(&[])
}

/// The test bots plus `extra` (file name, YAML).
pub fn registry_with(extra: &[(String, String)]) -> Registry {
    let mut sources: Vec<(String, String)> = [
        ("test-bot.yaml", include_str!("../fixtures/bots/test-bot.yaml")),
        ("other-bot.yaml", include_str!("../fixtures/bots/other-bot.yaml")),
        ("demo-bot.yaml", DEMO_BOT),
    ]
    .map(|(name, source)| (name.to_string(), source.to_string()))
    .to_vec();
    sources.extend_from_slice(extra);
    Registry::from_sources(&sources, Purpose::Local).expect("test bots are valid")
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Memory,
    DynamoDb,
}

/// The emulator's endpoint (DynamoDB, SQS), set by the test command.
pub fn aws_endpoint() -> String {
    std::env::var("HOOKLINE_TEST_AWS_ENDPOINT")
        .expect("HOOKLINE_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test, which starts the AWS emulator")
}

pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    aws::dynamodb_client(Some(&aws_endpoint())).await
}

pub async fn s3_client() -> aws_sdk_s3::Client {
    aws::s3_client(Some(&aws_endpoint())).await
}

/// A fresh directory for files, under the system's temporary directory.
pub fn local_blobs() -> (LocalBlobs, std::path::PathBuf) {
    let root = std::env::temp_dir().join(format!("hookline-files-{}", uuid::Uuid::new_v4().simple()));
    (LocalBlobs::new(&root), root)
}

/// A bucket of its own on the emulator.
pub async fn s3_blobs() -> S3Blobs {
    let blobs = S3Blobs::new(s3_client().await, format!("hookline-test-{}", uuid::Uuid::new_v4().simple()));
    blobs.create_bucket().await.expect("create a bucket on the emulator");
    blobs
}

/// Where files go with `backend`: a directory beside memory (removed with
/// the server), a bucket beside DynamoDB.
pub async fn blobs(backend: Backend) -> (Arc<dyn Blobs>, Option<std::path::PathBuf>) {
    match backend {
        Backend::Memory => {
            let (blobs, root) = local_blobs();
            (Arc::new(blobs), Some(root))
        }
        Backend::DynamoDb => (Arc::new(s3_blobs().await), None),
    }
}

/// Bytes that are not all alike: every byte value, in a varying order.
pub fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(2_654_435_761).wrapping_add(u64::from(seed)) as u8).collect()
}

/// SHA-256 by an implementation independent of the product's (Python's hashlib).
pub fn sha256_by_python(bytes: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let script = "import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(bytes).expect("write to python3");
    String::from_utf8(child.wait_with_output().expect("python3 output").stdout).expect("utf-8").trim().to_string()
}

pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws::sqs_client(Some(&aws_endpoint())).await
}

/// Receives a job gets before SQS dead-letters it, in the test queues.
pub const TEST_MAX_RECEIVES: u32 = 3;

/// A FIFO queue of its own, with a dead-letter queue, on the emulator.
pub async fn sqs_queue() -> (SqsQueue, SqsQueue) {
    let name = format!("hookline-test-{}", uuid::Uuid::new_v4().simple());
    SqsQueue::create_fifo(&sqs_client().await, &name, std::time::Duration::from_secs(2), TEST_MAX_RECEIVES)
        .await
        .expect("create queues on the emulator")
}

/// Waits (at most 10 s) until `queue` holds `count` messages.
pub async fn wait_until_queued(queue: &SqsQueue, count: usize) {
    for _ in 0..200 {
        if queue.approximate_count().await.expect("queue attributes") >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{count} messages were not queued within 10 s");
}

/// A DynamoDB store on a fresh table of its own, reading its stream (a
/// server started on it relays what saved turns owe from there).
pub async fn dynamo_store(client: aws_sdk_dynamodb::Client) -> (DynamoStore, String) {
    let table = format!("hookline-test-{}", uuid::Uuid::new_v4().simple());
    let streams = aws::config(Some(&aws_endpoint())).await.dynamodb_streams();
    let store = DynamoStore::new(client, &table).reading_stream(streams);
    store.create_table().await.expect("create table on the emulator");
    (store, table)
}

/// Every storage port on `backend`: memory, or a fresh table on the emulator.
pub async fn stores(backend: Backend) -> Stores {
    match backend {
        Backend::Memory => Stores::of(Arc::new(MemoryStore::new())),
        Backend::DynamoDb => Stores::of(Arc::new(dynamo_store(dynamodb_client().await).await.0)),
    }
}

/// Every endpoint family's state over memory, a fresh files directory (its
/// path returned for removal) and `queue`, with nothing running the queue:
/// for driving the routers directly.
pub fn in_memory(registry: Registry, queue: Arc<dyn Queue>, settings: Settings) -> (Embedded, std::path::PathBuf) {
    let (blobs, root) = local_blobs();
    let stores = Stores::of(Arc::new(MemoryStore::new()));
    (Embedded::new(registry, stores, queue, Arc::new(blobs), settings).expect("wiring"), root)
}

/// Where a test server's jobs go, and where they end when every attempt fails.
#[derive(Clone)]
pub enum Queued {
    Memory(MemoryQueue),
    /// The in-process queue, behind sends that fail this many times first.
    Flaky(MemoryQueue, Arc<std::sync::atomic::AtomicUsize>, JobFilter),
    Sqs {
        queue: Arc<SqsQueue>,
        dead_letters: Arc<SqsQueue>,
        /// The same queue as the product sends to it (through a proxy, say).
        sends: Arc<SqsQueue>,
    },
}

/// Which sends a flaky queue fails: those with a job it matches.
pub type JobFilter = fn(&Job) -> bool;

/// A queue whose first sends (of some jobs) fail, as an unreachable SQS would.
struct FlakyQueue {
    inner: MemoryQueue,
    failures_left: Arc<std::sync::atomic::AtomicUsize>,
    failing: JobFilter,
}

#[async_trait::async_trait]
impl Queue for FlakyQueue {
    async fn send(&self, messages: &[QueueMessage]) -> hookline_core::error::Result<()> {
        use std::sync::atomic::Ordering;
        if messages.iter().any(|m| (self.failing)(&m.job))
            && self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            return Err(hookline_core::Error::Storage("queue unreachable".into()));
        }
        self.inner.send(messages).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(dir) = &self.files_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The product's router served on a loopback port, with its worker.
pub struct Server {
    pub base: String,
    pub stores: Stores,
    pub blobs: Arc<dyn Blobs>,
    files_dir: Option<std::path::PathBuf>,
    pub queued: Queued,
    worker: Arc<Worker>,
    http: reqwest::Client,
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// `data[].val` of a v2 answer, as strings.
    pub fn texts(&self) -> Vec<String> {
        self.body["data"]
            .as_array()
            .map(|data| data.iter().map(|d| d["val"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default()
    }

    /// The texts of a chat history answer, oldest first.
    pub fn history_texts(&self) -> Vec<String> {
        self.body["messages"]
            .as_array()
            .map(|m| m.iter().map(|m| m["components"][0]["data"]["text"].as_str().unwrap_or_default().into()).collect())
            .unwrap_or_default()
    }

    /// The error envelope's msg, after checking the envelope's shape.
    pub fn error_msg(&self) -> String {
        assert_eq!(self.body["_v"], "v2", "envelope: {}", self.body);
        assert!(self.body["_t"].as_str().is_some_and(|t| !t.is_empty()), "trace id: {}", self.body);
        assert_eq!(self.body["errors"][0]["code"], self.status, "code: {}", self.body);
        self.body["errors"][0]["msg"].as_str().unwrap_or_default().to_string()
    }
}

impl Server {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(stores(backend).await, Settings::default()).await
    }

    pub async fn start_with(stores: Stores, settings: Settings) -> Self {
        Self::start_with_registry(registry(), stores, settings).await
    }

    /// State in `stores`, jobs on the in-process queue.
    pub async fn start_with_registry(registry: Registry, stores: Stores, settings: Settings) -> Self {
        let queued = Queued::Memory(MemoryQueue::new(TEST_MAX_RECEIVES));
        Self::serve(registry, stores, blobs(Backend::Memory).await, queued, settings, true).await
    }

    /// State in `stores`, files in `blobs` (reached however the test
    /// chooses: through a fault-injecting proxy, say), jobs in memory.
    pub async fn start_with_blobs(
        registry: Registry,
        stores: Stores,
        blobs: Arc<dyn Blobs>,
        settings: Settings,
    ) -> Self {
        let queued = Queued::Memory(MemoryQueue::new(TEST_MAX_RECEIVES));
        Self::serve(registry, stores, (blobs, None), queued, settings, true).await
    }

    /// Everything on `backend`: memory for both, or DynamoDB and SQS on the
    /// emulator with a worker polling the queue (as Lambda's event source does).
    pub async fn start_on(backend: Backend, registry: Registry, settings: Settings) -> Self {
        let queued = match backend {
            Backend::Memory => Queued::Memory(MemoryQueue::new(TEST_MAX_RECEIVES)),
            Backend::DynamoDb => {
                let (queue, dead_letters) = sqs_queue().await;
                let queue = Arc::new(queue);
                Queued::Sqs { sends: queue.clone(), queue, dead_letters: Arc::new(dead_letters) }
            }
        };
        Self::serve(registry, stores(backend).await, blobs(backend).await, queued, settings, true).await
    }

    /// In memory, with the first `failures` sends of jobs that `failing`
    /// matches failing.
    pub async fn start_with_flaky_queue(
        registry: Registry,
        failures: usize,
        failing: JobFilter,
        settings: Settings,
    ) -> Self {
        let failures = Arc::new(std::sync::atomic::AtomicUsize::new(failures));
        let queued = Queued::Flaky(MemoryQueue::new(TEST_MAX_RECEIVES), failures, failing);
        Self::serve(registry, stores(Backend::Memory).await, blobs(Backend::Memory).await, queued, settings, true).await
    }

    /// On `stores`, jobs sent to an SQS queue through `sends` (the same
    /// queue, reached however the test chooses: through a fault-injecting
    /// proxy, say), and a worker polling it directly.
    pub async fn start_on_sqs(
        registry: Registry,
        stores: Stores,
        sends: SqsQueue,
        (queue, dead_letters): (SqsQueue, SqsQueue),
        settings: Settings,
    ) -> Self {
        let (queue, sends) = (Arc::new(queue), Arc::new(sends));
        let queued = Queued::Sqs { queue, dead_letters: Arc::new(dead_letters), sends };
        Self::serve(registry, stores, blobs(Backend::DynamoDb).await, queued, settings, true).await
    }

    /// On DynamoDB and SQS, with no worker serving the queue: the test runs it.
    pub async fn start_without_worker(registry: Registry, settings: Settings) -> Self {
        let (queue, dead_letters) = sqs_queue().await;
        let queue = Arc::new(queue);
        let queued = Queued::Sqs { sends: queue.clone(), queue, dead_letters: Arc::new(dead_letters) };
        let (stores, blobs) = (stores(Backend::DynamoDb).await, blobs(Backend::DynamoDb).await);
        Self::serve(registry, stores, blobs, queued, settings, false).await
    }

    /// The worker serving this server's queue.
    pub fn worker(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    async fn serve(
        registry: Registry,
        stores: Stores,
        (blobs, files_dir): (Arc<dyn Blobs>, Option<std::path::PathBuf>),
        queued: Queued,
        settings: Settings,
        run_worker: bool,
    ) -> Self {
        let queue: Arc<dyn Queue> = match &queued {
            Queued::Memory(memory) => Arc::new(memory.clone()),
            Queued::Flaky(memory, failures, failing) => {
                Arc::new(FlakyQueue { inner: memory.clone(), failures_left: failures.clone(), failing: *failing })
            }
            Queued::Sqs { sends, .. } => sends.clone(),
        };
        let embedded = Embedded::new(registry, stores.clone(), queue, blobs.clone(), settings).expect("wiring");
        embedded.start_relay().await.expect("read the store's changes");
        let worker = embedded.worker.clone();
        match &queued {
            Queued::Memory(memory) | Queued::Flaky(memory, ..) => memory.start(&worker, worker.retry_base()),
            Queued::Sqs { queue, .. } if run_worker => {
                tokio::spawn(sqs_worker::run(worker.clone(), queue.clone()));
            }
            Queued::Sqs { .. } => {}
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        // As `hookline serve` runs it: the client's address is the connection's peer.
        let app = api::with_client_ip(embedded.router(), api::peer_ip);
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, stores, blobs, files_dir, queued, worker, http: reqwest::Client::new() }
    }

    /// GET with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        Self::send(self.request(reqwest::Method::GET, path).header("Authorization", format!("bearer {token}"))).await
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub async fn send(builder: reqwest::RequestBuilder) -> Reply {
        let response = builder.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {}", String::from_utf8_lossy(&bytes)));
        Reply { status, headers, body }
    }

    /// POST a JSON body with a bearer token.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        Self::send(
            self.request(reqwest::Method::POST, path).header("Authorization", format!("bearer {token}")).json(body),
        )
        .await
    }

    /// A v2 text message from `user` to the test bot's first v2 instance.
    pub async fn say(&self, user: &str, text: &str) -> Reply {
        let body = json!({"message": {"type": "text", "val": text}, "from": {"id": user}});
        self.post(&v2_path(TEST_BOT), &hs256_token(user), &body).await
    }
}

/// One part of a multipart/form-data body.
pub struct Part<'a> {
    pub name: &'a str,
    pub filename: Option<&'a str>,
    pub headers: &'a [&'a str],
    pub body: &'a [u8],
}

pub fn field<'a>(name: &'a str, value: &'a str) -> Part<'a> {
    Part { name, filename: None, headers: &[], body: value.as_bytes() }
}

pub fn file_part<'a>(filename: &'a str, body: &'a [u8]) -> Part<'a> {
    Part { name: "file", filename: Some(filename), headers: &["Content-Type: application/octet-stream"], body }
}

/// The body and its Content-Type, written out by hand so every header of a part is as a client sends it.
pub fn multipart(parts: &[Part]) -> (String, Vec<u8>) {
    let boundary = "----hookline-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", part.name).as_bytes(),
        );
        if let Some(filename) = part.filename {
            body.extend_from_slice(format!("; filename=\"{filename}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        for header in part.headers {
            body.extend_from_slice(format!("{header}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part.body);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Uploads `bytes` to `bot` in one request, as Kore's web SDK does; the fileId.
pub async fn upload_file(server: &Server, bot: &str, token: &str, name: &str, bytes: &[u8]) -> String {
    let (content_type, body) = multipart(&[field("filename", name), file_part(name, bytes)]);
    let request = server
        .request(reqwest::Method::POST, &format!("/api/attachments/file/{bot}/rtm"))
        .header("Authorization", format!("bearer {token}"))
        .header("Content-Type", content_type)
        .body(body);
    let reply = Server::send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["fileId"].as_str().expect("fileId").to_string()
}

/// The body of a queue job that POSTs `{"id": webhook_id}` to the receiver's `path`.
pub fn delivery_job(bot: &str, receiver: &Receiver, path: &str, webhook_id: &str) -> String {
    json!({
        "job": "deliver",
        "botId": bot,
        "kind": "webhookNode",
        "webhookId": webhook_id,
        "call": {
            "method": "POST",
            "url": format!("http://{}{path}", receiver.addr),
            "headers": [],
            "body": {"id": webhook_id},
            "timeout": {"secs": 2, "nanos": 0},
            "allow_private": true,
            "max_response_bytes": 1024
        }
    })
    .to_string()
}

/// One request of the emulator's DynamoDB Streams API.
pub async fn streams(action: &str, body: Value) -> Value {
    aws_json(format!("DynamoDBStreams_20120810.{action}"), body).await
}

/// `table`'s stream on the emulator (its one shard): its ARN, and an
/// iterator of `iterator_type` (`TRIM_HORIZON`, `LATEST`).
pub async fn stream_iterator(table: &str, iterator_type: &str) -> (String, Value) {
    let listed = streams("ListStreams", json!({"TableName": table})).await;
    let arn = listed["Streams"][0]["StreamArn"].as_str().expect("the table has a stream").to_string();
    let stream = streams("DescribeStream", json!({"StreamArn": arn})).await;
    let shard = stream["StreamDescription"]["Shards"][0]["ShardId"].clone();
    let at = json!({"StreamArn": arn, "ShardId": shard, "ShardIteratorType": iterator_type});
    let iterator = streams("GetShardIterator", at).await["ShardIterator"].clone();
    (arn, iterator)
}

/// The records of `table`'s stream on the emulator, from its start, as a
/// DynamoDB stream event: the records as GetRecords answers them on the
/// wire, which is what Lambda's event source passes on.
pub async fn stream_event(table: &str) -> Value {
    let (arn, iterator) = stream_iterator(table, "TRIM_HORIZON").await;
    let mut records = streams("GetRecords", json!({"ShardIterator": iterator})).await["Records"].take();
    for record in records.as_array_mut().expect("records") {
        record["eventSourceARN"] = json!(arn);
    }
    json!({"Records": records})
}

/// One request of an AWS JSON protocol (`target`: its X-Amz-Target) to the
/// emulator, and its answer.
pub async fn aws_json(target: String, body: Value) -> Value {
    let request = reqwest::Client::new()
        .post(aws_endpoint())
        .header("X-Amz-Target", target)
        .header("Content-Type", "application/x-amz-json-1.0")
        .header("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
        .body(body.to_string());
    request.send().await.expect("the emulator answers").json::<Value>().await.expect("JSON")
}

/// One record of an SQS event, as the FIFO queue's event source sends it.
pub fn sqs_record(id: &str, group: &str, body: String) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("receipt-{id}"),
        "body": body,
        "attributes": {"MessageGroupId": group, "ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:hookline.fifo",
        "awsRegion": "us-east-1"
    })
}

pub fn v2_path(bot: &str) -> String {
    format!("/chatbot/v2/webhook/{bot}")
}

pub fn v1_path(bot: &str) -> String {
    format!("/chatbot/hooks/{bot}")
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

pub fn sign_hs(algorithm: Algorithm, secret: &str, claims: &Value) -> String {
    encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
}

pub fn sign_rs(algorithm: Algorithm, private_pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("test key");
    encode(&Header::new(algorithm), claims, &key).expect("sign")
}

pub fn claims(app: &str, user: &str) -> Value {
    json!({"appId": app, "sub": "4711", "userIdentity": user, "iat": now(), "exp": now() + 600})
}

/// A token of the test bot's HS256 app for `user`.
pub fn hs256_token(user: &str) -> String {
    sign_hs(Algorithm::HS256, HS256_SECRET, &claims("cs-hs256", user))
}

/// Generates a `#[tokio::test]` per store for each async fn taking a Backend.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Memory).await })*
        }
        mod dynamodb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::DynamoDb).await })*
        }
    };
}

/// A request the receiver saw.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Value,
    /// The body as sent, for signature checks.
    pub raw: Vec<u8>,
    /// The status the receiver answered (or began to: a slow answer may
    /// reach a caller that gave up).
    pub answered: u16,
}

/// How the receiver answers a path: status, body, and a delay first.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub delay_ms: u64,
    pub location: Option<String>,
}

impl Answer {
    pub fn json(body: Value) -> Self {
        Self::raw(200, &body.to_string())
    }

    pub fn raw(status: u16, body: &str) -> Self {
        Self { status, body: body.to_string(), delay_ms: 0, location: None }
    }

    pub fn redirect(location: String) -> Self {
        Self { location: Some(location), ..Self::raw(302, "") }
    }
}

/// A customer's API on a loopback port: records what it receives and answers
/// by path prefix (the longest that matches; several answers for one prefix
/// are given in turn), 404 otherwise.
pub struct Receiver {
    pub addr: String,
    received: Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(answers: Vec<(&str, Answer)>) -> Self {
        let answers: Arc<Vec<(String, Answer)>> =
            Arc::new(answers.into_iter().map(|(p, a)| (p.to_string(), a)).collect());
        let received = Arc::new(std::sync::Mutex::new(Vec::<Received>::new()));
        let seen = received.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let answers = answers.clone();
            let seen = seen.clone();
            async move {
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
                let path_and_query = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                // Answers listed for one prefix are given in turn, the last one
                // repeated; chosen and recorded under one lock.
                let longest = answers
                    .iter()
                    .filter(|(prefix, _)| path_and_query.starts_with(prefix.as_str()))
                    .map(|(prefix, _)| prefix.len())
                    .max();
                let answer = {
                    let mut seen = seen.lock().unwrap();
                    let answer = match longest {
                        Some(len) => {
                            let listed: Vec<&Answer> = answers
                                .iter()
                                .filter(|(p, _)| p.len() == len && path_and_query.starts_with(p.as_str()))
                                .map(|(_, a)| a)
                                .collect();
                            let asked =
                                seen.iter().filter(|r| r.path_and_query.starts_with(&path_and_query[..len])).count();
                            listed[asked.min(listed.len() - 1)].clone()
                        }
                        None => Answer::raw(404, "{}"),
                    };
                    seen.push(Received {
                        method: parts.method.to_string(),
                        path_and_query,
                        headers: parts.headers,
                        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        raw: bytes.to_vec(),
                        answered: answer.status,
                    });
                    answer
                };
                tokio::time::sleep(std::time::Duration::from_millis(answer.delay_ms)).await;
                let status = http::StatusCode::from_u16(answer.status).unwrap_or(http::StatusCode::OK);
                let mut headers = http::HeaderMap::new();
                headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                if let Some(location) = answer.location.and_then(|l| http::HeaderValue::from_str(&l).ok()) {
                    headers.insert(http::header::LOCATION, location);
                }
                (status, headers, answer.body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests to paths starting with `prefix`, once there are `count`
    /// of them (or after `seconds`, with what came).
    pub async fn wait_for_path(&self, prefix: &str, count: usize, seconds: u64) -> Vec<Received> {
        let of_path = || -> Vec<Received> {
            self.received().into_iter().filter(|r| r.path_and_query.starts_with(prefix)).collect()
        };
        for _ in 0..seconds * 50 {
            if of_path().len() >= count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        of_path()
    }

    /// Waits (up to two seconds) until `count` requests have arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        for _ in 0..200 {
            if self.received().len() >= count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.received()
    }
}

/// Verifies a request's Standard Webhooks signature with the reference
/// implementation (the `standardwebhooks` package from PyPI, installed by the
/// test command).
pub fn verify_signature(secret: &str, received: &Received, body: &[u8]) -> bool {
    let header = |name: &str| received.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let headers = serde_json::json!({
        "webhook-id": header("webhook-id"),
        "webhook-timestamp": header("webhook-timestamp"),
        "webhook-signature": header("webhook-signature"),
    });
    let script = "import json, sys\nfrom standardwebhooks import Webhook\n\
                  Webhook(sys.argv[1]).verify(sys.stdin.buffer.read(), json.loads(sys.argv[2]))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, secret, &headers.to_string()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), body).expect("write body");
    child.wait().expect("python3 ends").success()
}
