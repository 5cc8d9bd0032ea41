//! Bad input gets a clear answer in the error envelope, never a panic or a
//! bare 500; CORS headers are on answers and errors alike.

use std::sync::Arc;
use std::time::Duration;

use hookline_core::adapters::store::MemoryStore;
use hookline_core::app::queue::QueueMessage;
use hookline_core::app::records::{Conversation, LogEntry};
use hookline_core::app::relay::Changes;
use hookline_core::app::store::{Conversations, Stores, TurnWrite};
use hookline_core::ids::ConversationKey;
use hookline_core::process::Settings;
use hookline_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

async fn post_raw(server: &Server, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut request =
        server.request(Method::POST, path).header("Authorization", format!("bearer {}", hs256_token("u1"))).body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    Server::send(request).await
}

#[tokio::test]
async fn invalid_payloads_are_400() {
    let server = Server::start(Backend::Memory).await;
    let v2 = v2_path(TEST_BOT);
    let v1 = format!("{}/hookInstance/voice", v1_path(TEST_BOT));
    let cases: Vec<(&str, &str, Value)> = vec![
        ("v2: no message", &v2, json!({"from": {"id": "u1"}})),
        ("v2: message not an object", &v2, json!({"message": "hi", "from": {"id": "u1"}})),
        ("v2: no type", &v2, json!({"message": {"val": "hi"}, "from": {"id": "u1"}})),
        ("v2: unknown type", &v2, json!({"message": {"type": "audio", "val": "hi"}, "from": {"id": "u1"}})),
        ("v2: no val", &v2, json!({"message": {"type": "text"}, "from": {"id": "u1"}})),
        ("v2: text val not a string", &v2, json!({"message": {"type": "text", "val": 42}, "from": {"id": "u1"}})),
        ("v2: blank text", &v2, json!({"message": {"type": "text", "val": "  "}, "from": {"id": "u1"}})),
        ("v2: template val a string", &v2, json!({"message": {"type": "template", "val": "x"}, "from": {"id": "u1"}})),
        ("v2: formData val a string", &v2, json!({"message": {"type": "formData", "val": "x"}, "from": {"id": "u1"}})),
        ("v2: unknown event", &v2, json!({"message": {"type": "event", "val": "ON_DISCONNECT"}, "from": {"id": "u1"}})),
        (
            "v2: attachments on an event",
            &v2,
            json!({"message": {"type": "event", "val": "ON_CONNECT", "attachments": [{"url": "https://x.io/a.png"}]}, "from": {"id": "u1"}}),
        ),
        (
            "v2: attachment without url or fileId",
            &v2,
            json!({"message": {"type": "text", "val": "see", "attachments": [{"fileName": "a"}]}, "from": {"id": "u1"}}),
        ),
        (
            "v2: attachment url not http",
            &v2,
            json!({"message": {"type": "text", "val": "see", "attachments": [{"url": "file:///etc/passwd"}]}, "from": {"id": "u1"}}),
        ),
        (
            "v2: attachments not an array",
            &v2,
            json!({"message": {"type": "text", "val": "see", "attachments": {"url": "https://x.io"}}, "from": {"id": "u1"}}),
        ),
        ("v2: from.id a number", &v2, json!({"message": {"type": "text", "val": "hi"}, "from": {"id": 7}})),
        (
            "v2: session.new a string",
            &v2,
            json!({"session": {"new": "yes"}, "message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}}),
        ),
        (
            "v2: customData not an object",
            &v2,
            json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}, "customData": [1]}),
        ),
        (
            "v2: metaTags wrong shape",
            &v2,
            json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}, "metaTags": {"userLevelTags": "vip"}}),
        ),
        (
            "v2: mergeIdentity not a flag",
            &v2,
            json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}, "mergeIdentity": "maybe"}),
        ),
        (
            "v2: unsupported language",
            &v2,
            json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}, "interactiveLanguage": "de"}),
        ),
        (
            "v2: from.id too long",
            &v2,
            json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u".repeat(300)}}),
        ),
        // serde would fill these structs from arrays of their fields.
        ("v2: message an array", &v2, json!({"message": ["text", "hi"], "from": {"id": "u1"}})),
        ("v2: from an array", &v2, json!({"message": {"type": "text", "val": "hi"}, "from": ["u1"]})),
        ("v2: session an array", &v2, json!({"session": [true], "message": {"type": "text", "val": "hi"}})),
        (
            "v2: an attachment an array",
            &v2,
            json!({"message": {"type": "text", "val": "see", "attachments": [["https://x.io/a.png"]]}, "from": {"id": "u1"}}),
        ),
        (
            "v2: metaTags an array",
            &v2,
            json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}, "metaTags": [[["vip", 1]]]}),
        ),
        (
            "v2: a tag an array, in JSON text",
            &v2,
            json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}, "metaTags": "{\"userLevelTags\": [[\"vip\", 1]]}"}),
        ),
        ("v1: message an array", &v1, json!({"message": ["hi"], "from": {"id": "u1"}})),
        ("v1: a top-level tag an array", &v1, json!({"message": {"text": "hi"}, "userLevelTags": [["vip", 1]]})),
        ("v1: no text", &v1, json!({"message": {}, "from": {"id": "u1"}})),
        ("v1: text not a string", &v1, json!({"message": {"text": ["a"]}, "from": {"id": "u1"}})),
        (
            "v1: attachment without url or fileId",
            &v1,
            json!({"message": {"text": "a", "attachments": [{}]}, "from": {"id": "u1"}}),
        ),
    ];
    for (case, path, body) in cases {
        let reply = server.post(path, &hs256_token("u1"), &body).await;
        assert_eq!(reply.status, 400, "{case}: {}", reply.body);
        assert_eq!(reply.error_msg(), "Invalid Request Payload", "{case}");
        assert!(reply.body["errors"][0]["detail"].is_string(), "{case}: says what is wrong");
    }
    for (case, bytes) in [("not JSON", &b"{\"message\":"[..]), ("JSON array", b"[1,2]"), ("empty", b"")] {
        let reply = post_raw(&server, &v2, Some("application/json"), bytes.to_vec()).await;
        assert_eq!(reply.status, 400, "{case}: {}", reply.body);
        assert_eq!(reply.error_msg(), "Invalid Request Payload");
    }
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let server = Server::start(Backend::Memory).await;
    let body = json!({"message": {"type": "text", "val": "hello", "extra": 1}, "from": {"id": "u1", "nick": "x"}, "whatever": {"a": 1}});
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("u1"), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn unknown_bot_or_instance_is_404() {
    let server = Server::start(Backend::Memory).await;
    let body = json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}});
    for path in [
        v2_path("st-missing"),
        format!("{}/hookInstance/nope", v2_path(TEST_BOT)),
        // A v1 instance is not reachable through the v2 URL, and the reverse.
        format!("{}/hookInstance/voice", v2_path(TEST_BOT)),
        format!("{}/hookInstance/main", v1_path(TEST_BOT)),
        "/chatbot/v3/webhook/st-test-bot".into(),
    ] {
        let reply = server.post(&path, &hs256_token("u1"), &body).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(reply.error_msg(), "Resource not found");
    }
}

