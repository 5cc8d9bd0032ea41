//! The turn driver (`app::turn::Turns`) on the in-memory store, with a
//! scripted fake of the outbound HTTP port: no network, no clock waits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use hookline_core::Error;
use hookline_core::adapters::store::MemoryStore;
use hookline_core::app::inbound::parse_v2;
use hookline_core::app::outbound::Outbound;
use hookline_core::app::queue::{DeliveryKind, Job, QueueMessage};
use hookline_core::app::records::{Conversation, Direction, LogEntry, PollRecord};
use hookline_core::app::store::{Conversations, Polls, TurnWrite};
use hookline_core::app::turn::{AnswerTo, Calls, Outcome, TurnReply, TurnRequest, Turns, owed_jobs, poll_answer};
use hookline_core::definition::{Bot, Purpose, Registry};
use hookline_core::engine::{CallError, CallOutcome, HttpCall, HttpReply};
use hookline_core::error::Result;
use hookline_core::ids::ConversationKey;
use hookline_core::signing::SigningKey;

const BOT: &str = r#"
id: st-turns
name: Turns
apps:
  - clientId: cs-turns
    algorithm: HS256
    secret: { value: "0123456789abcdef0123456789abcdef" }
instances:
  - id: web
    version: v2
    apps: [cs-turns]
  - id: async
    version: v2
    mode: async
    postUrl: https://hooks.example.com/inbox
    apps: [cs-turns]
fallback: "Sorry?"
tasks:
  - id: greeting
    name: greeting
    triggers: { phrases: [hi] }
    start: hello
    nodes:
      hello: { type: message, text: "Hello!" }
  - id: booking
    name: booking
    triggers: { phrases: [book] }
    start: ask
    nodes:
      ask: { type: question, field: name, prompt: "Your name?", next: thanks }
      thanks: { type: message, text: "Thanks, {{context.name}}." }
  - id: weather
    name: weather
    triggers: { phrases: [weather] }
    start: intro
    nodes:
      intro: { type: message, text: "Checking the weather.", next: fetch }
      fetch:
        type: service
        method: POST
        url: "https://api.example.com/weather?city={{user.city}}"
        body: { city: "{{user.city}}", user: "user {{user.id}}" }
        map: { temp: /current/temp }
        next: report
        onError: sorry
      report: { type: message, text: "It is {{context.temp}} degrees." }
      sorry: { type: message, text: "No weather right now." }
  - id: ticket
    name: ticket
    triggers: { phrases: [ticket] }
    start: create
    nodes:
      create: { type: service, method: POST, url: https://api.example.com/tickets, map: { id: /id }, next: created }
      created: { type: message, text: "Ticket {{context.id}} created." }
  - id: flaky
    name: flaky
    triggers: { phrases: [flaky] }
    start: call
    nodes:
      call: { type: service, url: https://api.example.com/flaky, next: done, onError: call }
      done: { type: message, text: "Done." }
"#;

const APOLOGY: &str = "Sorry, something went wrong. Please try again later.";

/// A call the fake outbound saw.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    url: String,
    body: Option<Value>,
}

/// Answers calls from a script, in order, and records them. An unscripted
/// call fails (a transport error), which a test notices.
struct FakeOutbound {
    script: Mutex<VecDeque<CallOutcome>>,
    seen: Mutex<Vec<Seen>>,
}

impl FakeOutbound {
    fn answering(outcomes: impl IntoIterator<Item = CallOutcome>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(outcomes.into_iter().collect()), seen: Mutex::default() })
    }

    fn calls(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl Outbound for FakeOutbound {
    async fn call(&self, call: &HttpCall, _bot: &Bot, _keys: &[SigningKey], _webhook_id: &str) -> CallOutcome {
        let seen = Seen { method: call.method.clone(), url: call.url.clone(), body: call.body.clone() };
        self.seen.lock().unwrap().push(seen);
        let next = self.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| Err(CallError::Transport("no answer scripted".into())))
    }
}

fn reply(status: u16, body: Value) -> CallOutcome {
    Ok(HttpReply { status, body: body.to_string().into_bytes(), retry_after: None })
}

fn timed_out() -> CallOutcome {
    Err(CallError::Timeout(Duration::from_secs(5)))
}

/// The memory store, whose next `failing` saves answer `Conflict` as if
/// another writer had got there first.
struct Conflicting {
    inner: Arc<MemoryStore>,
    failing: AtomicUsize,
}

