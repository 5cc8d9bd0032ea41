//! A local Lambda Runtime API (the interface AWS Lambda gives a custom
//! runtime) so tests can run a function's real binary as Lambda runs it: the
//! process polls for the next invocation, runs its handler and posts the
//! response or error back.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

const API: &str = "/2018-06-01/runtime";
/// How long an invocation may take, as the function's timeout.
const DEADLINE: Duration = Duration::from_secs(60);

/// What a function answered.
#[derive(Debug)]
pub enum Outcome {
    Response(Value),
    /// An error the handler returned (`errorType`, `errorMessage`).
    Error(Value),
}

#[derive(Default)]
struct Shared {
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_errors: Mutex<Vec<Value>>,
}

/// The Runtime API on a loopback port, and the function process polling it.
pub struct LambdaRuntime {
    events: mpsc::Sender<(String, Value)>,
    shared: Arc<Shared>,
    process: Child,
    /// What the function printed on stdout, a line each.
    printed: Arc<Mutex<Vec<String>>>,
    /// Bytes it wrote to stdout and stderr: what its log would take in.
    logged: Arc<AtomicUsize>,
}

type Events = Arc<tokio::sync::Mutex<mpsc::Receiver<(String, Value)>>>;

impl LambdaRuntime {
    /// Serves the Runtime API and starts `binary` against it, with the
    /// variables Lambda sets and `env`.
    pub async fn start(binary: &Path, env: &[(&str, String)]) -> Self {
        let (events, queued) = mpsc::channel(16);
        let queued: Events = Arc::new(tokio::sync::Mutex::new(queued));
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route(&format!("{API}/invocation/next"), get(next).with_state(queued))
            .route(&format!("{API}/invocation/{{id}}/response"), post(response).with_state(shared.clone()))
            .route(&format!("{API}/invocation/{{id}}/error"), post(error).with_state(shared.clone()))
            .route(&format!("{API}/init/error"), post(init_error).with_state(shared.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr").to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mut command = function_command(binary, &addr, env);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut process = command.spawn().unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let printed = Arc::new(Mutex::new(Vec::new()));
        let logged = Arc::new(AtomicUsize::new(0));
        let (stdout, lines, counted) = (process.stdout.take().expect("piped"), printed.clone(), logged.clone());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                counted.fetch_add(line.len() + 1, Ordering::Relaxed);
                lines.lock().expect("lock").push(line);
            }
        });
        let (stderr, counted) = (process.stderr.take().expect("piped"), logged.clone());
        std::thread::spawn(move || {
            // Passed on, as if inherited: a failing test shows the function's log.
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
                counted.fetch_add(line.len() + 1, Ordering::Relaxed);
                eprintln!("{line}");
            }
        });
        Self { events, shared, process, printed, logged }
    }

    /// Starts `binary` expecting its cold start to fail; what it printed on stderr.
    pub async fn failed_start(binary: &Path, env: &[(&str, String)]) -> String {
        // Nothing listens there: a binary that got past its cold start fails too.
        let mut command = function_command(binary, "127.0.0.1:9", env);
        let output = tokio::task::spawn_blocking(move || command.output());
        let output = tokio::time::timeout(DEADLINE, output).await.expect("the process stops").unwrap();
        let output = output.unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        assert!(!output.status.success(), "the cold start failed");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Invokes the function with `event` and waits for its answer.
    pub async fn invoke(&self, event: Value) -> Outcome {
        let id = uuid::Uuid::new_v4().to_string();
        let (answer, answered) = oneshot::channel();
        self.shared.waiting.lock().expect("lock").insert(id.clone(), answer);
        self.events.send((id, event)).await.expect("runtime API running");
        match tokio::time::timeout(DEADLINE, answered).await {
            Ok(Ok(outcome)) => outcome,
            _ => panic!(
                "no answer within {DEADLINE:?}; init errors: {:?}",
                self.shared.init_errors.lock().expect("lock")
            ),
        }
    }

    /// The Embedded Metric Format lines the function printed, once there
    /// are `count` of them (or what there is after ten seconds).
    pub async fn embedded_metrics(&self, count: usize) -> Vec<Value> {
        let metrics = || -> Vec<Value> {
            let printed = self.printed.lock().expect("lock");
            let lines = printed.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok());
            lines.filter(|line| line.get("_aws").is_some()).collect()
        };
        let started = std::time::Instant::now();
        while metrics().len() < count && started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        metrics()
    }

    /// Bytes the function has written to stdout and stderr so far.
    pub fn logged_bytes(&self) -> usize {
        self.logged.load(Ordering::Relaxed)
    }

    /// The API Gateway response of an HTTP function, or a panic naming the error.
    pub async fn invoke_http(&self, event: Value) -> Value {
        match self.invoke(event).await {
            Outcome::Response(response) => response,
            Outcome::Error(error) => panic!("the function failed: {error}"),
        }
    }
}

