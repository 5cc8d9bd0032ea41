//! v1 and v2 request bodies, checked against the spec's rules and turned into
//! one shape for the turn.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::engine::UserEvent;
use crate::error::{Error, Result};
use crate::protocol::{Attachment, Envelope, Flag, MetaTags, V1Request, V2MessageType, V2Request};

const MAX_USER_ID_CHARS: usize = 256;
const MAX_ATTACHMENTS: usize = 20;
const MAX_URL_CHARS: usize = 2048;

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
}

fn invalid(detail: impl Into<String>) -> Error {
    Error::InvalidPayload(detail.into())
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<(T, Value)> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    if !payload.is_object() {
        return Err(invalid("the body must be a JSON object"));
    }
    let request = serde_path_to_error::deserialize(&payload).map_err(|e| {
        let path = e.path().to_string();
        invalid(format!("{path}: {}", e.into_inner()))
    })?;
    Ok((request, payload))
}

pub fn parse_v1(body: &[u8]) -> Result<Inbound> {
    let (request, payload): (V1Request, Value) = parse(body)?;
    let text = request.message.text;
    if text.trim().is_empty() {
        return Err(invalid("message.text must not be empty"));
    }
    check_attachments(request.message.attachments.as_deref())?;
    inbound(request.envelope, UserEvent::Text(text), payload)
}

pub fn parse_v2(body: &[u8]) -> Result<Inbound> {
    let (request, payload): (V2Request, Value) = parse(body)?;
    let message = request.message;
    let attachments = message.attachments.as_deref().filter(|a| !a.is_empty());
    if attachments.is_some() && message.kind != V2MessageType::Text {
        return Err(invalid(
            "attachments are only allowed with message.type text",
        ));
    }
    check_attachments(attachments)?;
    let event = match (message.kind, message.val) {
        (V2MessageType::Text, Value::String(text)) if !text.trim().is_empty() => {
            UserEvent::Text(text)
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
            return Err(invalid(
                "message.val must be an object for types template and formData",
            ));
        }
        (V2MessageType::Event, Value::String(name)) if name.eq_ignore_ascii_case("ON_CONNECT") => {
            UserEvent::OnConnect
        }
        (V2MessageType::Event, Value::String(name))
            if name.eq_ignore_ascii_case("SESSION_CLOSURE") =>
        {
            UserEvent::SessionClosure
        }
        (V2MessageType::Event, _) => {
            return Err(invalid(
                "message.val must be ON_CONNECT or SESSION_CLOSURE for type event",
            ));
        }
    };
    inbound(request.envelope, event, payload)
}

fn check_attachments(attachments: Option<&[Attachment]>) -> Result<()> {
    let attachments = attachments.unwrap_or_default();
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(invalid(format!("at most {MAX_ATTACHMENTS} attachments")));
    }
    for (i, attachment) in attachments.iter().enumerate() {
        match (&attachment.url, &attachment.file_id) {
            (Some(url), _)
                if !(url.starts_with("https://") || url.starts_with("http://"))
                    || url.len() > MAX_URL_CHARS =>
            {
                return Err(invalid(format!(
                    "message.attachments[{i}].url must be an http(s) URL"
                )));
            }
            (Some(_), _) => {}
            (None, Some(id)) if !id.trim().is_empty() => {}
            _ => {
                return Err(invalid(format!(
                    "message.attachments[{i}] needs a url or a fileId"
                )));
            }
        }
    }
    Ok(())
}

fn inbound(envelope: Envelope, event: UserEvent, payload: Value) -> Result<Inbound> {
    let from = envelope.from.unwrap_or_default();
    // The spec's own samples send `"id": ""` for "not given".
    let from_id = from.id.filter(|id| !id.is_empty());
    if from_id
        .as_ref()
        .is_some_and(|id| id.chars().count() > MAX_USER_ID_CHARS)
    {
        return Err(invalid(format!(
            "from.id is longer than {MAX_USER_ID_CHARS} characters"
        )));
    }
    if let Some(Flag::Text(text)) = &envelope.merge_identity
        && text != "true"
        && text != "false"
    {
        return Err(invalid("mergeIdentity must be true or false"));
    }
    Ok(Inbound {
        new_session: envelope.session.is_some_and(|s| s.new),
        from_id,
        user_info: from.user_info,
        event,
        payload,
        tags: envelope.meta_tags.unwrap_or_default(),
        language: envelope.interactive_language.filter(|l| !l.is_empty()),
    })
}
