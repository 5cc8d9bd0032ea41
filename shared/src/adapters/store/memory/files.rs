//! Files and uploads in process memory.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::expiring::Expiring;
use super::{MemoryStore, locked, now};
use crate::app::files::{ChunkRecord, FileRecord, FileStore, Upload};
use crate::error::{Error, Result};

/// Stored files and open uploads, each table within `max_bytes`.
pub(super) struct FileTables {
    files: Expiring<String, FileRecord>,
    uploads: Expiring<String, (Upload, BTreeMap<u32, ChunkRecord>)>,
}

impl FileTables {
    pub fn new(max_bytes: usize) -> Self {
        Self { files: Expiring::new("file records", max_bytes), uploads: Expiring::new("uploads", max_bytes) }
    }
}

#[async_trait]
impl FileStore for MemoryStore {
    async fn put_file(&self, file: &FileRecord) -> Result<()> {
        locked(&self.files)?.files.insert(file.file_id.clone(), file.clone(), file.expires_at, now());
        Ok(())
    }

    async fn get_file(&self, file_id: &str) -> Result<Option<FileRecord>> {
        Ok(locked(&self.files)?.files.get(&file_id.to_string(), now()).cloned())
    }

    async fn put_upload(&self, upload: &Upload) -> Result<()> {
        let record = (upload.clone(), BTreeMap::new());
        locked(&self.files)?.uploads.insert(upload.file_token.clone(), record, upload.expires_at, now());
        Ok(())
    }

    // An upload is read past its expiry until it is dropped, as DynamoDB's
    // TTL lags: the caller tells an expired upload from a missing one.
    async fn get_upload(&self, file_token: &str) -> Result<Option<Upload>> {
        let tables = locked(&self.files)?;
        Ok(tables.uploads.get(&file_token.to_string(), i64::MIN).map(|(upload, _)| upload.clone()))
    }

    async fn put_chunk(&self, file_token: &str, chunk: &ChunkRecord, _expires_at: i64) -> Result<()> {
        let mut tables = locked(&self.files)?;
        let (_, chunks) = tables
            .uploads
            .get_mut(&file_token.to_string(), i64::MIN)
            .ok_or_else(|| Error::Storage("the upload is gone".into()))?;
        chunks.insert(chunk.chunk_no, *chunk);
        Ok(())
    }

    async fn chunks(&self, file_token: &str) -> Result<Vec<ChunkRecord>> {
        let tables = locked(&self.files)?;
        let upload = tables.uploads.get(&file_token.to_string(), i64::MIN);
        Ok(upload.map(|(_, chunks)| chunks.values().copied().collect()).unwrap_or_default())
    }

    async fn commit_upload(&self, file_token: &str, file: &FileRecord) -> Result<bool> {
        let mut tables = locked(&self.files)?;
        let Some((upload, _)) = tables.uploads.get_mut(&file_token.to_string(), i64::MIN) else {
            return Err(Error::Storage("the upload is gone".into()));
        };
        if upload.file_id.is_some() {
            return Ok(false);
        }
        upload.file_id = Some(file.file_id.clone());
        tables.files.insert(file.file_id.clone(), file.clone(), file.expires_at, now());
        Ok(true)
    }
}
