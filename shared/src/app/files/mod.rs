//! Files users send to a bot: stored whole or assembled from chunks, owned
//! by the bot (and by the user, when the upload's token names one), and
//! referred to from messages by fileId.
//!
//! Bytes live in [`Blobs`] (`files/{fileId}`, chunks staged under
//! `uploads/{token}/`); what is known about them lives in the table.

mod attachments;
pub(crate) mod blobs;
mod quota;
mod store;
pub mod types;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};

pub use attachments::resolve_attachments;
pub use blobs::{Blobs, Joined};
pub use store::FileStore;

use crate::app::store::Counters;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

/// Largest decoded chunk. Its base64 (4/3 larger) in a JSON or multipart
/// body, which API Gateway base64-encodes once more for Lambda when it is
/// multipart, stays under Lambda's 6 MB request payload.
pub const MAX_CHUNK_BYTES: usize = 3 * 1024 * 1024;
/// Most chunks one upload may stage.
pub const MAX_CHUNKS: u32 = 1000;
const MAX_NAME_CHARS: usize = 255;
const MAX_CONTEXT_CHARS: usize = 64;

/// File limits, from the environment at start.
#[derive(Debug, Clone)]
pub struct FileLimits {
    /// Largest file, however uploaded (HOOKLINE_MAX_FILE_BYTES, default 100 MiB).
    pub max_file_bytes: u64,
    /// Largest single-shot upload request (HOOKLINE_MAX_UPLOAD_BYTES, default
    /// 4 MiB: API Gateway hands Lambda binary bodies base64-encoded, within 6 MB).
    pub max_upload_bytes: usize,
    /// Accepted extensions, lowercase (HOOKLINE_FILE_TYPES, comma separated).
    pub extensions: Vec<String>,
    /// How long a chunked upload's fileToken stays valid (HOOKLINE_UPLOAD_TOKEN_SECS, default 1 h).
    pub token_lifetime: Duration,
    /// How long a file is kept (HOOKLINE_FILE_RETENTION_DAYS, default 30).
    pub retention: Duration,
    /// Uploads (single-shot, or chunked uploads opened) one user may start in
    /// an hour (HOOKLINE_UPLOADS_PER_HOUR, default 60; 0: no limit).
    pub uploads_per_hour: u32,
    /// Bytes one user may send in an hour, files and chunks
    /// (HOOKLINE_UPLOAD_BYTES_PER_HOUR, default 1 GiB; 0: no limit).
    pub upload_bytes_per_hour: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 100 * 1024 * 1024,
            max_upload_bytes: 4 * 1024 * 1024,
            extensions: types::DEFAULT_EXTENSIONS.iter().map(|e| e.to_string()).collect(),
            token_lifetime: Duration::from_secs(3600),
            retention: Duration::from_secs(30 * 86_400),
            uploads_per_hour: 60,
            upload_bytes_per_hour: 1024 * 1024 * 1024,
        }
    }
}

/// Whom a file or an upload belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub bot_id: String,
    /// The token's userIdentity; without one, any user of the bot (of the
    /// app, for an app whose users are its own) may send the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The app whose users are its own (`trust: anonymous`), for its uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

impl Owner {
    /// Whether `user` may refer to what this owner holds.
    pub fn admits(&self, user: &ConversationKey) -> bool {
        self.bot_id == user.bot_id
            && self.app == user.app
            && self.user_id.as_deref().is_none_or(|owner| owner == user.user_id)
    }

    /// Whether a request of `caller` may continue an upload of this owner:
    /// the same bot and app, and the same user if the upload names one.
    fn admits_owner(&self, caller: &Owner) -> bool {
        self.bot_id == caller.bot_id && self.app == caller.app && (self.user_id.is_none() || self == caller)
    }
}

