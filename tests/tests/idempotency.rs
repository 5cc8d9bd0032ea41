//! `Idempotency-Key` on message POSTs: a retry with the key and body of a
//! message already answered gets that answer again (same messages, same
//! pollId, same traceId), and the turn and its calls do not run again; the
//! key with another body is a 422, a retry while the first runs a 409; a
//! message with a key whose call outlives the deadline is answered with what
//! the call did, never a 504 that a retry would repeat the call for. On
//! memory, and on DynamoDB with SQS.

use std::time::Duration;

use hookline_core::process::Settings;
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::{Value, json};

const BOT: &str = "st-channel-bot";
const SECRET: &str = "channel-bot-secret-0123456789-abcdefgh";

/// The channel bot with an `inline` instance (no polling, a 500 ms deadline);
/// its weather service answers after `delay_ms`.
async fn setup(backend: Backend, delay_ms: u64) -> (Server, Receiver) {
    let slow = |body: Value| Answer { delay_ms, ..Answer::json(body) };
    let answers = vec![
        ("/api/current", slow(json!({"sky": "sunny"}))),
        ("/api/forecast", slow(json!({"tomorrow": "rain"}))),
        ("/post", Answer::json(json!({}))),
    ];
    let receiver = Receiver::start(answers).await;
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let inline = "instances:\n  - id: inline\n    version: v2\n    polling: false\n    syncDeadlineMs: 500\n    apps: [cs-channel]\n";
    let registry = registry_with(&[("channel-bot.yaml".into(), yaml.replacen("instances:\n", inline, 1))]);
    let mut settings = Settings::default();
    settings.worker.retry_base = Duration::from_millis(100);
    (Server::start_on(backend, registry, settings).await, receiver)
}

async fn send(server: &Server, instance: &str, key: Option<&str>, text: &str) -> Reply {
    let path = format!("/chatbot/v2/webhook/{BOT}/hookInstance/{instance}");
    let token = sign_hs(Algorithm::HS256, SECRET, &claims("cs-channel", "ola"));
    let mut request = server
        .request(Method::POST, &path)
        .header("Authorization", format!("bearer {token}"))
        .json(&json!({"message": {"type": "text", "val": text}, "from": {"id": "ola"}}));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    Server::send(request).await
}

fn calls(receiver: &Receiver) -> usize {
    receiver.received().iter().filter(|r| r.path_and_query.starts_with("/api/")).count()
}

async fn a_retry_gets_the_first_answer_and_runs_nothing(backend: Backend) {
    let (server, receiver) = setup(backend, 0).await;
    let first = send(&server, "inline", Some("order-1"), "weather").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.texts(), ["Let me check.", "Sky: sunny", "Tomorrow: rain"]);
    assert_eq!(calls(&receiver), 2);

    let again = send(&server, "inline", Some("order-1"), "weather").await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, first.body, "the same messages, ids and all");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(calls(&receiver), 2, "no call made twice");
    let token = sign_hs(Algorithm::HS256, SECRET, &claims("cs-channel", "ola"));
    let history = server.get(&format!("/api/chathistory/{BOT}/webhook"), &token).await;
    assert_eq!(history.history_texts().iter().filter(|t| *t == "weather").count(), 1, "run once");

    // The key with another message: refused, and nothing runs.
    let other = send(&server, "inline", Some("order-1"), "hello").await;
    assert_eq!(other.status, 422, "{}", other.body);
    assert_eq!(other.error_msg(), "Idempotency-Key used for another request");
    // Without a key, a message sent again runs again (the spec's behaviour).
    send(&server, "inline", None, "weather").await;
    assert_eq!(calls(&receiver), 4);
}

async fn a_retry_while_the_first_runs_is_409(backend: Backend) {
    let (server, receiver) = setup(backend, 150).await;
    let server = std::sync::Arc::new(server);
    let first = tokio::spawn({
        let server = server.clone();
        async move { send(&server, "inline", Some("order-2"), "weather").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = send(&server, "inline", Some("order-2"), "weather").await;
    assert_eq!(during.status, 409, "{}", during.body);
    assert_eq!(during.error_msg(), "A request with this Idempotency-Key is still being processed");
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let after = send(&server, "inline", Some("order-2"), "weather").await;
    assert_eq!(after.body, first.body);
    assert_eq!(calls(&receiver), 2);
}

/// The deadline (500 ms) passes during the first call (700 ms): with a key
/// the call's outcome is saved and answered, the call after it is not
/// started, and a retry gets the same; without one, a 504.
async fn a_call_past_the_deadline_is_never_made_again(backend: Backend) {
    let (server, receiver) = setup(backend, 700).await;
    let first = send(&server, "inline", Some("order-3"), "weather").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.texts(), ["Let me check.", "Sky: sunny", "Sorry, something went wrong. Please try again later."]);
    assert_eq!(first.body["endReason"], "Cancelled");
    let again = send(&server, "inline", Some("order-3"), "weather").await;
    assert_eq!(again.body, first.body);
    let made: Vec<String> = receiver.received().iter().map(|r| r.path_and_query.clone()).collect();
    assert_eq!(made, ["/api/current"], "one call, once");

    let unkeyed = send(&server, "inline", None, "weather").await;
    assert_eq!(unkeyed.status, 504, "{}", unkeyed.body);
}

/// Polled and asynchronous answers are given again too: the same pollId, the
/// same acknowledgement (and the message delivered once).
async fn polled_and_asynchronous_answers_are_given_again(backend: Backend) {
    let (server, receiver) = setup(backend, 0).await;
    let polled = send(&server, "poll", Some("order-4"), "weather").await;
    let poll_id = polled.body["pollId"].as_str().expect("a pollId").to_string();
    let again = send(&server, "poll", Some("order-4"), "weather").await;
    assert_eq!(again.body["pollId"], poll_id.as_str());
    assert_eq!(again.texts(), polled.texts());

    let ack = send(&server, "async", Some("order-5"), "hello").await;
    assert_eq!(ack.body["status"], "ok", "{}", ack.body);
    let again = send(&server, "async", Some("order-5"), "hello").await;
    assert_eq!(again.body, ack.body, "the same traceId");
    receiver.wait_for_path("/post", 3, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().iter().filter(|r| r.path_and_query == "/post").count(), 3, "delivered once");
}

on_both_stores!(
    a_retry_gets_the_first_answer_and_runs_nothing,
    a_retry_while_the_first_runs_is_409,
    a_call_past_the_deadline_is_never_made_again,
    polled_and_asynchronous_answers_are_given_again,
);
