//! Runs one user turn synchronously: load the conversation, run the engine
//! (making the calls its service and webhook nodes wait for), append the turn
//! to the log and save, all-or-nothing, retrying when another writer got
//! there first.

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
use crate::delivery::{HttpCall, Outbound};
use crate::engine::{self, Input, Output, TurnContext, merge_tags};
use crate::error::{Error, Result};
use crate::ids;
use crate::protocol::{Tag, TaskCompletion, V2Data};
use crate::session::{Conversation, ConversationKey, Direction, LogEntry, Session};
use crate::store::{Store, TurnWrite};

/// A conversation item stays well under DynamoDB's 400 KB item limit.
const MAX_CONVERSATION_BYTES: usize = 300 * 1024;
const MAX_USER_KEYS: usize = 100;
/// A turn's log fits one TransactWriteItems (100 items, two of them the
/// conversation and the user's message). Flow definitions stay well below;
/// only what a webhook answers could go beyond.
const MAX_OUTPUTS_PER_TURN: usize = 90;
/// Service and sync webhook calls one turn may make.
const MAX_CALLS_PER_TURN: usize = 10;
const LOCK_STRIPES: usize = 1024;

pub struct TurnRequest {
    pub bot: Arc<Bot>,
    pub user_id: String,
    pub new_session: bool,
    pub input: Input,
    pub user_info: Option<Map<String, Value>>,
    pub user_tags: Vec<Tag>,
    pub message_tags: Vec<Tag>,
    pub trace_id: String,
    /// When the request arrived; reported in timeouts.
    pub started: Instant,
}

#[derive(Debug)]
pub struct TurnReply {
    pub messages: Vec<V2Data>,
    /// `{formDef, formInitialization}` when the turn sent a form.
    pub form: Option<Value>,
    pub completion: Option<TaskCompletion>,
    /// Fire-and-forget calls, to make now that the turn is saved.
    pub effects: Vec<HttpCall>,
}

pub struct Turns {
    store: Arc<dyn Store>,
    outbound: Outbound,
    /// Serialises one user's turns inside this process, so concurrent requests
    /// queue instead of spinning on conflicts; other processes (Lambda
    /// instances) are kept consistent by the store's conditional write.
    locks: Vec<Mutex<()>>,
}

impl Turns {
    pub fn new(store: Arc<dyn Store>, outbound: Outbound) -> Self {
        Self { store, outbound, locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect() }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn lock(&self, key: &ConversationKey) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        self.locks[(hasher.finish() % LOCK_STRIPES as u64) as usize].lock().await
    }

    /// Runs the turn, answering `Error::Timeout` if it cannot be committed by
    /// `deadline`. A write that has started is always awaited: the client is
    /// never told "timed out" about a turn that was saved.
    pub async fn run(&self, request: TurnRequest, deadline: Instant) -> Result<TurnReply> {
        let limit = deadline.saturating_duration_since(request.started);
        let timed_out = |_| Error::Timeout(limit);
        let key = ConversationKey::new(request.bot.id(), &request.user_id);
        let _serialised = timeout_at(deadline, self.lock(&key)).await.map_err(timed_out)?;
        let mut attempt = 0;
        loop {
            let stored = timeout_at(deadline, self.store.load(&key)).await.map_err(timed_out)??;
            let begun = begin(&request, stored.clone().unwrap_or_default())?;
            let ran = self.run_engine(&request, &begun, deadline).await?;
            let (reply, conversation, log) = finish(&request, begun, ran)?;
            let retention = i64::from(request.bot.def.session.retention_days) * 86_400;
            let write = TurnWrite {
                conversation: &conversation,
                expected_version: stored.map_or(0, |c| c.version),
                log: &log,
                expires_at: Utc::now().timestamp() + retention,
            };
            if Instant::now() >= deadline {
                return Err(Error::Timeout(limit));
            }
            match self.store.save_turn(&key, write).await {
                Err(Error::Conflict) => {
                    tracing::debug!(attempt, "conversation written concurrently; retrying the turn");
                    timeout_at(deadline, backoff(attempt)).await.map_err(timed_out)?;
                    attempt += 1;
                }
                outcome => return outcome.map(|()| reply),
            }
        }
    }
}

/// Exponential backoff with full jitter, capped low: contention is between a
/// handful of writers of one conversation, and the deadline bounds the total.
async fn backoff(attempt: u32) {
    let cap = (10u64 << attempt.min(5)).min(200);
    let wait = rand::rng().random_range(cap / 4..=cap);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// The conversation as the turn starts: the session still active (not
/// closed, not idle past the timeout), user data merged in.
struct Begun {
    conversation: Conversation,
    active: Option<Session>,
    ctx: TurnContext,
    now: chrono::DateTime<Utc>,
}

fn begin(request: &TurnRequest, mut conversation: Conversation) -> Result<Begun> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let idle_ms = i64::from(request.bot.def.session.idle_timeout_minutes) * 60_000;
    let active = conversation.session.take().filter(|s| !request.new_session && now_ms - s.last_active_at < idle_ms);
    for (name, value) in request.user_info.iter().flatten() {
        if !matches!(value, Value::Null) && value.as_str() != Some("") {
            conversation.user_info.insert(name.clone(), value.clone());
        }
    }
    merge_tags(&mut conversation.user_tags, request.user_tags.clone());
    // User-level data outlives sessions: bound it so no one can grow it forever.
    if conversation.user_info.len() > MAX_USER_KEYS || conversation.user_tags.len() > MAX_USER_KEYS {
        let detail = format!("a user keeps at most {MAX_USER_KEYS} userInfo keys and {MAX_USER_KEYS} user-level tags");
        return Err(Error::InvalidPayload(detail));
    }
    let mut user = conversation.user_info.clone();
    user.insert("id".into(), Value::String(request.user_id.clone()));
    let ctx = TurnContext {
        now_ms,
        new_session_id: ids::session_id(),
        user: Value::Object(user),
        user_tags: conversation.user_tags.clone(),
    };
    Ok(Begun { conversation, active, ctx, now })
}

