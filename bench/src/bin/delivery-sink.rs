//! The loopback sink scripts/bench's `delivery` row delivers to, from the
//! product (an asynchronous instance's POST_URL) and from the reference
//! (`delivery-loop`): answers 200 to every POST, counts the deliveries and
//! checks each conversation's order, and times their arrival.
//!
//!     delivery-sink 127.0.0.1:PORT
//!
//! `POST /deliveries` takes a delivery in the Webhook channel's v2 shape: a
//! message `{to, data: [{val: "hello N", ...}], ...}` (N numbers the user's
//! messages from 1) or the end of its turn `{to, data: [], endOfMessage, ...}`.
//! In order, a user's deliveries are message 1, its end, message 2, its end,
//! ...; anything else counts as out of order. A `webhook-id` seen before
//! counts as a duplicate and is not checked again.
//!
//! The sink starts closed: deliveries are taken (counted, timed) but not
//! answered until `POST /release`, so the sender fills its queue before the
//! clock starts. `GET /report` answers the figures as JSON (times in seconds
//! since the sink started).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::watch;

/// Where one user's conversation is.
#[derive(Default)]
struct Conversation {
    /// The number of the last message delivered in order.
    last: u64,
    /// That message's end of turn has not come yet.
    awaiting_end: bool,
}

#[derive(Default)]
struct Figures {
    /// Every POST to /deliveries, repeats included.
    count: u64,
    messages: u64,
    ends: u64,
    duplicates: u64,
    out_of_order: u64,
    /// Bodies that were neither a numbered message nor an end of turn.
    unreadable: u64,
    body_bytes: u64,
    /// Deliveries that had arrived when the sink was released.
    held: u64,
    first: Option<f64>,
    last: Option<f64>,
    released: Option<f64>,
    conversations: HashMap<String, Conversation>,
    seen: HashSet<String>,
}

struct Sink {
    started: Instant,
    figures: Mutex<Figures>,
    open: watch::Sender<bool>,
}

impl Sink {
    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// What a delivery is: message N of a user, or the end of a turn.
enum Kind {
    Message(u64),
    End,
}

fn read(body: &[u8]) -> Option<(String, Kind)> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let user = body["to"].as_str()?.to_string();
    match body["data"].as_array().and_then(|data| data.first()) {
        Some(message) => {
            let number = message["val"].as_str()?.rsplit(' ').next()?.parse().ok()?;
            Some((user, Kind::Message(number)))
        }
        None if body["endOfMessage"] == true => Some((user, Kind::End)),
        None => None,
    }
}

async fn deliver(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = sink.now();
    {
        let mut figures = sink.figures.lock().expect("figures");
        figures.count += 1;
        figures.body_bytes += body.len() as u64;
        figures.first.get_or_insert(now);
        figures.last = Some(now);
        let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).map(String::from);
        let repeat = id.is_some_and(|id| !figures.seen.insert(id));
        match read(&body) {
            _ if repeat => figures.duplicates += 1,
            None => figures.unreadable += 1,
            Some((user, kind)) => {
                let in_order = {
                    let conversation = figures.conversations.entry(user).or_default();
                    match kind {
                        Kind::Message(number) => {
                            let in_order = number == conversation.last + 1 && !conversation.awaiting_end;
                            conversation.last = number;
                            conversation.awaiting_end = true;
                            in_order
                        }
                        Kind::End => std::mem::take(&mut conversation.awaiting_end),
                    }
                };
                match kind {
                    Kind::Message(_) => figures.messages += 1,
                    Kind::End => figures.ends += 1,
                }
                if !in_order {
                    figures.out_of_order += 1;
                }
            }
        }
    }
    let mut open = sink.open.subscribe();
    if open.wait_for(|open| *open).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::OK
}

async fn release(State(sink): State<Arc<Sink>>) -> StatusCode {
    {
        let mut figures = sink.figures.lock().expect("figures");
        if figures.released.is_none() {
            figures.released = Some(sink.now());
            figures.held = figures.count;
        }
    }
    sink.open.send_replace(true);
    StatusCode::OK
}

async fn report(State(sink): State<Arc<Sink>>) -> Json<Value> {
    let figures = sink.figures.lock().expect("figures");
    // Users whose last message's end of turn has not come.
    let unfinished = figures.conversations.values().filter(|c| c.awaiting_end).count();
    let numbered: u64 = figures.conversations.values().map(|c| c.last).sum();
    Json(json!({
        "count": figures.count,
        "unique": figures.count - figures.duplicates,
        "messages": figures.messages,
        "ends": figures.ends,
        "duplicates": figures.duplicates,
        "out_of_order": figures.out_of_order,
        "unreadable": figures.unreadable,
        "body_bytes": figures.body_bytes,
        "users": figures.conversations.len(),
        "unfinished": unfinished,
        "numbered": numbered,
        "held": figures.held,
        "first": figures.first,
        "last": figures.last,
        "released": figures.released,
    }))
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3998".into());
    let sink = Arc::new(Sink { started: Instant::now(), figures: Mutex::default(), open: watch::Sender::new(false) });
    let app = Router::new()
        .route("/deliveries", post(deliver))
        .route("/release", post(release))
        .route("/report", get(report))
        .with_state(sink);
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
