//! Faults injected between the product and what it talks to (a TCP proxy
//! that refuses or blackholes connections): what each client was told, what
//! the receivers saw, and that nothing accepted is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::adapters::queue::SqsQueue;
use hookline_core::adapters::store::DynamoStore;
use hookline_core::app::store::{Conversations, Stores};
use hookline_core::ids::ConversationKey;
use hookline_core::process::{Settings, aws};
use hookline_tests::proxy::{Fault, Proxy};
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const BOT: &str = "st-channel-bot";
const SECRET: &str = "channel-bot-secret-0123456789-abcdefgh";

/// The channel bot with its event webhook at the receiver.
fn bot_with_events(receiver: &Receiver) -> hookline_core::definition::Registry {
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let events = format!("events:\n  url: http://{}/events\n", receiver.addr);
    registry_with(&[("channel-bot.yaml".into(), format!("{yaml}{events}"))])
}

async fn say(server: &Server, user: &str, text: &str) -> Reply {
    let token = sign_hs(Algorithm::HS256, SECRET, &claims("cs-channel", user));
    let body = json!({"message": {"type": "text", "val": text}, "from": {"id": user}});
    server.post(&format!("/chatbot/v2/webhook/{BOT}/hookInstance/poll"), &token, &body).await
}

/// SQS unreachable from the product after synchronous turns are saved: each
/// client is answered 200 at once, and once the queue is back every event
/// webhook the turns owe arrives, once, in the conversation's order. (The
/// worker reaches the queue directly: the emulator does not hold a FIFO
/// group back behind a message received by a request its client gave up on.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_turns_owe_while_the_queue_is_down_arrives_in_order_once_it_is_back() {
    let receiver = Receiver::start(vec![("/events", Answer::json(json!({})))]).await;
    let proxy = Proxy::start(&aws_endpoint()).await;
    let (queue, dead_letters) = sqs_queue().await;
    let through_proxy = SqsQueue::new(aws::sqs_client(Some(&proxy.url)).await, queue.url());
    let mut settings = Settings::default();
    settings.worker.retry_base = Duration::from_millis(100);
    let stores = stores(Backend::DynamoDb).await;
    let registry = bot_with_events(&receiver);
    let server = Server::start_on_sqs(registry, stores, through_proxy, (queue, dead_letters), settings).await;

    proxy.set(Fault::Refuse);
    let expected = [("survey", "Rate us from 1 to 5"), ("4", "Thanks for 4!"), ("hello", "Hello!")];
    for (said, answer) in expected {
        let reply = say(&server, "ned", said).await;
        assert_eq!((reply.status, reply.texts()[0].as_str()), (200, answer), "{}", reply.body);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.received().is_empty(), "nothing could be queued yet");

    proxy.set(Fault::None);
    receiver.wait_for_path("/events", 7, 30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = receiver.received().into_iter().filter(|r| r.path_and_query == "/events").collect::<Vec<_>>();
    let mut seen = HashSet::new();
    let unique: Vec<_> = events.iter().filter(|e| seen.insert(e.headers["webhook-id"].clone())).collect();
    let summary: Vec<String> = unique.iter().map(|e| e.body["data"].as_str().unwrap().to_string()).collect();
    let said = [
        "\"survey\"",
        "\"Rate us from 1 to 5\"",
        "\"4\"",
        "\"Thanks for 4!\"",
        "\"hello\"",
        "\"Hello!\"",
        "\"How can I help?\"",
    ];
    let all: Vec<String> =
        events.iter().map(|e| format!("{} {}", e.headers["webhook-id"].to_str().unwrap(), e.body["data"])).collect();
    assert_eq!(summary, said, "every message once, in order: {all:#?}");
    assert_eq!(events.len(), unique.len(), "the queue was down, not the receiver: nothing sent twice");
}

/// A server on a table reached through `proxy`, jobs in memory.
async fn on_proxied_table(proxy: &Proxy) -> (Server, Arc<DynamoStore>) {
    let (store, _) = dynamo_store(aws::dynamodb_client(Some(&proxy.url)).await).await;
    let store = Arc::new(store);
    (Server::start_with(Stores::of(store.clone()), Settings::default()).await, store)
}

/// The messages a user's log holds.
async fn logged(store: &DynamoStore, user: &str) -> Vec<String> {
    let entries = store.read_log(&ConversationKey::new(TEST_BOT, user), None, 100).await.unwrap();
    entries.iter().filter_map(|e| e.body["request"]["message"]["val"].as_str().map(String::from)).collect()
}

/// DynamoDB unreachable: the read fails, so the client is told 503 in the
/// envelope and nothing is stored; once it is back the message is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_unreachable_at_the_read_answers_503_and_stores_nothing() {
    let proxy = Proxy::start(&aws_endpoint()).await;
    let (server, store) = on_proxied_table(&proxy).await;
    proxy.set(Fault::CutRequests("GetItem"));
    let refused = server.say("uma", "hello").await;
    assert_eq!((refused.status, refused.error_msg().as_str()), (503, "Service temporarily unavailable"));
    proxy.set(Fault::None);
    assert!(logged(&store, "uma").await.is_empty(), "nothing stored");
    assert_eq!(server.say("uma", "hello").await.status, 200);
    assert_eq!(logged(&store, "uma").await, ["hello"]);
}

/// The write cannot reach the table: 503, nothing half-stored, and the
/// client's retry is taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_unreachable_at_the_write_answers_503_and_stores_nothing() {
    let proxy = Proxy::start(&aws_endpoint()).await;
    let (server, store) = on_proxied_table(&proxy).await;
    assert_eq!(server.say("vic", "hello").await.status, 200);
    proxy.set(Fault::CutRequests("TransactWriteItems"));
    let refused = server.say("vic", "balance").await;
    assert_eq!((refused.status, refused.error_msg().as_str()), (503, "Service temporarily unavailable"));
    proxy.set(Fault::None);
    assert_eq!(logged(&store, "vic").await, ["hello"], "nothing of the refused turn");
    assert_eq!(server.say("vic", "balance").await.status, 200);
    assert_eq!(logged(&store, "vic").await, ["hello", "balance"]);
}

/// DynamoDB silent (connections held, never answered): the client is told
/// 504 within the sync deadline, not left hanging, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_table_answers_504_within_the_deadline() {
    let proxy = Proxy::start(&aws_endpoint()).await;
    let (store, _) = dynamo_store(aws::dynamodb_client(Some(&proxy.url)).await).await;
    let store = Arc::new(store);
    let mut settings = Settings::default();
    settings.http.sync_deadline = Duration::from_millis(1500);
    let server = Server::start_with(Stores::of(store.clone()), settings).await;
    proxy.set(Fault::Blackhole);
    let started = std::time::Instant::now();
    let timed_out = server.say("xia", "hello").await;
    assert_eq!(timed_out.status, 504, "{}", timed_out.body);
    timed_out.error_msg();
    assert!(started.elapsed() < Duration::from_secs(10), "answered at the deadline: {:?}", started.elapsed());
    proxy.set(Fault::None);
    assert!(logged(&store, "xia").await.is_empty(), "nothing stored");
}
