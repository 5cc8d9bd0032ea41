//! Asynchronous mode: the ingress acknowledges once the message is queued,
//! the worker runs the turn and POSTs each message to the POST_URL, signed,
//! in order, retried, dead-lettered and replayable; bot-wide event and
//! session-data webhooks. On memory, and on DynamoDB with SQS and the worker.

use std::collections::HashSet;
use std::time::Duration;

use hookline_core::app::queue::{Job, JobHandler, QueuedAnswer, QueuedTurn};
use hookline_core::process::Settings;
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const BOT: &str = "st-channel-bot";
const SECRET: &str = "channel-bot-secret-0123456789-abcdefgh";
const INSTANCE_SIGNING_SECRET: &str = "whsec_aW5zdGFuY2Utc2lnbmluZy1zZWNyZXQtMzJieXRlcyE=";
const BOT_SIGNING_SECRET: &str = "whsec_aG9va2xpbmUtdGVzdC1zaWduaW5nLXNlY3JldC0zMmIh";

fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.worker.retry_base = Duration::from_millis(100);
    settings
}

fn channel_bot(receiver: &Receiver, extra: &str) -> hookline_core::definition::Registry {
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    registry_with(&[("channel-bot.yaml".into(), format!("{yaml}{}", extra.replace("RECEIVER", &receiver.addr)))])
}

async fn setup(backend: Backend, answers: Vec<(&str, Answer)>) -> (Server, Receiver) {
    let receiver = Receiver::start(answers).await;
    let registry = channel_bot(&receiver, "");
    (Server::start_on(backend, registry, settings()).await, receiver)
}

fn token(user: &str) -> String {
    sign_hs(Algorithm::HS256, SECRET, &claims("cs-channel", user))
}

fn message(text: &str, user: &str) -> Value {
    json!({"message": {"type": "text", "val": text}, "from": {"id": user}})
}

async fn say(server: &Server, instance: &str, user: &str, text: &str) -> Reply {
    let path = format!("/chatbot/v2/webhook/{BOT}/hookInstance/{instance}");
    server.post(&path, &token(user), &message(text, user)).await
}

/// The received requests with duplicates (by webhook-id) dropped, as a
/// receiver following Standard Webhooks does.
fn deduplicated(received: Vec<Received>) -> Vec<Received> {
    let mut seen = HashSet::new();
    received.into_iter().filter(|r| seen.insert(r.headers["webhook-id"].to_str().unwrap().to_string())).collect()
}

fn data_texts(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| match r.body["data"].as_array().and_then(|d| d.first()) {
            Some(message) => message["val"].as_str().unwrap_or_default().to_string(),
            None => format!("endOfTask:{}", r.body["endReason"].as_str().unwrap_or_default()),
        })
        .collect()
}

async fn async_mode_acknowledges_then_posts_each_message(backend: Backend) {
    let (server, receiver) = setup(backend, vec![("/post", Answer::json(json!({})))]).await;
    let ack = say(&server, "async", "ada", "hello").await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    let trace_id = ack.headers["x-trace-id"].to_str().unwrap();
    assert_eq!(ack.body, json!({"status": "ok", "_v": "v2", "traceId": trace_id}));

    let posts = receiver.wait_for_path("/post", 3, 10).await;
    assert_eq!(data_texts(&posts), ["Hello!", "How can I help?", "endOfTask:Fulfilled"]);
    let first = &posts[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.body["to"], "ada");
    assert_eq!(first.body["from"], BOT);
    assert_eq!(first.body["_v"], "v2");
    assert_eq!(first.body["data"][0]["type"], "text");
    assert!(first.body["data"][0]["messageId"].as_str().unwrap().starts_with("ms-"));
    // Each message is part of the turn; the end-of-task fields come as a
    // message of their own, the turn's last.
    assert!(posts[..2].iter().all(|p| p.body["partialMessage"] == true), "{:?}", posts[0].body);
    assert_eq!(
        posts[2].body,
        json!({"to": "ada", "from": BOT, "data": [], "_v": "v2", "endOfTask": true, "endReason": "Fulfilled",
               "completedTaskId": "hello", "completedTaskName": "hello", "endOfMessage": true})
    );
    // Signed with the instance's own secret, verified by the reference implementation.
    for post in &posts {
        assert!(verify_signature(INSTANCE_SIGNING_SECRET, post, &post.raw), "{:?}", post.headers);
        assert!(!verify_signature(BOT_SIGNING_SECRET, post, &post.raw));
    }
    let mut tampered = first.raw.clone();
    tampered[10] ^= 1;
    assert!(!verify_signature(INSTANCE_SIGNING_SECRET, first, &tampered));
    // The turn is in the log like any other.
    let history = server.get(&format!("/api/chathistory/{BOT}/webhook"), &token("ada")).await;
    assert_eq!(history.body["messages"].as_array().unwrap().len(), 3, "{}", history.body);
}

