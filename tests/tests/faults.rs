//! Faults injected between the product and what it talks to (a TCP proxy
//! that refuses, blackholes or cuts connections; receivers that fail, answer
//! late or say Gone; a worker killed mid-batch): what each client was told,
//! what the receivers saw, and that nothing accepted is lost. The delivery
//! scenarios print a figure: expected, delivered, duplicated, out of order,
//! lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::adapters::queue::SqsQueue;
use hookline_core::adapters::store::DynamoStore;
use hookline_core::app::store::{Conversations, Stores};
use hookline_core::app::worker::Record;
use hookline_core::ids::ConversationKey;
use hookline_core::process::{Settings, aws, sqs_worker};
use hookline_tests::proxy::{Fault, Proxy};
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const BOT: &str = "st-channel-bot";
const SECRET: &str = "channel-bot-secret-0123456789-abcdefgh";
const BOT_SIGNING_SECRET: &str = "whsec_aG9va2xpbmUtdGVzdC1zaWduaW5nLXNlY3JldC0zMmIh";

/// The channel bot with its event webhook at the receiver.
fn bot_with_events(receiver: &Receiver) -> hookline_core::definition::Registry {
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let events = format!("events:\n  url: http://{}/events\n", receiver.addr);
    registry_with(&[("channel-bot.yaml".into(), format!("{yaml}{events}"))])
}

async fn say(server: &Server, instance: &str, user: &str, text: &str) -> Reply {
    let token = sign_hs(Algorithm::HS256, SECRET, &claims("cs-channel", user));
    let body = json!({"message": {"type": "text", "val": text}, "from": {"id": user}});
    server.post(&format!("/chatbot/v2/webhook/{BOT}/hookInstance/{instance}"), &token, &body).await
}

/// What a scenario's receivers were owed and what they took, counted by
/// webhook-id. A delivery is taken when its receiver answered 2xx, or 410
/// (asked not to be sent it again); a 5xx or no answer is not taken.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    expected: usize,
    delivered: usize,
    /// Taken again under a webhook-id already taken: at-least-once.
    duplicated: usize,
    /// Taken before a message its conversation owed earlier.
    out_of_order: usize,
    lost: usize,
}

impl Tally {
    /// `owed`: each conversation's deliveries in order; `read` names a
    /// received delivery's conversation and message.
    fn of(owed: &[(&str, &[&str])], received: &[Received], read: fn(&Received) -> (String, String)) -> Self {
        let mut tally = Tally::default();
        let mut ids = HashSet::new();
        let mut firsts = Vec::new();
        for delivery in received.iter().filter(|r| (200..300).contains(&r.answered) || r.answered == 410) {
            if ids.insert(delivery.headers["webhook-id"].to_str().unwrap().to_string()) {
                firsts.push(read(delivery));
            } else {
                tally.duplicated += 1;
            }
        }
        for (conversation, said) in firsts.iter() {
            assert!(owed.iter().any(|(c, _)| c == conversation), "{conversation} was owed nothing, sent {said:?}");
        }
        for (conversation, messages) in owed {
            tally.expected += messages.len();
            let mut taken = vec![false; messages.len()];
            let mut last = None;
            for (_, message) in firsts.iter().filter(|(c, _)| c == conversation) {
                let at = (0..messages.len())
                    .find(|&i| !taken[i] && messages[i] == message)
                    .unwrap_or_else(|| panic!("{conversation} was sent {message:?}, not owed: {messages:?}"));
                taken[at] = true;
                tally.delivered += 1;
                tally.out_of_order += usize::from(last.is_some_and(|l| at < l));
                last = Some(at);
            }
            tally.lost += taken.iter().filter(|t| !**t).count();
        }
        tally
    }

    fn add(&mut self, other: Tally) {
        self.expected += other.expected;
        self.delivered += other.delivered;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.lost += other.lost;
    }
}

