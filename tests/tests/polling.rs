//! Synchronous mode with polling (v2): the answer carries the messages
//! before the first service call and a pollId; GET .../poll/{pollId} reads
//! the rest, once. On memory, and on DynamoDB with SQS and the worker.

use hookline_core::process::Settings;
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const BOT: &str = "st-channel-bot";
const SECRET: &str = "channel-bot-secret-0123456789-abcdefgh";

async fn setup(backend: Backend, answers: Vec<(&str, Answer)>) -> (Server, Receiver) {
    let receiver = Receiver::start(answers).await;
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let registry = registry_with(&[("channel-bot.yaml".into(), yaml)]);
    (Server::start_on(backend, registry, Settings::default()).await, receiver)
}

fn token(user: &str) -> String {
    sign_hs(Algorithm::HS256, SECRET, &claims("cs-channel", user))
}

fn instance_path(instance: &str) -> String {
    format!("/chatbot/v2/webhook/{BOT}/hookInstance/{instance}")
}

async fn say(server: &Server, instance: &str, user: &str, text: &str) -> Reply {
    let body = json!({"message": {"type": "text", "val": text}, "from": {"id": user}});
    server.post(&instance_path(instance), &token(user), &body).await
}

async fn poll(server: &Server, instance: &str, user: &str, poll_id: &str) -> Reply {
    server.get(&format!("{}/poll/{poll_id}", instance_path(instance)), &token(user)).await
}

/// Polls while the answer is `Inprogress` (checking that shape), up to ten seconds.
async fn poll_until_done(server: &Server, instance: &str, user: &str, poll_id: &str) -> Reply {
    for _ in 0..500 {
        let reply = poll(server, instance, user, poll_id).await;
        if reply.body["status"] != "Inprogress" {
            return reply;
        }
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, json!({"status": "Inprogress", "pollId": poll_id, "_v": "v2"}));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("poll {poll_id} still in progress after ten seconds");
}

fn poll_id(reply: &Reply) -> String {
    let id = reply.body["pollId"].as_str().unwrap_or_else(|| panic!("no pollId: {}", reply.body)).to_string();
    assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    id
}

fn slow(body: serde_json::Value) -> Answer {
    Answer { delay_ms: 300, ..Answer::json(body) }
}

async fn a_turn_is_answered_in_parts_through_polling(backend: Backend) {
    let answers =
        vec![("/api/current", slow(json!({"sky": "clear"}))), ("/api/forecast", slow(json!({"tomorrow": "rain"})))];
    let (server, receiver) = setup(backend, answers).await;
    let first = say(&server, "poll", "ada", "weather").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.texts(), ["Let me check."]);
    assert_eq!(first.body["_v"], "v2");
    let p1 = poll_id(&first);

    // The first call is still running: in progress.
    let pending = poll(&server, "poll", "ada", &p1).await;
    assert_eq!(pending.body, json!({"status": "Inprogress", "pollId": p1, "_v": "v2"}));

    // Then the messages up to the next call, with a new pollId.
    let second = poll_until_done(&server, "poll", "ada", &p1).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.texts(), ["Sky: clear"]);
    assert_eq!(second.body["endOfTask"], false);
    let p2 = poll_id(&second);
    assert_ne!(p1, p2);

    // An answer is given once.
    let again = poll(&server, "poll", "ada", &p1).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(again.error_msg(), "No data found");

    // The URL without hookInstance polls the bot's first v2 instance, this one.
    let bare = format!("/chatbot/v2/webhook/{BOT}/poll/{p2}");
    let mut last = server.get(&bare, &token("ada")).await;
    while last.body["status"] == "Inprogress" {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        last = server.get(&bare, &token("ada")).await;
    }
    assert_eq!(last.texts(), ["Tomorrow: rain"]);
    assert_eq!(last.body["endOfTask"], true);
    assert_eq!(last.body["endReason"], "Fulfilled");
    assert_eq!(last.body["completedTaskName"], "weather");
    assert!(last.body.get("pollId").is_none(), "{}", last.body);
    assert_eq!(poll(&server, "poll", "ada", &p2).await.status, 400);

    // Each call was made once.
    let calls: Vec<String> = receiver.received().into_iter().map(|r| r.path_and_query).collect();
    assert_eq!(calls, ["/api/current", "/api/forecast"]);
}