async fn v1_and_chatlayer_bodies(backend: Backend) {
    let answers = vec![
        ("/ivr", Answer::json(json!({}))),
        ("/chatlayer", Answer::json(json!({}))),
        ("/chatlayer-format", Answer::json(json!({}))),
    ];
    let (server, receiver) = setup(backend, answers).await;
    let path = format!("/chatbot/hooks/{BOT}/hookInstance/ivr");
    let ack = server.post(&path, &token("bo"), &json!({"message": {"text": "survey"}, "from": {"id": "bo"}})).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert_eq!(ack.body["status"], "ok");
    let posts = receiver.wait_for_path("/ivr", 2, 10).await;
    assert_eq!(posts[0].body, json!({"to": "bo", "from": BOT, "text": "Rate us from 1 to 5", "partialMessage": true}));
    // The question waits: the task has not ended.
    assert_eq!(posts[1].body, json!({"to": "bo", "from": BOT, "endOfTask": false, "endOfMessage": true}));

    // Every turn ends with its end-of-task message, a fallback's too.
    let fallback = json!({"message": {"text": "gibberish"}, "from": {"id": "bo2"}});
    server.post(&path, &token("bo2"), &fallback).await;
    let posts = receiver.wait_for_path("/ivr", 4, 10).await;
    assert_eq!(posts[2].body["text"], "fallback");
    assert_eq!(posts[3].body, json!({"to": "bo2", "from": BOT, "endOfTask": true, "endOfMessage": true}));

    say(&server, "chatlayer", "cy", "survey").await;
    let posts = receiver.wait_for_path("/chatlayer", 1, 10).await;
    let body = &posts[0].body;
    assert_eq!(body["recipient"], json!({"id": "cy"}));
    assert_eq!(body["verifyToken"], "eenheeluniekeverifytoken");
    assert_eq!(body["data"][0]["val"], "Rate us from 1 to 5");

    // Chatlayer's own format: one message object per POST.
    say(&server, "chatlayer-format", "cy", "menu").await;
    let posts = receiver.wait_for_path("/chatlayer-format", 4, 10).await;
    let bodies: Vec<&Value> = posts.iter().map(|p| &p.body).collect();
    let envelope = |message: Value| json!({"recipient": {"id": "cy"}, "verifyToken": "eenheeluniekeverifytoken", "message": message});
    assert_eq!(
        bodies,
        [
            &envelope(json!({"text": "Here is the menu."})),
            &envelope(json!({"attachment": {"type": "template", "payload": {"template_type": "button",
                "text": "Pick one", "buttons": [{"type": "postback", "title": "Hello", "payload": "hello"}]}}})),
            &envelope(json!({"text": "Or quickly",
                "quick_replies": [{"content_type": "text", "title": "Survey", "payload": "survey"}]})),
            &envelope(json!({"attachment": {"type": "file", "payload": {"url": "https://cdn.example.com/menu.pdf"}}})),
        ]
    );
}