impl Conflicting {
    fn new(inner: Arc<MemoryStore>, failing: usize) -> Arc<Self> {
        Arc::new(Self { inner, failing: AtomicUsize::new(failing) })
    }
}

#[async_trait]
impl Conversations for Conflicting {
    async fn load(&self, key: &ConversationKey) -> Result<Option<Conversation>> {
        self.inner.load(key).await
    }

    async fn save_turns(&self, writes: &[(&ConversationKey, TurnWrite<'_>)]) -> Result<()> {
        if self.failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(Error::Conflict);
        }
        self.inner.save_turns(writes).await
    }

    async fn read_log(&self, key: &ConversationKey, after_seq: Option<u64>, limit: usize) -> Result<Vec<LogEntry>> {
        self.inner.read_log(key, after_seq, limit).await
    }

    async fn idle_due(&self, now: i64, limit: usize) -> Result<Vec<(ConversationKey, i64)>> {
        self.inner.idle_due(now, limit).await
    }

    async fn read_outbox(&self, key: &ConversationKey, version: u64) -> Result<Vec<QueueMessage>> {
        self.inner.read_outbox(key, version).await
    }
}

fn bot(yaml: &str) -> Arc<Bot> {
    let registry = Registry::from_sources(&[("t.yaml".into(), yaml.into())], Purpose::Local).unwrap();
    registry.get("st-turns").cloned().unwrap()
}

fn turns(store: Arc<dyn Conversations>, outbound: Arc<FakeOutbound>) -> Turns {
    Turns::new(store, outbound)
}

/// A v2 request body as the webhook reads it, for the sync instance.
fn request(bot: &Arc<Bot>, user: &str, body: Value, trace: &str) -> TurnRequest {
    parse_v2(body.to_string().as_bytes()).unwrap().into_turn(bot, "web", key(user), trace.into())
}

fn message(bot: &Arc<Bot>, user: &str, text: &str, trace: &str) -> TurnRequest {
    request(bot, user, json!({"message": {"type": "text", "val": text}, "from": {"id": user}}), trace)
}

fn polled(bot: &Arc<Bot>, user: &str, text: &str, trace: &str) -> TurnRequest {
    TurnRequest { calls: Calls::Poll, ..message(bot, user, text, trace) }
}

fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

fn key(user: &str) -> ConversationKey {
    ConversationKey::new("st-turns", user)
}

fn answered(outcome: Outcome) -> Box<TurnReply> {
    match outcome {
        Outcome::Answered(reply) => reply,
        Outcome::Busy => panic!("expected an answer, the conversation was busy"),
    }
}

fn texts(reply: &TurnReply) -> Vec<&str> {
    reply.messages.iter().map(|m| m.val.as_str().unwrap_or("<not text>")).collect()
}

fn end_reason(reply: &TurnReply) -> Option<&str> {
    reply.completion.as_ref().map(|c| c.end_reason.as_str())
}

async fn log(store: &MemoryStore, user: &str) -> Vec<LogEntry> {
    store.read_log(&key(user), None, 1000).await.unwrap()
}

async fn conversation(store: &MemoryStore, user: &str) -> Conversation {
    store.load(&key(user)).await.unwrap().expect("the conversation is stored")
}

/// What the user's conversation's last write owes, as the relay queues it.
async fn owed(store: &MemoryStore, bot: &Bot, user: &str) -> Vec<QueueMessage> {
    owed_jobs(store, bot, &key(user), &conversation(store, user).await).await.unwrap()
}

fn post_url_webhook_ids(jobs: &[QueueMessage]) -> Vec<String> {
    let ids = jobs.iter().filter_map(|m| match &m.job {
        Job::Deliver(delivery) if delivery.kind == DeliveryKind::PostUrl => Some(delivery.webhook_id.clone()),
        _ => None,
    });
    ids.collect()
}

#[tokio::test]
async fn a_text_turn_is_answered_and_saved_with_its_log_in_one_write() {
    let (bot, store, outbound) = (bot(BOT), Arc::new(MemoryStore::new()), FakeOutbound::answering([]));
    let turns = turns(store.clone(), outbound.clone());

    let reply = answered(turns.run(&message(&bot, "u1", "hi", "tr-1"), far_deadline()).await.unwrap());

    assert_eq!(texts(&reply), ["Hello!"]);
    assert_eq!(end_reason(&reply), Some("Fulfilled"));
    assert_eq!(reply.poll_id, None);
    assert_eq!(conversation(&store, "u1").await.version, 1);
    let log = log(&store, "u1").await;
    assert_eq!(log.iter().map(|e| (e.seq, e.direction)).collect::<Vec<_>>(), [(0, Direction::In), (1, Direction::Out)]);
    assert!(log.iter().all(|e| e.trace_id == "tr-1"));
    assert_eq!(log[0].body["request"]["message"]["val"], "hi");
    assert_eq!(log[1].message_id, reply.messages[0].message_id);
    assert!(outbound.calls().is_empty());
}

/// A turn retried after a concurrent write runs again on the fresh state,
/// reusing the outcome of the call it made: the customer's API is called once.
#[tokio::test]
async fn a_turn_whose_write_conflicts_is_run_again_without_calling_again() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let outbound = FakeOutbound::answering([
        reply(200, json!({"current": {"temp": 20}})),
        reply(200, json!({"current": {"temp": 21}})),
    ]);
    let turns = turns(Conflicting::new(store.clone(), 1), outbound.clone());

