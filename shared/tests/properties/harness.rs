//! Every endpoint, as `hookline serve` wires them, over the in-memory store,
//! a files directory of its own and a queue nothing runs: requests go to the
//! router in-process.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;
use tower::ServiceExt;

use hookline_core::adapters::blobs::LocalBlobs;
use hookline_core::adapters::queue::MemoryQueue;
use hookline_core::adapters::store::MemoryStore;
use hookline_core::api::TRACE_HEADER;
use hookline_core::app::auth::dev_token;
use hookline_core::app::files::FileLimits;
use hookline_core::app::store::Stores;
use hookline_core::definition::{Bot, Purpose, Registry};
use hookline_core::process::{Embedded, Settings};

pub const BOT_ID: &str = "st-properties";

/// The bot the HTTP properties talk to: every kind of instance, questions
/// of every entity, a form, templates over what the client sends, a logic
/// node matching the user's own text as a pattern; no outbound calls.
pub const BOT: &str = r#"
id: st-properties
name: Properties
languages: { default: en, supported: [en, fr] }
rateLimits: { perMinute: 0, perHour: 0 }
apps:
  - clientId: cs-properties
    algorithm: HS256
    secret: { value: "property-tests-secret-0123456789abcdef" }
instances:
  - { id: ivr, version: v1, apps: [cs-properties] }
  - { id: chat, version: v2, polling: false, apps: [cs-properties] }
  - { id: polled, version: v2, apps: [cs-properties] }
  - { id: queued, version: v2, mode: async, postUrl: "https://hooks.example.com/inbox", apps: [cs-properties] }
welcome: welcome
fallback: { en: "Sorry? {{context.session.BotUserSession.lastMessage.message.val}}", fr: "Pardon ?" }
tasks:
  - id: welcome
    name: welcome
    start: hello
    nodes:
      hello:
        type: message
        messages:
          - "Hi {{user.firstName}} {{user.lastName}} ({{user.id}}), tier {{tags.user.tier}}."
          - "You sent {{context.session.BotUserSession.lastMessage.customData.customText}} {{context.session.BotUserSession.lastMessage.customData}}"
  - id: book
    name: book
    triggers: { phrases: [book], keywords: [reservation], patterns: ['\btable\b'] }
    start: name
    nodes:
      name: { type: question, field: name, prompt: "Name?", next: guests }
      guests: { type: question, field: guests, entity: number, prompt: "Guests, {{context.name}}?", next: day }
      day: { type: question, field: day, entity: date, prompt: "Day?", next: email }
      email: { type: question, field: email, entity: email, prompt: "Email?", next: phone }
      phone: { type: question, field: phone, entity: phone, prompt: "Phone?", next: seating }
      seating:
        type: question
        field: seating
        entity: choice
        prompt: "Inside or terrace?"
        choices:
          - { value: inside, label: { en: inside, fr: intérieur }, synonyms: [in] }
          - { value: terrace }
        next: sure
      sure: { type: question, field: sure, entity: yesNo, prompt: "Sure?", maxRetries: 1, onGiveUp: done, next: receipt }
      receipt: { type: question, field: receipts, entity: attachment, prompt: "Receipt?", next: pattern }
      pattern: { type: question, field: pattern, prompt: "A pattern?", next: judge }
      judge:
        type: logic
        set: { copy: "{{context.pattern}}", label: "n={{context.guests}}" }
        conditions:
          - { valueOf: context.name, op: matches, value: "{{context.pattern}}", next: matched }
          - { valueOf: context.guests, op: greater, value: "{{context.copy}}", next: done }
        else: done
      matched: { type: message, text: "{{context.name}} matches {{context.pattern}}", next: done }
      done:
        type: end
        text: "{{context.name}} {{context.guests}} {{context.day}} {{context.receipts[0].fileName}} {{context.sure}}"
  - id: form
    name: form
    triggers: { phrases: [form] }
    start: form
    nodes:
      form:
        type: form
        id: reservation
        title: Book
        prefill: { name: "{{user.firstName}}" }
        components:
          - { name: name, type: textField, label: Name, required: true }
          - { name: guests, type: number, label: Guests }
          - { name: day, type: date, label: Day }
          - { name: mail, type: email, label: Mail }
          - { name: agree, type: checkbox, label: Agree }
          - { name: seat, type: dropdown, label: Seat, options: [{ value: a }, { value: b }] }
        next: booked
      booked: { type: message, text: "{{context.reservation.name}} {{context.reservation}}" }
  - id: menu
    name: menu
    triggers: { phrases: [menu] }
    start: buttons
    nodes:
      buttons:
        type: message
        template:
          type: template
          payload:
            template_type: button
            text: "What now, {{user.firstName}}?"
            buttons: [{ type: postback, title: Book, payload: book }]