/// A stored file, as the table holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileRecord {
    pub file_id: String,
    pub owner: Owner,
    pub file_name: String,
    pub file_extension: String,
    /// image, audio, video or attachment.
    pub file_type: String,
    pub mime_type: String,
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub hash: String,
    /// The client's fileContext.
    pub file_context: String,
    pub channel_type: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A chunked upload between its token and its commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    pub file_token: String,
    pub owner: Owner,
    pub channel_type: String,
    pub expires_at: i64,
    /// The file the commit made; a repeated commit answers with it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
}

/// One staged chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkRecord {
    pub chunk_no: u32,
    pub size: u64,
}

/// What the client says about a file: filename, fileExtension, fileContext.
#[derive(Debug, Clone, Default)]
pub struct Described {
    pub file_name: Option<String>,
    pub file_extension: Option<String>,
    pub file_context: Option<String>,
}

/// The checked description of a file about to be stored.
struct Naming {
    file_name: String,
    file_extension: String,
    file_context: String,
}

fn invalid(detail: impl Into<String>) -> Error {
    Error::InvalidPayload(detail.into())
}

/// Ids handed out for files and uploads: 32 hex digits, 122 bits random.
fn new_id() -> String {
    crate::ids::random_uuid().simple().to_string()
}

fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn file_key(file_id: &str) -> String {
    format!("files/{file_id}")
}

fn chunk_key(token: &str, chunk_no: u32) -> String {
    format!("uploads/{token}/{chunk_no:05}")
}

/// The channelType path segment: a short name such as `rtm` or `webhook`.
pub fn check_channel_type(channel_type: &str) -> Result<()> {
    let valid = (1..=32).contains(&channel_type.len())
        && channel_type.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(()) } else { Err(invalid("channelType must be 1 to 32 letters, digits, - or _")) }
}

/// Uploads, chunks and commits over the table and the blobs.
#[derive(Clone)]
pub struct Files {
    store: Arc<dyn FileStore>,
    blobs: Arc<dyn Blobs>,
    /// Each user's uploads and bytes this hour.
    counters: Arc<dyn Counters>,
    limits: Arc<FileLimits>,
}

impl Files {
    pub fn new(
        store: Arc<dyn FileStore>,
        blobs: Arc<dyn Blobs>,
        counters: Arc<dyn Counters>,
        limits: FileLimits,
    ) -> Self {
        Self { store, blobs, counters, limits: Arc::new(limits) }
    }

    pub fn limits(&self) -> &FileLimits {
        &self.limits
    }

    fn naming(&self, described: Described) -> Result<Naming> {
        let file_name = described.file_name.map(|n| n.trim().to_string()).unwrap_or_default();
        if file_name.is_empty() || file_name.chars().count() > MAX_NAME_CHARS || file_name.chars().any(char::is_control)
        {
            return Err(invalid(format!("filename must be 1 to {MAX_NAME_CHARS} printable characters")));
        }
        let file_extension = types::extension(described.file_extension.as_deref(), &file_name)
            .ok_or_else(|| invalid("fileExtension is missing or not an extension (letters and digits)"))?;
        if !self.limits.extensions.contains(&file_extension) {
            let allowed = self.limits.extensions.join(", ");
            return Err(invalid(format!("files of type {file_extension} are not accepted; accepted: {allowed}")));
        }
        let file_context = described.file_context.unwrap_or_default();
        if file_context.chars().count() > MAX_CONTEXT_CHARS || file_context.chars().any(char::is_control) {
            return Err(invalid(format!("fileContext is at most {MAX_CONTEXT_CHARS} printable characters")));
        }
        Ok(Naming { file_name, file_extension, file_context })
    }

    fn too_large(&self) -> Error {
        Error::PayloadTooLarge { limit: usize::try_from(self.limits.max_file_bytes).unwrap_or(usize::MAX) }
    }