/// Waits (up to `seconds`) until the receiver has taken `count` distinct
/// deliveries to `path`, then a little longer for repeats in flight.
async fn taken(receiver: &Receiver, path: &str, count: usize, seconds: u64) -> Vec<Received> {
    let distinct = || {
        let taken = receiver.received().into_iter().filter(|r| r.path_and_query.starts_with(path));
        let taken = taken.filter(|r| (200..300).contains(&r.answered) || r.answered == 410);
        taken.map(|r| r.headers["webhook-id"].to_str().unwrap().to_string()).collect::<HashSet<_>>().len()
    };
    for _ in 0..seconds * 20 {
        if distinct() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    receiver.received().into_iter().filter(|r| r.path_and_query.starts_with(path)).collect()
}

fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.worker.retry_base = Duration::from_millis(100);
    settings
}

/// The channel bot, its POST_URLs and calls at `address` (a receiver, or a
/// proxy in front of one), giving up on a call after `timeout_ms`.
fn channel_bot(address: &str, timeout_ms: u64) -> hookline_core::definition::Registry {
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml")
        .replace("RECEIVER", address)
        .replace("timeoutMs: 2000", &format!("timeoutMs: {timeout_ms}"));
    registry_with(&[("channel-bot.yaml".into(), yaml)])
}

const USERS: [&str; 2] = ["ann", "ben"];
const SAID: [&str; 3] = ["hello", "survey", "4"];
/// What SAID owes each user's POST_URL, in order.
const OWED: &[&str] = &[
    "Hello!",
    "How can I help?",
    "end:Fulfilled",
    "Rate us from 1 to 5",
    "end:open",
    "Thanks for 4!",
    "end:Fulfilled",
];

/// A v2 POST_URL delivery: its user, and its text (or how its turn ended).
fn post_url_message(delivery: &Received) -> (String, String) {
    let body = &delivery.body;
    let message = match body["data"].as_array().and_then(|d| d.first()) {
        Some(message) => message["val"].as_str().unwrap_or_default().to_string(),
        None => format!("end:{}", body["endReason"].as_str().unwrap_or("open")),
    };
    (body["to"].as_str().unwrap_or_default().to_string(), message)
}

/// Each user's conversation, said to the asynchronous instance of a server
/// on DynamoDB and SQS whose POST_URL is at `address`; every message is
/// acknowledged.
async fn converse(address: &str, timeout_ms: u64) -> Server {
    let server = Server::start_on(Backend::DynamoDb, channel_bot(address, timeout_ms), settings()).await;
    for said in SAID {
        for user in USERS {
            let ack = say(&server, "async", user, said).await;
            assert_eq!(ack.status, 200, "{}", ack.body);
        }
    }
    server
}

/// The POST_URL tallied once each user's deliveries are in.
async fn post_url_tally(receiver: &Receiver, path: &str) -> (Tally, Vec<Received>) {
    let received = taken(receiver, path, USERS.len() * OWED.len(), 30).await;
    let owed: Vec<(&str, &[&str])> = USERS.iter().map(|u| (*u, OWED)).collect();
    (Tally::of(&owed, &received, post_url_message), received)
}

/// The receiver answers 500, then 503, then 200: nothing taken twice.
async fn post_url_failing_then_back() -> Tally {
    let answers = [Answer::raw(500, "{}"), Answer::raw(503, "{}"), Answer::json(json!({}))];
    let receiver = Receiver::start(answers.into_iter().map(|a| ("/post", a)).collect()).await;
    let _server = converse(&receiver.addr, 2000).await;
    let (tally, received) = post_url_tally(&receiver, "/post").await;
    assert_eq!(received.len(), tally.delivered + 2, "the two refusals were tried again");
    tally
}

/// The receiver answers 410 Gone: each delivery is sent once, not again.
async fn post_url_gone() -> Tally {
    let receiver = Receiver::start(vec![("/post", Answer::raw(410, "{}"))]).await;
    let _server = converse(&receiver.addr, 2000).await;
    let (tally, received) = post_url_tally(&receiver, "/post").await;
    assert_eq!(received.len(), tally.delivered, "a 410 is not retried");
    tally
}

/// The receiver answers its first two requests after the call's timeout:
/// it handled them, the product did not see it, so they come again under
/// their webhook-id.
async fn post_url_slow() -> Tally {
    let slow = Answer { delay_ms: 1200, ..Answer::json(json!({})) };
    let answers = [slow.clone(), slow, Answer::json(json!({}))];
    let receiver = Receiver::start(answers.into_iter().map(|a| ("/post", a)).collect()).await;
    let _server = converse(&receiver.addr, 400).await;
    let (tally, _) = post_url_tally(&receiver, "/post").await;
    assert!(tally.duplicated >= 2, "the slow answers were repeats: {tally:?}");
    tally
}

