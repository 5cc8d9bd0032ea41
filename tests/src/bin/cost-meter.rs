//! The cost meter (run by `scripts/cost`): each kind of turn through the
//! Lambda functions' release binaries under a local Runtime API, against the
//! emulator (moto's server, with its recorder on), as API Gateway, the
//! queue's and the table stream's event sources would drive them. Every
//! DynamoDB, SQS and S3 request is recorded and priced by its item and
//! payload sizes (DynamoDB's capacity rules), each invocation by its
//! duration, memory (template.yaml) and log bytes; the cost per million
//! turns is printed by part at the list prices of bench/prices.json.
//!
//!   cost-meter FUNCTIONS_DIR   (HOOKLINE_TEST_AWS_ENDPOINT: the emulator)

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use hookline_tests::runtime_api::{Deployment, LambdaRuntime, Outcome, http_event, response_json};
use hookline_tests::{
    Answer, Receiver, aws_endpoint, aws_json, field, file_part, multipart, sign_hs, sqs_client, sqs_record,
    stream_iterator, streams,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Turns measured per kind, after a conversation of [`WARM_UP`].
const TURNS: usize = 20;
/// What a user said before the measured turns: the conversation item grows
/// with its transcript and context, as a real one does.
const WARM_UP: [&str; 20] = [
    "hello",
    "balance",
    "weather",
    "Lisbon",
    "help",
    "hello",
    "balance",
    "weather",
    "Paris",
    "what can you do",
    "hello",
    "balance",
    "weather",
    "Rome",
    "thanks",
    "hello",
    "balance",
    "weather",
    "Oslo",
    "help",
];
const SECRET: &str = "cost-meter-secret-0123456789-abcdefghijkl";
const SIGNING_SECRET: &str = "whsec_Y29zdC1tZXRlci1zaWduaW5nLXNlY3JldA==";
const BOT: &str = "st-cost";
const FUNCTIONS: [&str; 4] = ["webhook", "poll", "files", "worker"];
/// An upload's size.
const FILE_BYTES: usize = 100 * 1024;
const KB: f64 = 1024.0;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prices {
    as_of: String,
    region: String,
    api_gateway_http_api_per_million_requests: f64,
    api_gateway_request_unit_bytes: f64,
    lambda_per_million_requests: f64,
    lambda_arm64_per_gb_second: f64,
    dynamodb_per_million_write_request_units: f64,
    dynamodb_per_million_read_request_units: f64,
    dynamodb_storage_per_gb_month: f64,
    dynamodb_item_overhead_bytes: f64,
    sqs_fifo_per_million_requests: f64,
    sqs_request_chunk_bytes: f64,
    s3_put_per_thousand_requests: f64,
    s3_get_per_thousand_requests: f64,
    s3_standard_per_gb_month: f64,
    cloudwatch_logs_ingestion_per_gb: f64,
    lambda_platform_log_bytes_per_invocation: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Service,
    Polled,
    Async,
    Upload,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Text => "plain text turn (sync)",
            Kind::Service => "turn with a service call (sync)",
            Kind::Polled => "polled turn (a service call, then a poll)",
            Kind::Async => "async turn, delivered to the POST_URL",
            Kind::Upload => "file upload (100 KiB, one request)",
        }
    }

    fn instance(self) -> &'static str {
        match self {
            Kind::Polled => "polling",
            Kind::Async => "async",
            _ => "sync",
        }
    }
}