async fn a_message_sent_during_a_call_queues_behind_it(backend: Backend) {
    let answers =
        vec![("/api/current", slow(json!({"sky": "grey"}))), ("/api/forecast", slow(json!({"tomorrow": "sun"})))];
    let (server, _receiver) = setup(backend, answers).await;
    let first = say(&server, "poll", "bo", "weather").await;
    let p1 = poll_id(&first);
    // The conversation waits for the call: this message's answer comes through polling.
    let queued = say(&server, "poll", "bo", "hello").await;
    assert_eq!(queued.status, 200, "{}", queued.body);
    assert_eq!(queued.body["data"], json!([]), "clients need data even when it is empty");
    assert_eq!(queued.body["_v"], "v2");
    let p3 = poll_id(&queued);

    let second = poll_until_done(&server, "poll", "bo", &p1).await;
    assert_eq!(second.texts(), ["Sky: grey"]);
    let third = poll_until_done(&server, "poll", "bo", &poll_id(&second)).await;
    assert_eq!(third.texts(), ["Tomorrow: sun"]);
    let hello = poll_until_done(&server, "poll", "bo", &p3).await;
    assert_eq!(hello.texts(), ["Hello!", "How can I help?"]);

    // The log has every message in the order it happened.
    let history = server.get(&format!("/api/chathistory/{BOT}/webhook?limit=20"), &token("bo")).await;
    assert_eq!(
        history.history_texts(),
        ["weather", "Let me check.", "Sky: grey", "Tomorrow: sun", "hello", "Hello!", "How can I help?"],
        "{}",
        history.body
    );
}

async fn polls_belong_to_their_user_and_bot(backend: Backend) {
    let (server, _receiver) = setup(backend, vec![("/api/current", slow(json!({"sky": "clear"})))]).await;
    let p1 = poll_id(&say(&server, "poll", "cy", "weather").await);
    // Another user of the same app: as if it did not exist.
    let other = poll(&server, "poll", "dee", &p1).await;
    assert_eq!(other.status, 400, "{}", other.body);
    assert_eq!(other.error_msg(), "No data found");
    // Another bot's URL: nothing there.
    let path = format!("/chatbot/v2/webhook/{TEST_BOT}/poll/{p1}");
    let foreign = server.get(&path, &hs256_token("cy")).await;
    assert_eq!(foreign.status, 400, "{}", foreign.body);
    assert_eq!(foreign.error_msg(), "No data found");
    // An unknown pollId, and no token at all.
    assert_eq!(poll(&server, "poll", "cy", "0123456789abcdef0123456789abcdef").await.error_msg(), "No data found");
    let anonymous =
        Server::send(server.request(reqwest::Method::GET, &format!("{}/poll/{p1}", instance_path("poll")))).await;
    assert_eq!(anonymous.status, 401);
    // The owner still gets it.
    assert_eq!(poll_until_done(&server, "poll", "cy", &p1).await.status, 200);
}

async fn a_lost_poll_answer_can_be_read_again_within_the_window(backend: Backend) {
    let (server, _receiver) = setup(backend, vec![("/api/current", slow(json!({"sky": "blue"})))]).await;
    let p1 = poll_id(&say(&server, "reread", "eve", "weather").await);
    let first = poll_until_done(&server, "reread", "eve", &p1).await;
    assert_eq!(first.texts(), ["Sky: blue"]);
    // The instance allows one more read within pollRereadSeconds: the same answer.
    let second = poll(&server, "reread", "eve", &p1).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body);
    let third = poll(&server, "reread", "eve", &p1).await;
    assert_eq!(third.status, 400);
    assert_eq!(third.error_msg(), "No data found");
}