#[tokio::test]
async fn wrong_method_is_405() {
    let server = Server::start(Backend::Memory).await;
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let reply = Server::send(server.request(method.clone(), &v2_path(TEST_BOT))).await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.error_msg(), "Method not allowed");
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    let mut settings = Settings::default();
    settings.http.max_body_bytes = 1024;
    let server = Server::start_with(stores(Backend::Memory).await, settings).await;
    let body = json!({"message": {"type": "text", "val": "x".repeat(2000)}, "from": {"id": "u1"}});
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("u1"), &body).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.error_msg(), "Request payload too large");

    // Without a Content-Length (chunked), the limit holds too.
    let chunks = futures_stream(serde_json::to_vec(&body).unwrap());
    let request = server
        .request(Method::POST, &v2_path(TEST_BOT))
        .header("Authorization", format!("bearer {}", hs256_token("u1")))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks));
    let reply = Server::send(request).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
}

/// A body that breaks off (malformed chunked encoding) is the client's
/// error, not one of size.
#[tokio::test]
async fn an_unreadable_body_is_400_not_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(Backend::Memory).await;
    for path in [v2_path(TEST_BOT), format!("/api/attachments/file/{TEST_BOT}/ios")] {
        let mut stream = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://")).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: hookline\r\nAuthorization: bearer {}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n{{\"mes\r\nZZ\r\n",
            hs256_token("u1")
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("the request body could not be read"), "{path}: {answer}");
    }
}

