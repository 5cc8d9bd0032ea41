//! The one error type of the core. `api` maps it to the wire envelope.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body or its fields break the protocol (400).
    #[error("invalid request payload: {0}")]
    InvalidPayload(String),
    /// Missing, malformed or rejected credentials (401).
    #[error("invalid access token: {0}")]
    Unauthorized(String),
    /// Unknown bot, instance or route (404).
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body's content type is not one the endpoint reads (415); names what it reads.
    #[error("content type must be {0}")]
    UnsupportedMediaType(&'static str),
    /// The synchronous deadline passed before the turn was committed (504).
    #[error("turn did not complete within {0:?}")]
    Timeout(Duration),
    /// A pollId unknown, of someone else, expired, or already answered (400,
    /// the spec's "No data found").
    #[error("no data for this pollId")]
    NoData,
    /// A v1 message for a conversation still waiting for a polled call (409).
    #[error("the bot is still answering this user's previous message")]
    Busy,
    /// A user over a rate limit or quota (429): which, seconds until the
    /// request is taken again, and the RateLimit-Policy and RateLimit values.
    #[error("{reason}: retry in {retry_after} s")]
    RateLimited { reason: String, retry_after: u64, policy: String, current: String },
    /// An Idempotency-Key sent again with another request body (422).
    #[error("this Idempotency-Key was used for another request")]
    KeyReused,
    /// An Idempotency-Key sent again while its first request runs (409).
    #[error("a request with this Idempotency-Key is still being processed")]
    KeyInUse,
    /// Another writer changed the conversation first; the turn is retried.
    #[error("conversation was modified concurrently")]
    Conflict,
    /// The backing store failed or is unreachable (503).
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// A bug: never caused by request content alone (500).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