    fn record(&self, owner: Owner, channel_type: &str, naming: Naming, size: u64, hash: String) -> FileRecord {
        let (file_type, mime_type) = types::describe(&naming.file_extension);
        let now = Utc::now().timestamp();
        FileRecord {
            file_id: new_id(),
            owner,
            file_name: naming.file_name,
            file_extension: naming.file_extension,
            file_type: file_type.into(),
            mime_type: mime_type.into(),
            size,
            hash,
            file_context: naming.file_context,
            channel_type: channel_type.into(),
            created_at: now,
            expires_at: now + self.limits.retention.as_secs() as i64,
        }
    }

    /// Stores a file sent in one request.
    pub async fn store_whole(
        &self,
        owner: Owner,
        channel_type: &str,
        described: Described,
        bytes: Bytes,
    ) -> Result<FileRecord> {
        let naming = self.naming(described)?;
        if bytes.is_empty() {
            return Err(invalid("the file is empty"));
        }
        if bytes.len() as u64 > self.limits.max_file_bytes {
            return Err(self.too_large());
        }
        quota::count(&*self.counters, &self.limits, &owner, 1, bytes.len() as u64).await?;
        let hash = blobs::sha256_hex(&bytes);
        let record = self.record(owner, channel_type, naming, bytes.len() as u64, hash);
        self.blobs.put(&file_key(&record.file_id), bytes).await?;
        self.store.put_file(&record).await?;
        Ok(record)
    }

    /// Opens a chunked upload.
    pub async fn open_upload(&self, owner: Owner, channel_type: &str) -> Result<Upload> {
        quota::count(&*self.counters, &self.limits, &owner, 1, 0).await?;
        let upload = Upload {
            file_token: new_id(),
            owner,
            channel_type: channel_type.into(),
            expires_at: Utc::now().timestamp() + self.limits.token_lifetime.as_secs() as i64,
            file_id: None,
        };
        self.store.put_upload(&upload).await?;
        Ok(upload)
    }

    /// The caller's open upload: unknown tokens, other bots' and other users'
    /// are all "no such upload".
    async fn upload(&self, owner: &Owner, token: &str) -> Result<Upload> {
        let unknown = || Error::NotFound("no upload with this fileToken; request a new one".into());
        if !is_id(token) {
            return Err(unknown());
        }
        let upload = self.store.get_upload(token).await?.ok_or_else(unknown)?;
        if !upload.owner.admits_owner(owner) {
            return Err(unknown());
        }
        Ok(upload)
    }

    fn check_open(upload: &Upload) -> Result<()> {
        if upload.file_id.is_some() {
            return Err(invalid("this upload is already committed; request a new fileToken for another file"));
        }
        if upload.expires_at < Utc::now().timestamp() {
            return Err(invalid("the fileToken has expired; request a new one and upload again"));
        }
        Ok(())
    }

    /// Stages chunk `chunk_no`, replacing an earlier one of that number.
    pub async fn put_chunk(&self, owner: &Owner, token: &str, chunk_no: u32, bytes: Bytes) -> Result<()> {
        let upload = self.upload(owner, token).await?;
        Self::check_open(&upload)?;
        if chunk_no > MAX_CHUNKS {
            return Err(invalid(format!("chunkNo is at most {MAX_CHUNKS}")));
        }
        if bytes.is_empty() {
            return Err(invalid("the chunk is empty"));
        }
        if bytes.len() > MAX_CHUNK_BYTES {
            return Err(Error::PayloadTooLarge { limit: MAX_CHUNK_BYTES });
        }
        // Staged bytes stay within a file's limit (concurrent chunks may
        // overshoot by a few; the commit checks again).
        let staged: u64 =
            self.store.chunks(token).await?.iter().filter(|c| c.chunk_no != chunk_no).map(|c| c.size).sum();
        if staged + bytes.len() as u64 > self.limits.max_file_bytes {
            return Err(self.too_large());
        }
        quota::count(&*self.counters, &self.limits, owner, 0, bytes.len() as u64).await?;
        let chunk = ChunkRecord { chunk_no, size: bytes.len() as u64 };
        self.blobs.put(&chunk_key(token, chunk_no), bytes).await?;
        self.store.put_chunk(token, &chunk, upload.expires_at).await
    }

