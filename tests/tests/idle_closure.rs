//! Proactive session closure in asynchronous mode: a session idle past its
//! bot's timeout is closed and its instance's POST_URL receives the
//! SESSION_CLOSURE event, signed, once per closure (a repeat carries the same
//! webhook-ids), in order with the conversation's messages. On memory, and
//! on DynamoDB (its sparse index) with SQS and the worker.

use std::collections::HashSet;
use std::time::Duration;

use hookline_core::app::queue::{Job, JobHandler};
use hookline_core::app::records::Conversation;
use hookline_core::app::store::TurnWrite;
use hookline_core::ids::ConversationKey;
use hookline_core::process::{self, Settings};
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const BOT: &str = "st-channel-bot";
const SECRET: &str = "channel-bot-secret-0123456789-abcdefgh";
const INSTANCE_SIGNING_SECRET: &str = "whsec_aW5zdGFuY2Utc2lnbmluZy1zZWNyZXQtMzJieXRlcyE=";
/// The fixture bot's idle timeout: the default, 15 minutes.
const IDLE_SECS: i64 = 15 * 60;

async fn setup(backend: Backend) -> (Server, Receiver) {
    let receiver = Receiver::start(vec![("/post", Answer::json(json!({})))]).await;
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let registry = registry_with(&[("channel-bot.yaml".into(), yaml)]);
    let mut settings = Settings::default();
    settings.worker.retry_base = Duration::from_millis(100);
    (Server::start_on(backend, registry, settings).await, receiver)
}

