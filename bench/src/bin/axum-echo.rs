//! A bare axum server answering a v2 webhook POST with a v2-shaped reply:
//! no state, auth or logging. The ceiling for a JSON-over-HTTP turn.
//!
//!     axum-echo 127.0.0.1:PORT

use axum::extract::Path;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

async fn turn(Path(stream): Path<String>, Json(body): Json<Value>) -> Json<Value> {
    let user = body["from"]["id"].as_str().unwrap_or("").to_string();
    let text = body["message"]["val"].as_str().unwrap_or("").to_string();
    Json(json!({
        "to": user, "from": stream, "_v": "v2", "endOfTask": false,
        "data": [{"type": "text", "val": format!("You said: {text}"),
                  "createdOn": "2026-01-01T00:00:00.000Z", "messageId": "ms-1"}]
    }))
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3999".into());
    let app = Router::new().route("/chatbot/v2/webhook/{stream}", post(turn));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
