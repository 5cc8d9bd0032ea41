//! Wire types of the Webhook channel, v1 and v2 (spec: kore-webhook-channel.md).
//!
//! Serde only. Unknown fields are tolerated everywhere, as clients send extras;
//! a field of the wrong type fails deserialization and becomes a 400.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const VERSION_V2: &str = "v2";

#[derive(Debug, Default, Deserialize)]
pub struct SessionOptions {
    #[serde(default)]
    pub new: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct From {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub user_info: Option<Map<String, Value>>,
}

/// A name/value meta tag; entries with an empty name are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Tag {
    pub name: String,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaTags {
    #[serde(default)]
    pub user_level_tags: Vec<Tag>,
    #[serde(default)]
    pub session_level_tags: Vec<Tag>,
    #[serde(default)]
    pub message_level_tags: Vec<Tag>,
}

/// `{"url": ...}` or `{"fileId", "fileType", "fileName"}`; other keys are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

/// The spec types mergeIdentity as a string "true"/"false" but its sample sends a boolean.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Text(String),
}

/// Fields common to v1 and v2 requests besides `message`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    #[serde(default)]
    pub session: Option<SessionOptions>,
    #[serde(default)]
    pub from: Option<From>,
    /// Ignored: the bot is named by the URL.
    #[serde(default)]
    pub to: Option<Value>,
    /// An object, or (as the spec types it) the object JSON-encoded in a string.
    #[serde(default, deserialize_with = "object_or_json_text")]
    pub meta_tags: Option<MetaTags>,
    #[serde(default)]
    pub merge_identity: Option<Flag>,
    #[serde(default)]
    pub preferred_channel_for_response: Option<String>,
    #[serde(default)]
    pub custom_data: Option<Map<String, Value>>,
    #[serde(default, alias = "InteractiveLanguage")]
    pub interactive_language: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct V1Message {
    pub text: String,
    #[serde(default)]
    pub attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, Deserialize)]
pub struct V1Request {
    pub message: V1Message,
    /// The v1 table lists the tag fields at the top level, with no `metaTags` parent.
    #[serde(flatten)]
    pub tags: MetaTags,
    #[serde(flatten)]
    pub envelope: Envelope,
}

/// `T` as an object, or as its JSON text in a string.
fn object_or_json_text<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::Error;
    let value = match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(None),
        Some(Value::String(text)) => {
            serde_json::from_str(&text).map_err(|e| D::Error::custom(format!("as JSON text: {e}")))?
        }
        Some(value) => value,
    };
    // serde would also fill the structs from arrays of their fields.
    let tags = TAG_LEVELS.iter().filter_map(|level| value.get(level)).filter_map(Value::as_array).flatten();
    if value.is_array() || tags.clone().any(Value::is_array) {
        return Err(D::Error::custom("must be an object with lists of {name, value} objects"));
    }
    serde_json::from_value(value).map(Some).map_err(D::Error::custom)
}

/// The lists of `MetaTags`, as the wire names them.
pub const TAG_LEVELS: [&str; 3] = ["userLevelTags", "sessionLevelTags", "messageLevelTags"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum V2MessageType {
    Text,
    Template,
    Event,
    FormData,
}

#[derive(Debug, Deserialize)]
pub struct V2Message {
    #[serde(rename = "type")]
    pub kind: V2MessageType,
    pub val: Value,
    #[serde(default)]
    pub attachments: Option<Vec<Attachment>>,
}

#[derive(Debug, Deserialize)]
pub struct V2Request {
    pub message: V2Message,
    #[serde(flatten)]
    pub envelope: Envelope,
}

/// One bot message in `data` (v2). Event answers carry eventType and description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V2Data {
    #[serde(rename = "type")]
    pub kind: String,
    pub val: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_on: String,
    pub message_id: String,
    /// Milliseconds a client should wait before showing the message (a
    /// webhook's Joonbot `delay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<u64>,
}