/// Follows pollIds until an answer carries none; returns every answer.
async fn follow(server: &Server, instance: &str, user: &str, first: &Reply) -> Vec<Reply> {
    let mut answers = Vec::new();
    let mut next = first.body["pollId"].as_str().map(String::from);
    while let Some(poll_id) = next {
        let answer = poll_until_done(server, instance, user, &poll_id).await;
        next = answer.body["pollId"].as_str().map(String::from);
        answers.push(answer);
        assert!(answers.len() <= 20, "too many steps");
    }
    answers
}

async fn a_polled_turn_makes_at_most_ten_calls(backend: Backend) {
    let (server, receiver) = setup(backend, vec![("/api/down", Answer::raw(500, "{}"))]).await;
    let first = say(&server, "poll", "hoa", "retry").await;
    let answers = follow(&server, "poll", "hoa", &first).await;
    let last = answers.last().unwrap();
    assert_eq!(last.body["endReason"], "Cancelled", "{}", last.body);
    assert_eq!(last.texts(), ["Sorry, something went wrong. Please try again later."]);
    assert_eq!(receiver.received().len(), 10);
    // The conversation takes messages again.
    assert_eq!(say(&server, "poll", "hoa", "hello").await.texts(), ["Hello!", "How can I help?"]);
}

async fn a_call_that_cannot_be_resumed_is_abandoned(backend: Backend) {
    // The answer would grow the conversation past its bound.
    let big = json!({"big": "x".repeat(310 * 1024)});
    let (server, _receiver) = setup(backend, vec![("/api/big", Answer::json(big))]).await;
    let first = say(&server, "poll", "ian", "big").await;
    let answers = follow(&server, "poll", "ian", &first).await;
    let last = answers.last().unwrap();
    assert_eq!(last.texts(), ["Sorry, something went wrong. Please try again later."], "{}", last.body);
    assert_eq!(last.body["endReason"], "Cancelled");
    assert_eq!(say(&server, "poll", "ian", "hello").await.texts(), ["Hello!", "How can I help?"]);
}

on_both_stores!(
    a_polled_turn_makes_at_most_ten_calls,
    a_call_that_cannot_be_resumed_is_abandoned,
    a_turn_is_answered_in_parts_through_polling,
    a_message_sent_during_a_call_queues_behind_it,
    polls_belong_to_their_user_and_bot,
    a_lost_poll_answer_can_be_read_again_within_the_window,
);

/// The turn was saved but its continuation could not be queued: polling
/// queues it again, so the answer still comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_lost_to_the_queue_is_queued_again_by_polling() {
    let receiver = Receiver::start(vec![("/api/current", Answer::json(json!({"sky": "pink"})))]).await;
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let registry = registry_with(&[("channel-bot.yaml".into(), yaml)]);
    let server = Server::start_with_flaky_queue(registry, 1, |_| true, Settings::default()).await;
    let first = say(&server, "poll", "fin", "weather").await;
    assert_eq!(first.status, 200, "the turn is saved: the client is not told to send it again");
    let p1 = poll_id(&first);
    let answer = poll_until_done(&server, "poll", "fin", &p1).await;
    assert_eq!(answer.texts(), ["Sky: pink"]);
}

/// A message queued behind a call that the bot then refuses: the poll
/// answers with the error instead of staying in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_message_the_bot_refuses_is_answered_with_its_error() {
    let (server, _receiver) = setup(Backend::Memory, vec![("/api/current", slow(json!({"sky": "clear"})))]).await;
    let path = instance_path("poll");
    // A user keeps at most 100 userInfo keys: fill them.
    for round in 0..2 {
        let info: serde_json::Map<String, serde_json::Value> =
            (0..50).map(|i| (format!("k{round}-{i}"), json!(i))).collect();
        let body = json!({"message": {"type": "text", "val": "hello"}, "from": {"id": "gil", "userInfo": info}});
        assert_eq!(server.post(&path, &token("gil"), &body).await.status, 200);
    }
    let p1 = poll_id(&say(&server, "poll", "gil", "weather").await);
    let body = json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "gil", "userInfo": {"one": "more"}}});
    let queued = server.post(&path, &token("gil"), &body).await;
    let p2 = poll_id(&queued);
    assert_eq!(poll_until_done(&server, "poll", "gil", &p1).await.texts(), ["Sky: clear"]);
    let refused = poll_until_done(&server, "poll", "gil", &p2).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body["errors"][0]["detail"].as_str().unwrap().contains("userInfo"), "{}", refused.body);
}

