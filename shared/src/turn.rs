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

use crate::config::Bot;
use crate::engine::{self, Input, Output, TurnContext, merge_tags};
use crate::error::{Error, Result};
use crate::ids;
use crate::protocol::{Tag, TaskCompletion, V2Data};
use crate::session::{Conversation, ConversationKey, Direction, LogEntry};
use crate::store::{Store, TurnWrite};

/// Attempts before a turn gives up on a conversation under heavy contention.
const MAX_ATTEMPTS: u32 = 30;
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

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn lock(&self, key: &ConversationKey) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        self.locks[(hasher.finish() % LOCK_STRIPES as u64) as usize]
            .lock()
            .await
    }

    pub async fn run(&self, request: TurnRequest) -> Result<TurnReply> {
        let key = ConversationKey::new(request.bot.id(), &request.user_id);
        let _serialised = self.lock(&key).await;
        for attempt in 0..MAX_ATTEMPTS {
            let stored = self.store.load(&key).await?;
            let (reply, conversation, log) = prepare(&request, stored.clone().unwrap_or_default());
            let write = TurnWrite {
                conversation: &conversation,
                expected_version: stored.map_or(0, |c| c.version),
                log: &log,
                expires_at: Utc::now().timestamp()
                    + i64::from(request.bot.def.session.retention_days) * 86_400,
            };
            match self.store.save_turn(&key, write).await {
                Ok(()) => return Ok(reply),
                Err(Error::Conflict) => {
                    tracing::debug!(
                        attempt,
                        "conversation written concurrently; retrying the turn"
                    );
                    backoff(attempt).await
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Storage("conversation too contended to write".into()))
    }
}

async fn backoff(attempt: u32) {
    let cap = (5u64 << attempt.min(6)).min(250);
    let jitter = rand::rng().random_range(0..=cap);
    tokio::time::sleep(Duration::from_millis(cap / 2 + jitter)).await;
}

/// The pure part of a turn: the reply, the new conversation and its log entries.
fn prepare(
    request: &TurnRequest,
    mut conversation: Conversation,
) -> (TurnReply, Conversation, Vec<LogEntry>) {
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
    let mut inbound = json!({"message": request.input.message});
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
    let reply = TurnReply {
        messages,
        completion: turn.completion,
    };
    (reply, conversation, log)
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
