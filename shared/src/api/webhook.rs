//! The Webhook channel endpoints (v1 and v2, with and without hookInstance)
//! and GET /api/botmeta.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, header};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use super::inbound::{self, Inbound};
use super::{AppState, TraceId};
use crate::auth;
use crate::config::{Bot, WebhookVersion};
use crate::delivery::HttpCall;
use crate::engine::Input;
use crate::error::{Error, Result};
use crate::ids;
use crate::protocol::{BotMeta, V1Response, V2Response, VERSION_V2};
use crate::turn::{TurnReply, TurnRequest};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/chatbot/hooks/{bot_id}", post(v1))
        .route("/chatbot/hooks/{bot_id}/hookInstance/{instance_id}", post(v1))
        .route("/chatbot/v2/webhook/{bot_id}", post(v2))
        .route("/chatbot/v2/webhook/{bot_id}/hookInstance/{instance_id}", post(v2))
        .route("/api/botmeta/{bot_id}", get(botmeta))
        .with_state(state)
}

/// The bot (botId in v1, streamId in v2) and the optional hookInstance.
#[derive(Deserialize)]
struct WebhookPath {
    bot_id: String,
    #[serde(default)]
    instance_id: Option<String>,
}

/// One request to a webhook URL.
struct Call {
    version: WebhookVersion,
    path: WebhookPath,
    trace_id: String,
    started: Instant,
    headers: HeaderMap,
    body: Body,
}

async fn v1(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let started = Instant::now();
    let version = WebhookVersion::V1;
    handle(state, Call { version, path, trace_id, started, headers, body }).await
}

async fn v2(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let started = Instant::now();
    let version = WebhookVersion::V2;
    handle(state, Call { version, path, trace_id, started, headers, body }).await
}

async fn handle(state: AppState, call: Call) -> Result<Response> {
    let bot = state.bot(&call.path.bot_id)?;
    let instance = bot
        .instance(call.version, call.path.instance_id.as_deref())
        .ok_or_else(|| Error::NotFound("no Webhook channel instance of this version at this URL".into()))?;
    require_json(&call.headers)?;
    let body = read_body(call.body, &call.headers, state.settings.max_body_bytes).await?;
    let token = auth::bearer_token(&call.headers)?;
    let caller = auth::authenticate(&bot, &instance.apps, token, Utc::now().timestamp())?;
    let inbound = match call.version {
        WebhookVersion::V1 => inbound::parse_v1(&body)?,
        WebhookVersion::V2 => inbound::parse_v2(&body)?,
    };
    if let Some(language) = inbound.language.as_deref().filter(|l| !bot.supports_language(l)) {
        return Err(Error::InvalidPayload(format!(
            "interactiveLanguage {language:?} is not one of the bot's languages"
        )));
    }
    let user_id = auth::resolve_user(&caller, inbound.from_id.as_deref())?.unwrap_or_else(ids::anonymous_user_id);

    let request = turn_request(&bot, user_id.clone(), call.trace_id, call.started, inbound);
    let limit = instance.sync_deadline_ms.map_or(state.settings.sync_deadline, Duration::from_millis);
    let deadline = call.started.checked_add(limit).unwrap_or(call.started + Duration::from_secs(3600));
    let mut reply = state.turns.run(request, deadline).await?;
    spawn_effects(&state, &bot, std::mem::take(&mut reply.effects));
    Ok(match call.version {
        WebhookVersion::V1 => Json(v1_response(reply)).into_response(),
        WebhookVersion::V2 => Json(v2_response(&bot, user_id, reply)).into_response(),
    })
}

/// Async webhook nodes are delivered (signed, retried) once the turn is saved,
/// without delaying the answer. (In a Lambda function a call still running when the answer is
/// returned may be frozen until the next invocation; the delivery queue
/// removes that limit.)
fn spawn_effects(state: &AppState, bot: &Arc<Bot>, effects: Vec<HttpCall>) {
    if effects.is_empty() {
        return;
    }
    let outbound = state.outbound.clone();
    let bot = bot.clone();
    let work = async move {
        for call in effects {
            match outbound.deliver(&call, bot.signing_keys()).await {
                Ok(reply) => {
                    tracing::info!(url = %call.url, status = reply.status, "async webhook delivered")
                }
                Err(reason) => tracing::warn!(url = %call.url, %reason, "async webhook failed"),
            }
        }
    };
    tokio::spawn(work.instrument(tracing::Span::current()));
}

fn turn_request(bot: &Arc<Bot>, user_id: String, trace_id: String, started: Instant, inbound: Inbound) -> TurnRequest {
    let Inbound { new_session, user_info, event, payload, tags, language, .. } = inbound;
    TurnRequest {
        bot: bot.clone(),
        user_id,
        new_session,
        input: Input { event, message: payload, language, session_tags: tags.session_level_tags },
        user_info,
        user_tags: tags.user_level_tags,
        message_tags: tags.message_level_tags,
        trace_id,
        started,
    }
}

fn v2_response(bot: &Bot, user_id: String, reply: TurnReply) -> V2Response {
    V2Response {
        to: user_id,
        from: bot.id().to_string(),
        data: reply.messages,
        version: VERSION_V2,
        end_of_task: reply.completion.is_some(),
        completion: reply.completion,
        form: reply.form,
    }
}

/// v1 `text`: a string for one message, an array for several.
fn v1_response(reply: TurnReply) -> V1Response {
    let mut texts: Vec<Value> = reply.messages.into_iter().map(|m| m.val).collect();
    let text = match texts.len() {
        1 => texts.remove(0),
        _ => Value::Array(texts),
    };
    V1Response { text, end_of_task: reply.completion.is_some(), completion: reply.completion, form: reply.form }
}

fn require_json(headers: &HeaderMap) -> Result<()> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") { Ok(()) } else { Err(Error::UnsupportedMediaType) }
}

async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    to_bytes(body, limit).await.map_err(|_| Error::PayloadTooLarge { limit })
}

/// Display metadata that Kore's client SDKs fetch before the first message.
async fn botmeta(
    State(state): State<AppState>,
    Path(bot_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<BotMeta>> {
    let bot = state.bot(&bot_id)?;
    let apps: Vec<String> = bot.def.apps.iter().map(|a| a.client_id.clone()).collect();
    auth::authenticate(&bot, &apps, auth::bearer_token(&headers)?, Utc::now().timestamp())?;
    Ok(Json(BotMeta { name: bot.def.name.clone(), icon: bot.def.icon.clone() }))
}
