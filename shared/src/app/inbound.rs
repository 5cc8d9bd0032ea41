//! v1 and v2 request bodies, checked against the spec's rules and turned into
//! one shape for the turn.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use std::sync::Arc;

use tokio::time::Instant;

use super::auth::MAX_USER_ID_CHARS;
use super::turn::{AnswerTo, Calls, TurnRequest};
use crate::definition::Bot;
use crate::engine::{Input, UserEvent};
use crate::error::{Error, Result};
use crate::ids::ConversationKey;
use crate::protocol::{Attachment, Envelope, Flag, MetaTags, TAG_LEVELS, V1Request, V2MessageType, V2Request};

const MAX_ATTACHMENTS: usize = 20;
const MAX_URL_CHARS: usize = 2048;
/// What a request may add to state that outlives it (session, user profile).
const MAX_TEXT_CHARS: usize = 4096;
const MAX_USER_INFO_KEYS: usize = 50;
const MAX_USER_INFO_BYTES: usize = 8 * 1024;
const MAX_TAGS_PER_LEVEL: usize = 50;
const MAX_TAG_NAME_CHARS: usize = 128;
const MAX_TAG_VALUE_BYTES: usize = 1024;

pub struct Inbound {
    pub new_session: bool,
    pub from_id: Option<String>,
    pub user_info: Option<Map<String, Value>>,
    pub event: UserEvent,
    /// The whole request body: flows read it as
    /// context.session.BotUserSession.lastMessage (customData included).
    pub payload: Value,
    pub tags: MetaTags,
    pub language: Option<String>,
    /// `preferredChannelForResponse`: an instance whose texts the bot answers with.
    pub preferred_channel: Option<String>,
    /// `mergeIdentity`: continue the conversation the token names.
    pub merge_identity: bool,
}

impl Inbound {
    /// The turn this checked request asks for: answered to the caller, calls
    /// made inline, started now. Callers adjust the rest.
    pub fn into_turn(self, bot: &Arc<Bot>, instance_id: &str, user: ConversationKey, trace_id: String) -> TurnRequest {
        let Inbound { new_session, user_info, event, payload, tags, language, preferred_channel, .. } = self;
        // A channel the bot has no instance for (as the spec's sample `rtm`) leaves the texts as they are.
        let texts_instance = preferred_channel.filter(|id| bot.instance_by_id(id).is_some());
        TurnRequest {
            bot: bot.clone(),
            user,
            instance_id: instance_id.to_string(),
            texts_instance,
            merge_from: None,
            key: None,
            new_session,
            input: Input { event, message: payload, language, session_tags: tags.session_level_tags },
            user_info,
            user_tags: tags.user_level_tags,
            message_tags: tags.message_level_tags,
            trace_id,
            client_ip: None,
            calls: Calls::Inline,
            answer_to: AnswerTo::Caller,
            started: Instant::now(),
        }
    }
}

fn invalid(detail: impl Into<String>) -> Error {
    Error::InvalidPayload(detail.into())
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<(T, Value)> {
    let payload: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    if !payload.is_object() {
        return Err(invalid("the body must be a JSON object"));
    }
    check_objects(&payload)?;
    let request = serde_path_to_error::deserialize(&payload).map_err(|e| {
        let path = e.path().to_string();
        invalid(format!("{path}: {}", e.into_inner()))
    })?;
    Ok((request, payload))
}

/// serde fills a struct from an array of its fields, in order, as well as
/// from an object: where the spec has an object (or a list of them), an
/// array is refused here as the wrong type it is (`protocol::MetaTags` too).
fn check_objects(payload: &Value) -> Result<()> {
    let not_an_array = |path: String, value: Option<&Value>| match value {
        Some(Value::Array(_)) => Err(invalid(format!("{path} must be an object"))),
        _ => Ok(()),
    };
    let each = |path: &str, list: Option<&Value>| -> Result<()> {
        let items = list.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        items.iter().enumerate().try_for_each(|(i, item)| not_an_array(format!("{path}[{i}]"), Some(item)))
    };
    for field in ["message", "from", "session"] {
        not_an_array(field.into(), payload.get(field))?;
    }
    each("message.attachments", payload.get("message").and_then(|m| m.get("attachments")))?;
    // v1's tags at the top level; metaTags, which may be JSON text, are checked as read.
    for level in TAG_LEVELS {
        each(level, payload.get(level))?;
    }
    Ok(())
}

pub fn parse_v1(body: &[u8]) -> Result<Inbound> {
    let (request, payload): (V1Request, Value) = parse(body)?;
    let text = request.message.text;
    if text.trim().is_empty() {
        return Err(invalid("message.text must not be empty"));
    }
    check_text_length("message.text", &text)?;
    check_attachments(request.message.attachments.as_deref())?;
    inbound(request.envelope, request.tags, UserEvent::Text(text), payload)
}

pub fn parse_v2(body: &[u8]) -> Result<Inbound> {
    let (request, payload): (V2Request, Value) = parse(body)?;
    let message = request.message;
    let attachments = message.attachments.as_deref().filter(|a| !a.is_empty());
    if attachments.is_some() && message.kind != V2MessageType::Text {
        return Err(invalid("attachments are only allowed with message.type text"));
    }
    check_attachments(attachments)?;
    let event = match (message.kind, message.val) {
        (V2MessageType::Text, Value::String(text)) if !text.trim().is_empty() => {
            check_text_length("message.val", &text)?;
            UserEvent::Text(unquoted(text))
        }
        (V2MessageType::Text, Value::String(_)) => {
            return Err(invalid("message.val must not be blank"));
        }
        (V2MessageType::Text, _) => {
            return Err(invalid("message.val must be a string for type text"));
        }
        (V2MessageType::Template, val @ Value::Object(_)) => UserEvent::Template(val),
        (V2MessageType::FormData, val @ Value::Object(_)) => UserEvent::FormData(val),
        (V2MessageType::Template | V2MessageType::FormData, _) => {
            return Err(invalid("message.val must be an object for types template and formData"));
        }
        (V2MessageType::Event, Value::String(name)) if name.eq_ignore_ascii_case("ON_CONNECT") => UserEvent::OnConnect,
        (V2MessageType::Event, Value::String(name)) if name.eq_ignore_ascii_case("SESSION_CLOSURE") => {
            UserEvent::SessionClosure
        }
        (V2MessageType::Event, _) => {
            return Err(invalid("message.val must be ON_CONNECT or SESSION_CLOSURE for type event"));
        }
    };
    inbound(request.envelope, MetaTags::default(), event, payload)
}

/// Kore's web SDK (v3) sends a quick reply's payload JSON-encoded (`"\"red\""`):
/// read as the payload it names. Only a plain quoted string (no quotes or
/// escapes within) is taken for one; any other text stays as it is.
fn unquoted(text: String) -> String {
    let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
    match inner {
        Some(inner) if !inner.trim().is_empty() && !inner.contains(['"', '\\']) => inner.to_string(),
        _ => text,
    }
}

fn check_text_length(path: &str, text: &str) -> Result<()> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(format!("{path} is longer than {MAX_TEXT_CHARS} characters")));
    }
    Ok(())
}

