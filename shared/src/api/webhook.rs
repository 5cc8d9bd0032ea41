//! The Webhook channel endpoints: v1 and v2, with and without hookInstance.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use http::{HeaderMap, Method, header};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::envelope::rate_limit_headers;
use super::{ClientIp, Routes, TraceId, WebhookState, authenticate, idempotency_key, read_body, replayed};
use crate::app::auth;
use crate::app::files;
use crate::app::idempotency::{self, Claim, KeyAnswer, KeyRecord};
use crate::app::inbound;
use crate::app::inbound::Inbound;
use crate::app::queue::{Job, MAX_JOB_BYTES, QueueMessage, QueuedAnswer, QueuedTurn};
use crate::app::rate::{self, RateState};
use crate::app::records::PollRecord;
use crate::app::turn::{self, Calls, Outcome, TurnReply, TurnRequest};
use crate::definition::{Bot, Instance, Mode, WebhookVersion};
use crate::error::{Error, Result};
use crate::ids::{self, ConversationKey};
use crate::protocol::{V1Response, V2Data, VERSION_V2};

pub fn router(state: WebhookState) -> Routes {
    Routes::new()
        .add(Method::POST, "/chatbot/hooks/{bot_id}", v1)
        .add(Method::POST, "/chatbot/hooks/{bot_id}/hookInstance/{instance_id}", v1)
        .add(Method::POST, "/chatbot/v2/webhook/{bot_id}", v2)
        .add(Method::POST, "/chatbot/v2/webhook/{bot_id}/hookInstance/{instance_id}", v2)
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
    client_ip: Option<String>,
    headers: HeaderMap,
    body: Body,
}

async fn v1(
    State(state): State<WebhookState>,
    Path(path): Path<WebhookPath>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    client_ip: Option<Extension<ClientIp>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let started = Instant::now();
    let version = WebhookVersion::V1;
    let client_ip = client_ip.map(|Extension(ClientIp(ip))| ip);
    handle(state, Call { version, path, trace_id, started, client_ip, headers, body }).await
}

async fn v2(
    State(state): State<WebhookState>,
    Path(path): Path<WebhookPath>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    client_ip: Option<Extension<ClientIp>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let started = Instant::now();
    let version = WebhookVersion::V2;
    let client_ip = client_ip.map(|Extension(ClientIp(ip))| ip);
    handle(state, Call { version, path, trace_id, started, client_ip, headers, body }).await
}

async fn handle(state: WebhookState, mut call: Call) -> Result<Response> {
    let bot = state.bots.require(&call.path.bot_id)?;
    let instance = bot
        .instance(call.version, call.path.instance_id.as_deref())
        .ok_or_else(|| Error::NotFound("no Webhook channel instance of this version at this URL".into()))?;
    require_json(&call.headers)?;
    let raw = std::mem::replace(&mut call.body, Body::empty());
    let body = read_body(raw, &call.headers, state.http.max_body_bytes).await?;
    let caller = authenticate(&*state.seen_tokens, &bot, &instance.apps, &call.headers).await?;
    let mut inbound = match call.version {
        WebhookVersion::V1 => inbound::parse_v1(&body)?,
        WebhookVersion::V2 => inbound::parse_v2(&body)?,
    };
    if let Some(language) = inbound.language.as_deref().filter(|l| !bot.supports_language(l)) {
        return Err(Error::InvalidPayload(format!(
            "interactiveLanguage {language:?} is not one of the bot's languages"
        )));
    }
    let key = auth::resolve_user(&bot, &caller, inbound.from_id.as_deref())?;
    let merge_from = auth::merge_source(&bot, &caller, inbound.merge_identity)?;
    files::resolve_attachments(&*state.files, &key, &mut inbound.payload).await?;
    let now = Utc::now().timestamp();
    let claimed = match idempotency_key(&call.headers)? {
        None => None,
        Some(header) => {
            let record = KeyRecord::new(&key, header, &body, &call.trace_id, now)?;
            match idempotency::claim(&*state.keys, record, now).await? {
                Claim::Done(done) => return replay(&state, call.version, &key, &done).await,
                Claim::New(record) => Some(record),
            }
        }
    };
    let message = Message { bot: &bot, instance, key, merge_from, inbound, claimed: claimed.clone() };
    let answered = answer(&state, call, message).await;
    if let (Err(_), Some(record)) = (&answered, &claimed)
        && let Err(e) = state.keys.forget_key(record).await
    {
        // It goes stale, and then a retry runs.
        tracing::warn!(error = %e, "the Idempotency-Key of a failed request is still marked running");
    }
    answered
}