"#;

/// Phrases that start the bot's tasks or answer its questions.
pub const UTTERANCES: &[&str] = &[
    "book",
    "form",
    "menu",
    "cancel",
    "reservation please",
    "a table",
    "Ada",
    "4",
    "-1e309",
    "1e400",
    "NaN",
    "99999999999999999999999",
    "2026-02-29",
    "31/12/99999",
    "tomorrow",
    "a@b.io",
    "+1 (555) 010-9999",
    "1",
    "2",
    "terrace",
    "yes",
    "no",
    "(",
    "(a+)+$",
    ".*",
    "\\p{L}{1000}{1000}",
    "[",
    "\\",
    "Ada.*",
];

/// A served router and what calls it need.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    bot: Arc<Bot>,
    files: PathBuf,
}

impl Harness {
    pub fn new() -> Self {
        let registry = Registry::from_sources(&[("properties.yaml".into(), BOT.into())], Purpose::Local)
            .expect("the properties bot is valid");
        let bot = registry.require(BOT_ID).expect("the properties bot");
        let files = std::env::temp_dir().join(format!("hookline-properties-{}", uuid::Uuid::new_v4().simple()));
        // Each case is its own user; quotas would only refuse later cases.
        let limits = FileLimits { uploads_per_hour: 0, upload_bytes_per_hour: 0, ..FileLimits::default() };
        let settings = Settings { files: limits, ..Settings::default() };
        let stores = Stores::of(Arc::new(MemoryStore::new()));
        let queue = Arc::new(MemoryQueue::new(3));
        let embedded = Embedded::new(registry, stores, queue, Arc::new(LocalBlobs::new(&files)), settings)
            .expect("wiring the endpoints");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        Self { runtime, router: embedded.router(), bot, files }
    }

    /// A valid token of the bot's app naming `user`, as `hookline token` signs it.
    pub fn token(&self, user: &str) -> String {
        dev_token::sign(&self.bot.def, None, user, 3600, None).expect("a development token")
    }

