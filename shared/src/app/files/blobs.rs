//! The port of file bytes: S3 in the cloud, a local directory in the
//! embedded mode. Large files are assembled from staged parts by streaming,
//! so memory stays bounded by a part, not the file.

use async_trait::async_trait;
use aws_lc_rs::digest;
use bytes::Bytes;

use crate::error::{Error, Result};

/// The longest key: S3 allows 1024 bytes.
const MAX_KEY_BYTES: usize = 512;

/// What [`Blobs::join`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub size: u64,
    /// SHA-256 of the whole, lowercase hex.
    pub sha256: String,
}

#[async_trait]
pub trait Blobs: Send + Sync {
    /// Stores `bytes` under `key`, replacing what was there.
    async fn put(&self, key: &str, bytes: Bytes) -> Result<()>;

    /// The bytes under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Removes `key`; removing what is not there is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Stores the concatenation of `parts`, in order, under `key`, and says
    /// its size and hash. The parts stay; a missing part is an error.
    async fn join(&self, parts: &[String], key: &str) -> Result<Joined>;
}

/// Keys are made by the product (ids, never user text), and checked anyway:
/// `/`-separated segments of letters, digits, `-`, `_` and `.`, none of them
/// `.` or `..`, so no key can leave the local root.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if valid { Ok(()) } else { Err(Error::Internal(format!("not a valid blob key: {key:?}"))) }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut hasher = Hasher::new();
    hasher.update(bytes);
    hasher.finish()
}

/// SHA-256 computed as the bytes stream by.
pub(crate) struct Hasher(digest::Context);

impl Hasher {
    pub(crate) fn new() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> String {
        self.0.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_leave_their_root() {
        for key in ["files/ab/cd", "uploads/tok-1/chunk.000001"] {
            assert!(check_key(key).is_ok(), "{key}");
        }
        for key in ["", "/abs", "a/../b", "..", "a/./b", "a//b", "a\\b", "a b", "é"] {
            assert!(check_key(key).is_err(), "{key}");
        }
    }

    #[test]
    fn hashes_like_sha256() {
        let mut hasher = Hasher::new();
        hasher.update(b"ab");
        hasher.update(b"c");
        assert_eq!(hasher.finish(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