/// A checked message of a known user, ready to run or queue.
struct Message<'b> {
    bot: &'b Arc<Bot>,
    instance: &'b Instance,
    key: ConversationKey,
    merge_from: Option<ConversationKey>,
    inbound: Inbound,
    /// Its Idempotency-Key record, running.
    claimed: Option<KeyRecord>,
}

async fn answer(state: &WebhookState, call: Call, message: Message<'_>) -> Result<Response> {
    let Message { bot, instance, key, merge_from, inbound, claimed } = message;
    let client_ip = call.client_ip;
    let limit = instance.sync_deadline_ms.map_or(state.http.sync_deadline, Duration::from_millis);
    let deadline = call.started.checked_add(limit).unwrap_or(call.started + Duration::from_secs(3600));

    if instance.mode == Mode::Async {
        // Acknowledged only once the message is durably queued. With a key,
        // under its first request's trace id: the queue and the worker take
        // a message sent again for the one they have.
        let trace_id = claimed.as_ref().map_or(call.trace_id.as_str(), |record| record.trace_id.as_str());
        let answer = QueuedAnswer::PostUrl;
        let job =
            QueuedTurn { merge_from, ..queued_turn(&key, &instance.id, trace_id, client_ip, inbound.payload, answer) };
        let job = Job::Turn(job);
        check_job_size(&job)?;
        let limits = bot.rate_limits(&instance.id);
        let counted = rate::admit_queued(&*state.counters, &key, &limits, Utc::now().timestamp());
        let timed_out = |_| Error::Timeout(limit);
        let rate = tokio::time::timeout_at(deadline, counted).await.map_err(timed_out)??;
        state.queue.send(&[QueueMessage::in_conversation(&key, trace_id, job)]).await?;
        if let Some(record) = &claimed {
            remember(state, &record.done(KeyAnswer::Queued)).await;
        }
        return Ok(with_rate(acknowledgement(trace_id), rate.as_ref()));
    }

    let polling = call.version == WebhookVersion::V2 && instance.polling;
    let request = TurnRequest {
        client_ip,
        merge_from,
        key: claimed,
        calls: if polling { Calls::Poll } else { Calls::Inline },
        started: call.started,
        ..inbound.into_turn(bot, &instance.id, key.clone(), call.trace_id)
    };
    let mut reply = None;
    // A conversation found busy may be free again by the time the message
    // would queue behind it: then the message runs after all.
    for _ in 0..3 {
        reply = match state.turns.run(&request, deadline).await? {
            // Saved: what it owes leaves through the outbox (`app::relay`).
            Outcome::Answered(answered) => Some(*answered),
            Outcome::Busy if polling => queue_behind(state, &request, deadline).await?,
            Outcome::Busy => return Err(Error::Busy),
        };
        if reply.is_some() {
            break;
        }
    }
    let reply = reply.ok_or(Error::Busy)?;
    let rate = reply.rate.clone();
    Ok(with_rate(respond(call.version, &key, reply), rate.as_ref()))
}

/// The answer a request with this key got, given again.
async fn replay(
    state: &WebhookState,
    version: WebhookVersion,
    key: &ConversationKey,
    done: &KeyRecord,
) -> Result<Response> {
    let response = match &done.answer {
        Some(KeyAnswer::Turn(answer)) => {
            let reply = turn::poll_answer(state.turns.conversations().as_ref(), key, answer).await?;
            respond(version, key, reply)
        }
        _ => acknowledgement(&done.trace_id),
    };
    Ok(replayed(response))
}

