//! The stand-in for a customer's API that the built-in demo bot calls, so
//! its webhook and service nodes work without anything else running. Mounted
//! only when `hookline serve` runs the built-in demo bot.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// Where the demo bot's definition says its API is; replaced by the address
/// actually served.
pub const DEMO_API: &str = "http://127.0.0.1:3000/demo";

pub fn router() -> Router {
    Router::new()
        .route("/demo/leads", post(lead))
        .route("/demo/orders/{order}", post(order))
        .route("/demo/delivery", post(delivery))
        .route("/demo/weather", get(weather))
        .route("/demo/inbox", post(deliver).get(inbox))
        .with_state(Inbox::default())
}

/// What the demo's asynchronous instance delivered to its POST_URL.
type Inbox = Arc<Mutex<Vec<Value>>>;

/// The POST_URL: keeps each delivery (the most recent 100).
async fn deliver(State(inbox): State<Inbox>, Json(message): Json<Value>) -> StatusCode {
    tracing::info!(%message, "demo POST_URL received a message");
    let mut inbox = inbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    inbox.push(message);
    let excess = inbox.len().saturating_sub(100);
    inbox.drain(..excess);
    StatusCode::NO_CONTENT
}

/// Everything delivered so far, oldest first.
async fn inbox(State(inbox): State<Inbox>) -> Json<Value> {
    Json(Value::Array(inbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()))
}

/// Async webhook: what a CRM would store.
async fn lead(Json(lead): Json<Value>) -> StatusCode {
    tracing::info!(%lead, "demo API received a lead");
    StatusCode::NO_CONTENT
}

/// Sync webhook answering Joonbot-style `responses`.
async fn order(Path(order): Path<String>) -> Json<Value> {
    let text = |label: String| json!({"type": "text", "delay": 1000, "elements": [{"label": label, "order": 1}]});
    Json(json!({"responses": [
        text(format!("Order {order} left our warehouse this morning.")),
        text("It should reach your pickup point within 2 days.".into()),
    ]}))
}

/// Sync webhook answering plain keys, which become context variables.
async fn delivery() -> Json<Value> {
    Json(json!({"delivery_status": "out for delivery", "delivery_method": "express"}))
}

#[derive(Deserialize)]
struct City {
    #[serde(default)]
    city: String,
}

/// Service node: a made-up but stable forecast per city.
async fn weather(Query(City { city }): Query<City>) -> Json<Value> {
    let seed: u32 = city.to_lowercase().bytes().map(u32::from).sum();
    let sky = ["clear", "cloudy", "rainy", "windy", "hazy"][(seed % 5) as usize];
    Json(json!({"city": city, "current": {"temp": 5 + seed % 25, "sky": sky}}))
}
