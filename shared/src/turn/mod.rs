//! Runs one user turn: load the conversation, run the engine (making the
//! calls its service and webhook nodes wait for, or leaving the first one to
//! the worker when the client polls), append the turn to the log and save,
//! all-or-nothing, retrying when another writer got there first.

pub(crate) mod jobs;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::{Instant, timeout_at};

use crate::config::Bot;
use crate::delivery::{HttpCall, HttpReply, Outbound};
use crate::engine::{self, Input, Output, TurnContext, merge_tags};
use crate::error::{Error, Result};
use crate::ids;
use crate::protocol::{Tag, TaskCompletion, V2Data, V2Response, VERSION_V2};
use crate::queue::QueueMessage;
use crate::session::{
    Conversation, ConversationKey, Direction, LastTurn, LogEntry, PendingCall, PollAnswer, PollRecord, QueuedMessage,
    Session,
};
use crate::store::{Store, TurnWrite};

/// A conversation item stays well under DynamoDB's 400 KB item limit.
const MAX_CONVERSATION_BYTES: usize = 300 * 1024;
const MAX_USER_KEYS: usize = 100;
/// A turn's log fits one TransactWriteItems (100 items: the conversation, the
/// user's message and two poll records besides). Flow definitions stay well
/// below; only what a webhook answers could go beyond.
const MAX_OUTPUTS_PER_TURN: usize = 90;
/// Service and sync webhook calls one turn may make.
const MAX_CALLS_PER_TURN: usize = 10;
const LOCK_STRIPES: usize = 1024;
/// Time to save a polled step once its call is made.
const SAVE_AFTER_CALL: Duration = Duration::from_secs(10);
/// Messages that may wait behind a polled call.
const MAX_QUEUED_MESSAGES: usize = 20;
/// Queued messages remembered as applied.
const MAX_APPLIED_REMEMBERED: usize = 20;
/// A log entry stays under DynamoDB's 400 KB item limit, a turn's log under
/// the 4 MB of one transaction.
const MAX_LOG_ENTRY_BYTES: usize = 350 * 1024;
const MAX_TURN_LOG_BYTES: usize = 3 * 1024 * 1024;
/// Deliveries kept with a turn for a worker that stops before queuing them.
const MAX_KEPT_JOBS_BYTES: usize = 64 * 1024;

/// How the calls a flow waits for are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// Within the turn, before it answers.
    Inline,
    /// By the worker: the turn answers with what came before the first call
    /// and a pollId for the rest.
    Poll,
}

/// Where a turn's answer goes besides the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerTo {
    /// Only the HTTP answer.
    Caller,
    /// Into this poll record (a message queued behind a call).
    Poll(String),
    /// Each message to this instance's POST_URL (asynchronous mode).
    PostUrl(String),
}

pub struct TurnRequest {
    pub bot: Arc<Bot>,
    pub user_id: String,
    pub new_session: bool,
    pub input: Input,
    pub user_info: Option<Map<String, Value>>,
    pub user_tags: Vec<Tag>,
    pub message_tags: Vec<Tag>,
    pub trace_id: String,
    pub client_ip: Option<String>,
    pub calls: Calls,
    pub answer_to: AnswerTo,
    /// When the request arrived; reported in timeouts.
    pub started: Instant,
}

#[derive(Debug)]
pub struct TurnReply {
    pub messages: Vec<V2Data>,
    /// `{formDef, formInitialization}` when the turn sent a form.
    pub form: Option<Value>,
    pub completion: Option<TaskCompletion>,
    /// Polling: where the rest of the turn will be found.
    pub poll_id: Option<String>,
    /// Work for the queue now that the turn is saved.
    pub jobs: Vec<QueueMessage>,
}