/// The receiver unreachable (connections refused), then silent (held,
/// unanswered), then back: two attempts of each in all, well within the
/// retry budget of each conversation.
async fn post_url_unreachable_then_silent() -> Tally {
    let receiver = Receiver::start(vec![("/post", Answer::json(json!({})))]).await;
    let proxy = Proxy::start(&receiver.addr).await;
    proxy.set(Fault::Refuse);
    let _server = converse(proxy.url.trim_start_matches("http://"), 400).await;
    proxy.wait_faulted(2).await;
    proxy.set(Fault::Blackhole);
    proxy.wait_faulted(4).await;
    assert!(receiver.received().is_empty(), "nothing got through");
    proxy.set(Fault::None);
    post_url_tally(&receiver, "/post").await.0
}

/// A Chatlayer-format delivery: its recipient and text.
fn chatlayer_message(delivery: &Received) -> (String, String) {
    let body = &delivery.body;
    (
        body["recipient"]["id"].as_str().unwrap_or_default().into(),
        body["message"]["text"].as_str().unwrap_or_default().into(),
    )
}

/// A worker killed between sending deliveries and deleting their messages:
/// what it had sent comes again after the visibility timeout, under the
/// same webhook-id. (Chatlayer's format: one delivery per turn.)
async fn worker_killed_between_send_and_delete() -> Tally {
    let answer = Answer { delay_ms: 400, ..Answer::json(json!({})) };
    let receiver = Receiver::start(vec![("/chatlayer-format", answer)]).await;
    let server = Server::start_without_worker(channel_bot(&receiver.addr, 2000), settings()).await;
    let Queued::Sqs { queue, .. } = server.queued.clone() else { unreachable!() };
    let users = ["u1", "u2", "u3"];
    for user in users {
        assert_eq!(say(&server, "chatlayer-format", user, "survey").await.status, 200);
    }
    // The turns run; each leaves one delivery.
    let worker = server.worker();
    let mut turns = 0;
    while turns < users.len() {
        turns += sqs_worker::poll_once(&worker, &queue, Duration::from_secs(1)).await.unwrap();
    }
    // A batch of the deliveries, as Lambda would hand it over, is cut short
    // once the first has reached the receiver: nothing of it is deleted.
    let mut batch = Vec::new();
    while batch.len() < users.len() {
        batch.extend(queue.receive(10, Duration::from_secs(1)).await.unwrap());
    }
    let records: Vec<Record> = batch
        .into_iter()
        .map(|m| Record { id: m.message_id, group: m.group, body: m.body, receive_count: m.receive_count })
        .collect();
    let batch = tokio::spawn({
        let worker = worker.clone();
        async move { worker.handle_batch(records).await }
    });
    receiver.wait_for_path("/chatlayer-format", 1, 10).await;
    batch.abort();
    // A new worker takes over once the messages are visible again.
    tokio::spawn(sqs_worker::run(worker, queue));
    // Taken by the receiver, the killed worker's sends were: wait for a repeat.
    receiver.wait_for_path("/chatlayer-format", users.len() + 1, 15).await;
    let received = taken(&receiver, "/chatlayer-format", users.len(), 30).await;
    let owed: Vec<(&str, &[&str])> = users.iter().map(|u| (*u, &["Rate us from 1 to 5"][..])).collect();
    let tally = Tally::of(&owed, &received, chatlayer_message);
    assert!(tally.duplicated >= 1, "what the killed worker sent came again: {tally:?}");
    tally
}