impl Drop for LambdaRuntime {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// `binary` with the variables Lambda sets and `env`.
fn function_command(binary: &Path, runtime_api: &str, env: &[(&str, String)]) -> Command {
    let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or("function").to_string();
    let mut command = Command::new(binary);
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", &name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("HOOKLINE_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

async fn next(State(queued): State<Events>) -> (HeaderMap, Json<Value>) {
    let (id, event) = queued.lock().await.recv().await.expect("the test holds the sender");
    let deadline = chrono_ms() + DEADLINE.as_millis() as u64;
    let mut headers = HeaderMap::new();
    let header = |value: String| HeaderValue::from_str(&value).expect("header value");
    headers.insert("lambda-runtime-aws-request-id", header(id));
    headers.insert("lambda-runtime-deadline-ms", header(deadline.to_string()));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header("arn:aws:lambda:us-east-1:000000000000:function:test".into()),
    );
    headers.insert("lambda-runtime-trace-id", header("Root=1-00000000-000000000000000000000000".into()));
    (headers, Json(event))
}

fn chrono_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn settle(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match shared.waiting.lock().expect("lock").remove(id) {
        Some(waiting) => {
            let _ = waiting.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

/// Bodies as JSON whatever their Content-Type says.
fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    settle(&shared, &id, Outcome::Response(json(&body)))
}

async fn error(State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    settle(&shared, &id, Outcome::Error(json(&body)))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    shared.init_errors.lock().expect("lock").push(json(&body));
    StatusCode::ACCEPTED
}

/// What a deployed stack gives its functions, on the emulator: a table, a
/// FIFO queue with its dead-letter queue, a bucket, the bots of `bots/` and
/// their secrets, and the environment that points the functions at them.
pub struct Deployment {
    pub table: String,
    pub queue: hookline_core::adapters::queue::SqsQueue,
    pub dead_letters: hookline_core::adapters::queue::SqsQueue,
    pub bucket: String,
    pub env: Vec<(&'static str, String)>,
}

/// The secret `bots/hello-bot.yaml` reads from HOOKLINE_HELLO_SECRET.
pub const HELLO_SECRET: &str = "hello-secret-for-the-runtime-tests-0123456789";
pub const HELLO_BOT: &str = "st-hello";

impl Deployment {
    pub async fn on_emulator() -> Self {
        let (_, table) = crate::dynamo_store(crate::dynamodb_client().await).await;
        let (queue, dead_letters) = crate::sqs_queue().await;
        let bucket = crate::s3_blobs().await.bucket().to_string();
        let bots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots");
        let env = vec![
            ("HOOKLINE_BOTS", bots.display().to_string()),
            ("HOOKLINE_TABLE", table.clone()),
            ("HOOKLINE_QUEUE_URL", queue.url().to_string()),
            ("HOOKLINE_BUCKET", bucket.clone()),
            ("HOOKLINE_HELLO_SECRET", HELLO_SECRET.to_string()),
            // As `sam local` runs them with examples/sam-local-env.json.
            ("HOOKLINE_AWS_ENDPOINT", crate::aws_endpoint()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ];
        Self { table, queue, dead_letters, bucket, env }
    }

    /// A token of the hello bot's app for `user`.
    pub fn token(&self, user: &str) -> String {
        crate::sign_hs(jsonwebtoken::Algorithm::HS256, HELLO_SECRET, &crate::claims("cs-hello", user))
    }
}

/// An API Gateway HTTP API (payload 2.0) request event; bodies that are not
/// JSON travel base64-encoded, as API Gateway sends binary bodies.
pub fn http_event(method: &str, path_and_query: &str, headers: &[(&str, &str)], body: &[u8]) -> Value {
    use base64::Engine;
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let mut header_map = serde_json::Map::new();
    for (name, value) in headers {
        header_map.insert(name.to_ascii_lowercase(), Value::String(value.to_string()));
    }
    header_map.insert("host".into(), "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com".into());
    header_map.insert("x-forwarded-for".into(), "203.0.113.10".into());
    let json = headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.starts_with("application/json"));
    let (body, encoded) = match (body.is_empty(), json) {
        (true, _) => (Value::Null, false),
        (false, true) => (Value::String(String::from_utf8_lossy(body).into_owned()), false),
        (false, false) => (Value::String(base64::engine::general_purpose::STANDARD.encode(body)), true),
    };
    serde_json::json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "test"},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "22/Nov/2026:03:00:00 +0000",
            "timeEpoch": 1795316400000u64
        },
        "body": body,
        "isBase64Encoded": encoded
    })
}

/// The body of an API Gateway response, decoded, as JSON.
pub fn response_json(response: &Value) -> Value {
    use base64::Engine;
    let body = response["body"].as_str().unwrap_or_default();
    let bytes = match response["isBase64Encoded"].as_bool() {
        Some(true) => base64::engine::general_purpose::STANDARD.decode(body).expect("base64 body"),
        _ => body.as_bytes().to_vec(),
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {response}"))
}