impl TurnReply {
    /// The regular v2 answer.
    pub fn v2(&self, key: &ConversationKey) -> V2Response {
        V2Response {
            to: key.user_id.clone(),
            from: key.bot_id.clone(),
            data: self.messages.clone(),
            version: VERSION_V2,
            end_of_task: self.completion.is_some(),
            completion: self.completion.clone(),
            form: self.form.clone(),
            poll_id: self.poll_id.clone(),
        }
    }
}

#[derive(Debug)]
pub enum Outcome {
    Answered(Box<TurnReply>),
    /// The conversation waits for a call the worker makes (polling): the
    /// message must queue behind it.
    Busy,
}

pub struct Turns {
    store: Arc<dyn Store>,
    outbound: Outbound,
    /// Serialises one user's turns inside this process, so concurrent requests
    /// queue instead of spinning on conflicts; other processes (Lambda
    /// instances) are kept consistent by the store's conditional write.
    locks: Vec<Mutex<()>>,
}

/// What a turn starts from: a user's message, or a call's outcome for a
/// conversation that waited for it.
enum Step<'r> {
    Message(&'r TurnRequest),
    /// The call's outcome, or `None` to give up on it.
    Resume {
        poll_id: &'r str,
        outcome: Option<Result<HttpReply, String>>,
    },
}

impl Turns {
    pub fn new(store: Arc<dyn Store>, outbound: Outbound) -> Self {
        Self { store, outbound, locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect() }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The conversation, read while this process's writers of it wait.
    async fn lock_and_load(
        &self,
        key: &ConversationKey,
        deadline: Instant,
        started: Instant,
    ) -> Result<(MutexGuard<'_, ()>, Option<Conversation>)> {
        let timed_out = |_| Error::Timeout(deadline.saturating_duration_since(started));
        let serialised = timeout_at(deadline, self.lock(key)).await.map_err(timed_out)?;
        let stored = timeout_at(deadline, self.store.load(key)).await.map_err(timed_out)??;
        Ok((serialised, stored))
    }

    async fn lock(&self, key: &ConversationKey) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        self.locks[(hasher.finish() % LOCK_STRIPES as u64) as usize].lock().await
    }

    /// Runs the turn, answering `Error::Timeout` if it cannot be committed by
    /// `deadline`. A write that has started is always awaited: the client is
    /// never told "timed out" about a turn that was saved. A queued turn
    /// delivered a second time is not run again: its saved answer comes back.
    pub async fn run(&self, request: &TurnRequest, deadline: Instant) -> Result<Outcome> {
        let key = ConversationKey::new(request.bot.id(), &request.user_id);
        let (_serialised, stored) = self.lock_and_load(&key, deadline, request.started).await?;
        if let Some(last) =
            stored.as_ref().and_then(|c| c.last_turn.as_ref()).filter(|t| t.trace_id == request.trace_id)
        {
            let post_url = match &request.answer_to {
                AnswerTo::PostUrl(instance) => Some(instance.as_str()),
                _ => None,
            };
            let saved = self.saved_answer(&request.bot, &key, last, post_url, request.client_ip.as_deref()).await;
            return saved.map(|reply| Outcome::Answered(Box::new(reply)));
        }
        if stored.as_ref().is_some_and(|c| c.applied.contains(&request.trace_id)) {
            // Applied before later turns: what it owed was queued then.
            tracing::warn!(trace_id = %request.trace_id, "a queued message delivered again after later turns: not run again");
            let reply =
                TurnReply { messages: Vec::new(), form: None, completion: None, poll_id: None, jobs: Vec::new() };
            return Ok(Outcome::Answered(Box::new(reply)));
        }
        let reply = self.commit(&request.bot, &key, Step::Message(request), stored, deadline, request.started).await?;
        Ok(reply.map_or(Outcome::Busy, |reply| Outcome::Answered(Box::new(reply))))
    }

