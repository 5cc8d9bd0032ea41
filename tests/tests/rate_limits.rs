//! Message rate limits per bot and user: counted up to the limit, then the
//! spec's 429 envelope with `Retry-After` and the IETF RateLimit fields;
//! per instance, off when set so; synchronous messages counted in the turn's
//! own write, asynchronous ones as they are accepted. On memory, and on
//! DynamoDB with SQS.

use std::time::Duration;

use hookline_core::ids::ConversationKey;
use hookline_core::process::Settings;
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::json;

const BOT: &str = "st-channel-bot";
const SECRET: &str = "channel-bot-secret-0123456789-abcdefgh";

/// The channel bot at 3 messages a minute, its `reread` instance without limits.
async fn setup(backend: Backend) -> (Server, Receiver) {
    let receiver = Receiver::start(vec![("/post", Answer::json(json!({})))]).await;
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let unlimited = "    pollRereadSeconds: 30\n    rateLimits: { perMinute: 0, perHour: 0 }\n";
    let yaml = yaml.replace("    pollRereadSeconds: 30\n", unlimited);
    let yaml = format!("{yaml}\nrateLimits: {{ perMinute: 3 }}\n");
    let registry = registry_with(&[("channel-bot.yaml".into(), yaml)]);
    let mut settings = Settings::default();
    settings.worker.retry_base = Duration::from_millis(100);
    (Server::start_on(backend, registry, settings).await, receiver)
}

/// Waits out the end of a minute, so that the counts of one test stay in one window.
async fn fresh_minute() {
    let second = now().rem_euclid(60);
    if second >= 50 {
        tokio::time::sleep(Duration::from_secs((61 - second) as u64)).await;
    }
}

async fn say(server: &Server, instance: &str, user: &str) -> Reply {
    let path = format!("/chatbot/v2/webhook/{BOT}/hookInstance/{instance}");
    let token = sign_hs(Algorithm::HS256, SECRET, &claims("cs-channel", user));
    let request = server
        .request(Method::POST, &path)
        .header("Authorization", format!("bearer {token}"))
        .header("Origin", "https://widget.example.com")
        .json(&json!({"message": {"type": "text", "val": "hello"}, "from": {"id": user}}));
    Server::send(request).await
}

fn header<'r>(reply: &'r Reply, name: &str) -> &'r str {
    reply.headers.get(name).map_or("", |v| v.to_str().unwrap())
}

async fn a_user_over_the_limit_gets_429_until_the_window_turns(backend: Backend) {
    let (server, _receiver) = setup(backend).await;
    fresh_minute().await;
    for left in [2, 1, 0] {
        let reply = say(&server, "poll", "rita").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.texts(), ["Hello!", "How can I help?"]);
        assert_eq!(header(&reply, "ratelimit-policy"), r#""minute";q=3;w=60, "hour";q=18000;w=3600"#);
        assert!(header(&reply, "ratelimit").starts_with(&format!("\"minute\";r={left};t=")), "{:?}", reply.headers);
    }
    let key = ConversationKey::new(BOT, "rita");
    let logged = server.stores.conversations.read_log(&key, None, 100).await.unwrap().len();

    let refused = say(&server, "poll", "rita").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.error_msg(), "Too Many requests");
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(header(&refused, "ratelimit").starts_with(r#""minute";r=0;t="#), "{:?}", refused.headers);
    // A browser widget on another origin can read when to try again.
    let exposed = header(&refused, "access-control-expose-headers").to_ascii_lowercase();
    assert!(exposed.contains("retry-after") && exposed.contains("ratelimit"), "{exposed}");
    // Refused: not run, not logged.
    assert_eq!(server.stores.conversations.read_log(&key, None, 100).await.unwrap().len(), logged);

    // Another user, and an instance without limits, are not held back.
    assert_eq!(say(&server, "poll", "sam").await.status, 200);
    for _ in 0..5 {
        let reply = say(&server, "reread", "rita").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(header(&reply, "ratelimit"), "");
    }
}

async fn asynchronous_messages_are_counted_as_they_are_accepted(backend: Backend) {
    let (server, receiver) = setup(backend).await;
    fresh_minute().await;
    for left in [2, 1, 0] {
        let ack = say(&server, "async", "tess").await;
        assert_eq!(ack.body["status"], "ok", "{}", ack.body);
        assert!(header(&ack, "ratelimit").starts_with(&format!("\"minute\";r={left};t=")), "{:?}", ack.headers);
    }
    let refused = say(&server, "async", "tess").await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.error_msg(), "Too Many requests");
    // The three accepted are answered; the refused one is not run.
    let posts = receiver.wait_for_path("/post", 9, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), posts.len());
    assert_eq!(posts.len(), 9);
}

on_both_stores!(
    a_user_over_the_limit_gets_429_until_the_window_turns,
    asynchronous_messages_are_counted_as_they_are_accepted,
);
