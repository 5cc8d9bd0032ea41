//! Conversation state and the conversation log, as stored.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::queue::QueueMessage;
use super::rate::MessageCounts;
use crate::engine::{HttpCall, Session, Transcript};
use crate::ids::ConversationKey;
use crate::protocol::{Tag, TaskCompletion};
use crate::text::json_len;

/// Everything kept per user and bot. It outlives sessions: the `seq` counter
/// must keep growing for as long as log entries exist, and user-level tags and
/// profile survive the end of a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    /// Optimistic-concurrency version; 0 means never stored. Kept by the
    /// store beside the serialized conversation, not inside it.
    #[serde(skip)]
    pub version: u64,
    /// The latest log entries, when the store keeps them in the
    /// conversation's own item (DynamoDB, until they would take another
    /// write unit), as read with it: written back with the next turn, or
    /// moved to an item of their own first. Not part of its JSON.
    #[serde(skip)]
    pub held_log: Vec<LogEntry>,
    /// The seq the next log entry gets.
    #[serde(default)]
    pub next_seq: u64,
    #[serde(default)]
    pub user_info: Map<String, Value>,
    #[serde(default)]
    pub user_tags: Vec<Tag>,
    #[serde(default)]
    pub session: Option<Session>,
    /// Polling: the call the session waits for, which the worker makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingCall>,
    /// Messages queued behind a polled call: new messages queue behind them
    /// too, so none overtakes another.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queued: Vec<QueuedMessage>,
    /// The last turn applied, so that a queued turn delivered twice runs once
    /// and its answer can be given again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_turn: Option<LastTurn>,
    /// Trace ids of the latest queued messages applied, oldest first: one
    /// delivered again after others ran is still recognised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<String>,
    /// Asynchronous mode: when the session ends for inactivity, and whose
    /// POST_URL is then told (SESSION_CLOSURE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_closure: Option<IdleClosure>,
    /// The user's messages counted against the rate limits.
    #[serde(default, skip_serializing_if = "MessageCounts::is_empty")]
    pub rate: MessageCounts,
}

/// A session's proactive closure, owed to an asynchronous instance once the
/// session has been idle past its bot's timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdleClosure {
    /// Unix seconds.
    pub due_at: i64,
    pub instance_id: String,
}

impl IdleClosure {
    /// The trace id of the step that closes `key`'s session due at
    /// `due_at`: the same for every attempt, so a retried closure is
    /// recognised, and another conversation's never (its webhook-ids derive
    /// from it).
    pub fn trace_id(key: &ConversationKey, due_at: i64) -> String {
        format!("tr-idle-{due_at}-{}", key.fingerprint())
    }

    /// Closing `session` once it has been idle `idle_ms`, told to `instance_id`.
    pub fn of(session: &Session, idle_ms: i64, instance_id: &str) -> Self {
        // Rounded up: never due before the session is idle to the millisecond.
        let due_ms = session.last_active_at.saturating_add(idle_ms);
        Self {
            due_at: due_ms.div_euclid(1000) + i64::from(due_ms.rem_euclid(1000) > 0),
            instance_id: instance_id.into(),
        }
    }
}

/// A message queued behind a polled call, until the worker runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedMessage {
    pub trace_id: String,
    /// Unix seconds; one that has waited past [`QUEUED_STALE_SECS`] (its
    /// job lost or dead-lettered) no longer holds the conversation up.
    pub queued_at: i64,
}

/// See [`QueuedMessage::queued_at`]: longer than a job can wait behind
/// failing deliveries before it is dead-lettered.
pub const QUEUED_STALE_SECS: i64 = 900;

impl Conversation {
    /// Messages still waiting to run (stale ones are forgotten).
    pub fn drop_stale_queued(&mut self, now_secs: i64) {
        self.queued.retain(|q| now_secs - q.queued_at < QUEUED_STALE_SECS);
    }

