//! The storage ports of conversations: their state and log, written together
//! by one write conditioned on the conversation's version, and the poll
//! records clients read answers from.
//! Files have a port of their own ([`FileStore`]). DynamoDB in the cloud,
//! memory in the embedded mode; one store object usually serves all three.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::files::FileStore;
use super::idempotency::{IdempotencyKeys, KeyRecord};
use super::queue::QueueMessage;
use super::records::{Conversation, LogEntry, PollRecord};
use super::relay::Changes;
use crate::error::Result;
use crate::ids::ConversationKey;

/// One turn's write: the conversation as it is after the turn and the log
/// entries the turn added.
pub struct TurnWrite<'a> {
    pub conversation: &'a Conversation,
    /// The version read before the turn (0: the conversation did not exist).
    /// The write fails with `Error::Conflict` if it changed meanwhile.
    pub expected_version: u64,
    pub log: &'a [LogEntry],
    /// Unix seconds after which the items may be deleted.
    pub expires_at: i64,
    /// Poll records written (replaced) with the turn.
    pub polls: &'a [PollRecord],
    /// The Idempotency-Key record of the message, done, written with the turn.
    pub key: Option<&'a KeyRecord>,
    /// The write applied a turn whose deliveries are owed (the outbox, see
    /// `app::relay`): its change reaches the relay. Given, the jobs kept
    /// apart from the conversation (too large for it), in an item of their own.
    pub owes: Option<&'a [QueueMessage]>,
    /// The conversation's JSON length, when the turn measured it (against
    /// the item limit): the memory store's budget counts it without
    /// measuring again.
    pub conversation_bytes: Option<usize>,
}

impl<'a> TurnWrite<'a> {
    /// A write of the conversation alone: no log entries, records or debts.
    pub fn of(conversation: &'a Conversation, expected_version: u64, expires_at: i64) -> Self {
        let (log, polls) = (&[][..], &[][..]);
        Self { conversation, expected_version, log, expires_at, polls, key: None, owes: None, conversation_bytes: None }
    }
}

/// Conversations and their log.
#[async_trait]
pub trait Conversations: Send + Sync {
    /// The conversation, with the version it was stored under.
    async fn load(&self, key: &ConversationKey) -> Result<Option<Conversation>>;

    /// Stores the conversation (as `expected_version + 1`), appends the log
    /// entries and writes the poll records, all or nothing: what the store
    /// may move first (DynamoDB: entries held in the conversation's item, to
    /// a log item) was committed before, and reads the same either way.
    async fn save_turn(&self, key: &ConversationKey, write: TurnWrite<'_>) -> Result<()> {
        self.save_turns(&[(key, write)]).await
    }

    /// Saves several conversations' writes (of distinct conversations) as
    /// one: all or nothing, `Error::Conflict` if any version changed.
    async fn save_turns(&self, writes: &[(&ConversationKey, TurnWrite<'_>)]) -> Result<()>;

    /// Log entries with seq greater than `after_seq`, oldest first.
    async fn read_log(&self, key: &ConversationKey, after_seq: Option<u64>, limit: usize) -> Result<Vec<LogEntry>>;

    /// The jobs a turn kept apart from the conversation (`TurnWrite::owes`),
    /// by the version its write made.
    async fn read_outbox(&self, key: &ConversationKey, version: u64) -> Result<Vec<QueueMessage>>;

    /// The writes that owe deliveries, in the order they are made, from now
    /// on (`app::relay`): the in-memory store's own feed (given once), or
    /// DynamoDB's stream when the store can read it.
    async fn changes(&self) -> Result<Option<Box<dyn Changes>>> {
        Ok(None)
    }

    /// Conversations whose idle closure is due by `now` (Unix seconds), with
    /// when it was due: the earliest, at most `limit` per partition of the
    /// store's index (DynamoDB: 16), the rest for the next sweep.
    async fn idle_due(&self, now: i64, limit: usize) -> Result<Vec<(ConversationKey, i64)>>;
}

/// Poll records, as the poll endpoint reads them.
#[async_trait]
pub trait Polls: Send + Sync {
    /// Stores a poll record on its own (the answer of a queued message the bot refused).
    async fn put_poll(&self, record: &PollRecord) -> Result<()>;

    async fn get_poll(&self, poll_id: &str) -> Result<Option<PollRecord>>;

    /// Counts one more read of a poll answer, if it has been read exactly
    /// `reads` times so far; `false` when another read came first.
    async fn record_poll_read(&self, poll_id: &str, reads: u32, now: i64) -> Result<bool>;
}

/// The ids of single-use tokens seen, each until its token expires.
#[async_trait]
pub trait SeenTokens: Send + Sync {
    /// Records `id` until `expires_at` (Unix seconds); `false` when it was
    /// recorded before and has not expired.
    async fn first_use(&self, id: &str, expires_at: i64) -> Result<bool>;
}

/// Small counters kept per user beside the conversation, each by name: the
/// messages to asynchronous instances (counted when accepted, before their
/// turn runs; synchronous ones are counted in the conversation their turn
/// writes) and the uploads.
#[async_trait]
pub trait Counters: Send + Sync {
    /// The counter and the version it was stored under (0: none yet).
    async fn load_counter(&self, key: &ConversationKey, name: &str) -> Result<(Option<Value>, u64)>;

    /// Stores the counter as `version + 1`, to be kept until `expires_at`;
    /// `Error::Conflict` if its version is no longer `version`.
    async fn save_counter(
        &self,
        key: &ConversationKey,
        name: &str,
        counter: &Value,
        version: u64,
        expires_at: i64,
    ) -> Result<()>;
}

/// Every storage port, for wiring a process.
#[derive(Clone)]
pub struct Stores {
    pub conversations: Arc<dyn Conversations>,
    pub polls: Arc<dyn Polls>,
    pub files: Arc<dyn FileStore>,
    pub seen_tokens: Arc<dyn SeenTokens>,
    pub counters: Arc<dyn Counters>,
    pub keys: Arc<dyn IdempotencyKeys>,
}

impl Stores {
    /// Every port served by one store.
    pub fn of<S>(store: Arc<S>) -> Self
    where
        S: Conversations + Polls + FileStore + SeenTokens + Counters + IdempotencyKeys + 'static,
    {
        Self {
            conversations: store.clone(),
            polls: store.clone(),
            files: store.clone(),
            seen_tokens: store.clone(),
            counters: store.clone(),
            keys: store,
        }
    }
}