    let reply = answered(turns.run(&message(&bot, "u1", "weather", "tr-1"), far_deadline()).await.unwrap());

    assert_eq!(texts(&reply), ["Checking the weather.", "It is 20 degrees."]);
    assert_eq!(outbound.calls().len(), 1);
    assert_eq!(conversation(&store, "u1").await.version, 1);
    let log = log(&store, "u1").await;
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(log[2].body["val"], "It is 20 degrees.");
}

#[tokio::test]
async fn an_inline_call_is_made_with_the_rendered_request_and_its_answer_feeds_the_flow() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let outbound = FakeOutbound::answering([reply(200, json!({"current": {"temp": 21}}))]);
    let turns = turns(store.clone(), outbound.clone());
    let body =
        json!({"message": {"type": "text", "val": "weather"}, "from": {"id": "u1", "userInfo": {"city": "New York"}}});

    let reply = answered(turns.run(&request(&bot, "u1", body, "tr-1"), far_deadline()).await.unwrap());

    let expected = Seen {
        method: "POST".into(),
        url: "https://api.example.com/weather?city=New%20York".into(),
        body: Some(json!({"city": "New York", "user": "user u1"})),
    };
    assert_eq!(outbound.calls(), [expected]);
    assert_eq!(texts(&reply), ["Checking the weather.", "It is 21 degrees."]);
    assert_eq!(end_reason(&reply), Some("Fulfilled"));
    assert_eq!(log(&store, "u1").await.len(), 3);
}

#[tokio::test]
async fn a_failing_inline_call_takes_on_error() {
    let bot = bot(BOT);
    let outbound = FakeOutbound::answering([reply(500, json!({"current": {"temp": 21}}))]);
    let turns = turns(Arc::new(MemoryStore::new()), outbound.clone());

    let reply = answered(turns.run(&message(&bot, "u1", "weather", "tr-1"), far_deadline()).await.unwrap());

    assert_eq!(texts(&reply), ["Checking the weather.", "No weather right now."]);
    assert_eq!(outbound.calls().len(), 1);
}

#[tokio::test]
async fn a_call_that_times_out_without_on_error_apologises_and_cancels_the_task() {
    let bot = bot(BOT);
    let turns = turns(Arc::new(MemoryStore::new()), FakeOutbound::answering([timed_out()]));

    let reply = answered(turns.run(&message(&bot, "u1", "ticket", "tr-1"), far_deadline()).await.unwrap());

    assert_eq!(texts(&reply), [APOLOGY]);
    assert_eq!(end_reason(&reply), Some("Cancelled"));
    assert_eq!(reply.completion.as_ref().unwrap().completed_task_id, "ticket");
}

#[tokio::test]
async fn a_flow_that_keeps_calling_is_abandoned_after_ten_calls() {
    let bot = bot(BOT);
    let outbound = FakeOutbound::answering((0..20).map(|_| reply(500, json!({}))));
    let turns = turns(Arc::new(MemoryStore::new()), outbound.clone());

    let reply = answered(turns.run(&message(&bot, "u1", "flaky", "tr-1"), far_deadline()).await.unwrap());

    assert_eq!(outbound.calls().len(), 10);
    assert_eq!(texts(&reply), [APOLOGY]);
    assert_eq!(end_reason(&reply), Some("Cancelled"));
}