/// Records a key's answer given outside a turn's write; a failure leaves it
/// running, so a retry gets a 409 until it goes stale and then runs.
async fn remember(state: &WebhookState, record: &KeyRecord) {
    if let Err(e) = state.keys.put_key(record).await {
        tracing::warn!(error = %e, "the Idempotency-Key's answer was not recorded");
    }
}

fn acknowledgement(trace_id: &str) -> Response {
    Json(json!({"status": "ok", "_v": VERSION_V2, "traceId": trace_id})).into_response()
}

fn respond(version: WebhookVersion, key: &ConversationKey, reply: TurnReply) -> Response {
    match version {
        WebhookVersion::V1 => Json(v1_response(reply)).into_response(),
        WebhookVersion::V2 => Json(reply.v2(key)).into_response(),
    }
}

/// An answer to a counted message says what is left of the user's quotas.
fn with_rate(mut response: Response, rate: Option<&RateState>) -> Response {
    if let Some(rate) = rate {
        let (policy, current) = rate.header_values();
        rate_limit_headers(response.headers_mut(), &policy, &current);
    }
    response
}

/// Messages wait for a call, or for messages queued behind one: this one
/// queues too, and its answer comes through polling. `None` if the
/// conversation is free by now.
async fn queue_behind(state: &WebhookState, request: &TurnRequest, deadline: Instant) -> Result<Option<TurnReply>> {
    let (key, instance_id, trace_id) = (&request.user, request.instance_id.as_str(), &request.trace_id);
    let poll_id = ids::poll_id();
    let answer = QueuedAnswer::Poll { poll_id: poll_id.clone() };
    let (ip, body) = (request.client_ip.clone(), request.input.message.clone());
    let job = Job::Turn(QueuedTurn {
        merge_from: request.merge_from.clone(),
        ..queued_turn(key, instance_id, trace_id, ip, body, answer)
    });
    check_job_size(&job)?;
    let record = PollRecord::new(&poll_id, key, Some(instance_id), None, Utc::now().timestamp());
    let Some(queued) = state.turns.queue_behind(request, &record, deadline).await? else {
        return Ok(None);
    };
    if let Err(e) = state.queue.send(&[QueueMessage::in_conversation(key, trace_id, job)]).await {
        // Not queued: it must not hold up the messages after it.
        if let Err(e) = state.turns.forget_queued(&request.bot, key, trace_id).await {
            tracing::warn!(error = %e, "a message that could not be queued is still listed as queued");
        }
        return Err(e);
    }
    Ok(Some(queued))
}

fn queued_turn(
    key: &ConversationKey,
    instance_id: &str,
    trace_id: &str,
    client_ip: Option<String>,
    body: Value,
    answer: QueuedAnswer,
) -> QueuedTurn {
    QueuedTurn {
        bot_id: key.bot_id.clone(),
        instance_id: instance_id.to_string(),
        user_id: key.user_id.clone(),
        app: key.app.clone(),
        body,
        trace_id: trace_id.to_string(),
        client_ip,
        answer,
        merge_from: None,
    }
}

/// A message the queue could not take is refused, never lost.
fn check_job_size(job: &Job) -> Result<()> {
    match serde_json::to_vec(job) {
        Ok(json) if json.len() <= MAX_JOB_BYTES => Ok(()),
        _ => Err(Error::PayloadTooLarge { limit: MAX_JOB_BYTES }),
    }
}

/// v1 `text`: a string for one message, an array for several.
fn v1_response(reply: TurnReply) -> V1Response {
    let mut texts: Vec<Value> = reply.messages.iter().map(V2Data::as_text).collect();
    let text = match texts.len() {
        1 => texts.remove(0),
        _ => Value::Array(texts),
    };
    V1Response { text, end_of_task: reply.completion.is_some(), completion: reply.completion, form: reply.form }
}

fn require_json(headers: &HeaderMap) -> Result<()> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType("application/json"))
    }
}
