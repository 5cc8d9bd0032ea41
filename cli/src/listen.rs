//! `hookline listen`: a POST_URL and event webhook receiver for development.
//! It verifies each delivery's Standard Webhooks signature, prints one line
//! per delivery (the whole body with `--raw`), optionally forwards it, and
//! prints a summary when stopped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hookline_core::signing::{self, SigningKey};
use serde_json::{Value, json};

/// The longest a forwarded delivery waits for its target.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Texts in a delivery's line are cut to this many characters.
const SHOWN_CHARS: usize = 60;

pub struct Options {
    pub addr: SocketAddr,
    /// Empty: signatures are shown as not checked.
    pub keys: Vec<SigningKey>,
    pub forward_to: Option<reqwest::Url>,
    pub raw: bool,
}

struct Listener {
    keys: Vec<SigningKey>,
    forward: Option<(reqwest::Client, reqwest::Url)>,
    raw: bool,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    deliveries: usize,
    verified: usize,
    unverified: usize,
    forwarded: usize,
    forward_failed: usize,
}

pub async fn run(options: Options) -> Result<(), String> {
    let forward = match options.forward_to {
        Some(url) => {
            let client = reqwest::Client::builder().no_proxy().timeout(FORWARD_TIMEOUT).build();
            Some((client.map_err(|e| format!("no HTTP client: {e}"))?, url))
        }
        None => None,
    };
    let listener =
        Arc::new(Listener { keys: options.keys, forward, raw: options.raw, tally: Mutex::new(Tally::default()) });
    let socket = tokio::net::TcpListener::bind(options.addr).await.map_err(|e| format!("{}: {e}", options.addr))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    println!("Listening on http://{addr} for POST_URL deliveries and event webhooks (Ctrl-C stops)");
    if listener.keys.is_empty() {
        println!("Signatures are not checked: give --secret, or --bot (and --instance), to check them");
    } else {
        println!("Checking signatures with {} secret(s)", listener.keys.len());
    }
    if let Some((_, url)) = &listener.forward {
        println!("Forwarding every delivery to {url}");
    }
    let app = Router::new().fallback(receive).with_state(Arc::clone(&listener));
    axum::serve(socket, app).with_graceful_shutdown(crate::serve::stop_signal()).await.map_err(|e| e.to_string())?;
    println!("{}", listener.summary());
    Ok(())
}

async fn receive(
    State(listener): State<Arc<Listener>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, axum::Json(json!({"error": "deliveries are POSTed"}))).into_response();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = header("webhook-id").unwrap_or("(no webhook-id)");
    let verdict = if listener.keys.is_empty() {
        Ok("not checked")
    } else {
        let now = chrono::Utc::now().timestamp();
        let checked = signing::verify(
            &listener.keys,
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            &body,
            now,
        );
        checked.map(|()| "verified")
    };
    let time = chrono::Local::now().format("%H:%M:%S");
    let shown = match &verdict {
        Ok(state) => state.to_string(),
        Err(why) => format!("NOT VERIFIED ({why})"),
    };
    println!("{time}  {id}  {shown}  {}  {}", uri.path(), summary(&body));
    if listener.raw {
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => println!("{value:#}"),
            Err(_) => println!("{}", String::from_utf8_lossy(&body)),
        }
    }
    listener.count(|tally| {
        tally.deliveries += 1;
        if verdict.is_ok() && !listener.keys.is_empty() {
            tally.verified += 1;
        } else if verdict.is_err() {
            tally.unverified += 1;
        }
    });
    if let Some((client, url)) = &listener.forward {
        return listener.forward(client, url, &headers, body).await;
    }
    match verdict {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(why) => (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": why.to_string()}))).into_response(),
    }
}