fn check_user_info(user_info: Option<&Map<String, Value>>) -> Result<()> {
    let Some(user_info) = user_info else {
        return Ok(());
    };
    let bytes = serde_json::to_vec(user_info).map_or(usize::MAX, |json| json.len());
    if user_info.len() > MAX_USER_INFO_KEYS || bytes > MAX_USER_INFO_BYTES {
        let detail = format!("from.userInfo holds at most {MAX_USER_INFO_KEYS} keys and {MAX_USER_INFO_BYTES} bytes");
        return Err(invalid(detail));
    }
    Ok(())
}

fn check_tags(tags: &MetaTags) -> Result<()> {
    let levels = [
        ("userLevelTags", &tags.user_level_tags),
        ("sessionLevelTags", &tags.session_level_tags),
        ("messageLevelTags", &tags.message_level_tags),
    ];
    for (level, list) in levels {
        if list.len() > MAX_TAGS_PER_LEVEL {
            return Err(invalid(format!("metaTags.{level} holds at most {MAX_TAGS_PER_LEVEL} tags")));
        }
        for (i, tag) in list.iter().enumerate() {
            let value_bytes = serde_json::to_vec(&tag.value).map_or(usize::MAX, |json| json.len());
            if tag.name.chars().count() > MAX_TAG_NAME_CHARS || value_bytes > MAX_TAG_VALUE_BYTES {
                let detail = format!(
                    "metaTags.{level}[{i}]: names are at most {MAX_TAG_NAME_CHARS} characters, values {MAX_TAG_VALUE_BYTES} bytes"
                );
                return Err(invalid(detail));
            }
        }
    }
    Ok(())
}

fn check_attachments(attachments: Option<&[Attachment]>) -> Result<()> {
    let attachments = attachments.unwrap_or_default();
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(invalid(format!("at most {MAX_ATTACHMENTS} attachments")));
    }
    for (i, attachment) in attachments.iter().enumerate() {
        match (&attachment.url, &attachment.file_id) {
            (Some(url), _)
                if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > MAX_URL_CHARS =>
            {
                return Err(invalid(format!("message.attachments[{i}].url must be an http(s) URL")));
            }
            (Some(_), _) => {}
            (None, Some(id)) if !id.trim().is_empty() => {}
            _ => {
                return Err(invalid(format!("message.attachments[{i}] needs a url or a fileId")));
            }
        }
    }
    Ok(())
}

/// The checked request; `top_tags` are tag fields sent beside `metaTags`
/// (v1), added to its own.
fn inbound(envelope: Envelope, top_tags: MetaTags, event: UserEvent, payload: Value) -> Result<Inbound> {
    let from = envelope.from.unwrap_or_default();
    // The spec's own samples send `"id": ""` for "not given".
    let from_id = from.id.filter(|id| !id.is_empty());
    if from_id.as_ref().is_some_and(|id| id.chars().count() > MAX_USER_ID_CHARS) {
        return Err(invalid(format!("from.id is longer than {MAX_USER_ID_CHARS} characters")));
    }
    let merge_identity = match &envelope.merge_identity {
        None | Some(Flag::Bool(false)) => false,
        Some(Flag::Bool(true)) => true,
        Some(Flag::Text(text)) if text == "true" => true,
        Some(Flag::Text(text)) if text == "false" => false,
        Some(Flag::Text(_)) => return Err(invalid("mergeIdentity must be true or false")),
    };
    check_user_info(from.user_info.as_ref())?;
    let mut tags = envelope.meta_tags.unwrap_or_default();
    tags.user_level_tags.extend(top_tags.user_level_tags);
    tags.session_level_tags.extend(top_tags.session_level_tags);
    tags.message_level_tags.extend(top_tags.message_level_tags);
    check_tags(&tags)?;
    Ok(Inbound {
        new_session: envelope.session.is_some_and(|s| s.new),
        from_id,
        user_info: from.user_info,
        event,
        payload,
        tags,
        language: envelope.interactive_language.filter(|l| !l.is_empty()),
        preferred_channel: envelope.preferred_channel_for_response.filter(|c| !c.is_empty()),
        merge_identity,
    })
}
