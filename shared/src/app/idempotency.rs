//! `Idempotency-Key` on message POSTs and upload commits
//! (draft-ietf-httpapi-idempotency-key-header): a client that sends a
//! request again after a lost answer, with the same key and body, gets the
//! first answer again; the turn and its calls are not run twice. A key is the
//! client's, per bot and user, kept a day.

use async_trait::async_trait;
use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

use super::records::PollAnswer;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

/// How long a key is remembered (the draft leaves it to the server; a day
/// covers any client's retries).
pub const KEY_SECS: i64 = 24 * 3600;
/// A request still marked running after this long never finished (its
/// process stopped before saving anything): the next one with its key runs.
pub const RUNNING_STALE_SECS: i64 = 120;
/// Longest key accepted.
const MAX_KEY_CHARS: usize = 255;

/// One key's record: the request it was for, and once done, its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// The record's id: a digest of the conversation and the key.
    pub id: String,
    /// SHA-256 of the request body.
    pub fingerprint: String,
    /// The first request's trace id (an asynchronous acknowledgement's `traceId`).
    pub trace_id: String,
    /// Unix seconds when the request started running.
    pub started_at: i64,
    #[serde(default)]
    pub answer: Option<KeyAnswer>,
    pub expires_at: i64,
}

/// What the first request was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum KeyAnswer {
    /// A turn's messages: a range of the conversation's log, as a poll's answer.
    Turn(PollAnswer),
    /// An asynchronous message, acknowledged once queued.
    Queued,
    /// An upload's commit: the answer's body (`{fileId, hash}`).
    File { body: serde_json::Value },
}

/// Where a request with a key stands.
#[derive(Debug)]
pub enum Claim {
    /// The first with this key: it runs, its record marked running.
    New(KeyRecord),
    /// Answered already: the answer again.
    Done(KeyRecord),
}

impl KeyRecord {
    /// A running record of `key` (the header's value) for `body`.
    pub fn new(conversation: &ConversationKey, key: &str, body: &[u8], trace_id: &str, now: i64) -> Result<Self> {
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS || key.chars().any(|c| c.is_control()) {
            let detail = format!("Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable characters");
            return Err(Error::InvalidPayload(detail));
        }
        let scoped = serde_json::json!([conversation.bot_id, conversation.app, conversation.user_id, key]).to_string();
        Ok(Self {
            id: hex(digest::digest(&digest::SHA256, scoped.as_bytes()).as_ref()),
            fingerprint: hex(digest::digest(&digest::SHA256, body).as_ref()),
            trace_id: trace_id.to_string(),
            started_at: now,
            answer: None,
            expires_at: now + KEY_SECS,
        })
    }

    /// The record as it is once the request is answered.
    pub fn done(&self, answer: KeyAnswer) -> Self {
        Self { answer: Some(answer), ..self.clone() }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keys' records. A turn's record is written done in the turn's own write
/// ([`crate::app::store::TurnWrite::key`]), so a saved turn is never left
/// without its answer.
#[async_trait]
pub trait IdempotencyKeys: Send + Sync {
    /// Stores `record` (running) unless a live record of its id exists: `None`
    /// when stored, else the existing one.
    async fn put_new_key(&self, record: &KeyRecord) -> Result<Option<KeyRecord>>;

    /// Replaces a running record that has gone stale (`started_at` as read);
    /// `false` when another request took it over first.
    async fn take_over_key(&self, record: &KeyRecord, started_at: i64) -> Result<bool>;

    /// Stores `record` as it is (done, outside a turn's write).
    async fn put_key(&self, record: &KeyRecord) -> Result<()>;

    /// Forgets `record` if it is still running as this request left it (a
    /// request that failed before anything was saved), so that a retry runs;
    /// a record done meanwhile (a write that landed though its answer was
    /// lost) or taken over stays.
    async fn forget_key(&self, record: &KeyRecord) -> Result<()>;
}

/// Claims `record`'s key: runs it if new (or stale), answers it again if
/// done; a 422 for a key used with another body, a 409 while the first
/// request runs.
pub async fn claim(keys: &dyn IdempotencyKeys, record: KeyRecord, now: i64) -> Result<Claim> {
    let Some(existing) = keys.put_new_key(&record).await? else {
        return Ok(Claim::New(record));
    };
    if existing.fingerprint != record.fingerprint {
        return Err(Error::KeyReused);
    }
    if existing.answer.is_some() {
        return Ok(Claim::Done(existing));
    }
    if now - existing.started_at < RUNNING_STALE_SECS {
        return Err(Error::KeyInUse);
    }
    let record = KeyRecord { trace_id: existing.trace_id.clone(), ..record };
    match keys.take_over_key(&record, existing.started_at).await? {
        true => Ok(Claim::New(record)),
        false => Err(Error::KeyInUse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_scoped_to_its_conversation_and_bounded() {
        let ada = ConversationKey::new("st-b", "ada");
        let record = KeyRecord::new(&ada, "k-1", b"{}", "tr-1", 100).unwrap();
        assert_eq!(record, KeyRecord::new(&ada, "k-1", b"{}", "tr-1", 100).unwrap());
        assert_ne!(record.id, KeyRecord::new(&ConversationKey::new("st-b", "bo"), "k-1", b"{}", "tr", 1).unwrap().id);
        assert_ne!(record.fingerprint, KeyRecord::new(&ada, "k-1", b"{ }", "tr", 1).unwrap().fingerprint);
        assert_eq!(record.expires_at, 100 + KEY_SECS);
        for bad in ["", "a\nb", &"k".repeat(256)] {
            assert!(KeyRecord::new(&ada, bad, b"{}", "tr", 1).is_err(), "{bad:?}");
        }
    }
}