    pub fn send(&self, request: Request<Body>) -> Reply {
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.expect("the router answers");
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, 16 << 20).await.expect("the body is readable");
            Reply { status: parts.status, headers: parts.headers, body }
        })
    }

    pub fn post(&self, uri: &str, token: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        let mut request = Request::post(uri).header(header::AUTHORIZATION, format!("bearer {token}"));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.send(request.body(Body::from(body)).expect("a request"))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The answer of a 200 (its JSON body) or `None` for a refusal, which
    /// must be a 4xx in the error envelope: `{"errors": [{"msg", "code",
    /// "detail"?}], "_v": "v2", "_t": traceId}`, its code the status and its
    /// trace id the X-Trace-Id header's.
    pub fn answer_or_refusal(&self) -> Result<Option<Value>, TestCaseError> {
        let (status, text) = (self.status, self.text());
        prop_assert!(status == StatusCode::OK || status.is_client_error(), "status {status}: {text}");
        let trace_id = self.headers.get(TRACE_HEADER).and_then(|v| v.to_str().ok());
        prop_assert!(trace_id.is_some_and(|t| !t.is_empty()), "no trace id on {status}: {text}");
        let json: Option<Value> = serde_json::from_slice(&self.body).ok();
        prop_assert!(json.is_some(), "status {status}: the body is not JSON: {text}");
        let json = json.unwrap_or_default();
        if status == StatusCode::OK {
            return Ok(Some(json));
        }
        let content_type = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        prop_assert_eq!(content_type, Some("application/json"), "status {}: {}", status, text);
        let keys = json.as_object().map(|o| o.keys().map(String::as_str).collect::<Vec<_>>()).unwrap_or_default();
        prop_assert_eq!(keys, vec!["errors", "_v", "_t"], "status {}: not the envelope: {}", status, text);
        prop_assert_eq!(&json["_v"], "v2", "status {}: {}", status, text);
        prop_assert_eq!(json["_t"].as_str(), trace_id, "status {}: {}", status, text);
        let errors = json["errors"].as_array().map_or(&[][..], Vec::as_slice);
        prop_assert_eq!(errors.len(), 1, "status {}: {}", status, text);
        let error = errors[0].as_object().cloned().unwrap_or_default();
        prop_assert!(error.keys().all(|k| ["msg", "code", "detail"].contains(&k.as_str())), "{text}");
        prop_assert!(error.get("msg").and_then(Value::as_str).is_some_and(|m| !m.is_empty()), "{text}");
        prop_assert_eq!(error.get("code").and_then(Value::as_u64), Some(u64::from(status.as_u16())), "{}", text);
        prop_assert!(error.get("detail").is_none_or(Value::is_string), "{text}");
        Ok(None)
    }

    /// The refusal's `errors[0].msg`.
    pub fn message(&self) -> String {
        let json: Value = serde_json::from_slice(&self.body).unwrap_or_default();
        json["errors"][0]["msg"].as_str().unwrap_or_default().to_string()
    }
}

/// The check above fails for what is not a 200 or the envelope: a property
/// built on it can fail.
#[test]
fn the_envelope_check_refuses_what_is_not_the_envelope() {
    let reply = |status: u16, trace_id: Option<&str>, content_type: &str, body: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, content_type.parse().expect("a header value"));
        if let Some(trace_id) = trace_id {
            headers.insert(TRACE_HEADER, trace_id.parse().expect("a header value"));
        }
        let status = StatusCode::from_u16(status).expect("a status");
        Reply { status, headers, body: Bytes::from(body.to_string()) }
    };
    let envelope = |code: u16, t: &str| {
        format!(r#"{{"errors":[{{"msg":"Invalid Request Payload","code":{code}}}],"_v":"v2","_t":"{t}"}}"#)
    };
    let json = "application/json";
    assert!(matches!(reply(200, Some("tr-1"), json, r#"{"text":"hi"}"#).answer_or_refusal(), Ok(Some(_))));
    assert!(matches!(reply(400, Some("tr-1"), json, &envelope(400, "tr-1")).answer_or_refusal(), Ok(None)));
    let wrong = [
        reply(500, Some("tr-1"), json, &envelope(500, "tr-1")),
        reply(302, Some("tr-1"), json, "{}"),
        reply(400, Some("tr-1"), json, "oops"),
        reply(400, Some("tr-1"), "text/plain", &envelope(400, "tr-1")),
        reply(400, Some("tr-1"), json, &envelope(401, "tr-1")),
        reply(400, Some("tr-1"), json, &envelope(400, "tr-2")),
        reply(400, None, json, &envelope(400, "tr-1")),
        reply(400, Some("tr-1"), json, r#"{"errors":[],"_v":"v2","_t":"tr-1"}"#),
        reply(400, Some("tr-1"), json, r#"{"errors":[{"msg":"","code":400}],"_v":"v2","_t":"tr-1"}"#),
        reply(400, Some("tr-1"), json, r#"{"errors":[{"msg":"x","code":400}],"_v":"v1","_t":"tr-1"}"#),
        reply(400, Some("tr-1"), json, r#"{"errors":[{"msg":"x","code":400}],"_v":"v2","_t":"tr-1","more":1}"#),
        reply(400, Some("tr-1"), json, r#"{"errors":[{"msg":"x","code":400,"why":1}],"_v":"v2","_t":"tr-1"}"#),
    ];
    for reply in wrong {
        assert!(reply.answer_or_refusal().is_err(), "{reply:?}");
    }
}