/// What the engine did in one turn, calls included.
struct Ran {
    outputs: Vec<Output>,
    completion: Option<TaskCompletion>,
    session: Option<Session>,
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
    /// Runs the engine, making each call it waits for within the deadline. A
    /// turn retried after a concurrent write makes its calls again.
    async fn run_engine(&self, request: &TurnRequest, begun: &Begun, deadline: Instant) -> Result<Ran> {
        let bot = &request.bot;
        let mut turn = engine::run_turn(bot, begun.active.clone(), request.input.clone(), &begun.ctx);
        let mut ran = Ran {
            outputs: std::mem::take(&mut turn.outputs),
            completion: turn.completion.take(),
            session: None,
            effects: std::mem::take(&mut turn.effects),
        };
        let mut calls = 0;
        while let Some(call) = turn.pending.take() {
            let Some(session) = turn.session.take() else {
                break;
            };
            calls += 1;
            if calls > MAX_CALLS_PER_TURN {
                // A flow that keeps calling (a retry loop through onError) ends
                // instead of running to the deadline.
                tracing::warn!(calls, "a turn makes at most {MAX_CALLS_PER_TURN} calls: task abandoned");
                turn = engine::abandon(bot, session, &begun.ctx);
                ran.absorb(&mut turn);
                break;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout(deadline.saturating_duration_since(request.started)));
            }
            let call = HttpCall { timeout: call.timeout.min(remaining), ..call };
            let webhook_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
            let outcome = self.outbound.call(&call, bot.signing_keys(), &webhook_id).await;
            match &outcome {
                Ok(reply) => {
                    tracing::info!(method = %call.method, url = %call.url, status = reply.status, "flow call answered")
                }
                Err(reason) => {
                    tracing::warn!(method = %call.method, url = %call.url, %reason, "flow call failed")
                }
            }
            turn = engine::resume(bot, session, outcome, &begun.ctx);
            ran.absorb(&mut turn);
        }
        ran.session = turn.session;
        Ok(ran)
    }
}

/// The reply, the new conversation and its log entries.
fn finish(request: &TurnRequest, begun: Begun, ran: Ran) -> Result<(TurnReply, Conversation, Vec<LogEntry>)> {
    let Begun { mut conversation, active, now, .. } = begun;
    let created_on = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let session_id = ran.session.as_ref().or(active.as_ref()).map(|s| s.id.clone());
    let mut seq = conversation.next_seq;
    let mut entry = |direction, message_id: String, body: Value| {
        seq += 1;
        LogEntry {
            seq: seq - 1,
            direction,
            message_id,
            trace_id: request.trace_id.clone(),
            created_on: created_on.clone(),
            session_id: session_id.clone(),
            body,
        }
    };
    let mut inbound = json!({"request": request.input.message});
    if !request.message_tags.is_empty() {
        inbound["messageLevelTags"] = json!(request.message_tags);
    }
    let mut log = vec![entry(Direction::In, ids::message_id(), inbound)];
    let mut messages = Vec::new();
    let mut form = None;
    let mut outputs = ran.outputs;
    if outputs.len() > MAX_OUTPUTS_PER_TURN {
        tracing::warn!(
            dropped = outputs.len() - MAX_OUTPUTS_PER_TURN,
            "a turn sends at most {MAX_OUTPUTS_PER_TURN} messages"
        );
        outputs.truncate(MAX_OUTPUTS_PER_TURN);
    }
    for output in outputs {
        let message = data(output, &created_on);
        let body = serde_json::to_value(&message).unwrap_or(Value::Null);
        log.push(entry(Direction::Out, message.message_id.clone(), body));
        // A form travels in the answer's `form`, as the spec shows it.
        if message.kind == "form" {
            form = Some(message.val);
        } else {
            messages.push(message);
        }
    }
    conversation.next_seq = seq;
    conversation.session = ran.session;
    let size = serde_json::to_vec(&conversation).map_or(usize::MAX, |json| json.len());
    if size > MAX_CONVERSATION_BYTES {
        let detail = "the conversation's state has grown too large; start a new session (session.new)";
        return Err(Error::InvalidPayload(detail.into()));
    }
    let reply = TurnReply { messages, form, completion: ran.completion, effects: ran.effects };
    Ok((reply, conversation, log))
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
