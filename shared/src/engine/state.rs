//! What the engine keeps between turns: the session and where it stands in a task.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::protocol::Tag;
use crate::text::json_len;

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
/// of bytes, kept as one text. Shared, not copied, when the session is (a
/// turn's session is copied as it is loaded, run and saved); adding a line
/// copies the text once if it is shared. The JSON is an array of strings,
/// whose length it keeps: a turn measures its conversation's JSON every time,
/// and the transcript is most of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript(Arc<Lines>);

#[derive(Debug, Clone, Default, PartialEq)]
struct Lines {
    /// Every line followed by a newline.
    text: String,
    /// Each line's length in `text` and as a JSON string, oldest first.
    lengths: VecDeque<(usize, usize)>,
    /// The sum of the lines' JSON string lengths.
    json_strings: usize,
}

impl Transcript {
    /// Adds `line`, then drops the oldest lines beyond `max_lines` or
    /// `max_bytes` (the latest line always stays).
    pub fn push(&mut self, line: String, max_lines: usize, max_bytes: usize) {
        if Arc::get_mut(&mut self.0).is_none() {
            self.0 = Arc::new(self.0.copy_with_room_for(&line));
        }
        let lines = Arc::make_mut(&mut self.0);
        lines.push(&line);
        let (mut dropped, mut bytes) = (0, lines.text.len() - lines.lengths.len());
        while lines.lengths.len() > 1 && (lines.lengths.len() > max_lines || bytes > max_bytes) {
            let Some((len, json_len)) = lines.lengths.pop_front() else { break };
            dropped += len + 1;
            bytes -= len;
            lines.json_strings -= json_len;
        }
        lines.text.drain(..dropped);
    }

    /// The lines, each ending with a newline.
    pub fn text(&self) -> String {
        self.0.text.clone()
    }

    /// The length of its JSON text.
    pub fn json_len(&self) -> usize {
        let commas = self.0.lengths.len().saturating_sub(1);
        "[]".len() + self.0.json_strings + commas
    }

    fn lines(&self) -> impl Iterator<Item = &str> {
        let mut rest = self.0.text.as_str();
        self.0.lengths.iter().map(move |&(len, _)| {
            let line = &rest[..len];
            rest = &rest[len + 1..];
            line
        })
    }
}

impl Lines {
    /// A copy with room for one more line: adding it moves nothing again.
    fn copy_with_room_for(&self, line: &str) -> Self {
        let mut text = String::with_capacity(self.text.len() + line.len() + 1);
        text.push_str(&self.text);
        let mut lengths = VecDeque::with_capacity(self.lengths.len() + 1);
        lengths.extend(&self.lengths);
        Self { text, lengths, json_strings: self.json_strings }
    }

    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        let json_len = json_len(line);
        self.lengths.push_back((line.len(), json_len));
        self.json_strings += json_len;
    }
}

impl Serialize for Transcript {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.lines())
    }
}

impl<'de> Deserialize<'de> for Transcript {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut lines = Lines::default();
        for line in Vec::<String>::deserialize(deserializer)? {
            lines.push(&line);
        }
        Ok(Self(Arc::new(lines)))
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

    #[test]
    fn a_transcript_keeps_the_length_of_its_json() {
        let mut transcript = Transcript::default();
        assert_eq!(transcript.json_len(), serde_json::to_vec(&transcript).unwrap().len());
        for n in 0..12 {
            transcript.push(format!("User: \"{n}\"\n\té\u{1}"), 5, 1000);
            let json = serde_json::to_vec(&transcript).unwrap();
            assert_eq!(transcript.json_len(), json.len(), "after line {n}");
            let read: Transcript = serde_json::from_slice(&json).unwrap();
            assert_eq!(read, transcript, "it reads back, lines with newlines included");
        }
        assert_eq!(transcript.lines().count(), 5);
    }
}
