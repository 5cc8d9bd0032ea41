//! GET /api/chathistory/{streamId}/{channelType}: the caller's own
//! conversation, read from the conversation log, in the shape Kore's web SDK
//! renders when its chat window opens (`loadHistory`): `{messages, moreAvailable,
//! icon}`, each message `{_id, type: incoming|outgoing, createdOn, components:
//! [{cT: "text", data: {text}}]}`, a template as its JSON text. Pages go newest
//! first (`limit`, `offset`), each page oldest first, as the SDK stacks them;
//! `after=SEQ` asks for everything after a message the client already has.
//! Each message also carries its `seq`, for `after=`.

use axum::Json;
use axum::extract::{Path, Query, State};
use http::{HeaderMap, Method};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Routes, WebhookState, authenticate, every_app, icon_url};
use crate::app::auth;
use crate::app::records::{Direction, LogEntry};
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

const DEFAULT_LIMIT: u64 = 20;
const MAX_LIMIT: u64 = 100;

pub fn router(state: WebhookState) -> Routes {
    Routes::new().add(Method::GET, "/api/chathistory/{bot_id}/{channel_type}", history).with_state(state)
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    offset: Option<u64>,
    /// Only messages with a greater seq.
    #[serde(default)]
    after: Option<u64>,
}

async fn history(
    State(state): State<WebhookState>,
    Path((bot_id, _channel_type)): Path<(String, String)>,
    page: std::result::Result<Query<Page>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>> {
    let bot = state.bots.require(&bot_id)?;
    let caller = authenticate(&*state.seen_tokens, &bot, &every_app(&bot), &headers).await?;
    // Only the token says whose history this is.
    let user =
        caller.user_identity.clone().ok_or_else(|| Error::Unauthorized("the token names no userIdentity".into()))?;
    let Query(page) = page.map_err(|e| Error::InvalidPayload(e.body_text()))?;
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);

    let store = state.turns.conversations();
    let key = ConversationKey::new(bot.id(), user).in_app(auth::own_users(&caller));
    let next_seq = store.load(&key).await?.map_or(0, |c| c.next_seq);
    let (from, to) = match page.after {
        Some(after) => (after.saturating_add(1), next_seq.min(after.saturating_add(1).saturating_add(limit))),
        None => {
            let to = next_seq.saturating_sub(page.offset.unwrap_or(0));
            (to.saturating_sub(limit), to)
        }
    };
    let entries =
        if from < to { store.read_log(&key, from.checked_sub(1), (to - from) as usize).await? } else { Vec::new() };
    let more_available = match page.after {
        Some(_) => to < next_seq,
        None => from > 0,
    };
    let messages: Vec<Value> = entries.iter().map(message).collect();
    let icon = icon_url(&bot, &headers);
    Ok(Json(json!({"messages": messages, "moreAvailable": more_available, "icon": icon})))
}

fn message(entry: &LogEntry) -> Value {
    let (kind, val) = match entry.direction {
        Direction::In => {
            let message = &entry.body["request"]["message"];
            ("incoming", if message["val"].is_null() { &message["text"] } else { &message["val"] })
        }
        Direction::Out => ("outgoing", &entry.body["val"]),
    };
    // The SDK draws text components only; it parses a JSON text back into
    // the template it renders.
    let text = match val {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    json!({
        "_id": entry.message_id,
        "type": kind,
        "createdOn": entry.created_on,
        "components": [{"cT": "text", "data": {"text": text}}],
        "seq": entry.seq,
    })
}
