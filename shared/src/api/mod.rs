//! HTTP API: one axum Router per endpoint family, the error envelope, trace
//! ids, CORS and limits. The Lambda functions and `hookline serve` serve these
//! same routers; each family's state holds only what its endpoints use.

mod botmeta;
mod envelope;
mod files;
mod history;
mod poll;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::app::files::{FileStore, Files};
use crate::app::queue::Queue;
use crate::app::store::{Conversations, Polls};
use crate::app::turn::Turns;
use crate::definition::Registry;
use crate::error::{Error, Result};

use botmeta::icon_url;
pub use envelope::TraceId;

pub const TRACE_HEADER: &str = "x-trace-id";

/// Limits and switches of the HTTP endpoints, from the environment at start.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest accepted request body (HOOKLINE_MAX_BODY_BYTES, default 64 KiB).
    pub max_body_bytes: usize,
    /// Synchronous answer deadline (HOOKLINE_SYNC_DEADLINE_MS, default 15 s as in the spec).
    pub sync_deadline: Duration,
    /// Origins browsers may call from (HOOKLINE_CORS_ORIGINS, comma separated, `*` for any).
    pub cors_origins: Vec<String>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self { max_body_bytes: 64 * 1024, sync_deadline: Duration::from_secs(15), cors_origins: vec!["*".into()] }
    }
}

/// The message ingress: turns, the queue (asynchronous turns and what turns
/// leave), file records (fileIds in messages) and the log (chat history).
#[derive(Clone)]
pub struct WebhookState {
    pub bots: Arc<Registry>,
    pub turns: Arc<Turns>,
    pub queue: Arc<dyn Queue>,
    pub files: Arc<dyn FileStore>,
    pub http: Arc<HttpSettings>,
}

/// The poll endpoint: poll records, the log they point into, and the queue
/// (a stalled continuation is queued again).
#[derive(Clone)]
pub struct PollState {
    pub bots: Arc<Registry>,
    pub polls: Arc<dyn Polls>,
    pub conversations: Arc<dyn Conversations>,
    pub queue: Arc<dyn Queue>,
    pub http: Arc<HttpSettings>,
}

/// The upload endpoints: files over their records and bytes.
#[derive(Clone)]
pub struct FilesState {
    pub bots: Arc<Registry>,
    pub files: Files,
    pub http: Arc<HttpSettings>,
}

/// `Authorization: bearer <JWT>`, scheme case-insensitive.
fn bearer_token(headers: &HeaderMap) -> Result<&str> {
    let unauthorized = |reason: &str| Error::Unauthorized(reason.into());
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization header"))?
        .to_str()
        .map_err(|_| unauthorized("malformed Authorization header"))?;
    match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(unauthorized("expected 'bearer <JWT>'")),
    }
}

/// The message ingress family: v1 and v2 webhooks, bot metadata and chat history.
pub fn webhook_router(state: WebhookState) -> Router {
    let http = state.http.clone();
    let routes = webhook::router(state.clone()).merge(botmeta::router(state.clone())).merge(history::router(state));
    with_layers(routes, &http)
}

/// GET .../poll/{pollId}.
pub fn poll_router(state: PollState) -> Router {
    let http = state.http.clone();
    with_layers(poll::router(state), &http)
}

/// File uploads: single-shot, uploadfile, and chunked (token, chunk, commit).
pub fn files_router(state: FilesState) -> Router {
    let http = state.http.clone();
    with_layers(files::router(state), &http)
}

/// Every endpoint family, for the single local process.
pub fn app(webhook: WebhookState, poll: PollState, files: FilesState) -> Router {
    let http = webhook.http.clone();
    let routes = webhook::router(webhook.clone())
        .merge(botmeta::router(webhook.clone()))
        .merge(history::router(webhook))
        .merge(poll::router(poll))
        .merge(files::router(files));
    with_layers(routes, &http)
}

/// Panic safety net, CORS, and outermost the trace id and error envelope, so
/// that every response (preflights included) carries a trace id.
fn with_layers(router: Router, settings: &HttpSettings) -> Router {
    router
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(Error::Internal("handler panicked".into()))
        }))
        .layer(cors(settings))
        .layer(axum::middleware::from_fn(envelope::trace_and_envelope))
}

fn cors(settings: &HttpSettings) -> CorsLayer {
    let origins = if settings.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(settings.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .expose_headers([HeaderName::from_static(TRACE_HEADER)])
        .max_age(Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_envelope() {
        async fn boom() -> &'static str {
            panic!("a bug")
        }
        let router = Router::new().route("/boom", get(boom));
        let response = with_layers(router, &HttpSettings::default())
            .oneshot(http::Request::get("/boom").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        let trace_id = response.headers()[TRACE_HEADER].to_str().unwrap().to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"errors": [{"msg": "Internal Server Error", "code": 500}], "_v": "v2", "_t": trace_id})
        );
    }
}
