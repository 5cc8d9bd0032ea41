//! GET /chatbot/v2/webhook/{streamId}/poll/{pollId}: the rest of a turn that
//! answered with a pollId, once it is ready.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::{HeaderMap, Method};
use serde::Deserialize;
use serde_json::json;

use super::{PollState, Routes, authenticate};
use crate::app::records::PollRecord;
use crate::app::{auth, jobs, turn};
use crate::definition::WebhookVersion;
use crate::error::{Error, Result};
use crate::protocol::VERSION_V2;

/// An answer still in progress after this long gets its continuation queued again.
const STALLED_SECS: i64 = 3;

pub fn router(state: PollState) -> Routes {
    Routes::new()
        .add(Method::GET, "/chatbot/v2/webhook/{bot_id}/poll/{poll_id}", poll)
        .add(Method::GET, "/chatbot/v2/webhook/{bot_id}/hookInstance/{instance_id}/poll/{poll_id}", poll)
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
/// found". The caller must be the user the pollId was given to, on the
/// instance whose URL it was given on.
async fn poll(State(state): State<PollState>, Path(path): Path<PollPath>, headers: HeaderMap) -> Result<Response> {
    let bot = state.bots.require(&path.bot_id)?;
    let instance = bot
        .instance(WebhookVersion::V2, path.instance_id.as_deref())
        .ok_or_else(|| Error::NotFound("no v2 Webhook channel instance at this URL".into()))?;
    let now = Utc::now().timestamp();
    let caller = authenticate(&*state.seen_tokens, &bot, &instance.apps, &headers).await?;
    if !is_poll_id(&path.poll_id) {
        return Err(Error::NoData);
    }
    let on_this_url =
        |r: &PollRecord| r.bot_id == bot.id() && r.instance_id.as_deref().is_none_or(|i| i == instance.id);
    let record = state.polls.get_poll(&path.poll_id).await?.filter(on_this_url).ok_or(Error::NoData)?;
    // Someone else's pollId is as good as an unknown one: its existence is not told.
    if caller.user_identity.as_deref().is_some_and(|user| user != record.user_id) {
        return Err(Error::NoData);
    }
    let key = auth::resolve_user(&bot, &caller, Some(&record.user_id))?;
    if key != record.key() {
        return Err(Error::NoData);
    }
    let Some(answer) = record.answer else {
        let age = now - record.created_at();
        if age >= STALLED_SECS {
            // Its continuation may never have been queued (the queue failed
            // after the turn was saved): queue it again; a duplicate is a no-op.
            if let Err(e) = state.queue.send(&[jobs::resume(&key, &record.poll_id)]).await {
                tracing::warn!(error = %e, poll_id = %record.poll_id, "could not queue a stalled continuation");
            }
        }
        return Ok(Json(json!({"status": "Inprogress", "pollId": record.poll_id, "_v": VERSION_V2})).into_response());
    };
    let reread = i64::from(instance.poll_reread_seconds);
    let readable = match (record.reads, record.read_at) {
        (0, _) => true,
        (1, Some(first)) => reread > 0 && now - first <= reread,
        _ => false,
    };
    if !readable {
        return Err(Error::NoData);
    }
    // Read before the read is counted: an answer that fails to load is not used up.
    let reply = match &answer.refused {
        // A queued message the bot refused is answered with its error.
        Some(detail) => Err(Error::InvalidPayload(detail.clone())),
        None => Ok(turn::poll_answer(state.conversations.as_ref(), &key, &answer).await?),
    };
    if !state.polls.record_poll_read(&record.poll_id, record.reads, now).await? {
        return Err(Error::NoData);
    }
    Ok(Json(reply?.v2(&key)).into_response())
}

/// pollIds are 32 hex digits; anything else is not looked up.
fn is_poll_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}