/// The receiver down past the retry budget: the delivery is dead-lettered,
/// and replayed from there under its webhook-id, signed. One message in its
/// conversation: the emulator keeps FIFO order across redrives only for
/// single-message groups.
async fn dead_lettered_then_replayed() -> Tally {
    // Three receives of three attempts each fail; the next attempt succeeds.
    let failures = (TEST_MAX_RECEIVES * 3) as usize;
    let mut answers = vec![("/chatlayer-format", Answer::raw(503, "{}")); failures];
    answers.push(("/chatlayer-format", Answer::json(json!({}))));
    let receiver = Receiver::start(answers).await;
    let server = Server::start_on(Backend::DynamoDb, channel_bot(&receiver.addr, 2000), settings()).await;
    let Queued::Sqs { queue, dead_letters, .. } = server.queued.clone() else { unreachable!() };
    assert_eq!(say(&server, "chatlayer-format", "eve", "survey").await.status, 200);
    let tried = receiver.wait_for_path("/chatlayer-format", failures, 20).await;
    assert_eq!(tried.len(), failures);
    // The redrive policy moves it on its next receive.
    let mut moved = 0;
    for _ in 0..100 {
        moved = dead_letters.move_messages(&queue, 10, |_| {}).await.unwrap();
        if moved > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(moved, 1, "the delivery is in the dead-letter queue");
    let received = taken(&receiver, "/chatlayer-format", 1, 10).await;
    let last = received.last().unwrap();
    assert_eq!(last.headers["webhook-id"], tried[0].headers["webhook-id"]);
    assert!(verify_signature(BOT_SIGNING_SECRET, last, &last.raw));
    assert_eq!(dead_letters.move_messages(&queue, 10, |_| {}).await.unwrap(), 0, "nothing left");
    Tally::of(&[("eve", &["Rate us from 1 to 5"])], &received, chatlayer_message)
}

/// A server on DynamoDB and SQS whose jobs reach the queue through the
/// proxy; its worker reaches the queue directly.
async fn sending_through_a_proxy(registry: hookline_core::definition::Registry) -> (Server, Proxy) {
    let proxy = Proxy::start(&aws_endpoint()).await;
    let (queue, dead_letters) = sqs_queue().await;
    let through_proxy = SqsQueue::new(aws::sqs_client(Some(&proxy.url)).await, queue.url());
    let stores = stores(Backend::DynamoDb).await;
    (Server::start_on_sqs(registry, stores, through_proxy, (queue, dead_letters), settings()).await, proxy)
}

/// SQS unreachable from the product after synchronous turns are saved: each
/// client is answered 200 at once, and once the queue is back every event
/// webhook the turns owe arrives in the conversation's order. (The worker
/// reaches the queue directly: the emulator does not hold a FIFO group back
/// behind a message received by a request its client gave up on.)
async fn queue_down_after_sync_turns() -> Tally {
    let receiver = Receiver::start(vec![("/events", Answer::json(json!({})))]).await;
    let (server, proxy) = sending_through_a_proxy(bot_with_events(&receiver)).await;

    proxy.set(Fault::Refuse);
    for (said, answer) in [("survey", "Rate us from 1 to 5"), ("4", "Thanks for 4!"), ("hello", "Hello!")] {
        let reply = say(&server, "poll", "ned", said).await;
        assert_eq!((reply.status, reply.texts()[0].as_str()), (200, answer), "{}", reply.body);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.received().is_empty(), "nothing could be queued yet");
    proxy.set(Fault::None);
    let said = [
        "\"survey\"",
        "\"Rate us from 1 to 5\"",
        "\"4\"",
        "\"Thanks for 4!\"",
        "\"hello\"",
        "\"Hello!\"",
        "\"How can I help?\"",
    ];
    let received = taken(&receiver, "/events", said.len(), 30).await;
    let event = |e: &Received| ("ned".to_string(), e.body["data"].as_str().unwrap_or_default().to_string());
    let tally = Tally::of(&[("ned", &said)], &received, event);
    assert_eq!(tally.duplicated, 0, "the queue was down, not the receiver: nothing sent twice");
    tally
}

/// Every delivery scenario at once; prints the figure and holds it to
/// nothing lost, nothing out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_under_faults_lose_nothing() {
    let (a, b, c, d, e, f, g) = tokio::join!(
        post_url_failing_then_back(),
        post_url_gone(),
        post_url_slow(),
        post_url_unreachable_then_silent(),
        worker_killed_between_send_and_delete(),
        dead_lettered_then_replayed(),
        queue_down_after_sync_turns(),
    );
    let scenarios = [
        ("POST_URL answers 500, 503, then 200", a),
        ("POST_URL answers 410 Gone", b),
        ("POST_URL answers after the timeout", c),
        ("POST_URL refused, then silent, then back", d),
        ("worker killed between send and delete", e),
        ("dead-lettered, then replayed", f),
        ("SQS unreachable after sync turns", g),
    ];
    let mut total = Tally::default();
    let mut figure = String::from("\nfault suite: deliveries\n");
    figure += &format!(
        "{:<42} {:>8} {:>9} {:>10} {:>12} {:>4}\n",
        "scenario", "expected", "delivered", "duplicated", "out of order", "lost"
    );
    for (name, tally) in scenarios {
        figure += &format!(
            "{name:<42} {:>8} {:>9} {:>10} {:>12} {:>4}\n",
            tally.expected, tally.delivered, tally.duplicated, tally.out_of_order, tally.lost
        );
        total.add(tally);
    }
    figure += &format!(
        "{:<42} {:>8} {:>9} {:>10} {:>12} {:>4}\n",
        format!("{} scenarios", scenarios.len()),
        total.expected,
        total.delivered,
        total.duplicated,
        total.out_of_order,
        total.lost
    );
    // Past the test harness's capture: the figure is part of every run's output.
    std::io::Write::write_all(&mut std::io::stderr(), figure.as_bytes()).unwrap();
    assert_eq!((total.lost, total.out_of_order), (0, 0), "{figure}");
    assert_eq!(total.delivered, total.expected, "{figure}");
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
    proxy.set(Fault::CutRequests("version = :v"));
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

/// The write lands but its answer is lost on the way back: the store's
/// retry then fails its condition, and the turn is answered from the log
/// (its own trace is the last turn), not run again. The client gets its
/// answer once, and the log holds the message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_is_lost_is_answered_from_the_log_not_run_twice() {
    let proxy = Proxy::start(&aws_endpoint()).await;
    let (server, store) = on_proxied_table(&proxy).await;
    assert_eq!(server.say("wes", "hello").await.status, 200);
    proxy.set(Fault::LoseAnswer("version = :v"));
    let answered = server.say("wes", "balance").await;
    assert_eq!(answered.status, 200, "{}", answered.body);
    assert_eq!(proxy.fault(), Fault::None, "the conversation's put lost its answer");
    let again = server.say("wes", "balance").await;
    assert_eq!(answered.texts(), again.texts(), "answered as the turn ran");
    assert_eq!(logged(&store, "wes").await, ["hello", "balance", "balance"], "each message logged once");
}