async fn a_post_url_failing_twice_then_succeeding_gets_every_message_once_in_order(backend: Backend) {
    let answers = vec![
        ("/post", Answer::raw(500, "{}")),
        ("/post", Answer::raw(503, "{}")),
        ("/post", Answer::json(json!({}))),
        ("/api/current", Answer::json(json!({"sky": "clear"}))),
        ("/api/forecast", Answer::json(json!({"tomorrow": "rain"}))),
    ];
    let (server, receiver) = setup(backend, answers).await;
    assert_eq!(say(&server, "async", "dee", "hello").await.status, 200);
    assert_eq!(say(&server, "async", "dee", "weather").await.status, 200);
    let expected = [
        "Hello!",
        "How can I help?",
        "endOfTask:Fulfilled",
        "Let me check.",
        "Sky: clear",
        "Tomorrow: rain",
        "endOfTask:Fulfilled",
    ];
    let posts = receiver.wait_for_path("/post", expected.len() + 2, 15).await;
    // The first message was tried three times under one webhook-id.
    let ids: Vec<&str> = posts.iter().map(|p| p.headers["webhook-id"].to_str().unwrap()).collect();
    assert_eq!(ids[0], ids[1], "{:?} {:?}", data_texts(&posts), ids);
    assert_eq!(ids[1], ids[2]);
    assert_eq!(posts.len(), expected.len() + 2, "{:?}", data_texts(&posts));
    assert_eq!(data_texts(&deduplicated(posts)), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_a_delivery_that_always_fails_is_dead_lettered() {
    let (server, receiver) = setup(Backend::Memory, vec![("/post", Answer::raw(500, "{}"))]).await;
    let Queued::Memory(memory) = server.queued.clone() else { unreachable!() };
    say(&server, "async", "fay", "survey").await;
    receiver.wait_for_path("/post", (TEST_MAX_RECEIVES * 3) as usize, 10).await;
    for _ in 0..100 {
        if !memory.dead_letters().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = memory.dead_letters();
    assert_eq!(dead.len(), 1);
    let Job::Deliver(delivery) = &dead[0].job else { panic!("{:?}", dead[0].job) };
    assert_eq!(delivery.call.body.as_ref().unwrap()["data"][0]["val"], "Rate us from 1 to 5");
}

/// A queued turn delivered twice runs once: the second time its saved answer
/// is delivered again, under the same webhook-ids.
async fn a_queued_turn_delivered_twice_runs_once(backend: Backend) {
    let (server, receiver) = setup(backend, vec![("/post", Answer::json(json!({})))]).await;
    let job = Job::Turn(QueuedTurn {
        bot_id: BOT.into(),
        instance_id: "async".into(),
        user_id: "gus".into(),
        app: None,
        body: message("hello", "gus"),
        trace_id: "tr-queued-twice".into(),
        client_ip: None,
        answer: QueuedAnswer::PostUrl,
        merge_from: None,
    });
    let worker = server.worker();
    worker.handle(&job).await.unwrap();
    worker.handle(&job).await.unwrap();
    receiver.wait_for_path("/post", 3, 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(data_texts(&deduplicated(receiver.received())), ["Hello!", "How can I help?", "endOfTask:Fulfilled"]);
    let history = server.get(&format!("/api/chathistory/{BOT}/webhook"), &token("gus")).await;
    assert_eq!(history.body["messages"].as_array().unwrap().len(), 3, "{}", history.body);
}

/// Only a message that is durably queued is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_queued_is_not_acknowledged() {
    let receiver = Receiver::start(vec![]).await;
    let missing = format!("{}/000000000000/no-such-queue.fifo", aws_endpoint());
    let queue = std::sync::Arc::new(hookline_core::adapters::queue::SqsQueue::new(sqs_client().await, missing));
    let (wiring, root) = hookline_tests::in_memory(channel_bot(&receiver, ""), queue, settings());
    std::fs::remove_dir_all(root).ok();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hookline_core::api::webhook_router(wiring.webhook)).await });
    let path = format!("{base}/chatbot/v2/webhook/{BOT}/hookInstance/async");
    let send = |body: Value| {
        reqwest::Client::new().post(&path).header("Authorization", format!("bearer {}", token("hal"))).json(&body)
    };
    let reply = Server::send(send(message("hello", "hal"))).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.error_msg(), "Service temporarily unavailable");
    // Invalid messages are refused before anything is queued.
    let reply = Server::send(send(message("", "hal"))).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
}

