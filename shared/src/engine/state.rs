//! What the engine keeps between turns: the session and where it stands in a task.

use std::collections::VecDeque;
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
    /// Recent `Bot: ...` / `User: ...` lines, sent by webhook nodes.
    #[serde(default)]
    pub transcript: Transcript,
}

/// The latest `Bot: ...` / `User: ...` lines, within a number of lines and
/// of bytes. Shared, not copied, when the session is (a turn's session is
/// copied as it is loaded, run and saved); adding a line copies the list
/// once if it is shared. The JSON is an array of strings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Transcript(Arc<VecDeque<Arc<str>>>);

impl Transcript {
    /// Adds `line`, then drops the oldest lines beyond `max_lines` or
    /// `max_bytes` (the latest line always stays).
    pub fn push(&mut self, line: String, max_lines: usize, max_bytes: usize) {
        let lines = Arc::make_mut(&mut self.0);
        lines.push_back(line.into());
        let mut bytes: usize = lines.iter().map(|line| line.len()).sum();
        while lines.len() > 1 && (lines.len() > max_lines || bytes > max_bytes) {
            bytes -= lines.pop_front().map_or(0, |line| line.len());
        }
    }

    /// The lines, each ending with a newline.
    pub fn text(&self) -> String {
        self.0.iter().flat_map(|line| [&**line, "\n"]).collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_keeps_its_latest_lines_within_its_bounds() {
        let mut transcript = Transcript::default();
        for n in 0..5 {
            transcript.push(format!("User: {n}"), 3, 1000);
        }
        assert_eq!(transcript.text(), "User: 2\nUser: 3\nUser: 4\n");
        transcript.push("Bot: ".to_string() + &"x".repeat(20), 3, 24);
        assert_eq!(transcript.text(), format!("Bot: {}\n", "x".repeat(20)), "only the latest line fits");
        transcript.push("Bot: ".to_string() + &"y".repeat(50), 3, 24);
        assert_eq!(transcript.text(), format!("Bot: {}\n", "y".repeat(50)), "the latest line stays, even too long");
    }

    #[test]
    fn a_transcript_is_an_array_of_strings_shared_until_one_copy_changes() {
        let stored: Transcript = serde_json::from_str(r#"["User: hi", "Bot: \"hello\""]"#).unwrap();
        assert_eq!(serde_json::to_string(&stored).unwrap(), r#"["User: hi","Bot: \"hello\""]"#);
        let mut copy = stored.clone();
        assert!(Arc::ptr_eq(&stored.0, &copy.0), "a copy shares the lines");
        copy.push("User: bye".into(), 10, 1000);
        assert_eq!(stored.text(), "User: hi\nBot: \"hello\"\n", "the stored copy is unchanged");
        assert_eq!(copy.text(), "User: hi\nBot: \"hello\"\nUser: bye\n");
    }
}
