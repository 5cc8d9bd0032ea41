//! The browser console `hookline serve` offers at `/console`, for this
//! machine only (`this_machine`): the page (console.html) chats with a bot
//! through the channel's own endpoints, with a token this module mints, and
//! shows the deliveries the worker made for the conversation.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hookline_core::app::auth::dev_token;
use hookline_core::app::outbound::Delivered;
use hookline_core::app::queue::Delivery;
use hookline_core::app::worker::Worker;
use hookline_core::definition::{Algorithm, Bot, Mode, Registry, WebhookVersion};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::this_machine;

const PAGE: &str = include_str!("console.html");
/// Deliveries kept, the most recent (every conversation's).
const KEPT: usize = 500;
/// The console's tokens live a day: a developer's session.
const TOKEN_TTL_SECS: i64 = 24 * 3600;

/// The console's routes.
pub fn router(bots: Arc<Registry>, deliveries: Deliveries) -> Router {
    let pages = Router::new().route("/console", get(page));
    let api = Router::new()
        .route("/console/api/bots", get(list_bots))
        .route("/console/api/token", post(token))
        .route("/console/api/deliveries", get(deliveries_of))
        .with_state(Console { bots, deliveries });
    this_machine::only_here(pages, api)
}

#[derive(Clone)]
struct Console {
    bots: Arc<Registry>,
    deliveries: Deliveries,
}

/// The most recent deliveries the worker made, each numbered, with how its
/// run ended: kept once a console has been opened, so that a server no one
/// watches spends nothing on them.
#[derive(Clone, Default)]
pub struct Deliveries(Arc<Watched>);

#[derive(Default)]
struct Watched {
    opened: AtomicBool,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// The number of the last delivery recorded.
    last: u64,
    /// Each with its conversation's bot and user.
    entries: VecDeque<((String, String), Value)>,
}

impl Deliveries {
    /// Kept as `worker` tells of them.
    pub fn watching(worker: &Worker) -> Self {
        let deliveries = Self::default();
        let kept = deliveries.clone();
        worker.watch_deliveries(Box::new(move |delivery, delivered| kept.record(delivery, delivered)));
        deliveries
    }

    fn record(&self, delivery: &Delivery, delivered: &Delivered) {
        if !self.0.opened.load(Ordering::Relaxed) {
            return;
        }
        let outcome = match delivered {
            Delivered::Yes(status) => json!({"status": status}),
            Delivered::Gone => json!({"status": 410}),
            Delivered::No { reason, .. } => json!({"failed": reason}),
        };
        let mut kept = self.0.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.last += 1;
        let entry = json!({
            "seq": kept.last,
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "kind": delivery.kind,
            "instance": delivery.instance_id,
            "webhookId": delivery.webhook_id,
            "url": delivery.call.url,
            "body": delivery.call.body,
            "outcome": outcome,
        });
        if kept.entries.len() == KEPT {
            kept.entries.pop_front();
        }
        kept.entries.push_back(((delivery.bot_id.clone(), delivery.user_id.clone()), entry));
    }

    /// The conversation's deliveries after number `after`, and the last number.
    fn of(&self, bot_id: &str, user_id: &str, after: u64) -> (Vec<Value>, u64) {
        let kept = self.0.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entries = kept
            .entries
            .iter()
            .filter(|((bot, user), entry)| bot == bot_id && user == user_id && entry["seq"].as_u64() > Some(after))
            .map(|(_, entry)| entry.clone())
            .collect();
        (entries, kept.last)
    }
}

async fn page() -> Response {
    // The page runs nothing from elsewhere, and no other page may frame it.
    let policy = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";
    ([(header::CONTENT_SECURITY_POLICY, policy), (header::X_FRAME_OPTIONS, "DENY")], Html(PAGE)).into_response()
}

/// Each bot with its instances and where each answers.
async fn list_bots(State(console): State<Console>) -> Json<Value> {
    // The page asks first: from now on, deliveries are kept.
    console.deliveries.0.opened.store(true, Ordering::Relaxed);
    let mut bots: Vec<&Arc<Bot>> = console.bots.bots().collect();
    bots.sort_by(|a, b| a.id().cmp(b.id()));
    let bots: Vec<Value> = bots
        .into_iter()
        .map(|bot| {
            let instances: Vec<Value> = bot
                .def
                .instances
                .iter()
                .map(|instance| {
                    let (version, path) = match instance.version {
                        WebhookVersion::V1 => ("v1", format!("/chatbot/hooks/{}/hookInstance/{}", bot.id(), instance.id)),
                        WebhookVersion::V2 => {
                            ("v2", format!("/chatbot/v2/webhook/{}/hookInstance/{}", bot.id(), instance.id))
                        }
                    };
                    let mode = match instance.mode {
                        Mode::Sync if instance.version == WebhookVersion::V2 && instance.polling => "polling",
                        Mode::Sync => "sync",
                        Mode::Async => "async",
                    };
                    json!({"id": instance.id, "version": version, "mode": mode, "path": path, "postUrl": instance.post_url})
                })
                .collect();
            let upload = format!("/api/attachments/file/{}/rtm", bot.id());
            json!({"id": bot.id(), "name": bot.def.name, "instances": instances, "upload": upload})
        })
        .collect();
    Json(json!({ "bots": bots }))
}

#[derive(Deserialize)]
struct TokenFor {
    bot: String,
    instance: String,
    user: String,
}

/// A token for the user, signed by the first of the instance's apps whose
/// key is here (a shared secret: RS apps' private keys never are).
async fn token(State(console): State<Console>, Json(asked): Json<TokenFor>) -> Response {
    let refuse = |error: String| (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response();
    let Some(bot) = console.bots.get(&asked.bot) else {
        return refuse(format!("no bot {}", asked.bot));
    };
    let Some(instance) = bot.instance_by_id(&asked.instance) else {
        return refuse(format!("no instance {} in bot {}", asked.instance, asked.bot));
    };
    if asked.user.trim().is_empty() {
        return refuse("give a user id".into());
    }
    let signs_here = |id: &&String| {
        bot.def.apps.iter().any(|a| &a.client_id == *id && matches!(a.algorithm, Algorithm::HS256 | Algorithm::HS512))
    };
    let Some(app) = instance.apps.iter().find(signs_here) else {
        return refuse(format!(
            "instance {} has no app with a shared secret: mint a token with `hookline token --private-key`",
            instance.id
        ));
    };
    match dev_token::sign(&bot.def, Some(app), &asked.user, TOKEN_TTL_SECS, None) {
        Ok(token) => Json(json!({"token": token, "app": app})).into_response(),
        Err(e) => refuse(e.to_string()),
    }
}

#[derive(Deserialize)]
struct DeliveriesOf {
    bot: String,
    user: String,
    #[serde(default)]
    after: u64,
}

async fn deliveries_of(State(console): State<Console>, Query(of): Query<DeliveriesOf>) -> Json<Value> {
    let (deliveries, last) = console.deliveries.of(&of.bot, &of.user, of.after);
    Json(json!({"deliveries": deliveries, "last": last}))
}
