//! Files and uploads in process memory.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use super::MemoryStore;
use crate::app::files::{ChunkRecord, FileRecord, FileStore, Upload};
use crate::error::{Error, Result};

const MAX_ITEMS_BEFORE_SWEEP: usize = 10_000;

#[derive(Default)]
pub(super) struct FileTables {
    files: HashMap<String, FileRecord>,
    uploads: HashMap<String, (Upload, BTreeMap<u32, ChunkRecord>)>,
}

impl FileTables {
    /// Expired items go, as DynamoDB's TTL removes them.
    fn sweep(&mut self) {
        let now = chrono::Utc::now().timestamp();
        if self.files.len() >= MAX_ITEMS_BEFORE_SWEEP {
            self.files.retain(|_, f| f.expires_at >= now);
        }
        if self.uploads.len() >= MAX_ITEMS_BEFORE_SWEEP {
            self.uploads.retain(|_, (u, _)| u.expires_at >= now);
        }
    }
}

impl MemoryStore {
    fn files(&self) -> Result<std::sync::MutexGuard<'_, FileTables>> {
        self.files.lock().map_err(|_| Error::Internal("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl FileStore for MemoryStore {
    async fn put_file(&self, file: &FileRecord) -> Result<()> {
        let mut tables = self.files()?;
        tables.sweep();
        tables.files.insert(file.file_id.clone(), file.clone());
        Ok(())
    }

    async fn get_file(&self, file_id: &str) -> Result<Option<FileRecord>> {
        let now = chrono::Utc::now().timestamp();
        Ok(self.files()?.files.get(file_id).filter(|f| f.expires_at >= now).cloned())
    }

    async fn put_upload(&self, upload: &Upload) -> Result<()> {
        let mut tables = self.files()?;
        tables.sweep();
        tables.uploads.insert(upload.file_token.clone(), (upload.clone(), BTreeMap::new()));
        Ok(())
    }

    async fn get_upload(&self, file_token: &str) -> Result<Option<Upload>> {
        Ok(self.files()?.uploads.get(file_token).map(|(upload, _)| upload.clone()))
    }

    async fn put_chunk(&self, file_token: &str, chunk: &ChunkRecord, _expires_at: i64) -> Result<()> {
        let mut tables = self.files()?;
        let (_, chunks) =
            tables.uploads.get_mut(file_token).ok_or_else(|| Error::Storage("the upload is gone".into()))?;
        chunks.insert(chunk.chunk_no, *chunk);
        Ok(())
    }

    async fn chunks(&self, file_token: &str) -> Result<Vec<ChunkRecord>> {
        Ok(self
            .files()?
            .uploads
            .get(file_token)
            .map(|(_, chunks)| chunks.values().copied().collect())
            .unwrap_or_default())
    }

    async fn commit_upload(&self, file_token: &str, file: &FileRecord) -> Result<bool> {
        let mut tables = self.files()?;
        let Some((upload, _)) = tables.uploads.get_mut(file_token) else {
            return Err(Error::Storage("the upload is gone".into()));
        };
        if upload.file_id.is_some() {
            return Ok(false);
        }
        upload.file_id = Some(file.file_id.clone());
        tables.files.insert(file.file_id.clone(), file.clone());
        Ok(true)
    }
}