async fn say(server: &Server, instance: &str, user: &str, text: &str) -> Reply {
    let path = format!("/chatbot/v2/webhook/{BOT}/hookInstance/{instance}");
    let token = sign_hs(Algorithm::HS256, SECRET, &claims("cs-channel", user));
    let reply =
        server.post(&path, &token, &json!({"message": {"type": "text", "val": text}, "from": {"id": user}})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

/// What each POST said: a message's `val`, or the end-of-turn fields.
fn said(posts: &[Received]) -> Vec<String> {
    posts
        .iter()
        .map(|p| match p.body["data"].as_array().and_then(|d| d.first()) {
            Some(message) => message["val"].as_str().unwrap_or_default().to_string(),
            None => format!("end endOfTask={}", p.body["endOfTask"]),
        })
        .collect()
}

fn webhook_ids(posts: &[Received]) -> Vec<String> {
    posts.iter().map(|p| p.headers["webhook-id"].to_str().unwrap().to_string()).collect()
}

async fn due_at(server: &Server, user: &str) -> Option<i64> {
    let key = ConversationKey::new(BOT, user);
    let conversation = server.stores.conversations.load(&key).await.unwrap().unwrap();
    conversation.idle_closure.map(|c| c.due_at)
}

async fn an_idle_session_is_closed_and_its_post_url_told(backend: Backend) {
    let (server, receiver) = setup(backend).await;
    say(&server, "async", "ada", "survey").await;
    assert_eq!(said(&receiver.wait_for_path("/post", 2, 10).await), ["Rate us from 1 to 5", "end endOfTask=false"]);
    // A synchronous conversation is never told (the spec: no proactive
    // messages in synchronous mode).
    say(&server, "poll", "bo", "survey").await;
    let due = due_at(&server, "ada").await.expect("an asynchronous session is due to close");
    assert!((due - now() - IDLE_SECS).abs() <= 5, "due {due}, now {}", now());
    assert_eq!(due_at(&server, "bo").await, None);

    let worker = server.worker();
    assert_eq!(worker.sweep_idle(now()).await.unwrap(), 0, "nothing is due yet");
    age(&server, "ada").await;
    let due = due - 16 * 60;
    assert_eq!(worker.sweep_idle(now()).await.unwrap(), 1);
    let posts = receiver.wait_for_path("/post", 4, 10).await;
    assert_eq!(said(&posts), ["Rate us from 1 to 5", "end endOfTask=false", "SESSION_CLOSURE", "end endOfTask=true"]);
    let closure = &posts[2].body;
    assert_eq!(closure["to"], "ada");
    assert_eq!(closure["from"], BOT);
    assert_eq!(closure["partialMessage"], true);
    let event = &closure["data"][0];
    assert_eq!(event["type"], "event");
    assert_eq!(event["eventType"], "SESSION_CLOSURE_SUCCESS");
    assert_eq!(event["description"], "session closed for inactivity");
    assert_eq!(posts[3].body["endOfMessage"], true);
    for post in &posts[2..] {
        assert!(verify_signature(INSTANCE_SIGNING_SECRET, post, &post.raw), "{:?}", post.headers);
    }

    // Closed once: the next sweeps find nothing, and a repeat of the job
    // (SQS delivers at least once) sends nothing new: at most the same
    // webhook-ids again, which receivers drop.
    assert_eq!(due_at(&server, "ada").await, None);
    assert_eq!(worker.sweep_idle(due + 3600).await.unwrap(), 0);
    let job = Job::CloseIdle { bot_id: BOT.into(), user_id: "ada".into(), app: None, due_at: due };
    worker.handle(&job).await.unwrap();

    // The closed session is over: "5" is no longer the rating it asked for.
    say(&server, "async", "ada", "5").await;
    let posts = unique(&receiver, 6).await;
    assert_eq!(
        said(&posts),
        [
            "Rate us from 1 to 5",
            "end endOfTask=false",
            "SESSION_CLOSURE",
            "end endOfTask=true",
            "fallback",
            "end endOfTask=true"
        ]
    );
}

/// The first `count` deliveries with distinct webhook-ids, in arrival order.
async fn unique(receiver: &Receiver, count: usize) -> Vec<Received> {
    for _ in 0..100 {
        let mut seen = HashSet::new();
        let posts: Vec<Received> =
            receiver.received().into_iter().filter(|p| seen.insert(webhook_ids(std::slice::from_ref(p)))).collect();
        if posts.len() >= count {
            return posts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {count} distinct deliveries: {:?}", said(&receiver.received()));
}

/// A message that comes on the instance after the session expired, before a
/// sweep found it, tells of the closure first; the sweep then has nothing.
async fn a_message_after_the_timeout_is_answered_after_the_closure(backend: Backend) {
    let (server, receiver) = setup(backend).await;
    say(&server, "async", "cleo", "survey").await;
    receiver.wait_for_path("/post", 2, 10).await;
    age(&server, "cleo").await;

    say(&server, "async", "cleo", "hello").await;
    let posts = receiver.wait_for_path("/post", 7, 10).await;
    assert_eq!(
        said(&posts[2..]),
        ["SESSION_CLOSURE", "end endOfTask=true", "Hello!", "How can I help?", "end endOfTask=true"]
    );
    assert_eq!(server.worker().sweep_idle(now()).await.unwrap(), 0);
    // The new session will close in its turn.
    assert!(due_at(&server, "cleo").await.is_some_and(|due| due > now()));
}

/// A message on another instance (here a synchronous one) after the
/// timeout: the session's own instance is told, the synchronous answer
/// carries only its own messages.
async fn a_message_elsewhere_after_the_timeout_tells_the_sessions_instance(backend: Backend) {
    let (server, receiver) = setup(backend).await;
    say(&server, "async", "finn", "survey").await;
    receiver.wait_for_path("/post", 2, 10).await;
    age(&server, "finn").await;
    let reply = say(&server, "poll", "finn", "hello").await;
    assert_eq!(reply.texts(), ["Hello!", "How can I help?"]);
    let posts = receiver.wait_for_path("/post", 4, 10).await;
    assert_eq!(said(&posts[2..]), ["SESSION_CLOSURE", "end endOfTask=true"]);
    assert_eq!(posts[2].body["to"], "finn");
    assert_eq!(due_at(&server, "finn").await, None, "a synchronous session is never told");
}

/// Closures due in the same second for two users are two deliveries, each
/// with its own webhook-ids (a receiver drops repeated ids).
async fn closures_due_together_are_told_apart(backend: Backend) {
    let (server, receiver) = setup(backend).await;
    for user in ["gil", "hal"] {
        say(&server, "async", user, "survey").await;
    }
    receiver.wait_for_path("/post", 4, 10).await;
    let due = now() - 60;
    for user in ["gil", "hal"] {
        let key = ConversationKey::new(BOT, user);
        let mut aged = server.stores.conversations.load(&key).await.unwrap().unwrap();
        aged.session.as_mut().unwrap().last_active_at = (due - IDLE_SECS) * 1000;
        aged.idle_closure.as_mut().unwrap().due_at = due;
        save(&server, user, &aged).await;
    }
    assert_eq!(server.worker().sweep_idle(now()).await.unwrap(), 2);
    let posts = unique(&receiver, 8).await;
    let mut told: Vec<&str> = posts[4..]
        .iter()
        .filter(|p| p.body["data"][0]["val"] == "SESSION_CLOSURE")
        .map(|p| p.body["to"].as_str().unwrap())
        .collect();
    told.sort();
    assert_eq!(told, ["gil", "hal"]);
}

/// A closure found due for a session that is not idle by the bot's current
/// timeout (a deployment raised it) closes nothing and is due later.
async fn a_closure_due_too_early_is_put_off(backend: Backend) {
    let (server, receiver) = setup(backend).await;
    say(&server, "async", "ivy", "survey").await;
    receiver.wait_for_path("/post", 2, 10).await;
    let key = ConversationKey::new(BOT, "ivy");
    let mut early = server.stores.conversations.load(&key).await.unwrap().unwrap();
    let active = early.session.as_ref().unwrap().last_active_at;
    early.idle_closure.as_mut().unwrap().due_at = now() - 1;
    save(&server, "ivy", &early).await;
    let worker = server.worker();
    assert_eq!(worker.sweep_idle(now()).await.unwrap(), 1);
    let expected = (active + IDLE_SECS * 1000 + 999) / 1000;
    for _ in 0..100 {
        if due_at(&server, "ivy").await == Some(expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(due_at(&server, "ivy").await, Some(expected));
    assert_eq!(worker.sweep_idle(now()).await.unwrap(), 0);
    assert_eq!(receiver.received().len(), 2, "nothing was sent");
}

async fn save(server: &Server, user: &str, conversation: &Conversation) {
    let key = ConversationKey::new(BOT, user);
    let write = TurnWrite::of(conversation, conversation.version, now() + 3600);
    server.stores.conversations.save_turn(&key, write).await.unwrap();
}

/// The user's session as if its last message were 16 minutes ago.
async fn age(server: &Server, user: &str) {
    let key = ConversationKey::new(BOT, user);
    let mut aged = server.stores.conversations.load(&key).await.unwrap().unwrap();
    aged.session.as_mut().unwrap().last_active_at -= 16 * 60 * 1000;
    aged.idle_closure.as_mut().unwrap().due_at -= 16 * 60;
    save(server, user, &aged).await;
}

/// `hookline serve` sweeps on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_sweeps_on_its_own() {
    let (server, receiver) = setup(Backend::Memory).await;
    say(&server, "async", "dana", "survey").await;
    receiver.wait_for_path("/post", 2, 10).await;
    age(&server, "dana").await;
    let sweeping = tokio::spawn(process::sweep_idle_sessions(server.worker(), Duration::from_millis(100)));
    let posts = receiver.wait_for_path("/post", 4, 10).await;
    sweeping.abort();
    assert_eq!(said(&posts[2..]), ["SESSION_CLOSURE", "end endOfTask=true"]);
}

on_both_stores!(
    a_message_elsewhere_after_the_timeout_tells_the_sessions_instance,
    closures_due_together_are_told_apart,
    a_closure_due_too_early_is_put_off,
    an_idle_session_is_closed_and_its_post_url_told,
    a_message_after_the_timeout_is_answered_after_the_closure
);