    /// Joins the staged chunks into the file. Numbering starts at 0 or 1, as
    /// the client's does; every chunk up to `total_chunks` must be there.
    pub async fn commit(
        &self,
        owner: &Owner,
        token: &str,
        described: Described,
        total_chunks: u32,
    ) -> Result<FileRecord> {
        let upload = self.upload(owner, token).await?;
        if let Some(file_id) = &upload.file_id {
            // A repeated commit (a retry after a lost answer) gets the same file.
            return self.committed_file(file_id).await;
        }
        Self::check_open(&upload)?;
        let naming = self.naming(described)?;
        let chunks = self.store.chunks(token).await?;
        let numbers = chunk_numbers(&chunks, total_chunks)?;
        let size: u64 = chunks.iter().map(|c| c.size).sum();
        if size > self.limits.max_file_bytes {
            return Err(self.too_large());
        }
        let parts: Vec<String> = numbers.iter().map(|n| chunk_key(token, *n)).collect();
        let record = self.record(upload.owner.clone(), &upload.channel_type, naming, 0, String::new());
        let record = match self.join_and_record(token, &parts, record).await {
            Ok(Some(record)) => record,
            // Another commit of this upload got there first (and may have
            // removed the chunks while this one read them): answer with its file.
            outcome => match self.upload(owner, token).await?.file_id {
                Some(winner) => return self.committed_file(&winner).await,
                None => return Err(outcome.err().unwrap_or(Error::Conflict)),
            },
        };
        for part in &parts {
            // The bucket's lifecycle rule removes what this misses.
            if let Err(e) = self.blobs.delete(part).await {
                tracing::warn!(error = %e, part, "a staged chunk was not removed");
            }
        }
        Ok(record)
    }

    /// Joins the parts into a new file and records it as the upload's;
    /// `None` when another commit recorded its file first.
    async fn join_and_record(&self, token: &str, parts: &[String], record: FileRecord) -> Result<Option<FileRecord>> {
        let key = file_key(&record.file_id);
        let joined = self.blobs.join(parts, &key).await?;
        let record = FileRecord { size: joined.size, hash: joined.sha256, ..record };
        // A chunk replaced during the join may have changed the size.
        let committed = match record.size > self.limits.max_file_bytes {
            true => Err(self.too_large()),
            false => self.store.commit_upload(token, &record).await,
        };
        if matches!(committed, Ok(true)) {
            return Ok(Some(record));
        }
        // A write whose answer was lost may still have landed: the file the
        // upload names keeps its bytes. Any other copy goes.
        match self.store.get_upload(token).await {
            Ok(Some(upload)) if upload.file_id.as_deref() == Some(record.file_id.as_str()) => return Ok(Some(record)),
            Ok(_) => {
                if let Err(e) = self.blobs.delete(&key).await {
                    tracing::warn!(error = %e, key, "an uncommitted file was not removed");
                }
            }
            // Unknown: kept, for the bucket's lifecycle to remove if it is no one's.
            Err(e) => tracing::warn!(error = %e, key, "could not tell whether a joined file is the upload's"),
        }
        committed.map(|_| None)
    }

    async fn committed_file(&self, file_id: &str) -> Result<FileRecord> {
        let expired = || invalid("the file this upload made has expired; upload it again");
        self.store.get_file(file_id).await?.ok_or_else(expired)
    }
}

