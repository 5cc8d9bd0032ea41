//! Blobs in a local directory (embedded mode). Writes go to a temporary file
//! renamed into place, so a reader never sees half a file.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::files::blobs::{Blobs, Hasher, Joined, check_key};
use crate::error::{Error, Result};

const COPY_BUFFER: usize = 64 * 1024;

pub struct LocalBlobs {
    root: PathBuf,
}

fn io(operation: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{operation} {}: {e}", path.display()))
}

impl LocalBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// A temporary file beside `path`, and the file it becomes.
    async fn create(&self, path: &Path) -> Result<(tokio::fs::File, PathBuf)> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| io("create", parent, e))?;
        }
        let temporary = path.with_extension(format!("partial-{}", crate::ids::random_uuid().simple()));
        let file = tokio::fs::File::create(&temporary).await.map_err(|e| io("create", &temporary, e))?;
        Ok((file, temporary))
    }

    /// Removes each entry directly under `prefix` (a file, or a directory
    /// with all it holds) last changed more than `age` ago: the embedded
    /// mode's stand-in for a bucket's lifecycle rules. Says how many went.
    pub async fn remove_older_than(&self, prefix: &str, age: Duration) -> Result<usize> {
        let dir = self.path(prefix)?;
        let cutoff = SystemTime::now().checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io("list", &dir, e)),
        };
        let mut removed = 0;
        while let Some(entry) = entries.next_entry().await.map_err(|e| io("list", &dir, e))? {
            let path = entry.path();
            let Ok(metadata) = entry.metadata().await else { continue };
            if metadata.modified().is_ok_and(|modified| modified >= cutoff) {
                continue;
            }
            let gone = if metadata.is_dir() {
                tokio::fs::remove_dir_all(&path).await
            } else {
                tokio::fs::remove_file(&path).await
            };
            match gone {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("delete", &path, e)),
            }
        }
        Ok(removed)
    }

    async fn commit(file: tokio::fs::File, temporary: &Path, path: &Path) -> Result<()> {
        file.sync_all().await.map_err(|e| io("write", temporary, e))?;
        tokio::fs::rename(temporary, path).await.map_err(|e| io("rename", path, e))
    }
}

#[async_trait]
impl Blobs for LocalBlobs {
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let (mut file, temporary) = self.create(&path).await?;
        file.write_all(&bytes).await.map_err(|e| io("write", &temporary, e))?;
        Self::commit(file, &temporary, &path).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io("delete", &path, e)),
            _ => Ok(()),
        }
    }

    async fn join(&self, parts: &[String], key: &str) -> Result<Joined> {
        let path = self.path(key)?;
        let (mut file, temporary) = self.create(&path).await?;
        let copied = async {
            let mut hasher = Hasher::new();
            let mut size = 0u64;
            let mut buffer = vec![0u8; COPY_BUFFER];
            for part in parts {
                let part_path = self.path(part)?;
                let mut input = tokio::fs::File::open(&part_path).await.map_err(|e| io("open", &part_path, e))?;
                loop {
                    let read = input.read(&mut buffer).await.map_err(|e| io("read", &part_path, e))?;
                    if read == 0 {
                        break;
                    }
                    hasher.update(&buffer[..read]);
                    file.write_all(&buffer[..read]).await.map_err(|e| io("write", &temporary, e))?;
                    size += read as u64;
                }
            }
            Ok(Joined { size, sha256: hasher.finish() })
        }
        .await;
        match copied {
            Ok(joined) => Self::commit(file, &temporary, &path).await.map(|()| joined),
            Err(e) => {
                drop(file);
                let _ = tokio::fs::remove_file(&temporary).await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn old_entries_are_removed_and_recent_ones_kept() {
        let root = std::env::temp_dir().join(format!("hookline-local-{}", crate::ids::random_uuid().simple()));
        let blobs = LocalBlobs::new(&root);
        blobs.put("uploads/tok1/00000", Bytes::from_static(b"a")).await.unwrap();
        blobs.put("uploads/tok1/00001", Bytes::from_static(b"b")).await.unwrap();
        blobs.put("files/f1", Bytes::from_static(b"c")).await.unwrap();
        assert_eq!(blobs.remove_older_than("uploads", Duration::from_secs(3600)).await.unwrap(), 0);
        assert!(blobs.get("uploads/tok1/00001").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(blobs.remove_older_than("uploads", Duration::from_millis(10)).await.unwrap(), 1);
        assert_eq!(blobs.get("uploads/tok1/00000").await.unwrap(), None);
        assert!(blobs.get("files/f1").await.unwrap().is_some(), "other prefixes stay");
        assert_eq!(blobs.remove_older_than("nothing-here", Duration::ZERO).await.unwrap(), 0);
        tokio::fs::remove_dir_all(&root).await.unwrap();
    }
}
