//! The queue port: background work (user turns run off the request path,
//! polled turns continued after their calls, outbound deliveries) as jobs in
//! FIFO groups. An SQS FIFO queue in the cloud, an in-process queue in the
//! embedded mode; a [`JobHandler`] (the worker) runs them.

use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::HttpCall;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

/// The largest job SQS takes (its message size limit).
pub const MAX_JOB_BYTES: usize = 256 * 1024;

/// One unit of work, as the queue message body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "camelCase")]
pub enum Job {
    /// A user's message for the worker to run: asynchronous mode, or a
    /// message that arrived while the conversation waited for a call.
    Turn(QueuedTurn),
    /// Continue a polled conversation waiting for a call.
    #[serde(rename_all = "camelCase")]
    Resume {
        bot_id: String,
        user_id: String,
        /// The app whose users are its own, for one of theirs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<String>,
        poll_id: String,
    },
    /// One signed POST, retried until the receiver takes it.
    Deliver(Delivery),
    /// End a session idle past its bot's timeout and tell its asynchronous
    /// instance, if the conversation is as the sweep found it.
    #[serde(rename_all = "camelCase")]
    CloseIdle {
        bot_id: String,
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<String>,
        /// When the closure was due (Unix seconds).
        due_at: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedTurn {
    pub bot_id: String,
    /// The hookInstance the message came in on.
    pub instance_id: String,
    pub user_id: String,
    /// The app whose users are its own, for one of theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The request body, already validated by the ingress.
    pub body: Value,
    pub trace_id: String,
    #[serde(default)]
    pub client_ip: Option<String>,
    /// Where the bot's answer goes.
    pub answer: QueuedAnswer,
    /// `mergeIdentity`: the conversation the user's continues, as the token proved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_from: Option<ConversationKey>,
}

impl QueuedTurn {
    /// The conversation the message belongs to.
    pub fn key(&self) -> ConversationKey {
        ConversationKey::new(&self.bot_id, &self.user_id).in_app(self.app.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "camelCase")]
pub enum QueuedAnswer {
    /// Each message to the instance's POST_URL.
    PostUrl,
    /// Into this poll record.
    #[serde(rename_all = "camelCase")]
    Poll { poll_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryKind {
    /// A bot message (or the end-of-task fields) for an instance's POST_URL.
    PostUrl,
    /// An async webhook node's call.
    WebhookNode,
    /// The bot-wide event webhook: a message received or sent.
    Event,
    /// The session-data webhook at the end of a task.
    SessionData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub bot_id: String,
    /// The conversation's user and app, that a delivery's watcher (the
    /// local console) can tell conversations apart.
    #[serde(default)]
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub kind: DeliveryKind,
    /// POST_URL deliveries: the instance whose signing secrets apply.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The Standard Webhooks `webhook-id`, the same on every attempt.
    pub webhook_id: String,
    pub call: HttpCall,
    /// Milliseconds to wait before sending, after the conversation's
    /// delivery before it: a message's Joonbot `delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// A job and its place in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueMessage {
    /// FIFO message group: jobs of one group run one at a time, in order.
    pub group: String,
    /// Sending the same id twice (within SQS's five minutes) queues it once.
    pub dedup_id: String,
    pub job: Job,
}

impl QueueMessage {
    /// A job ordered with the conversation's turns and POST_URL deliveries.
    pub fn in_conversation(key: &ConversationKey, dedup_id: impl Into<String>, job: Job) -> Self {
        Self { group: group_of(key, "c"), dedup_id: dedup_id.into(), job }
    }

    /// A delivery ordered among the conversation's other side deliveries
    /// (event webhooks, async webhook nodes), so a slow customer API never
    /// holds up the chat.
    pub fn beside_conversation(key: &ConversationKey, dedup_id: impl Into<String>, job: Job) -> Self {
        Self { group: group_of(key, "s"), dedup_id: dedup_id.into(), job }
    }
}

/// SQS group ids are at most 128 printable ASCII characters; user ids are
/// not, so the group is a digest of bot, user and the app they belong to.
/// Bot ids hold no newline and start with `st-`, so neither form can spell
/// the other, whatever a user id holds.
fn group_of(key: &ConversationKey, lane: &str) -> String {
    let input = match &key.app {
        None => format!("{}\n{}", key.bot_id, key.user_id),
        Some(app) => serde_json::json!([key.bot_id, app, key.user_id]).to_string(),
    };
    let hash = digest::digest(&digest::SHA256, input.as_bytes());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{lane}-{hex}")
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Queues the messages in order; `Ok` only once all of them are durably queued.
    async fn send(&self, messages: &[QueueMessage]) -> Result<()>;
}

/// Runs jobs: what a queue that delivers its messages itself (the
/// in-process one) hands them to.
#[async_trait]
pub trait JobHandler: Send + Sync {
    async fn handle(&self, job: &Job) -> Result<(), Retry>;
}

/// A job that did not succeed this time.
#[derive(Debug)]
pub struct Retry {
    pub reason: String,
    /// Not before this (the receiver's Retry-After).
    pub after: Option<Duration>,
}

impl From<Error> for Retry {
    fn from(error: Error) -> Self {
        Self { reason: error.to_string(), after: None }
    }
}

/// Longest wait between two attempts of a job.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Exponential backoff with jitter for the `receive_count`th failure.
pub fn backoff(base: Duration, receive_count: u32) -> Duration {
    let exponential = base.saturating_mul(2u32.saturating_pow(receive_count.saturating_sub(1).min(16)));
    exponential.min(MAX_BACKOFF).mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_short_printable_and_separate_the_lanes() {
        let key = ConversationKey::new("st-bot", "ü".repeat(256));
        let job = Job::Resume { bot_id: "st-bot".into(), user_id: "u".into(), app: None, poll_id: "p".into() };
        let chat = QueueMessage::in_conversation(&key, "d", job.clone());
        let side = QueueMessage::beside_conversation(&key, "d", job);
        assert!(chat.group.len() <= 128 && chat.group.is_ascii());
        assert_ne!(chat.group, side.group);
        let other = QueueMessage::in_conversation(&ConversationKey::new("st-bot", "v"), "d", chat.job.clone());
        assert_ne!(chat.group, other.group);
        let own = key.clone().in_app(Some("cs-web".into()));
        assert_ne!(chat.group, QueueMessage::in_conversation(&own, "d", chat.job.clone()).group);
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let base = Duration::from_secs(2);
        for receive in 1..6 {
            let wait = backoff(base, receive);
            let full = base * 2u32.pow(receive - 1);
            assert!(wait >= full / 2 && wait <= full, "{receive}: {wait:?}");
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF);
    }
}