/// The worker saved a turn but could not queue what it owes: the turn is
/// delivered again and its saved answer, with everything it owed, is queued
/// then, without running the turn twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_saved_turn_owes_is_queued_when_its_job_comes_again() {
    let answer = || Answer::json(json!({}));
    let receiver = Receiver::start(vec![("/post", answer()), ("/events", answer()), ("/session-data", answer())]).await;
    let is_delivery: JobFilter = |job| matches!(job, Job::Deliver(_));
    let server = Server::start_with_flaky_queue(channel_bot(&receiver, EVENTS), 1, is_delivery, settings()).await;
    assert_eq!(say(&server, "async", "kit", "hello").await.status, 200);
    let posts = receiver.wait_for_path("/post", 3, 10).await;
    let events = receiver.wait_for_path("/events", 3, 10).await;
    let ends = receiver.wait_for_path("/session-data", 1, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(data_texts(&deduplicated(posts)), ["Hello!", "How can I help?", "endOfTask:Fulfilled"]);
    assert_eq!(deduplicated(events).len(), 3);
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].body["taskId"], "hello");
    let history = server.get(&format!("/api/chathistory/{BOT}/webhook"), &token("kit")).await;
    assert_eq!(history.body["messages"].as_array().unwrap().len(), 3, "the turn ran once: {}", history.body);
}

const EVENTS: &str = "
events:
  url: http://RECEIVER/events
  sessionDataUrl: http://RECEIVER/session-data
";

async fn event_webhooks_see_every_message_and_each_task_end(backend: Backend) {
    let receiver =
        Receiver::start(vec![("/events", Answer::json(json!({}))), ("/session-data", Answer::json(json!({})))]).await;
    let server = Server::start_on(backend, channel_bot(&receiver, EVENTS), settings()).await;
    let path = format!("/chatbot/v2/webhook/{BOT}/hookInstance/poll");
    let request = server
        .request(reqwest::Method::POST, &path)
        .header("Authorization", format!("bearer {}", token("ivy")))
        .header("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
        .json(&message("survey", "ivy"));
    assert_eq!(Server::send(request).await.texts(), ["Rate us from 1 to 5"]);
    assert_eq!(say(&server, "poll", "ivy", "4").await.texts(), ["Thanks for 4!"]);

    let events = receiver.wait_for_path("/events", 4, 10).await;
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.body["direction"].as_str().unwrap().into(), e.body["data"].as_str().unwrap().into()))
        .collect();
    let expected = [
        ("received", "\"survey\""),
        ("sent", "\"Rate us from 1 to 5\""),
        ("received", "\"4\""),
        ("sent", "\"Thanks for 4!\""),
    ]
    .map(|(d, t)| (d.to_string(), t.to_string()));
    assert_eq!(summary, expected);
    let first = &events[0].body;
    // The connection's peer, not what the client wrote in X-Forwarded-For.
    assert_eq!(first["ip"], "127.0.0.1");
    assert_eq!(first["appId"], Value::Null, "a user the bot's apps share");
    assert_eq!((first["userId"].as_str(), first["botId"].as_str()), (Some("ivy"), Some(BOT)));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert!(events.iter().all(|e| verify_signature(BOT_SIGNING_SECRET, e, &e.raw)));

    let ends = receiver.wait_for_path("/session-data", 1, 10).await;
    assert_eq!(ends.len(), 1);
    let end = &ends[0].body;
    assert_eq!((end["taskId"].as_str(), end["endReason"].as_str()), (Some("survey"), Some("Fulfilled")));
    assert_eq!(end["data"]["rating"], 4);
    assert_eq!(end["userId"], "ivy");

    // A user of an app whose users are its own is named with the app.
    let web = sign_hs(Algorithm::HS256, "channel-bot-web-secret-0123456789-abcd", &json!({"appId": "cs-channel-web"}));
    let web_path = format!("/chatbot/v2/webhook/{BOT}/hookInstance/poll");
    assert_eq!(server.post(&web_path, &web, &message("hello", "ivy")).await.status, 200);
    let events = receiver.wait_for_path("/events", 7, 10).await;
    let from_web = events.iter().find(|e| e.body["data"] == "\"hello\"").expect("the web user's message");
    assert_eq!((&from_web.body["userId"], &from_web.body["appId"]), (&json!("ivy"), &json!("cs-channel-web")));
}

