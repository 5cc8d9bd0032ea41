//! The storage port of files: their records, and chunked uploads between
//! their token and their commit.

use async_trait::async_trait;

use super::{ChunkRecord, FileRecord, Upload};
use crate::error::Result;

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