/// How a task ended in this turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCompletion {
    pub end_reason: String,
    pub completed_task_id: String,
    pub completed_task_name: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct V2Response {
    pub to: String,
    pub from: String,
    pub data: Vec<V2Data>,
    #[serde(rename = "_v")]
    pub version: &'static str,
    pub end_of_task: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub completion: Option<TaskCompletion>,
    /// `{formDef, formInitialization}` when the bot asks for a form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<Value>,
    /// Polling: the rest of the turn is read with this id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_id: Option<String>,
}

/// v1 answer: `text` is a string for one message, an array for several.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct V1Response {
    pub text: Value,
    pub end_of_task: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub completion: Option<TaskCompletion>,
    /// `{formDef, formInitialization}` when the bot asks for a form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorItem {
    pub msg: String,
    pub code: u16,
    /// What exactly was wrong; an addition to the spec's envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub errors: Vec<ErrorItem>,
    #[serde(rename = "_v")]
    pub version: String,
    #[serde(rename = "_t")]
    pub trace_id: String,
}

/// GET /api/botmeta/{streamId}
#[derive(Debug, Serialize)]
pub struct BotMeta {
    pub name: String,
    pub icon: Option<String>,
}

impl V2Data {
    /// The message as v1's `text` carries it, and as a text-only instance
    /// sends it: a template as readable text, anything else as it is.
    pub fn as_text(&self) -> Value {
        match self.kind.as_str() {
            "template" => Value::String(template_text(&self.val)),
            _ => self.val.clone(),
        }
    }
}

/// A Kore template as plain text: its text, each element's title and
/// subtitle, and its buttons or quick replies by title (a link with its URL),
/// for the user to say or type; a template with none of these is named by its type.
pub fn template_text(template: &Value) -> String {
    let payload = &template["payload"];
    let text = |value: &Value| value.as_str().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    let mut lines: Vec<String> =
        ["text", "heading", "title"].iter().find_map(|k| text(&payload[*k])).into_iter().collect();
    for element in payload["elements"].as_array().into_iter().flatten() {
        match (text(&element["title"]), text(&element["subtitle"])) {
            (Some(title), Some(subtitle)) => lines.push(format!("- {title}: {subtitle}")),
            (Some(title), None) => lines.push(format!("- {title}")),
            _ => {}
        }
    }
    let options = payload["buttons"].as_array().or(payload["quick_replies"].as_array());
    for option in options.into_iter().flatten() {
        match (text(&option["title"]), text(&option["url"])) {
            (Some(title), Some(url)) => lines.push(format!("- {title}: {url}")),
            (Some(title), None) => lines.push(format!("- {title}")),
            _ => {}
        }
    }
    if lines.is_empty() {
        lines.push(format!("[{}]", payload["template_type"].as_str().unwrap_or("template")));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_read_as_text() {
        let cases = [
            (
                json!({"type": "template", "payload": {"template_type": "button", "text": "Pick one",
                    "buttons": [{"type": "postback", "title": "Balance", "payload": "balance"},
                                {"type": "web_url", "title": "Help", "url": "https://x.example"}]}}),
                "Pick one\n- Balance\n- Help: https://x.example",
            ),
            (
                json!({"type": "template", "payload": {"template_type": "quick_replies", "text": "Or quickly",
                    "quick_replies": [{"content_type": "text", "title": "Survey", "payload": "survey"}]}}),
                "Or quickly\n- Survey",
            ),
            (
                json!({"type": "template", "payload": {"template_type": "carousel", "elements": [
                    {"title": "Lisbon", "subtitle": "Sunny", "buttons": [{"type": "postback", "title": "Go"}]},
                    {"title": "Oslo"}]}}),
                "- Lisbon: Sunny\n- Oslo",
            ),
            (json!({"type": "template", "payload": {"template_type": "list", "heading": "Menu"}}), "Menu"),
            (json!({"type": "template", "payload": {"template_type": "dateTemplate"}}), "[dateTemplate]"),
        ];
        for (template, text) in cases {
            assert_eq!(template_text(&template), text, "{template}");
        }
    }
}