on_both_stores!(
    async_mode_acknowledges_then_posts_each_message,
    v1_and_chatlayer_bodies,
    a_post_url_failing_twice_then_succeeding_gets_every_message_once_in_order,
    a_queued_turn_delivered_twice_runs_once,
    event_webhooks_see_every_message_and_each_task_end,
);

/// A rotation: the instance lists the old secret and the new one; every
/// delivery carries a signature for each, so receivers still holding the
/// old secret and those already holding only the new one both accept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_secret_rotation_deliveries_verify_with_either_secret() {
    const NEW_SECRET: &str = "whsec_cm90YXRlZC1zaWduaW5nLXNlY3JldC1uZXctMzJi";
    let receiver = Receiver::start(vec![("/post", Answer::json(json!({})))]).await;
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let rotating = yaml.replace(
        &format!(r#"signingSecrets: [{{ value: "{INSTANCE_SIGNING_SECRET}" }}]"#),
        &format!(r#"signingSecrets: [{{ value: "{INSTANCE_SIGNING_SECRET}" }}, {{ value: "{NEW_SECRET}" }}]"#),
    );
    assert_ne!(rotating, yaml, "the fixture lists the instance's secret");
    let registry = registry_with(&[("channel-bot.yaml".into(), rotating)]);
    let server = Server::start_on(Backend::Memory, registry, settings()).await;
    assert_eq!(say(&server, "async", "rio", "hello").await.status, 200);
    let posts = receiver.wait_for_path("/post", 3, 10).await;
    for post in &posts {
        let signatures = post.headers["webhook-signature"].to_str().unwrap();
        assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
        assert!(verify_signature(INSTANCE_SIGNING_SECRET, post, &post.raw), "the old secret still verifies");
        assert!(verify_signature(NEW_SECRET, post, &post.raw), "a receiver with only the new secret accepts");
        assert!(!verify_signature(BOT_SIGNING_SECRET, post, &post.raw), "another secret does not");
    }
}

/// The bot-wide webhook limited to sent messages of one task through one
/// instance: everything else stays out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_webhook_filters_keep_out_what_they_do_not_name() {
    let receiver = Receiver::start(vec![("/events", Answer::json(json!({})))]).await;
    let filtered = "
events:
  url: http://RECEIVER/events
  directions: [sent]
  tasks: [survey]
  instances: [poll]
";
    let server = Server::start_on(Backend::Memory, channel_bot(&receiver, filtered), settings()).await;
    assert_eq!(say(&server, "poll", "amy", "hello").await.texts(), ["Hello!", "How can I help?"]);
    assert_eq!(say(&server, "reread", "bea", "survey").await.texts(), ["Rate us from 1 to 5"]);
    assert_eq!(say(&server, "poll", "cal", "survey").await.texts(), ["Rate us from 1 to 5"]);
    let events = receiver.wait_for_path("/events", 1, 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen: Vec<(String, String, String)> = receiver
        .received()
        .iter()
        .map(|e| {
            let field = |name: &str| e.body[name].as_str().unwrap_or_default().to_string();
            (field("userId"), field("direction"), field("data"))
        })
        .collect();
    assert_eq!(seen, [("cal".to_string(), "sent".to_string(), "\"Rate us from 1 to 5\"".to_string())], "{events:?}");
}