fn futures_stream(bytes: Vec<u8>) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(256).map(|c| Ok(c.to_vec())).collect();
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let server = Server::start(Backend::Memory).await;
    let body = br#"{"message":{"type":"text","val":"hi"},"from":{"id":"u1"}}"#.to_vec();
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let reply = post_raw(&server, &v2_path(TEST_BOT), content_type, body.clone()).await;
        assert_eq!(reply.status, 415, "{content_type:?}");
        assert_eq!(reply.error_msg(), "Unsupported Media Type");
    }
    let reply = post_raw(&server, &v2_path(TEST_BOT), Some("application/json; charset=utf-8"), body).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn every_response_has_a_trace_id_and_cors_headers() {
    let server = Server::start(Backend::Memory).await;
    let ok = Server::send(
        server
            .request(Method::POST, &v2_path(TEST_BOT))
            .header("Origin", "https://chat.example.com")
            .header("Authorization", format!("bearer {}", hs256_token("u1")))
            .json(&json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}})),
    )
    .await;
    let error = Server::send(
        server.request(Method::POST, &v2_path(TEST_BOT)).header("Origin", "https://chat.example.com").json(&json!({})),
    )
    .await;
    assert_eq!((ok.status, error.status), (200, 401));
    for reply in [&ok, &error] {
        assert!(reply.headers["x-trace-id"].to_str().unwrap().starts_with("tr-"));
        assert_eq!(reply.headers["access-control-allow-origin"], "*");
    }
    assert_eq!(error.body["_t"], error.headers["x-trace-id"].to_str().unwrap());
}

#[tokio::test]
async fn cors_preflight_with_configured_origins() {
    let mut settings = Settings::default();
    settings.http.cors_origins = vec!["https://chat.example.com".into()];
    let server = Server::start_with(stores(Backend::Memory).await, settings).await;
    let preflight = |origin: &'static str, path: String, method: &'static str| {
        server
            .request(Method::OPTIONS, &path)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", "authorization,content-type")
            .send()
    };
    // Kore's SDKs send Authorization and Content-Type on GETs too.
    for (path, method) in [(v2_path(TEST_BOT), "POST"), (format!("/api/botmeta/{TEST_BOT}"), "GET")] {
        let response = preflight("https://chat.example.com", path, method).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], "https://chat.example.com");
        let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
        assert!(headers["access-control-allow-methods"].to_str().unwrap().contains(method));
    }
    let response = preflight("https://evil.example.net", v2_path(TEST_BOT), "POST").await.unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

/// The memory store's conversations, slowed down: drives the synchronous
/// deadline. Polls and files are the memory store's, as they are.
struct SlowStore {
    inner: Arc<MemoryStore>,
    load_delay: Duration,
    save_delay: Duration,
}

impl SlowStore {
    /// The stores with slowed conversations, and the memory store beneath.
    fn stores(load_delay: u64, save_delay: u64) -> (Stores, Arc<MemoryStore>) {
        let inner = Arc::new(MemoryStore::new());
        let slow = SlowStore {
            inner: inner.clone(),
            load_delay: Duration::from_millis(load_delay),
            save_delay: Duration::from_millis(save_delay),
        };
        (Stores { conversations: Arc::new(slow), ..Stores::of(inner.clone()) }, inner)
    }
}

#[async_trait::async_trait]
impl Conversations for SlowStore {
    async fn load(&self, key: &ConversationKey) -> hookline_core::error::Result<Option<Conversation>> {
        tokio::time::sleep(self.load_delay).await;
        self.inner.load(key).await
    }