/// A message arriving after a call ended but before the messages queued
/// behind it ran queues too: none overtakes another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_does_not_overtake_those_queued_before_it() {
    let receiver = Receiver::start(vec![
        ("/api/current", Answer::json(json!({"sky": "grey"}))),
        ("/api/forecast", Answer::json(json!({"tomorrow": "sun"}))),
    ])
    .await;
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let registry = registry_with(&[("channel-bot.yaml".into(), yaml)]);
    let server = Server::start_without_worker(registry, Settings::default()).await;
    let Queued::Sqs { queue, .. } = server.queued.clone() else { unreachable!() };
    let worker = server.worker();
    let work_once =
        || hookline_core::process::sqs_worker::poll_once(&worker, &queue, std::time::Duration::from_secs(1));

    let p1 = poll_id(&say(&server, "poll", "jo", "weather").await);
    // The call's job is relayed from the saved turn (the outbox); once it is
    // queued, "hello" queues behind it.
    wait_until_queued(&queue, 1).await;
    let p2 = poll_id(&say(&server, "poll", "jo", "hello").await);
    // The worker finishes the weather call; "hello" has not run yet.
    assert_eq!(work_once().await.unwrap(), 1);
    let third = say(&server, "poll", "jo", "survey").await;
    assert_eq!(third.body["data"], json!([]), "queued, not run: {}", third.body);
    let p3 = poll_id(&third);
    while work_once().await.unwrap() > 0 {}

    assert_eq!(follow(&server, "poll", "jo", &json_reply(&p1)).await.last().unwrap().texts(), ["Tomorrow: sun"]);
    assert_eq!(poll(&server, "poll", "jo", &p2).await.texts(), ["Hello!", "How can I help?"]);
    assert_eq!(poll(&server, "poll", "jo", &p3).await.texts(), ["Rate us from 1 to 5"]);
    let history = server.get(&format!("/api/chathistory/{BOT}/webhook?limit=20"), &token("jo")).await;
    assert_eq!(
        history.history_texts(),
        [
            "weather",
            "Let me check.",
            "Sky: grey",
            "Tomorrow: sun",
            "hello",
            "Hello!",
            "How can I help?",
            "survey",
            "Rate us from 1 to 5"
        ]
    );
}

/// A reply carrying only `pollId`, to start [`follow`] from.
fn json_reply(poll_id: &str) -> Reply {
    Reply { status: 200, headers: Default::default(), body: json!({"pollId": poll_id}) }
}

/// A message that could not be queued behind a call is refused (503) and
/// holds up nothing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_could_not_be_queued_holds_up_nothing() {
    let receiver = Receiver::start(vec![
        ("/api/current", slow(json!({"sky": "teal"}))),
        ("/api/forecast", Answer::json(json!({"tomorrow": "fog"}))),
    ])
    .await;
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let registry = registry_with(&[("channel-bot.yaml".into(), yaml)]);
    let is_turn: JobFilter = |job| matches!(job, hookline_core::app::queue::Job::Turn(_));
    let server = Server::start_with_flaky_queue(registry, 1, is_turn, Settings::default()).await;
    let first = say(&server, "poll", "kai", "weather").await;
    let refused = say(&server, "poll", "kai", "hello").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    let answers = follow(&server, "poll", "kai", &first).await;
    assert_eq!(answers.last().unwrap().texts(), ["Tomorrow: fog"]);
    // Nothing is left waiting: the next message runs at once.
    assert_eq!(say(&server, "poll", "kai", "survey").await.texts(), ["Rate us from 1 to 5"]);
}