#[tokio::test]
async fn a_polled_flow_that_keeps_calling_is_abandoned_after_ten_calls_across_its_steps() {
    let bot = bot(BOT);
    let outbound = FakeOutbound::answering((0..20).map(|_| reply(500, json!({}))));
    let turns = turns(Arc::new(MemoryStore::new()), outbound.clone());
    let mut step = *answered(turns.run(&polled(&bot, "u1", "flaky", "tr-1"), far_deadline()).await.unwrap());

    for _ in 0..20 {
        let Some(poll_id) = step.poll_id.clone() else { break };
        step = turns.resume(&bot, &key("u1"), &poll_id, far_deadline()).await.unwrap().unwrap();
    }

    assert_eq!(outbound.calls().len(), 10);
    assert_eq!(step.poll_id, None);
    assert_eq!(texts(&step), [APOLOGY]);
    assert_eq!(end_reason(&step), Some("Cancelled"));
}

#[tokio::test]
async fn a_polled_turn_answers_up_to_its_call_and_resume_answers_the_rest_once() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let outbound = FakeOutbound::answering([reply(200, json!({"current": {"temp": 21}}))]);
    let turns = turns(store.clone(), outbound.clone());

    let first = answered(turns.run(&polled(&bot, "u1", "weather", "tr-1"), far_deadline()).await.unwrap());

    assert_eq!(texts(&first), ["Checking the weather."]);
    assert_eq!(first.completion, None);
    let poll_id = first.poll_id.clone().expect("a pollId for the rest");
    let pending = conversation(&store, "u1").await.pending.expect("the call waits");
    assert_eq!(
        (pending.poll_id.as_str(), pending.call.url.as_str()),
        (poll_id.as_str(), "https://api.example.com/weather?city=")
    );
    assert_eq!(store.get_poll(&poll_id).await.unwrap().expect("a poll record").answer, None);
    let continuation = owed(&store, &bot, "u1").await;
    assert!(continuation.iter().any(|m| matches!(&m.job, Job::Resume { poll_id: p, .. } if *p == poll_id)));
    assert!(outbound.calls().is_empty(), "polling leaves the call to the worker");

    let rest =
        turns.resume(&bot, &key("u1"), &poll_id, far_deadline()).await.unwrap().expect("the call was waited for");

    assert_eq!(outbound.calls().len(), 1);
    assert_eq!(texts(&rest), ["It is 21 degrees."]);
    assert_eq!(end_reason(&rest), Some("Fulfilled"));
    assert_eq!(rest.poll_id, None);
    assert_eq!(conversation(&store, "u1").await.pending, None);
    let answer = store.get_poll(&poll_id).await.unwrap().unwrap().answer.expect("the poll is answered");
    assert_eq!((answer.from_seq, answer.end_seq), (2, 3));
    let read = poll_answer(store.as_ref(), &key("u1"), &answer).await.unwrap();
    assert_eq!(read.messages, rest.messages);

    let again = turns.resume(&bot, &key("u1"), &poll_id, far_deadline()).await.unwrap().expect("the saved answer");

    assert_eq!(again.messages, rest.messages);
    assert_eq!(outbound.calls().len(), 1, "a resumed poll is not called again");
    assert_eq!(log(&store, "u1").await.len(), 3);
}

#[tokio::test]
async fn a_resumed_call_whose_write_conflicts_is_not_made_again() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let outbound = FakeOutbound::answering([reply(200, json!({"current": {"temp": 21}}))]);
    let conflicting = Conflicting::new(store.clone(), 0);
    let turns = turns(conflicting.clone(), outbound.clone());
    let first = answered(turns.run(&polled(&bot, "u1", "weather", "tr-1"), far_deadline()).await.unwrap());
    conflicting.failing.store(1, Ordering::SeqCst);

    let rest = turns.resume(&bot, &key("u1"), &first.poll_id.unwrap(), far_deadline()).await.unwrap().unwrap();

    assert_eq!(texts(&rest), ["It is 21 degrees."]);
    assert_eq!(outbound.calls().len(), 1);
    assert_eq!(log(&store, "u1").await.len(), 3);
}

