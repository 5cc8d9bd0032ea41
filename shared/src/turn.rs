//! Runs one user turn synchronously: load the conversation, run the engine,
//! append the turn to the log and save, all-or-nothing, retrying when another
//! writer got there first.

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
use crate::engine::{self, Input, Output, TurnContext, merge_tags};
use crate::error::{Error, Result};
use crate::ids;
use crate::protocol::{Tag, TaskCompletion, V2Data};
use crate::session::{Conversation, ConversationKey, Direction, LogEntry};
use crate::store::{Store, TurnWrite};

/// A conversation item stays well under DynamoDB's 400 KB item limit.
const MAX_CONVERSATION_BYTES: usize = 300 * 1024;
const MAX_USER_KEYS: usize = 100;
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
    pub completion: Option<TaskCompletion>,
}

pub struct Turns {
    store: Arc<dyn Store>,
    /// Serialises one user's turns inside this process, so concurrent requests
    /// queue instead of spinning on conflicts; other processes (Lambda
    /// instances) are kept consistent by the store's conditional write.
    locks: Vec<Mutex<()>>,
}

impl Turns {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    async fn lock(&self, key: &ConversationKey) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        self.locks[(hasher.finish() % LOCK_STRIPES as u64) as usize]
            .lock()
            .await
    }

    /// Runs the turn, answering `Error::Timeout` if it cannot be committed by
    /// `deadline`. A write that has started is always awaited: the client is
    /// never told "timed out" about a turn that was saved.
    pub async fn run(&self, request: TurnRequest, deadline: Instant) -> Result<TurnReply> {
        let limit = deadline.saturating_duration_since(request.started);
        let timed_out = |_| Error::Timeout(limit);
        let key = ConversationKey::new(request.bot.id(), &request.user_id);
        let _serialised = timeout_at(deadline, self.lock(&key))
            .await
            .map_err(timed_out)?;
        let mut attempt = 0;
        loop {
            let stored = timeout_at(deadline, self.store.load(&key))
                .await
                .map_err(timed_out)??;
            let (reply, conversation, log) = prepare(&request, stored.clone().unwrap_or_default())?;
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
                    tracing::debug!(
                        attempt,
                        "conversation written concurrently; retrying the turn"
                    );
                    timeout_at(deadline, backoff(attempt))
                        .await
                        .map_err(timed_out)?;
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

/// The pure part of a turn: the reply, the new conversation and its log entries.
fn prepare(
    request: &TurnRequest,
    mut conversation: Conversation,
) -> Result<(TurnReply, Conversation, Vec<LogEntry>)> {
    let bot = &request.bot;
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let idle_ms = i64::from(bot.def.session.idle_timeout_minutes) * 60_000;
    let active = conversation
        .session
        .take()
        .filter(|s| !request.new_session && now_ms - s.last_active_at < idle_ms);
    let active_id = active.as_ref().map(|s| s.id.clone());

    for (name, value) in request.user_info.iter().flatten() {
        if !matches!(value, Value::Null) && value.as_str() != Some("") {
            conversation.user_info.insert(name.clone(), value.clone());
        }
    }
    merge_tags(&mut conversation.user_tags, request.user_tags.clone());
    // User-level data outlives sessions: bound it so no one can grow it forever.
    if conversation.user_info.len() > MAX_USER_KEYS || conversation.user_tags.len() > MAX_USER_KEYS
    {
        let detail = format!(
            "a user keeps at most {MAX_USER_KEYS} userInfo keys and {MAX_USER_KEYS} user-level tags"
        );
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
    let turn = engine::run_turn(bot, active, request.input.clone(), &ctx);

    let created_on = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let session_id = turn.session.as_ref().map(|s| s.id.clone()).or(active_id);
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
    let messages: Vec<V2Data> = turn
        .outputs
        .into_iter()
        .map(|output| data(output, &created_on))
        .collect();
    for message in &messages {
        let body = serde_json::to_value(message).unwrap_or(Value::Null);
        log.push(entry(Direction::Out, message.message_id.clone(), body));
    }
    conversation.next_seq = seq;
    conversation.session = turn.session;
    let size = serde_json::to_vec(&conversation).map_or(usize::MAX, |json| json.len());
    if size > MAX_CONVERSATION_BYTES {
        let detail =
            "the conversation's state has grown too large; start a new session (session.new)";
        return Err(Error::InvalidPayload(detail.into()));
    }
    let reply = TurnReply {
        messages,
        completion: turn.completion,
    };
    Ok((reply, conversation, log))
}

fn data(output: Output, created_on: &str) -> V2Data {
    let (kind, val, event_type, description) = match output {
        Output::Text(text) => ("text", Value::String(text), None, None),
        Output::Event {
            val,
            event_type,
            description,
        } => (
            "event",
            Value::String(val.into()),
            Some(event_type.into()),
            Some(description.into()),
        ),
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