    /// Makes the call a polled conversation waits for under `poll_id` and
    /// runs the flow on to the next call or question. `None` if the
    /// conversation no longer waits for that poll (it was resumed already).
    pub async fn resume(
        &self,
        bot: &Arc<Bot>,
        user_id: &str,
        poll_id: &str,
        deadline: Instant,
    ) -> Result<Option<TurnReply>> {
        let started = Instant::now();
        let key = ConversationKey::new(bot.id(), user_id);
        let timed_out = |_| Error::Timeout(deadline.saturating_duration_since(started));
        let stored = timeout_at(deadline, self.store.load(&key)).await.map_err(timed_out)??.unwrap_or_default();
        let Some(pending) = stored.pending.filter(|p| p.poll_id == poll_id) else {
            // Resumed already: if that was the last step, give what it owes again.
            return match stored.last_turn.filter(|t| t.answered_poll.as_deref() == Some(poll_id)) {
                Some(last) => self.saved_answer(bot, &key, &last, None, None).await.map(Some),
                None => Ok(None),
            };
        };
        // Not serialised while the call runs: a message arriving meanwhile
        // is told at once that it queues behind the call.
        let outcome = self.make_call(bot, &pending.call, deadline, started).await?;
        // The call is made: saving what follows gets time of its own, or a
        // call that used the whole deadline could never be saved.
        let (deadline, saving) = (Instant::now() + SAVE_AFTER_CALL, Instant::now());
        let (_serialised, stored) = self.lock_and_load(&key, deadline, saving).await?;
        self.commit(bot, &key, Step::Resume { poll_id, outcome: Some(outcome) }, stored, deadline, started).await
    }

    /// Records that the message queues behind the conversation's call (or
    /// the messages already queued behind it), with the poll record its
    /// answer will go to. `false` if the conversation is free by now.
    pub async fn queue_behind(&self, request: &TurnRequest, record: &PollRecord, deadline: Instant) -> Result<bool> {
        let key = ConversationKey::new(request.bot.id(), &request.user_id);
        let timed_out = |_| Error::Timeout(deadline.saturating_duration_since(request.started));
        let _serialised = timeout_at(deadline, self.lock(&key)).await.map_err(timed_out)?;
        let retention = i64::from(request.bot.def.session.retention_days) * 86_400;
        let mut attempt = 0;
        loop {
            let stored = timeout_at(deadline, self.store.load(&key)).await.map_err(timed_out)??;
            let now = Utc::now().timestamp();
            let Some(mut conversation) = stored.map(|mut c| {
                c.drop_stale_queued(now);
                c
            }) else {
                return Ok(false);
            };
            if conversation.pending.is_none() && conversation.queued.is_empty() {
                return Ok(false);
            }
            if conversation.queued.len() >= MAX_QUEUED_MESSAGES {
                return Err(Error::Busy);
            }
            conversation.queued.push(QueuedMessage { trace_id: request.trace_id.clone(), queued_at: now });
            let write = TurnWrite {
                conversation: &conversation,
                expected_version: conversation.version,
                log: &[],
                expires_at: Utc::now().timestamp() + retention,
                polls: std::slice::from_ref(record),
            };
            match self.store.save_turn(&key, write).await {
                Err(Error::Conflict) => {
                    timeout_at(deadline, backoff(attempt)).await.map_err(timed_out)?;
                    attempt += 1;
                }
                outcome => return outcome.map(|()| true),
            }
        }
    }

    /// Forgets a queued message that will not run (its job could not be
    /// queued, or the bot refused it), so it holds nothing up.
    pub async fn forget_queued(&self, bot: &Bot, user_id: &str, trace_id: &str) -> Result<()> {
        let key = ConversationKey::new(bot.id(), user_id);
        let _serialised = self.lock(&key).await;
        let retention = i64::from(bot.def.session.retention_days) * 86_400;
        for attempt in 0..5 {
            let Some(mut conversation) = self.store.load(&key).await? else {
                return Ok(());
            };
            if !conversation.queued.iter().any(|q| q.trace_id == trace_id) {
                return Ok(());
            }
            conversation.queued.retain(|q| q.trace_id != trace_id);
            let write = TurnWrite {
                conversation: &conversation,
                expected_version: conversation.version,
                log: &[],
                expires_at: Utc::now().timestamp() + retention,
                polls: &[],
            };
            match self.store.save_turn(&key, write).await {
                Err(Error::Conflict) => backoff(attempt).await,
                outcome => return outcome,
            }
        }
        Err(Error::Conflict)
    }