#[tokio::test]
async fn a_message_for_a_conversation_waiting_for_a_call_is_busy_and_can_queue_behind_it() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let turns = turns(store.clone(), FakeOutbound::answering([]));
    answered(turns.run(&polled(&bot, "u1", "weather", "tr-1"), far_deadline()).await.unwrap());
    let second = polled(&bot, "u1", "hi", "tr-2");

    let outcome = turns.run(&second, far_deadline()).await.unwrap();

    assert!(matches!(outcome, Outcome::Busy), "{outcome:?}");
    let record = PollRecord::new("po-2", &key("u1"), Some("web"), None, chrono::Utc::now().timestamp());
    let queued = turns.queue_behind(&second, &record, far_deadline()).await.unwrap().expect("queued");
    assert_eq!(queued.poll_id.as_deref(), Some("po-2"));
    let queued: Vec<String> = conversation(&store, "u1").await.queued.into_iter().map(|q| q.trace_id).collect();
    assert_eq!(queued, ["tr-2"]);
    assert_eq!(store.get_poll("po-2").await.unwrap().expect("its poll record").answer, None);
    assert_eq!(log(&store, "u1").await.len(), 2, "a queued message is not logged before it runs");

    turns.forget_queued(&bot, &key("u1"), "tr-2").await.unwrap();

    assert!(conversation(&store, "u1").await.queued.is_empty());
}

#[tokio::test]
async fn a_queued_message_runs_after_the_call_into_its_poll_record_and_caller_messages_wait_behind_it() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let turns = turns(store.clone(), FakeOutbound::answering([reply(200, json!({"current": {"temp": 21}}))]));
    let first = answered(turns.run(&polled(&bot, "u1", "weather", "tr-1"), far_deadline()).await.unwrap());
    let queued = TurnRequest { answer_to: AnswerTo::Poll("po-2".into()), ..polled(&bot, "u1", "hi", "tr-2") };
    let record = PollRecord::new("po-2", &key("u1"), Some("web"), None, chrono::Utc::now().timestamp());
    assert!(turns.queue_behind(&queued, &record, far_deadline()).await.unwrap().is_some());
    turns.resume(&bot, &key("u1"), &first.poll_id.unwrap(), far_deadline()).await.unwrap().unwrap();

    let overtaking = turns.run(&polled(&bot, "u1", "hi", "tr-3"), far_deadline()).await.unwrap();
    assert!(matches!(overtaking, Outcome::Busy), "a new message waits behind the queued one: {overtaking:?}");
    let reply = answered(turns.run(&queued, far_deadline()).await.unwrap());

    assert_eq!(texts(&reply), ["Hello!"]);
    assert!(conversation(&store, "u1").await.queued.is_empty());
    let answer = store.get_poll("po-2").await.unwrap().unwrap().answer.expect("the queued message is answered");
    let read = poll_answer(store.as_ref(), &key("u1"), &answer).await.unwrap();
    assert_eq!(read.messages, reply.messages);
}

#[tokio::test]
async fn abandoning_a_waiting_call_apologises_cancels_and_frees_the_conversation() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let outbound = FakeOutbound::answering([]);
    let turns = turns(store.clone(), outbound.clone());
    let first = answered(turns.run(&polled(&bot, "u1", "weather", "tr-1"), far_deadline()).await.unwrap());

    let reply = turns.abandon(&bot, &key("u1"), &first.poll_id.unwrap(), far_deadline()).await.unwrap().unwrap();

    assert_eq!(texts(&reply), [APOLOGY]);
    assert_eq!(end_reason(&reply), Some("Cancelled"));
    assert!(outbound.calls().is_empty());
    let after = answered(turns.run(&polled(&bot, "u1", "hi", "tr-2"), far_deadline()).await.unwrap());
    assert_eq!(texts(&after), ["Hello!"]);
}

#[tokio::test]
async fn a_queued_message_delivered_twice_is_answered_from_the_log_without_running_again() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let turns = turns(store.clone(), FakeOutbound::answering([]));
    let queued = || TurnRequest { answer_to: AnswerTo::PostUrl("async".into()), ..message(&bot, "u1", "book", "tr-q") };

    let mut changes = store.changes().await.unwrap().expect("the memory store feeds its writes");
    let first = answered(turns.run(&queued(), far_deadline()).await.unwrap());
    let owes = owed(&store, &bot, "u1").await;
    let second = answered(turns.run(&queued(), far_deadline()).await.unwrap());

    assert_eq!(texts(&first), ["Your name?"]);
    assert_eq!(second.messages, first.messages);
    assert_eq!(post_url_webhook_ids(&owes), [format!("msg_{}", first.messages[0].message_id), "end_tr-q".into()]);
    let fed = changes.next().await.unwrap().expect("a write");
    assert_eq!(fed.len(), 1, "one write owes: the second delivery wrote nothing");
    assert_eq!(fed[0].conversation.last_turn.as_ref().map(|t| t.trace_id.as_str()), Some("tr-q"));
    assert_eq!(log(&store, "u1").await.len(), 2);
    assert_eq!(conversation(&store, "u1").await.version, 1);
}