/// SQS unreachable when an asynchronous message comes: it is not
/// acknowledged (503 in the envelope) and nothing of it runs later; the
/// client's retry once SQS is back is acknowledged and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_unreachable_at_an_async_message_answers_503_and_runs_nothing() {
    let receiver = Receiver::start(vec![("/post", Answer::json(json!({})))]).await;
    let (server, proxy) = sending_through_a_proxy(channel_bot(&receiver.addr, 2000)).await;

    proxy.set(Fault::Refuse);
    let refused = say(&server, "async", "ida", "hello").await;
    assert_eq!((refused.status, refused.error_msg().as_str()), (503, "Service temporarily unavailable"));
    proxy.set(Fault::None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.received().is_empty(), "the refused message never ran");

    assert_eq!(say(&server, "async", "ida", "hello").await.status, 200);
    let received = taken(&receiver, "/post", 3, 15).await;
    let tally = Tally::of(&[("ida", &["Hello!", "How can I help?", "end:Fulfilled"])], &received, post_url_message);
    assert_eq!((tally.delivered, tally.duplicated, tally.out_of_order), (3, 0, 0), "{tally:?}");
    assert_eq!(received.len(), 3, "once each");
}

/// The worker's long poll waits its whole wait, past the SDK's attempt
/// timeout for other requests: cut short, SQS would hand a message to a
/// request no one reads (hidden until its visibility ends, its receive
/// counted, and a FIFO group's order broken on the emulator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_never_cut_short() {
    let (queue, _) = sqs_queue().await;
    let started = std::time::Instant::now();
    let received = queue.receive(1, Duration::from_secs(7)).await.expect("an idle queue answers");
    assert!(received.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(7), "answered after {:?}", started.elapsed());
}