impl Listener {
    fn count(&self, change: impl FnOnce(&mut Tally)) {
        change(&mut self.tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    /// Sends the delivery on as it came (its body and its content-type and
    /// `webhook-*` headers) and answers with what the target answered, so
    /// the sender retries as the target asks.
    async fn forward(
        &self,
        client: &reqwest::Client,
        url: &reqwest::Url,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut request = client.post(url.clone()).body(body);
        for (name, value) in headers {
            if name == header::CONTENT_TYPE || name.as_str().starts_with("webhook-") {
                request = request.header(name.as_str(), value.as_bytes());
            }
        }
        let answered = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            Ok::<_, reqwest::Error>((status, content_type, response.bytes().await?))
        };
        match answered.await {
            Ok((status, content_type, bytes)) => {
                println!("          forwarded to {url}: {status}");
                self.count(|tally| tally.forwarded += 1);
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut response = (status, bytes).into_response();
                if let Some(content_type) = content_type {
                    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
                }
                response
            }
            Err(e) => {
                println!("          forwarding to {url} failed: {e}");
                self.count(|tally| tally.forward_failed += 1);
                let error = json!({"error": format!("forwarding failed: {e}")});
                (StatusCode::BAD_GATEWAY, axum::Json(error)).into_response()
            }
        }
    }

    fn summary(&self) -> String {
        let tally = self.tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut line = format!("{} deliveries", tally.deliveries);
        if !self.keys.is_empty() {
            line += &format!(": {} verified, {} not verified", tally.verified, tally.unverified);
        }
        if self.forward.is_some() {
            line += &format!("; {} forwarded, {} failed to forward", tally.forwarded, tally.forward_failed);
        }
        line
    }
}

/// One line for a delivery's body: who it is for and what it says, in each
/// shape Hookline sends (v2 and v1 POST_URL bodies, Chatlayer messages, event
/// webhooks); anything else as the start of its text.
fn summary(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return format!("{} bytes, not JSON", body.len());
    };
    let text = |value: &Value| match value {
        Value::String(s) => quoted(s),
        other => quoted(&other.to_string()),
    };
    if let Some(direction) = value["direction"].as_str() {
        return format!("event {direction} {}: {}", value["userId"].as_str().unwrap_or("?"), text(&value["data"]));
    }
    let to = value["to"].as_str().or(value["recipient"]["id"].as_str()).unwrap_or("?");
    let mut parts = Vec::new();
    if let Some(data) = value["data"].as_array() {
        for item in data {
            let kind = item["type"].as_str().unwrap_or("?");
            parts.push(match kind {
                "text" => format!("text {}", text(&item["val"])),
                "template" => format!("template {}", item["val"]["payload"]["template_type"].as_str().unwrap_or("?")),
                other => other.to_string(),
            });
        }
    } else if value.get("text").is_some() {
        parts.push(format!("text {}", text(&value["text"])));
    } else if let Some(message) = value.get("message") {
        parts.push(match message.get("text") {
            Some(t) => format!("text {}", text(t)),
            None => "attachment".into(),
        });
    }
    if value["endOfTask"] == true {
        parts.push(match value["endReason"].as_str() {
            Some(reason) => format!("end of task ({reason})"),
            None => "end of task".into(),
        });
    }
    if value["endOfMessage"] == true {
        parts.push("end of message".into());
    }
    if parts.is_empty() {
        return quoted(&value.to_string());
    }
    format!("to {to}: {}", parts.join(", "))
}

fn quoted(text: &str) -> String {
    let mut shown: String = text.chars().take(SHOWN_CHARS).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_body_shape_is_one_line() {
        let v2 = br#"{"to":"u1","from":"st-1","data":[{"type":"text","val":"Hello!"},
            {"type":"template","val":{"type":"template","payload":{"template_type":"button"}}}],"_v":"v2"}"#;
        assert_eq!(summary(v2), r#"to u1: text "Hello!", template button"#);
        let end = br#"{"to":"u1","endOfTask":true,"endReason":"Fulfilled","endOfMessage":true,"data":[]}"#;
        assert_eq!(summary(end), "to u1: end of task (Fulfilled), end of message");
        assert_eq!(summary(br#"{"to":"u1","text":"hi"}"#), r#"to u1: text "hi""#);
        let event = br#"{"direction":"in","userId":"u1","data":"hello"}"#;
        assert_eq!(summary(event), r#"event in u1: "hello""#);
        assert_eq!(summary(br#"{"recipient":{"id":"u1"},"message":{"text":"yo"}}"#), r#"to u1: text "yo""#);
        assert_eq!(summary(b"nope"), "4 bytes, not JSON");
        let long = format!(r#"{{"to":"u1","text":"{}"}}"#, "x".repeat(100));
        assert_eq!(summary(long.as_bytes()), format!(r#"to u1: text "{}...""#, "x".repeat(60)));
    }
}
