//! What the engine keeps between turns: the session and where it stands in a task.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::protocol::Tag;

/// One conversation session: ends on SESSION_CLOSURE, `session.new`, or after
/// the bot's idle timeout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub last_active_at: i64,
    pub language: String,
    #[serde(default)]
    pub task: Option<ActiveTask>,
    /// Values collected by the flows (question answers, later service results).
    #[serde(default)]
    pub context: Map<String, Value>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The full last request message, with customData.
    #[serde(default)]
    pub last_message: Value,
    /// Recent `Bot: ...` / `User: ...` lines, sent by webhook nodes. Shared,
    /// not copied, when the session is: a turn clones the session it runs.
    #[serde(default)]
    pub transcript: Vec<Arc<str>>,
}

/// Where the session stands inside a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveTask {
    pub task_id: String,
    /// The node waiting: a question or form for the user, a service or
    /// webhook node for its call.
    pub node_id: String,
    /// Invalid answers so far.
    #[serde(default)]
    pub retries: u32,
}