    /// Gives up on the call a polled conversation waits for under `poll_id`
    /// (it cannot be resumed): the user gets an apology and the session
    /// ends, so the conversation takes messages again.
    pub async fn abandon(
        &self,
        bot: &Arc<Bot>,
        user_id: &str,
        poll_id: &str,
        deadline: Instant,
    ) -> Result<Option<TurnReply>> {
        let started = Instant::now();
        let key = ConversationKey::new(bot.id(), user_id);
        let (_serialised, stored) = self.lock_and_load(&key, deadline, started).await?;
        self.commit(bot, &key, Step::Resume { poll_id, outcome: None }, stored, deadline, started).await
    }

    /// Runs the step on the stored conversation and saves it; on a
    /// concurrent write, reloads and runs again (a resumed call is not made
    /// again: its outcome is reused). `None` when the step does not apply: a
    /// message for a conversation waiting for a call, or a resume of a call
    /// no longer waited for.
    async fn commit(
        &self,
        bot: &Arc<Bot>,
        key: &ConversationKey,
        step: Step<'_>,
        mut stored: Option<Conversation>,
        deadline: Instant,
        started: Instant,
    ) -> Result<Option<TurnReply>> {
        let timed_out = |_| Error::Timeout(deadline.saturating_duration_since(started));
        let mut attempt = 0;
        loop {
            let mut conversation = stored.clone().unwrap_or_default();
            conversation.drop_stale_queued(Utc::now().timestamp());
            let applies = match &step {
                // Messages from the queue come in order; others wait for those queued.
                Step::Message(request) => {
                    conversation.pending.is_none()
                        && (request.answer_to != AnswerTo::Caller || conversation.queued.is_empty())
                }
                Step::Resume { poll_id, .. } => conversation.pending.as_ref().is_some_and(|p| p.poll_id == *poll_id),
            };
            if !applies {
                return Ok(None);
            }
            let begun = begin(bot, key, &step, conversation)?;
            let ran = self.run_engine(bot, &step, &begun, deadline, started).await?;
            let finished = finish(bot, key, &step, begun, ran)?;
            let retention = i64::from(bot.def.session.retention_days) * 86_400;
            let write = TurnWrite {
                conversation: &finished.conversation,
                expected_version: stored.as_ref().map_or(0, |c| c.version),
                log: &finished.log,
                expires_at: Utc::now().timestamp() + retention,
                polls: &finished.polls,
            };
            if Instant::now() >= deadline {
                return Err(Error::Timeout(deadline.saturating_duration_since(started)));
            }
            match self.store.save_turn(key, write).await {
                Err(Error::Conflict) => {
                    tracing::debug!(attempt, "conversation written concurrently; retrying the turn");
                    timeout_at(deadline, backoff(attempt)).await.map_err(timed_out)?;
                    attempt += 1;
                    stored = timeout_at(deadline, self.store.load(key)).await.map_err(timed_out)??;
                }
                outcome => return outcome.map(|()| Some(finished.reply)),
            }
        }
    }

