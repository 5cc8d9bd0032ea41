//! GET /chatbot/v2/webhook/{streamId}/poll/{pollId}: the rest of a turn that
//! answered with a pollId, once it is ready.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::auth;
use crate::config::WebhookVersion;
use crate::error::{Error, Result};
use crate::protocol::VERSION_V2;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/chatbot/v2/webhook/{bot_id}/poll/{poll_id}", get(poll))
        .route("/chatbot/v2/webhook/{bot_id}/hookInstance/{instance_id}/poll/{poll_id}", get(poll))
        .with_state(state)
}

#[derive(Deserialize)]
struct PollPath {
    bot_id: String,
    #[serde(default)]
    instance_id: Option<String>,
    poll_id: String,
}

/// `Inprogress` while the worker runs; then the regular answer, once (or
/// once more within the instance's `pollRereadSeconds`); then "No data
/// found". The caller must be the user the pollId was given to.
async fn poll(State(state): State<AppState>, Path(path): Path<PollPath>, headers: HeaderMap) -> Result<Response> {
    let bot = state.bot(&path.bot_id)?;
    let instance = bot
        .instance(WebhookVersion::V2, path.instance_id.as_deref())
        .ok_or_else(|| Error::NotFound("no v2 Webhook channel instance at this URL".into()))?;
    let caller = auth::authenticate(&bot, &instance.apps, auth::bearer_token(&headers)?, Utc::now().timestamp())?;
    let store = state.turns.store();
    let record = store.get_poll(&path.poll_id).await?.filter(|r| r.bot_id == bot.id()).ok_or(Error::NoData)?;
    auth::resolve_user(&caller, Some(&record.user_id))?;
    let Some(answer) = record.answer else {
        return Ok(Json(json!({"status": "Inprogress", "pollId": record.poll_id, "_v": VERSION_V2})).into_response());
    };
    let now = Utc::now().timestamp();
    let reread = i64::from(instance.poll_reread_seconds);
    let readable = match (record.reads, record.read_at) {
        (0, _) => true,
        (1, Some(first)) => reread > 0 && now - first <= reread,
        _ => false,
    };
    if readable && store.record_poll_read(&record.poll_id, record.reads, now).await? {
        Ok(Json(answer).into_response())
    } else {
        Err(Error::NoData)
    }
}