    /// The length of its JSON text (see [`json_len`]). The session's
    /// transcript, most of it, keeps its own: it is set aside while the rest
    /// is counted.
    pub fn json_len(&mut self) -> usize {
        let Some(transcript) = self.session.as_mut().map(|s| std::mem::take(&mut s.transcript)) else {
            return json_len(self);
        };
        let rest = json_len(self).saturating_sub(Transcript::default().json_len());
        let total = rest.saturating_add(transcript.json_len());
        if let Some(session) = self.session.as_mut() {
            session.transcript = transcript;
        }
        total
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingCall {
    /// The poll record that gets the messages that follow the call.
    pub poll_id: String,
    pub call: HttpCall,
    pub trace_id: String,
    /// Calls made for the message so far, this one included: a turn makes
    /// at most so many, across its polled steps too.
    #[serde(default)]
    pub calls: usize,
    /// The instance the message came in on, whose URL its polls are read from.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The instance whose texts answer, when the message preferred another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texts_instance: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastTurn {
    pub trace_id: String,
    /// The first log entry the turn wrote.
    pub first_seq: u64,
    #[serde(default)]
    pub completion: Option<TaskCompletion>,
    /// The session waited within a task for the user after the turn.
    #[serde(default)]
    pub waiting: bool,
    /// The instance the turn's message came in on, and the tasks it ran:
    /// what the event webhook's filters look at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// The poll record the turn answered, and the one it left in progress.
    #[serde(default)]
    pub answered_poll: Option<String>,
    #[serde(default)]
    pub next_poll: Option<String>,
    /// The instance whose POST_URL received the turn's messages, and the
    /// client's address: what the turn's deliveries are rebuilt with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// The idle closure the turn sent first, before its own messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed: Vec<QueueMessage>,
    /// What the turn queued that cannot be rebuilt from the log (its
    /// continuation, session-data and async webhook node deliveries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<QueueMessage>,
    /// Those jobs were too large for the conversation: they are kept in an
    /// item of their own, written with the turn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub jobs_apart: bool,
}

/// What a poll (GET .../poll/{pollId}) reads: work in progress, then the
/// answer, readable once (or twice within the instance's reread window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRecord {
    pub poll_id: String,
    pub bot_id: String,
    pub user_id: String,
    /// The app whose users are its own, for one of theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The instance whose URL reads the record (`None` in records written
    /// before records named one: any instance of the bot).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Once the work is done: where the answer is.
    #[serde(default)]
    pub answer: Option<PollAnswer>,
    /// Times the answer has been read.
    #[serde(default)]
    pub reads: u32,
    /// Unix seconds of the first read.
    #[serde(default)]
    pub read_at: Option<i64>,
    /// Unix seconds after which the record may be deleted.
    pub expires_at: i64,
}

/// A poll's answer, as a range of the conversation log (the messages are
/// not stored twice, and no record grows with them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollAnswer {
    /// The log entries from this seq, up to `end_seq` (excluded).
    pub from_seq: u64,
    pub end_seq: u64,
    #[serde(default)]
    pub completion: Option<TaskCompletion>,
    /// Where the rest is, if the flow reached another call.
    #[serde(default)]
    pub poll_id: Option<String>,
    /// A queued message the bot refused: why (answered as a 400).
    #[serde(default)]
    pub refused: Option<String>,
}

/// How long a poll record can be read.
pub const POLL_RECORD_SECS: i64 = 3600;

impl PollRecord {
    /// A record of `key`'s conversation on an instance, its answer `None`
    /// while the work runs.
    pub fn new(
        poll_id: &str,
        key: &ConversationKey,
        instance_id: Option<&str>,
        answer: Option<PollAnswer>,
        now_secs: i64,
    ) -> Self {
        Self {
            poll_id: poll_id.to_string(),
            bot_id: key.bot_id.clone(),
            user_id: key.user_id.clone(),
            app: key.app.clone(),
            instance_id: instance_id.map(String::from),
            answer,
            reads: 0,
            read_at: None,
            expires_at: now_secs + POLL_RECORD_SECS,
        }
    }

    /// The conversation the record belongs to.
    pub fn key(&self) -> ConversationKey {
        ConversationKey::new(&self.bot_id, &self.user_id).in_app(self.app.clone())
    }

    /// Unix seconds when the record was made.
    pub fn created_at(&self) -> i64 {
        self.expires_at - POLL_RECORD_SECS
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

/// One message in or out of a conversation, numbered by `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub seq: u64,
    pub direction: Direction,
    pub message_id: String,
    pub trace_id: String,
    pub created_on: String,
    pub session_id: Option<String>,
    /// In: `{"request": <the request body>, "messageLevelTags": [...]}`.
    /// Out: the message as sent in v2 `data`.
    pub body: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_the_length_of_the_json_text() {
        let value = serde_json::json!({"text": "héllo \"quoted\"\n", "n": [1, 2.5, null], "deep": {"x": true}});
        assert_eq!(json_len(&value), serde_json::to_vec(&value).unwrap().len());
        let mut conversation = Conversation::default();
        assert_eq!(conversation.json_len(), serde_json::to_vec(&conversation).unwrap().len());
        let mut session = Session { id: "se-1".into(), ..Session::default() };
        session.transcript.push("User: \"hi\"".into(), 10, 1000);
        session.transcript.push("Bot: héllo\n".into(), 10, 1000);
        conversation.session = Some(session);
        let json = serde_json::to_vec(&conversation).unwrap();
        assert_eq!(conversation.json_len(), json.len(), "with a transcript");
        assert_eq!(serde_json::to_vec(&conversation).unwrap(), json, "the transcript is put back");
    }
}