/// The chunk numbers to join, in order, or an error naming what is wrong.
fn chunk_numbers(chunks: &[ChunkRecord], total_chunks: u32) -> Result<Vec<u32>> {
    if total_chunks == 0 || total_chunks > MAX_CHUNKS {
        return Err(invalid(format!("totalChunks must be 1 to {MAX_CHUNKS}")));
    }
    let staged: BTreeSet<u32> = chunks.iter().map(|c| c.chunk_no).collect();
    if staged.is_empty() {
        return Err(invalid("no chunks were received for this fileToken"));
    }
    let missing = |first: u32| -> Vec<String> {
        (first..first + total_chunks).filter(|n| !staged.contains(n)).map(|n| n.to_string()).collect()
    };
    let first = u32::from(!staged.contains(&0));
    let expected: Vec<u32> = (first..first + total_chunks).collect();
    let absent = missing(first);
    if !absent.is_empty() {
        let mut detail =
            format!("chunks missing: {} (totalChunks {total_chunks}, numbered from {first}", absent.join(", "));
        if first == 1 {
            // Without chunk 0 the numbering could still start there.
            detail.push_str(&format!("; numbered from 0: {}", missing(0).join(", ")));
        }
        return Err(invalid(detail + ")"));
    }
    if staged.len() as u32 != total_chunks {
        let received: Vec<String> = staged.iter().map(u32::to_string).collect();
        return Err(invalid(format!(
            "totalChunks is {total_chunks} but {} chunks were received: {}",
            staged.len(),
            received.join(", ")
        )));
    }
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(numbers: &[u32]) -> Vec<ChunkRecord> {
        numbers.iter().map(|&chunk_no| ChunkRecord { chunk_no, size: 1 }).collect()
    }

    #[test]
    fn chunks_number_from_zero_or_one() {
        assert_eq!(chunk_numbers(&staged(&[2, 0, 1]), 3).unwrap(), [0, 1, 2]);
        assert_eq!(chunk_numbers(&staged(&[1, 2, 3]), 3).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn missing_chunks_are_named() {
        let error = chunk_numbers(&staged(&[0, 2, 4]), 6).unwrap_err().to_string();
        assert!(error.contains("chunks missing: 1, 3, 5"), "{error}");
        let error = chunk_numbers(&staged(&[1, 2, 4]), 4).unwrap_err().to_string();
        assert!(error.contains("chunks missing: 3 (totalChunks 4, numbered from 1; numbered from 0: 0, 3)"), "{error}");
    }

    #[test]
    fn extra_chunks_break_the_count() {
        let error = chunk_numbers(&staged(&[0, 1, 2, 3]), 3).unwrap_err().to_string();
        assert!(error.contains("totalChunks is 3 but 4 chunks were received: 0, 1, 2, 3"), "{error}");
        assert!(chunk_numbers(&staged(&[0]), 0).is_err());
        let error = chunk_numbers(&[], 2).unwrap_err().to_string();
        assert!(error.contains("no chunks were received"), "{error}");
    }

    #[test]
    fn owners_admit_their_bot_app_and_user() {
        let owner = |user: Option<&str>, app: Option<&str>| Owner {
            bot_id: "st-a".into(),
            user_id: user.map(String::from),
            app: app.map(String::from),
        };
        let user =
            |bot: &str, user: &str, app: Option<&str>| ConversationKey::new(bot, user).in_app(app.map(String::from));
        let (anyone, alice, web) = (owner(None, None), owner(Some("alice"), None), owner(None, Some("cs-web")));
        assert!(anyone.admits(&user("st-a", "bob", None)));
        assert!(!anyone.admits(&user("st-b", "bob", None)));
        assert!(!anyone.admits(&user("st-a", "bob", Some("cs-web"))));
        assert!(alice.admits(&user("st-a", "alice", None)));
        assert!(!alice.admits(&user("st-a", "bob", None)));
        assert!(!alice.admits(&user("st-a", "alice", Some("cs-web"))));
        assert!(web.admits(&user("st-a", "bob", Some("cs-web"))));
        assert!(!web.admits(&user("st-a", "bob", None)));
        assert!(!web.admits(&user("st-a", "bob", Some("cs-other"))));
    }
}
