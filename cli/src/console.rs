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
const SCRIPT: &str = include_str!("console.js");
/// Deliveries kept, the most recent (every conversation's).
const KEPT: usize = 500;
/// The console's tokens live a day: a developer's session.
const TOKEN_TTL_SECS: i64 = 24 * 3600;

/// The console's routes.
pub fn router(bots: Arc<Registry>, deliveries: Deliveries) -> Router {
    let pages = Router::new().route("/console", get(page)).route("/console/console.js", get(script));
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
    entries: VecDeque<Recorded>,
}

/// A delivery as the page shows it, and whose conversation it is.
struct Recorded {
    seq: u64,
    bot_id: String,
    user_id: String,
    app: Option<String>,
    shown: Value,
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
        let shown = json!({
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
        let (bot_id, user_id, app) = (delivery.bot_id.clone(), delivery.user_id.clone(), delivery.app.clone());
        let seq = kept.last;
        kept.entries.push_back(Recorded { seq, bot_id, user_id, app, shown });
    }

    /// The deliveries after number `after` of the user's conversation as
    /// `app` sees it (its own users' if it keeps them apart, and those the
    /// bot's apps share), and the last number.
    fn of(&self, bot_id: &str, user_id: &str, app: &str, after: u64) -> (Vec<Value>, u64) {
        let kept = self.0.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entries = kept
            .entries
            .iter()
            .filter(|r| r.seq > after && r.bot_id == bot_id && r.user_id == user_id)
            .filter(|r| r.app.as_deref().is_none_or(|own| own == app))
            .map(|r| r.shown.clone())
            .collect();
        (entries, kept.last)
    }
}

async fn page() -> Response {
    // The page runs its own script only (no inline script, no `javascript:`
    // link), and no other page may frame it.
    let policy = "default-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";
    ([(header::CONTENT_SECURITY_POLICY, policy), (header::X_FRAME_OPTIONS, "DENY")], Html(PAGE)).into_response()
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
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
    /// The app the console signs as.
    app: String,
    #[serde(default)]
    after: u64,
}

async fn deliveries_of(State(console): State<Console>, Query(of): Query<DeliveriesOf>) -> Json<Value> {
    let (deliveries, last) = console.deliveries.of(&of.bot, &of.user, &of.app, of.after);
    Json(json!({"deliveries": deliveries, "last": last}))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hookline_core::app::queue::DeliveryKind;
    use hookline_core::engine::HttpCall;

    use super::*;

    fn delivery(user: &str, app: Option<&str>, webhook_id: &str) -> Delivery {
        let call = HttpCall {
            method: "POST".into(),
            url: "http://127.0.0.1:4000/events".into(),
            headers: Vec::new(),
            body: Some(json!({"userId": user})),
            timeout: Duration::from_secs(1),
            allow_private: true,
            max_response_bytes: 1024,
        };
        Delivery {
            bot_id: "st-bot".into(),
            user_id: user.into(),
            app: app.map(String::from),
            kind: DeliveryKind::Event,
            instance_id: None,
            webhook_id: webhook_id.into(),
            call,
            delay_ms: None,
        }
    }

    fn ids(listed: &[Value]) -> Vec<&str> {
        listed.iter().map(|d| d["webhookId"].as_str().unwrap()).collect()
    }

    #[test]
    fn each_conversation_sees_its_own_deliveries_once_opened() {
        let deliveries = Deliveries::default();
        deliveries.record(&delivery("ann", None, "before"), &Delivered::Yes(200));
        deliveries.0.opened.store(true, Ordering::Relaxed);
        deliveries.record(&delivery("ann", None, "shared"), &Delivered::Yes(200));
        deliveries.record(&delivery("ann", Some("cs-kiosk"), "kiosk"), &Delivered::Gone);
        deliveries.record(&delivery("ann", Some("cs-web"), "web"), &Delivered::Yes(204));
        let failed = Delivered::No { reason: "status 500".into(), retry_after: None };
        deliveries.record(&delivery("bob", None, "bob"), &failed);

        // The users the bot's apps share, and the app's own.
        let (listed, last) = deliveries.of("st-bot", "ann", "cs-kiosk", 0);
        assert_eq!(ids(&listed), ["shared", "kiosk"]);
        assert_eq!(listed[1]["outcome"], json!({"status": 410}));
        assert_eq!(last, 4);
        assert_eq!(ids(&deliveries.of("st-bot", "ann", "cs-web", 0).0), ["shared", "web"]);
        let (listed, _) = deliveries.of("st-bot", "bob", "cs-web", 0);
        assert_eq!(listed[0]["outcome"], json!({"failed": "status 500"}));
        assert_eq!(ids(&deliveries.of("st-bot", "ann", "cs-kiosk", 1).0), ["kiosk"]);
        assert!(deliveries.of("st-other", "ann", "cs-kiosk", 0).0.is_empty());
    }

    #[test]
    fn only_the_latest_are_kept() {
        let deliveries = Deliveries::default();
        deliveries.0.opened.store(true, Ordering::Relaxed);
        for n in 0..KEPT + 3 {
            deliveries.record(&delivery("ann", None, &format!("d{n}")), &Delivered::Yes(200));
        }
        let (listed, last) = deliveries.of("st-bot", "ann", "cs-web", 0);
        assert_eq!(listed.len(), KEPT);
        assert_eq!(listed[0]["webhookId"], "d3");
        assert_eq!(last, KEPT as u64 + 3);
    }
}