    async fn save_turns(&self, writes: &[(&ConversationKey, TurnWrite<'_>)]) -> hookline_core::error::Result<()> {
        tokio::time::sleep(self.save_delay).await;
        self.inner.save_turns(writes).await
    }

    async fn read_log(
        &self,
        key: &ConversationKey,
        after_seq: Option<u64>,
        limit: usize,
    ) -> hookline_core::error::Result<Vec<LogEntry>> {
        self.inner.read_log(key, after_seq, limit).await
    }

    async fn idle_due(&self, now: i64, limit: usize) -> hookline_core::error::Result<Vec<(ConversationKey, i64)>> {
        self.inner.idle_due(now, limit).await
    }

    async fn read_outbox(
        &self,
        key: &ConversationKey,
        version: u64,
    ) -> hookline_core::error::Result<Vec<QueueMessage>> {
        self.inner.read_outbox(key, version).await
    }

    async fn changes(&self) -> hookline_core::error::Result<Option<Box<dyn Changes>>> {
        self.inner.changes().await
    }
}

fn deadline(ms: u64) -> Settings {
    let mut settings = Settings::default();
    settings.http.sync_deadline = Duration::from_millis(ms);
    settings
}

#[tokio::test]
async fn past_the_sync_deadline_the_answer_is_504_and_nothing_is_written() {
    let (stores, memory) = SlowStore::stores(400, 0);
    let server = Server::start_with(stores, deadline(100)).await;
    let reply = server.say("slow", "sign up").await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.error_msg(), "The request has been timed-out");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let key = ConversationKey::new(TEST_BOT, "slow");
    assert!(memory.read_log(&key, None, 10).await.unwrap().is_empty());
    assert!(memory.load(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn a_write_that_started_before_the_deadline_is_answered() {
    // The client is never told "timed out" about a turn that was saved.
    let (stores, memory) = SlowStore::stores(0, 300);
    let server = Server::start_with(stores, deadline(100)).await;
    let reply = server.say("slow", "sign up").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.texts(), ["Your name?"]);
    let key = ConversationKey::new(TEST_BOT, "slow");
    assert_eq!(memory.read_log(&key, None, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn what_a_request_may_store_is_bounded() {
    let server = Server::start(Backend::Memory).await;
    let base = json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1"}});
    let with = |patch: Value| {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let tags = |n: usize| json!((0..n).map(|i| json!({"name": format!("t{i}"), "value": i})).collect::<Vec<_>>());
    let cases = [
        ("long text", with(json!({"message": {"type": "text", "val": "x".repeat(4097)}}))),
        (
            "many userInfo keys",
            with(
                json!({"from": {"id": "u1", "userInfo": (0..51).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}}),
            ),
        ),
        ("large userInfo", with(json!({"from": {"id": "u1", "userInfo": {"bio": "x".repeat(9000)}}}))),
        ("many tags", with(json!({"metaTags": {"sessionLevelTags": tags(51)}}))),
        ("large tag value", with(json!({"metaTags": {"userLevelTags": [{"name": "n", "value": "x".repeat(2000)}]}}))),
    ];
    for (case, body) in cases {
        let reply = server.post(&v2_path(TEST_BOT), &hs256_token("u1"), &body).await;
        assert_eq!(reply.status, 400, "{case}: {}", reply.body);
        assert_eq!(reply.error_msg(), "Invalid Request Payload", "{case}");
    }
    // User-level tags add up across requests, to a bound.
    for round in 0..2 {
        let names = (0..50).map(|i| json!({"name": format!("r{round}-{i}"), "value": 1})).collect::<Vec<_>>();
        let reply = server
            .post(&v2_path(TEST_BOT), &hs256_token("u1"), &with(json!({"metaTags": {"userLevelTags": names}})))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let one_more = with(json!({"metaTags": {"userLevelTags": [{"name": "last", "value": 1}]}}));
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("u1"), &one_more).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body["errors"][0]["detail"].as_str().unwrap().contains("user-level tags"));
}

#[tokio::test]
async fn an_unreachable_store_is_503() {
    let client = hookline_core::process::aws::dynamodb_client(Some("http://127.0.0.1:9")).await;
    let store = Arc::new(hookline_core::adapters::store::DynamoStore::new(client, "absent"));
    let server = Server::start_with(Stores::of(store), Settings::default()).await;
    let reply = server.say("u1", "hello").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.error_msg(), "Service temporarily unavailable");
    assert!(reply.body["errors"][0].get("detail").is_none(), "server-side causes stay in the logs");
}
