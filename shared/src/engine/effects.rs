//! The engine's effects: an HTTP call a flow asks for (a service or webhook
//! node), and what came back. The driver makes the call; the engine only
//! describes it and reads its outcome.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definition::HeaderValue;

/// One HTTP request a flow wants made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCall {
    pub method: String,
    pub url: String,
    /// Values naming a secret (`{env}`) are resolved when the call is made,
    /// so queued and stored calls never hold secrets.
    pub headers: Vec<(String, HeaderValue)>,
    pub body: Option<Value>,
    pub timeout: Duration,
    /// Loopback and private addresses are reachable (local development only).
    pub allow_private: bool,
    pub max_response_bytes: usize,
}

/// What came back: a status and the body bytes (within the size cap).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
    /// The answer's Retry-After, in seconds.
    pub retry_after: Option<Duration>,
}

/// A call that got no answer to read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// Not made: an invalid URL, method or body, or a URL naming an address
    /// the guard refuses (a name that resolves to one fails as `Transport`).
    #[error("refused: {0}")]
    Refused(String),
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The connection failed (DNS, TCP, TLS, HTTP), with its causes.
    #[error("{0}")]
    Transport(String),
}

/// The outcome the engine resumes with.
pub type CallOutcome = Result<HttpReply, CallError>;