#[tokio::test]
async fn a_queued_message_delivered_again_after_later_turns_is_not_run_again() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let turns = turns(store.clone(), FakeOutbound::answering([]));
    let queued = || TurnRequest { answer_to: AnswerTo::PostUrl("async".into()), ..message(&bot, "u1", "book", "tr-q") };
    answered(turns.run(&queued(), far_deadline()).await.unwrap());
    answered(turns.run(&message(&bot, "u1", "Ada", "tr-2"), far_deadline()).await.unwrap());

    let again = answered(turns.run(&queued(), far_deadline()).await.unwrap());

    assert!(again.messages.is_empty());
    assert_eq!(log(&store, "u1").await.len(), 4);
}

#[tokio::test]
async fn a_session_idle_past_the_timeout_ends_and_the_next_message_starts_afresh() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let turns = turns(store.clone(), FakeOutbound::answering([]));
    answered(turns.run(&message(&bot, "u1", "book", "tr-1"), far_deadline()).await.unwrap());
    let mut idle = conversation(&store, "u1").await;
    let idle_ms = i64::from(bot.def.session.idle_timeout_minutes) * 60_000;
    idle.session.as_mut().expect("a session").last_active_at -= idle_ms + 1_000;
    let write = TurnWrite::of(&idle, idle.version, i64::MAX);
    store.save_turn(&key("u1"), write).await.unwrap();

    let reply = answered(turns.run(&message(&bot, "u1", "Ada", "tr-2"), far_deadline()).await.unwrap());

    assert_eq!(texts(&reply), ["Sorry?"], "the question of the ended session is not answered");
    assert_eq!(reply.completion, None);
    let log = log(&store, "u1").await;
    assert_ne!(log[3].session_id, log[0].session_id);
}

#[tokio::test]
async fn a_session_active_within_the_timeout_takes_the_answer() {
    let bot = bot(BOT);
    let turns = turns(Arc::new(MemoryStore::new()), FakeOutbound::answering([]));
    answered(turns.run(&message(&bot, "u1", "book", "tr-1"), far_deadline()).await.unwrap());

    let reply = answered(turns.run(&message(&bot, "u1", "Ada", "tr-2"), far_deadline()).await.unwrap());

    assert_eq!(texts(&reply), ["Thanks, Ada."]);
}

#[tokio::test]
async fn user_info_beyond_a_hundred_keys_across_turns_is_refused_and_not_saved() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let turns = turns(store.clone(), FakeOutbound::answering([]));
    let with_keys = |keys: std::ops::Range<usize>, trace: &str| {
        let info: Map<String, Value> = keys.map(|i| (format!("k{i}"), json!("v"))).collect();
        let body = json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "u1", "userInfo": info}});
        request(&bot, "u1", body, trace)
    };
    answered(turns.run(&with_keys(0..50, "tr-1"), far_deadline()).await.unwrap());
    answered(turns.run(&with_keys(50..100, "tr-2"), far_deadline()).await.unwrap());

    let refused = turns.run(&with_keys(100..101, "tr-3"), far_deadline()).await;

    assert!(matches!(refused, Err(Error::InvalidPayload(_))), "{refused:?}");
    let stored = conversation(&store, "u1").await;
    assert_eq!((stored.version, stored.user_info.len()), (2, 100));
    assert_eq!(log(&store, "u1").await.len(), 4);
}

#[tokio::test]
async fn a_deadline_already_past_times_out_without_calling_or_writing() {
    let (bot, store) = (bot(BOT), Arc::new(MemoryStore::new()));
    let outbound = FakeOutbound::answering([reply(200, json!({"current": {"temp": 21}}))]);
    let turns = turns(store.clone(), outbound.clone());
    let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();

    let text = turns.run(&message(&bot, "u1", "hi", "tr-1"), past).await;
    let call = turns.run(&message(&bot, "u1", "weather", "tr-2"), past).await;

    assert!(matches!(text, Err(Error::Timeout(_))), "{text:?}");
    assert!(matches!(call, Err(Error::Timeout(_))), "{call:?}");
    assert!(outbound.calls().is_empty());
    assert_eq!(store.load(&key("u1")).await.unwrap(), None);
    assert!(log(&store, "u1").await.is_empty());
}