    /// The answer of a turn already saved, rebuilt from the log, with the
    /// deliveries it owes (which receivers drop by webhook-id if they had them).
    async fn saved_answer(
        &self,
        bot: &Bot,
        key: &ConversationKey,
        last: &LastTurn,
        post_url: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<TurnReply> {
        let entries = self.store.read_log(key, last.first_seq.checked_sub(1), MAX_OUTPUTS_PER_TURN + 1).await?;
        let entries: Vec<LogEntry> = entries.into_iter().filter(|e| e.trace_id == last.trace_id).collect();
        let sent = sent_messages(&entries);
        let mut jobs = Vec::new();
        if let Some(instance) = post_url.and_then(|id| bot.instance_by_id(id)) {
            jobs = jobs::post_url(bot, instance, key, &sent, last.completion.as_ref(), &last.trace_id);
        }
        jobs.extend(jobs::events(bot, key, &entries, client_ip));
        jobs.extend(last.jobs.iter().cloned());
        let (messages, form) = split_form(sent);
        let completion = last.completion.clone();
        Ok(TurnReply { messages, form, completion, poll_id: last.next_poll.clone(), jobs })
    }

    async fn make_call(
        &self,
        bot: &Bot,
        call: &HttpCall,
        deadline: Instant,
        started: Instant,
    ) -> Result<Result<HttpReply, String>> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::Timeout(deadline.saturating_duration_since(started)));
        }
        let call = HttpCall { timeout: call.timeout.min(remaining), ..call.clone() };
        let webhook_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let outcome = self.outbound.call(&call, bot, bot.signing_keys(), &webhook_id).await;
        match &outcome {
            Ok(reply) => {
                tracing::info!(method = %call.method, url = %call.url, status = reply.status, "flow call answered")
            }
            Err(reason) => tracing::warn!(method = %call.method, url = %call.url, %reason, "flow call failed"),
        }
        Ok(outcome)
    }
}

