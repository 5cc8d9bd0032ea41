//! Conversation storage: sessions with optimistic concurrency and the
//! conversation log, written together in one conditional write.

mod dynamodb;
mod memory;

use async_trait::async_trait;

pub use dynamodb::DynamoStore;
pub use memory::MemoryStore;

use crate::error::Result;
use crate::files::{ChunkRecord, FileRecord, Upload};
use crate::session::{Conversation, ConversationKey, LogEntry, PollRecord};

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
}

#[async_trait]
pub trait Store: FileStore {
    /// The conversation, with the version it was stored under.
    async fn load(&self, key: &ConversationKey) -> Result<Option<Conversation>>;

    /// Stores the conversation (as `expected_version + 1`) and appends the log
    /// entries, all or nothing.
    async fn save_turn(&self, key: &ConversationKey, write: TurnWrite<'_>) -> Result<()>;

    /// Log entries with seq greater than `after_seq`, oldest first.
    async fn read_log(&self, key: &ConversationKey, after_seq: Option<u64>, limit: usize) -> Result<Vec<LogEntry>>;

    /// Stores a poll record on its own (a message queued behind a call).
    async fn put_poll(&self, record: &PollRecord) -> Result<()>;

    async fn get_poll(&self, poll_id: &str) -> Result<Option<PollRecord>>;

    /// Counts one more read of a poll answer, if it has been read exactly
    /// `reads` times so far; `false` when another read came first.
    async fn record_poll_read(&self, poll_id: &str, reads: u32, now: i64) -> Result<bool>;
}

/// Files and chunked uploads. Items expire at their `expires_at`.
#[async_trait]
pub trait FileStore: Send + Sync {
    async fn put_file(&self, file: &FileRecord) -> Result<()>;

    /// The file, unless unknown or expired.
    async fn get_file(&self, file_id: &str) -> Result<Option<FileRecord>>;

    async fn put_upload(&self, upload: &Upload) -> Result<()>;

    /// The upload (expired ones too, until they are swept, so the client can
    /// be told its token expired).
    async fn get_upload(&self, file_token: &str) -> Result<Option<Upload>>;

    /// Records a staged chunk, replacing one of the same number.
    async fn put_chunk(&self, file_token: &str, chunk: &ChunkRecord, expires_at: i64) -> Result<()>;

    /// The staged chunks, by number.
    async fn chunks(&self, file_token: &str) -> Result<Vec<ChunkRecord>>;

    /// Stores `file` as the upload's file, all or nothing; `false` when the
    /// upload was committed first by another request.
    async fn commit_upload(&self, file_token: &str, file: &FileRecord) -> Result<bool>;
}