/// What the measured turns of one kind used, in all.
#[derive(Default)]
struct Usage {
    /// Lambda invocations: function, billed milliseconds.
    invocations: Vec<(&'static str, u64)>,
    http_requests: f64,
    log_bytes: f64,
    write_units: f64,
    read_units: f64,
    /// GB-months of the items the turns added (log entries, records).
    stored_gb_months: f64,
    sqs_requests: f64,
    s3_puts: f64,
    s3_gets: f64,
    s3_gb_months: f64,
    /// Each request by service and action, with its units, for the detail lines.
    requests: BTreeMap<String, (usize, f64)>,
    /// The sizes of the items written, by kind (the sort key's prefix).
    written: BTreeMap<String, (usize, f64)>,
}

impl Usage {
    fn count(&mut self, request: String, units: f64) {
        let entry = self.requests.entry(request).or_default();
        entry.0 += 1;
        entry.1 += units;
    }
}

struct Meter {
    functions: HashMap<&'static str, LambdaRuntime>,
    deployment: Deployment,
    http: reqwest::Client,
    sqs: aws_sdk_sqs::Client,
    /// The table stream's next records.
    stream: StreamReader,
    /// Each item's size, to price what replaces or reads it.
    items: HashMap<(String, String), f64>,
    /// The `idleDue` of the items in the sweep's index (KEYS_ONLY).
    idle: HashMap<(String, String), String>,
    usage: Usage,
    measuring: bool,
    memory: HashMap<String, f64>,
    prices: Prices,
}

#[tokio::main]
async fn main() {
    let functions_dir = PathBuf::from(std::env::args().nth(1).expect("usage: cost-meter FUNCTIONS_DIR"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let prices: Prices =
        serde_json::from_str(&std::fs::read_to_string(root.join("bench/prices.json")).expect("bench/prices.json"))
            .expect("prices");
    let memory = memory_sizes(&root.join("template.yaml"));

    let weather = Answer::json(json!({"city": "Paris", "current": {"temp": 21, "sky": "clear"}}));
    let receiver = Receiver::start(vec![("/weather", weather), ("/post", Answer::json(json!({})))]).await;
    let deployment = Deployment::on_emulator().await;
    let bots = std::env::temp_dir().join(format!("hookline-cost-{}", std::process::id()));
    std::fs::create_dir_all(&bots).expect("bots folder");
    let bot = std::fs::read_to_string(root.join("bench/cost-bot.yaml")).expect("bench/cost-bot.yaml");
    std::fs::write(bots.join("cost-bot.yaml"), bot.replace("RECEIVER", &format!("http://{}", receiver.addr)))
        .expect("bot file");
    let mut env: Vec<(&str, String)> = deployment.env.iter().filter(|(k, _)| *k != "HOOKLINE_BOTS").cloned().collect();
    env.extend([
        ("HOOKLINE_BOTS", bots.display().to_string()),
        ("HOOKLINE_COST_SECRET", SECRET.to_string()),
        ("HOOKLINE_COST_SIGNING_SECRET", SIGNING_SECRET.to_string()),
        // The stand-in API is on loopback.
        ("HOOKLINE_ALLOW_PRIVATE_NETWORKS", "true".to_string()),
        // As deployed: the template's default level and namespace.
        ("HOOKLINE_LOG", "info".to_string()),
        ("HOOKLINE_METRICS_NAMESPACE", "Hookline/cost".to_string()),
    ]);
    let mut runtimes = HashMap::new();
    for function in FUNCTIONS {
        runtimes.insert(function, LambdaRuntime::start(&functions_dir.join(function), &env).await);
    }
    let stream = StreamReader::open(&deployment.table).await;
    let mut meter = Meter {
        functions: runtimes,
        deployment,
        http: reqwest::Client::new(),
        sqs: sqs_client().await,
        stream,
        items: HashMap::new(),
        idle: HashMap::new(),
        usage: Usage::default(),
        measuring: false,
        memory,
        prices,
    };

    let prices = &meter.prices;
    println!("Cost per million, at list prices ({}, {}; bench/prices.json)", prices.region, prices.as_of);
    println!("Each kind: {TURNS} turns measured after a {}-turn conversation.\n", WARM_UP.len());
    for (n, kind) in [Kind::Text, Kind::Service, Kind::Polled, Kind::Async, Kind::Upload].into_iter().enumerate() {
        let user = format!("cost-user-{n}-{}", std::process::id());
        if kind != Kind::Upload {
            for text in WARM_UP {
                meter.say(kind, &user, text).await;
            }
        }
        // Each measured turn follows the last, so that a turn which moves
        // the log entries held before it is measured too.
        for _ in 0..TURNS {
            meter.start_measuring().await;
            match kind {
                Kind::Upload => meter.upload(&user).await,
                Kind::Text | Kind::Async => meter.say(kind, &user, "hello").await,
                Kind::Service | Kind::Polled => meter.say(kind, &user, "forecast").await,
            }
            meter.stop_measuring().await;
        }
        let usage = std::mem::take(&mut meter.usage);
        print_kind(kind, &usage, &meter.prices, &meter.memory);
    }
    let _ = std::fs::remove_dir_all(&bots);
}

impl Meter {
    fn token(user: &str) -> String {
        let now = chrono_now();
        let claims = json!({"appId": "cs-cost", "sub": user, "userIdentity": user, "iat": now, "exp": now + 3600});
        sign_hs(jsonwebtoken::Algorithm::HS256, SECRET, &claims)
    }

    /// One message, through the webhook function, then everything it set
    /// going (the stream's relay, queued jobs, polls) until nothing is left.
    async fn say(&mut self, kind: Kind, user: &str, text: &str) {
        let path = format!("/chatbot/v2/webhook/{BOT}/hookInstance/{}", kind.instance());
        let body = json!({"message": {"type": "text", "val": text}, "from": {"id": user}}).to_string();
        let authorization = format!("bearer {}", Self::token(user));
        let headers = [("content-type", "application/json"), ("authorization", authorization.as_str())];
        let answer = self.invoke_http("webhook", http_event("POST", &path, &headers, body.as_bytes())).await;
        assert_eq!(answer["statusCode"], 200, "{text}: {answer}");
        self.settle().await;
        if let Some(poll_id) = response_json(&answer)["pollId"].as_str() {
            // The client's poll, once the worker has made the call.
            let poll = http_event("GET", &format!("{path}/poll/{poll_id}"), &headers[1..], b"");
            let polled = self.invoke_http("poll", poll).await;
            let polled = response_json(&polled);
            assert!(polled["status"] != "Inprogress" && polled["data"].is_array(), "{polled}");
        }
    }

    async fn upload(&mut self, user: &str) {
        let bytes: Vec<u8> = (0..FILE_BYTES).map(|i| (i * 31 % 251) as u8).collect();
        let (content_type, body) = multipart(&[field("filename", "receipt.pdf"), file_part("receipt.pdf", &bytes)]);
        let authorization = format!("bearer {}", Self::token(user));
        let headers = [("content-type", content_type.as_str()), ("authorization", authorization.as_str())];
        let path = format!("/api/attachments/file/{BOT}/rtm");
        let answer = self.invoke_http("files", http_event("POST", &path, &headers, &body)).await;
        assert_eq!(answer["statusCode"], 200, "upload: {answer}");
        if self.measuring {
            // API Gateway meters requests in units of its size.
            self.usage.http_requests +=
                (body.len() as f64 / self.prices.api_gateway_request_unit_bytes).ceil().max(1.0) - 1.0;
        }
    }

    async fn invoke_http(&mut self, function: &'static str, event: Value) -> Value {
        let Outcome::Response(answer) = self.invoke(function, event).await else { panic!("{function} failed") };
        if self.measuring {
            self.usage.http_requests += 1.0;
        }
        answer
    }

    async fn invoke(&mut self, function: &'static str, event: Value) -> Outcome {
        let started = Instant::now();
        let outcome = self.functions[function].invoke(event).await;
        if self.measuring {
            self.usage.invocations.push((function, started.elapsed().as_micros().div_ceil(1000) as u64));
        }
        outcome
    }

    /// As the event sources do: the stream's records of writes that owe
    /// (the template's filter) to the worker, then the queue's messages,
    /// batch by batch, until neither has anything.
    async fn settle(&mut self) {
        loop {
            let owing: Vec<Value> = self.stream.read().await.into_iter().filter(owes).collect();
            if !owing.is_empty() {
                let outcome = self.invoke("worker", json!({"Records": owing})).await;
                assert!(matches!(&outcome, Outcome::Response(r) if r["batchItemFailures"] == json!([])), "{outcome:?}");
                continue;
            }
            // The event source's pollers run whether or not there is work:
            // a receive is priced when it takes messages, not when it looks.
            if self.queued().await == 0 {
                return;
            }
            let received = self
                .sqs
                .receive_message()
                .queue_url(self.deployment.queue.url())
                .max_number_of_messages(10)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                .send()
                .await
                .expect("ReceiveMessage");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return;
            }
            let records: Vec<Value> = messages
                .iter()
                .map(|m| {
                    let group = m
                        .attributes()
                        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId));
                    sqs_record(
                        m.message_id().unwrap_or_default(),
                        group.map_or("", |g| g.as_str()),
                        m.body().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            let outcome = self.invoke("worker", json!({"Records": records})).await;
            assert!(matches!(&outcome, Outcome::Response(r) if r["batchItemFailures"] == json!([])), "{outcome:?}");
            // The event source deletes a batch's messages in one request.
            let mut delete = self.sqs.delete_message_batch().queue_url(self.deployment.queue.url());
            for (n, message) in messages.iter().enumerate() {
                let entry = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("entry");
                delete = delete.entries(entry);
            }
            delete.send().await.expect("DeleteMessageBatch");
        }
    }

    /// Messages waiting in the queue (the meter's own
    /// look: not priced).
    async fn queued(&self) -> usize {
        self.deployment.queue.approximate_count().await.expect("GetQueueAttributes")
    }

    /// Sizes every item as it is now, then records what follows.
    async fn start_measuring(&mut self) {
        (self.items, self.idle) = self.scan().await;
        self.recorder("reset-recording").await;
        self.recorder("start-recording").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.usage.log_bytes -= self.logged() as f64;
        self.measuring = true;
    }

    async fn stop_measuring(&mut self) {
        self.measuring = false;
        // The functions' last log lines reach their pipes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.usage.log_bytes += self.logged() as f64;
        self.recorder("stop-recording").await;
        let recording = self.recorder("download-recording").await;
        for line in recording.lines().filter(|l| !l.is_empty()) {
            let request: Value = serde_json::from_str(line).expect("a recorded request");
            self.price(&request);
        }
    }

    fn logged(&self) -> usize {
        self.functions.values().map(LambdaRuntime::logged_bytes).sum()
    }

    async fn recorder(&self, action: &str) -> String {
        let url = format!("{}/moto-api/recorder/{action}", aws_endpoint());
        let request = if action == "download-recording" { self.http.get(url) } else { self.http.post(url) };
        let response = request.send().await.expect("the emulator's recorder");
        assert!(
            response.status().is_success(),
            "{action}: {} (start moto with MOTO_RECORDER_FILEPATH)",
            response.status()
        );
        response.text().await.unwrap_or_default()
    }

    /// Every item of the table and its size.
    async fn scan(&self) -> (HashMap<(String, String), f64>, HashMap<(String, String), String>) {
        let (mut items, mut idle) = (HashMap::new(), HashMap::new());
        let mut start: Option<Value> = None;
        loop {
            let mut body = json!({"TableName": self.deployment.table});
            if let Some(key) = start.take() {
                body["ExclusiveStartKey"] = key;
            }
            let page = aws_json("DynamoDB_20120810.Scan".into(), body).await;
            for item in page["Items"].as_array().into_iter().flatten() {
                items.insert(item_key(item), item_size(item));
                if let Some(due) = item["idleDue"]["N"].as_str() {
                    idle.insert(item_key(item), due.to_string());
                }
            }
            match page.get("LastEvaluatedKey") {
                Some(key) if !key.is_null() => start = Some(key.clone()),
                _ => return (items, idle),
            }
        }
    }

    /// Adds one recorded request's price to the usage.
    fn price(&mut self, request: &Value) {
        let body = request["body"].as_str().unwrap_or_default();
        let body = match request["body_encoded"].as_bool() {
            Some(true) => base64::engine::general_purpose::STANDARD.decode(body).unwrap_or_default(),
            _ => body.as_bytes().to_vec(),
        };
        let target = request["headers"]["X-Amz-Target"].as_str().unwrap_or_default();
        let (service, action) = target.split_once('.').unwrap_or(("", ""));
        match service {
            "DynamoDB_20120810" => {
                let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                let (read, write) = self.capacity(action, &body);
                self.usage.read_units += read;
                self.usage.write_units += write;
                if read + write > 0.0 {
                    self.usage.count(format!("DynamoDB {action}"), read + write);
                }
            }
            // The stream's records reach the worker free of charge.
            "DynamoDBStreams_20120810" => {}
            "AmazonSQS" if action == "GetQueueAttributes" => {}
            "AmazonSQS" => {
                let chunk = self.prices.sqs_request_chunk_bytes;
                let chunks = if action.starts_with("Send") { (body.len() as f64 / chunk).ceil() } else { 1.0 };
                self.usage.sqs_requests += chunks.max(1.0);
                self.usage.count(format!("SQS {action}"), chunks.max(1.0));
            }
            "" => match request["method"].as_str().unwrap_or_default() {
                "PUT" | "POST" | "COPY" => {
                    self.usage.s3_puts += 1.0;
                    self.usage.count("S3 PUT".into(), 1.0);
                    let days = 30.0; // FileRetentionDays' default
                    self.usage.s3_gb_months += body.len() as f64 / 1e9 * days / 30.0;
                }
                "GET" | "HEAD" => {
                    self.usage.s3_gets += 1.0;
                    self.usage.count("S3 GET".into(), 1.0);
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Read and write units of one DynamoDB request, by its items' sizes;
    /// the items' sizes follow what it writes.
    fn capacity(&mut self, action: &str, body: &Value) -> (f64, f64) {
        let reads =
            |size: f64, consistent: bool| (size / (4.0 * KB)).ceil().max(1.0) * if consistent { 1.0 } else { 0.5 };
        match action {
            "GetItem" => {
                let size = self.items.get(&item_key(&body["Key"])).copied().unwrap_or(0.0);
                (reads(size, body["ConsistentRead"] == true), 0.0)
            }
            "Query" => {
                let size = self.queried(body);
                (reads(size, body["ConsistentRead"] == true), 0.0)
            }
            "PutItem" => (0.0, self.put(&body["Item"])),
            "UpdateItem" | "DeleteItem" => {
                let key = item_key(&body["Key"]);
                let size = self.items.get(&key).copied().unwrap_or(0.0);
                if action == "DeleteItem" {
                    self.items.remove(&key);
                }
                (0.0, writes(size))
            }
            "BatchWriteItem" => {
                let mut units = 0.0;
                for requests in body["RequestItems"].as_object().into_iter().flat_map(|t| t.values()) {
                    for request in requests.as_array().into_iter().flatten() {
                        units += match request.get("PutRequest") {
                            Some(put) => self.put(&put["Item"]),
                            None => {
                                writes(self.items.remove(&item_key(&request["DeleteRequest"]["Key"])).unwrap_or(0.0))
                            }
                        };
                    }
                }
                (0.0, units)
            }
            "TransactWriteItems" => {
                let mut units = 0.0;
                for item in body["TransactItems"].as_array().into_iter().flatten() {
                    units += 2.0
                        * match (item.get("Put"), item.get("Update"), item.get("Delete"), item.get("ConditionCheck")) {
                            (Some(put), ..) => self.put(&put["Item"]),
                            (_, Some(op), ..) | (_, _, Some(op), _) | (.., Some(op)) => {
                                writes(self.items.get(&item_key(&op["Key"])).copied().unwrap_or(0.0))
                            }
                            _ => 0.0,
                        };
                }
                (0.0, units)
            }
            "TransactGetItems" | "BatchGetItem" => {
                let keys: Vec<Value> = match action {
                    "TransactGetItems" => body["TransactItems"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|i| i["Get"]["Key"].clone())
                        .collect(),
                    _ => body["RequestItems"]
                        .as_object()
                        .into_iter()
                        .flat_map(|t| t.values())
                        .flat_map(|t| t["Keys"].as_array().cloned().unwrap_or_default())
                        .collect(),
                };
                let factor = if action == "TransactGetItems" { 2.0 } else { 1.0 };
                let units = keys
                    .iter()
                    .map(|k| factor * reads(self.items.get(&item_key(k)).copied().unwrap_or(0.0), true))
                    .sum();
                (units, 0.0)
            }
            // Control plane (DescribeTable, ...): not per request.
            _ => (0.0, 0.0),
        }
    }

    /// A put's write units (the larger of the item it replaces and the new
    /// one), and the storage a new item adds for as long as it lives.
    fn put(&mut self, item: &Value) -> f64 {
        let size = item_size(item);
        let key = item_key(item);
        let kind = key.1.split(['#', '-', ':']).next().unwrap_or_default().to_string();
        let entry = self.usage.written.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += size;
        // The sweep's index: an entry added or removed is a write, one moved two.
        let due = item["idleDue"]["N"].as_str().map(String::from);
        let was = match &due {
            Some(due) => self.idle.insert(key.clone(), due.clone()),
            None => self.idle.remove(&key),
        };
        let index = match (was, due) {
            (None, None) => 0.0,
            (Some(was), Some(due)) if was == due => 0.0,
            (Some(_), Some(_)) => 2.0,
            _ => 1.0,
        };
        if index > 0.0 {
            self.usage.write_units += index;
            self.usage.count("DynamoDB idle index".into(), index);
        }
        let before = self.items.insert(key, size);
        if before.is_none() {
            let months = item["expiresAt"]["N"]
                .as_str()
                .and_then(|n| n.parse::<f64>().ok())
                .map_or(1.0, |at| ((at - chrono_now() as f64) / (30.0 * 86_400.0)).max(0.0));
            self.usage.stored_gb_months += (size + self.prices.dynamodb_item_overhead_bytes) / 1e9 * months;
        }
        writes(size.max(before.unwrap_or(0.0)))
    }

    /// The sizes of the items a query reads: its partition's, within its
    /// sort key range or prefix, from either end, up to its limit.
    fn queried(&self, body: &Value) -> f64 {
        let values = &body["ExpressionAttributeValues"];
        let text = |name: &str| values[name]["S"].as_str().unwrap_or_default().to_string();
        let condition = body["KeyConditionExpression"].as_str().unwrap_or_default();
        let pk = text(":pk");
        // `sk BETWEEN :from AND :to`, or `begins_with(sk, :prefix)`.
        let prefix = condition
            .split_once("begins_with(sk,")
            .and_then(|(_, rest)| rest.split(')').next())
            .map(|name| text(name.trim()));
        let (from, to) = (text(":from"), text(":to"));
        let in_range = |sk: &String| match &prefix {
            Some(prefix) => sk.starts_with(prefix.as_str()),
            None => from.is_empty() || (sk >= &from && sk <= &to),
        };
        let limit = body["Limit"].as_u64().unwrap_or(u64::MAX) as usize;
        let mut sizes: Vec<(&String, f64)> =
            self.items.iter().filter(|((p, s), _)| *p == pk && in_range(s)).map(|((_, s), size)| (s, *size)).collect();
        sizes.sort_by(|a, b| a.0.cmp(b.0));
        if body["ScanIndexForward"] == false {
            sizes.reverse();
        }
        sizes.iter().take(limit).map(|(_, size)| size).sum()
    }
}

fn writes(size: f64) -> f64 {
    (size / KB).ceil().max(1.0)
}

/// A stream record the worker's event source passes on (its filter:
/// writes that owe).
fn owes(record: &Value) -> bool {
    record["dynamodb"]["NewImage"]["owes"]["N"].is_string()
}

/// `(pk, sk)` of an item or key in DynamoDB's JSON.
fn item_key(item: &Value) -> (String, String) {
    let text = |name: &str| item[name]["S"].as_str().unwrap_or_default().to_string();
    (text("pk"), text("sk"))
}

/// An item's size by DynamoDB's rules: each attribute's name and value.
fn item_size(item: &Value) -> f64 {
    item.as_object().map_or(0.0, |m| attributes_size(m) as f64)
}

fn attributes_size(attributes: &Map<String, Value>) -> usize {
    attributes.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|m| m.iter().next()) else { return 0 };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => number_size(inner.as_str().unwrap_or_default()),
        "B" => inner.as_str().map_or(0, |b| base64::engine::general_purpose::STANDARD.decode(b).map_or(0, |b| b.len())),
        "BOOL" | "NULL" => 1,
        "SS" => inner.as_array().into_iter().flatten().map(|s| s.as_str().map_or(0, str::len)).sum(),
        "NS" => inner.as_array().into_iter().flatten().map(|n| number_size(n.as_str().unwrap_or_default())).sum(),
        "M" => 3 + inner.as_object().map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v) + 1).sum()),
        "L" => 3 + inner.as_array().into_iter().flatten().map(|v| value_size(v) + 1).sum::<usize>(),
        _ => 0,
    }
}

/// About one byte per two significant digits, plus one.
fn number_size(number: &str) -> usize {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len().max(1);
    significant.div_ceil(2) + 1
}

/// The table's stream, read on from where the last read stopped.
struct StreamReader {
    iterator: Value,
    arn: String,
}

impl StreamReader {
    async fn open(table: &str) -> Self {
        let (arn, iterator) = stream_iterator(table, "LATEST").await;
        Self { iterator, arn }
    }

    async fn read(&mut self) -> Vec<Value> {
        let mut page = streams("GetRecords", json!({"ShardIterator": self.iterator})).await;
        if let Some(next) = page.get("NextShardIterator").filter(|n| !n.is_null()) {
            self.iterator = next.clone();
        }
        let mut records = page["Records"].as_array_mut().map(std::mem::take).unwrap_or_default();
        for record in &mut records {
            record["eventSourceARN"] = json!(self.arn);
        }
        records
    }
}

/// Each function's memory (MB) as template.yaml sets it.
fn memory_sizes(template: &Path) -> HashMap<String, f64> {
    let text = std::fs::read_to_string(template).expect("template.yaml");
    // Each function's block: its logical id, then its MemorySize.
    let mut sizes = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(id) =
            line.strip_prefix("  ").filter(|l| !l.starts_with(' ')).and_then(|l| l.strip_suffix("Function:"))
        {
            current = Some(id.to_lowercase());
        } else if let (Some(id), Some(mb)) = (&current, line.trim().strip_prefix("MemorySize:")) {
            sizes.insert(id.clone(), mb.trim().parse().expect("a memory size"));
            current = None;
        }
    }
    for function in FUNCTIONS {
        assert!(sizes.contains_key(function), "template.yaml sets no MemorySize for {function}: {sizes:?}");
    }
    sizes
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The cost per million of `kind`, by part, and what it is made of.
fn print_kind(kind: Kind, usage: &Usage, prices: &Prices, memory: &HashMap<String, f64>) {
    let per_turn = |x: f64| x / TURNS as f64;
    let million = |count: f64, price_per_million: f64| per_turn(count) * price_per_million;
    let gb_seconds: f64 = usage.invocations.iter().map(|(f, ms)| *ms as f64 / 1000.0 * memory[*f] / 1024.0).sum();
    let log_bytes = usage.log_bytes + usage.invocations.len() as f64 * prices.lambda_platform_log_bytes_per_invocation;
    let parts = [
        ("API Gateway (HTTP API)", million(usage.http_requests, prices.api_gateway_http_api_per_million_requests)),
        ("Lambda requests", million(usage.invocations.len() as f64, prices.lambda_per_million_requests)),
        ("Lambda duration", per_turn(gb_seconds) * prices.lambda_arm64_per_gb_second * 1e6),
        ("DynamoDB writes", million(usage.write_units, prices.dynamodb_per_million_write_request_units)),
        ("DynamoDB reads", million(usage.read_units, prices.dynamodb_per_million_read_request_units)),
        ("DynamoDB storage", per_turn(usage.stored_gb_months) * prices.dynamodb_storage_per_gb_month * 1e6),
        ("SQS", million(usage.sqs_requests, prices.sqs_fifo_per_million_requests)),
        (
            "S3 requests",
            per_turn(
                usage.s3_puts * prices.s3_put_per_thousand_requests
                    + usage.s3_gets * prices.s3_get_per_thousand_requests,
            ) * 1e3,
        ),
        ("S3 storage", per_turn(usage.s3_gb_months) * prices.s3_standard_per_gb_month * 1e6),
        ("CloudWatch Logs", per_turn(log_bytes) / 1e9 * prices.cloudwatch_logs_ingestion_per_gb * 1e6),
    ];
    let total: f64 = parts.iter().map(|(_, cost)| cost).sum();
    println!("{}: ${total:.2} per million", kind.name());
    for (part, cost) in parts.iter().filter(|(_, cost)| *cost > 0.0) {
        println!("  {part:<24} ${cost:>6.3}");
    }
    let invocations: BTreeMap<&str, (usize, u64)> =
        usage.invocations.iter().fold(BTreeMap::new(), |mut all, (f, ms)| {
            let entry = all.entry(*f).or_default();
            entry.0 += 1;
            entry.1 += ms;
            all
        });
    let lambda: Vec<String> = invocations
        .iter()
        .map(|(f, (n, ms))| {
            format!("{f} {:.1} x {:.1} ms ({} MB)", per_turn(*n as f64), *ms as f64 / *n as f64, memory[*f])
        })
        .collect();
    println!("  per turn: Lambda {}; logs {:.0} B", lambda.join(", "), per_turn(log_bytes));
    let requests: Vec<String> = usage
        .requests
        .iter()
        .map(|(request, (n, units))| format!("{request} {:.1} x {:.1}", per_turn(*n as f64), units / *n as f64))
        .collect();
    println!("  per turn: {} (count x units: WRU, RRU or requests)", requests.join(", "));
    let written: Vec<String> = usage
        .written
        .iter()
        .map(|(kind, (n, bytes))| format!("{kind} {:.1} x {:.0} B", per_turn(*n as f64), bytes / *n as f64))
        .collect();
    println!("  items written per turn: {}", written.join(", "));
    println!("  through function URLs (FunctionUrls=true, no API Gateway): ${:.2}\n", total - parts[0].1);
}