/// Exponential backoff with full jitter, capped low: contention is between a
/// handful of writers of one conversation, and the deadline bounds the total.
async fn backoff(attempt: u32) {
    let cap = (10u64 << attempt.min(5)).min(200);
    let wait = rand::rng().random_range(cap / 4..=cap);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// The conversation as the step starts: the session still active (not
/// closed, not idle past the timeout), user data merged in.
struct Begun {
    conversation: Conversation,
    active: Option<Session>,
    ctx: TurnContext,
    now: chrono::DateTime<Utc>,
}

fn begin(bot: &Bot, key: &ConversationKey, step: &Step<'_>, mut conversation: Conversation) -> Result<Begun> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let idle_ms = i64::from(bot.def.session.idle_timeout_minutes) * 60_000;
    let active = match step {
        Step::Message(request) => {
            conversation.session.take().filter(|s| !request.new_session && now_ms - s.last_active_at < idle_ms)
        }
        // The session waited for the call: it is as active as when it started it.
        Step::Resume { .. } => conversation.session.take(),
    };
    if let Step::Message(request) = step {
        for (name, value) in request.user_info.iter().flatten() {
            if !matches!(value, Value::Null) && value.as_str() != Some("") {
                conversation.user_info.insert(name.clone(), value.clone());
            }
        }
        merge_tags(&mut conversation.user_tags, request.user_tags.clone());
    }
    // User-level data outlives sessions: bound it so no one can grow it forever.
    if conversation.user_info.len() > MAX_USER_KEYS || conversation.user_tags.len() > MAX_USER_KEYS {
        let detail = format!("a user keeps at most {MAX_USER_KEYS} userInfo keys and {MAX_USER_KEYS} user-level tags");
        return Err(Error::InvalidPayload(detail));
    }
    let mut user = conversation.user_info.clone();
    user.insert("id".into(), Value::String(key.user_id.clone()));
    let ctx = TurnContext {
        now_ms,
        new_session_id: ids::session_id(),
        user: Value::Object(user),
        user_tags: conversation.user_tags.clone(),
    };
    Ok(Begun { conversation, active, ctx, now })
}

/// What the engine did in one step, calls included.
struct Ran {
    outputs: Vec<Output>,
    completion: Option<TaskCompletion>,
    session: Option<Session>,
    /// Polling: the call left for the worker, and the calls made for this
    /// message by then (it included).
    pending: Option<HttpCall>,
    calls_made: usize,
    effects: Vec<HttpCall>,
}

impl Ran {
    /// Adds what a continued turn produced; its session stays with the turn.
    fn absorb(&mut self, turn: &mut engine::Turn) {
        self.outputs.append(&mut turn.outputs);
        self.completion = turn.completion.take().or(self.completion.take());
        self.effects.append(&mut turn.effects);
    }
}

impl Turns {
    /// Runs the engine, making each call it waits for within the deadline,
    /// or (polling) stopping at the first one. A turn retried after a
    /// concurrent write makes its calls again.
    async fn run_engine(
        &self,
        bot: &Bot,
        step: &Step<'_>,
        begun: &Begun,
        deadline: Instant,
        started: Instant,
    ) -> Result<Ran> {
        let (mut turn, calls) = match step {
            Step::Message(request) => {
                let turn = engine::run_turn(bot, begun.active.clone(), request.input.clone(), &begun.ctx);
                (turn, request.calls)
            }
            Step::Resume { outcome, .. } => {
                let Some(session) = begun.active.clone() else {
                    return Err(Error::Internal("a conversation waiting for a call has a session".into()));
                };
                match outcome {
                    Some(outcome) => (engine::resume(bot, session, outcome.clone(), &begun.ctx), Calls::Poll),
                    // Given up: an apology, and no session, which keeps the state small.
                    None => {
                        let mut turn = engine::abandon(bot, session, &begun.ctx);
                        turn.session = None;
                        (turn, Calls::Poll)
                    }
                }
            }
        };
        let mut ran = Ran {
            outputs: std::mem::take(&mut turn.outputs),
            completion: turn.completion.take(),
            session: None,
            pending: None,
            calls_made: 0,
            effects: std::mem::take(&mut turn.effects),
        };
        // Calls already made for this message, across the steps of a polled turn.
        let mut calls_made = begun.conversation.pending.as_ref().map_or(0, |p| p.calls);
        while let Some(call) = turn.pending.take() {
            let Some(session) = turn.session.take() else {
                break;
            };
            if calls == Calls::Poll && calls_made < MAX_CALLS_PER_TURN {
                ran.pending = Some(call);
                ran.calls_made = calls_made + 1;
                turn.session = Some(session);
                break;
            }
            calls_made += 1;
            if calls_made > MAX_CALLS_PER_TURN || calls == Calls::Poll {
                // A flow that keeps calling (a retry loop through onError) ends
                // instead of running to the deadline.
                tracing::warn!(calls_made, "a turn makes at most {MAX_CALLS_PER_TURN} calls: task abandoned");
                turn = engine::abandon(bot, session, &begun.ctx);
                ran.absorb(&mut turn);
                break;
            }
            let outcome = self.make_call(bot, &call, deadline, started).await?;
            turn = engine::resume(bot, session, outcome, &begun.ctx);
            ran.absorb(&mut turn);
        }
        ran.session = turn.session;
        Ok(ran)
    }
}

/// A step's reply, the new conversation, its log entries and poll records.
struct Finished {
    reply: TurnReply,
    conversation: Conversation,
    log: Vec<LogEntry>,
    polls: Vec<PollRecord>,
}

fn finish(bot: &Bot, key: &ConversationKey, step: &Step<'_>, begun: Begun, ran: Ran) -> Result<Finished> {
    let Begun { mut conversation, active, now, .. } = begun;
    let created_on = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let trace_id = match step {
        Step::Message(request) => request.trace_id.clone(),
        Step::Resume { .. } => conversation.pending.as_ref().map(|p| p.trace_id.clone()).unwrap_or_default(),
    };
    let session_id = ran.session.as_ref().or(active.as_ref()).map(|s| s.id.clone());
    let first_seq = conversation.next_seq;
    let mut seq = first_seq;
    let mut entry = |direction, message_id: String, body: Value| {
        seq += 1;
        LogEntry {
            seq: seq - 1,
            direction,
            message_id,
            trace_id: trace_id.clone(),
            created_on: created_on.clone(),
            session_id: session_id.clone(),
            body,
        }
    };
    let mut log = Vec::new();
    if let Step::Message(request) = step {
        conversation.queued.retain(|q| q.trace_id != request.trace_id);
        let mut inbound = json!({"request": request.input.message});
        if !request.message_tags.is_empty() {
            inbound["messageLevelTags"] = json!(request.message_tags);
        }
        log.push(entry(Direction::In, ids::message_id(), inbound));
    }
    let mut outputs = ran.outputs;
    if outputs.len() > MAX_OUTPUTS_PER_TURN {
        tracing::warn!(
            dropped = outputs.len() - MAX_OUTPUTS_PER_TURN,
            "a turn sends at most {MAX_OUTPUTS_PER_TURN} messages"
        );
        outputs.truncate(MAX_OUTPUTS_PER_TURN);
    }
    let mut sent = Vec::new();
    for output in outputs {
        let message = data(output, &created_on);
        let body = serde_json::to_value(&message).unwrap_or(Value::Null);
        log.push(entry(Direction::Out, message.message_id.clone(), body));
        sent.push(message);
    }
    conversation.next_seq = seq;
    let ended_context = ran.session.as_ref().or(active.as_ref()).map(|s| s.context.clone()).unwrap_or_default();
    conversation.session = ran.session;
    let poll_id = ran.pending.as_ref().map(|_| ids::poll_id());
    conversation.pending = ran.pending.zip(poll_id.clone()).map(|(call, poll_id)| PendingCall {
        poll_id,
        call,
        trace_id: trace_id.clone(),
        calls: ran.calls_made,
    });
    if let Step::Message(request) = step
        && request.answer_to != AnswerTo::Caller
    {
        conversation.applied.push(trace_id.clone());
        let excess = conversation.applied.len().saturating_sub(MAX_APPLIED_REMEMBERED);
        conversation.applied.drain(..excess);
    }
    let mut jobs = Vec::new();
    if let Step::Message(TurnRequest { answer_to: AnswerTo::PostUrl(instance), .. }) = step
        && let Some(instance) = bot.instance_by_id(instance)
    {
        jobs.extend(jobs::post_url(bot, instance, key, &sent, ran.completion.as_ref(), &trace_id));
    }
    let client_ip = match step {
        Step::Message(request) => request.client_ip.as_deref(),
        Step::Resume { .. } => None,
    };
    jobs.extend(jobs::events(bot, key, &log, client_ip));
    // What cannot be rebuilt from the log is kept with the turn, for a
    // worker that saved it but stopped before queuing it.
    let mut kept = Vec::new();
    if let Some(poll_id) = &poll_id {
        kept.push(jobs::resume(key, poll_id));
    }
    if let Some(completion) = &ran.completion {
        kept.extend(jobs::session_data(
            bot,
            key,
            session_id.as_deref(),
            &ended_context,
            completion,
            &created_on,
            (&trace_id, first_seq),
        ));
    }
    kept.extend(jobs::webhook_nodes(bot, key, ran.effects));
    jobs.extend(kept.iter().cloned());
    let answered_poll = match step {
        Step::Message(TurnRequest { answer_to: AnswerTo::Poll(poll_id), .. }) => Some(poll_id.clone()),
        Step::Resume { poll_id, .. } => Some(poll_id.to_string()),
        Step::Message(_) => None,
    };
    if serde_json::to_vec(&kept).map_or(true, |json| json.len() > MAX_KEPT_JOBS_BYTES) {
        tracing::warn!("this turn's deliveries are too large to keep for a worker that would stop before queuing them");
        // The continuation is small, and without it the conversation would wait.
        kept.retain(|job| matches!(job.job, crate::queue::Job::Resume { .. }));
    }
    conversation.last_turn = Some(LastTurn {
        trace_id: trace_id.clone(),
        first_seq,
        completion: ran.completion.clone(),
        answered_poll: answered_poll.clone(),
        next_poll: poll_id.clone(),
        jobs: kept,
    });

    let size = serde_json::to_vec(&conversation).map_or(usize::MAX, |json| json.len());
    if size > MAX_CONVERSATION_BYTES {
        let detail = "the conversation's state has grown too large; start a new session (session.new)";
        return Err(Error::InvalidPayload(detail.into()));
    }
    // Each log entry is an item, and the turn one transaction: both bounded.
    let sizes: Vec<usize> = log.iter().map(|e| serde_json::to_vec(e).map_or(usize::MAX, |json| json.len())).collect();
    if sizes.iter().any(|&n| n > MAX_LOG_ENTRY_BYTES) || sizes.iter().sum::<usize>() > MAX_TURN_LOG_BYTES {
        let detail = format!(
            "a message of this turn is larger than {MAX_LOG_ENTRY_BYTES} bytes, or all of them than {MAX_TURN_LOG_BYTES}"
        );
        return Err(Error::InvalidPayload(detail));
    }

    let (messages, form) = split_form(sent);
    let reply = TurnReply { messages, form, completion: ran.completion, poll_id: poll_id.clone(), jobs };
    let record = |poll_id: &str, answer| PollRecord::new(poll_id, key, answer, now.timestamp());
    let mut polls = Vec::new();
    if let Some(answered) = &answered_poll {
        let answer = PollAnswer {
            from_seq: first_seq,
            end_seq: conversation.next_seq,
            completion: reply.completion.clone(),
            poll_id: poll_id.clone(),
            refused: None,
        };
        polls.push(record(answered, Some(answer)));
    }
    if let Some(poll_id) = &poll_id {
        polls.push(record(poll_id, None));
    }
    Ok(Finished { reply, conversation, log, polls })
}

/// The messages the bot sent among `entries`.
fn sent_messages(entries: &[LogEntry]) -> Vec<V2Data> {
    entries
        .iter()
        .filter(|e| e.direction == Direction::Out)
        .filter_map(|e| serde_json::from_value(e.body.clone()).ok())
        .collect()
}

/// A poll's answer, read back from the log.
pub async fn poll_answer(store: &dyn Store, key: &ConversationKey, answer: &PollAnswer) -> Result<TurnReply> {
    let count = answer.end_seq.saturating_sub(answer.from_seq) as usize;
    let entries = store.read_log(key, answer.from_seq.checked_sub(1), count).await?;
    let (messages, form) = split_form(sent_messages(&entries));
    let completion = answer.completion.clone();
    Ok(TurnReply { messages, form, completion, poll_id: answer.poll_id.clone(), jobs: Vec::new() })
}

/// A form travels in the answer's `form`, as the spec shows it.
fn split_form(sent: Vec<V2Data>) -> (Vec<V2Data>, Option<Value>) {
    let mut form = None;
    let mut messages = Vec::new();
    for message in sent {
        if message.kind == "form" {
            form = Some(message.val);
        } else {
            messages.push(message);
        }
    }
    (messages, form)
}

fn data(output: Output, created_on: &str) -> V2Data {
    let (kind, val, event_type, description) = match output {
        Output::Text(text) => ("text", Value::String(text), None, None),
        Output::Template(object) => ("template", object, None, None),
        Output::Attachment { url, mime } => ("attachment", json!({"url": url, "mime": mime}), None, None),
        Output::Form(form) => ("form", form, None, None),
        Output::Event { val, event_type, description } => {
            ("event", Value::String(val.into()), Some(event_type.into()), Some(description.into()))
        }
    };
    V2Data {
        kind: kind.into(),
        val,
        event_type,
        description,
        created_on: created_on.into(),
        message_id: ids::message_id(),
    }
}
