//! HTTP API: one axum Router per endpoint family, the error envelope, trace
//! ids, CORS and limits. The Lambda functions and `hookline serve` serve these
//! same routers.

mod envelope;
mod files;
mod history;
pub(crate) mod inbound;
mod poll;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::{HeaderName, HeaderValue, Method, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::blobs::Blobs;
use crate::config::{Bot, Registry};
use crate::delivery::Outbound;
use crate::error::Error;
use crate::files::FileLimits;
use crate::queue::Queue;
use crate::store::{FileStore, Store};
use crate::turn::Turns;

pub use envelope::TraceId;

pub const TRACE_HEADER: &str = "x-trace-id";

/// Limits and switches read from the environment at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest accepted request body (HOOKLINE_MAX_BODY_BYTES, default 64 KiB).
    pub max_body_bytes: usize,
    /// Synchronous answer deadline (HOOKLINE_SYNC_DEADLINE_MS, default 15 s as in the spec).
    pub sync_deadline: Duration,
    /// Origins browsers may call from (HOOKLINE_CORS_ORIGINS, comma separated, `*` for any).
    pub cors_origins: Vec<String>,
    /// First wait before a failed job runs again, doubled each time
    /// (HOOKLINE_RETRY_BASE_MS, default 10 s).
    pub retry_base: Duration,
    /// How long the worker gives one step (a queued turn, or a polled call
    /// and what follows it) (HOOKLINE_WORKER_DEADLINE_MS, default 40 s; keep
    /// it under the worker's timeout).
    pub worker_turn_deadline: Duration,
    pub files: FileLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            sync_deadline: Duration::from_secs(15),
            cors_origins: vec!["*".into()],
            retry_base: Duration::from_secs(10),
            worker_turn_deadline: Duration::from_secs(40),
            files: FileLimits::default(),
        }
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        let mut settings = Settings::default();
        let number = |name: &str| -> Result<Option<u64>, String> {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().parse().map_err(|_| format!("{name} must be a whole number, got {v:?}")))
                .transpose()
        };
        if let Some(bytes) = number("HOOKLINE_MAX_BODY_BYTES")? {
            settings.max_body_bytes = bytes as usize;
        }
        if let Some(ms) = number("HOOKLINE_SYNC_DEADLINE_MS")? {
            settings.sync_deadline = Duration::from_millis(ms);
        }
        if let Some(ms) = number("HOOKLINE_RETRY_BASE_MS")? {
            settings.retry_base = Duration::from_millis(ms);
        }
        if let Some(ms) = number("HOOKLINE_WORKER_DEADLINE_MS")? {
            settings.worker_turn_deadline = Duration::from_millis(ms);
        }
        // Zero would refuse every file or expire it at once.
        let positive = |name: &str| -> Result<Option<u64>, String> {
            match number(name)? {
                Some(0) => Err(format!("{name} must be at least 1")),
                other => Ok(other),
            }
        };
        if let Some(bytes) = positive("HOOKLINE_MAX_FILE_BYTES")? {
            settings.files.max_file_bytes = bytes;
        }
        if let Some(bytes) = positive("HOOKLINE_MAX_UPLOAD_BYTES")? {
            settings.files.max_upload_bytes = bytes as usize;
        }
        if let Some(secs) = positive("HOOKLINE_UPLOAD_TOKEN_SECS")? {
            settings.files.token_lifetime = Duration::from_secs(secs);
        }
        if let Some(days) = positive("HOOKLINE_FILE_RETENTION_DAYS")? {
            settings.files.retention = Duration::from_secs(days.saturating_mul(86_400));
        }
        if let Ok(types) = std::env::var("HOOKLINE_FILE_TYPES") {
            let types: Vec<String> = types
                .split(',')
                .map(|t| t.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect();
            // Empty (as a template parameter left blank): the default list.
            if !types.is_empty() {
                settings.files.extensions = types;
            }
        }
        if let Ok(origins) = std::env::var("HOOKLINE_CORS_ORIGINS") {
            settings.cors_origins =
                origins.split(',').map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect();
        }
        Ok(settings)
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub turns: Arc<Turns>,
    pub outbound: Outbound,
    /// Where work goes that does not happen before the answer.
    pub queue: Arc<dyn Queue>,
    /// File metadata, to check the fileIds messages name.
    pub files: Arc<dyn FileStore>,
    pub settings: Arc<Settings>,
}

impl AppState {
    /// Fails only if no HTTP client can be built (no TLS roots).
    pub fn new(
        registry: Registry,
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        settings: Settings,
    ) -> Result<Self, String> {
        let outbound = Outbound::new()?;
        Ok(Self {
            registry: Arc::new(registry),
            turns: Arc::new(Turns::new(store.clone(), outbound.clone())),
            outbound,
            queue,
            files: store,
            settings: Arc::new(settings),
        })
    }
}

impl AppState {
    /// The bot named in a URL.
    pub fn bot(&self, bot_id: &str) -> Result<Arc<Bot>, Error> {
        self.registry.get(bot_id).cloned().ok_or_else(|| Error::NotFound(format!("no bot {bot_id}")))
    }
}

/// The message ingress family: v1 and v2 webhooks, bot metadata and chat history.
pub fn webhook_router(state: AppState) -> Router {
    let routes = webhook::router(state.clone()).merge(history::router(state.clone()));
    with_layers(routes, &state.settings)
}

/// GET .../poll/{pollId}.
pub fn poll_router(state: AppState) -> Router {
    let routes = poll::router(state.clone());
    with_layers(routes, &state.settings)
}

/// File uploads: single-shot, uploadfile, and chunked (token, chunk, commit).
pub fn files_router(state: AppState, blobs: Arc<dyn Blobs>) -> Router {
    let routes = files::router(state.clone(), blobs);
    with_layers(routes, &state.settings)
}

/// Every endpoint family, for the single local process.
pub fn app(state: AppState, blobs: Arc<dyn Blobs>) -> Router {
    let routes = webhook::router(state.clone())
        .merge(history::router(state.clone()))
        .merge(poll::router(state.clone()))
        .merge(files::router(state.clone(), blobs));
    with_layers(routes, &state.settings)
}

/// Panic safety net, CORS, and outermost the trace id and error envelope, so
/// that every response (preflights included) carries a trace id.
fn with_layers(router: Router, settings: &Settings) -> Router {
    router
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(Error::Internal("handler panicked".into()))
        }))
        .layer(cors(settings))
        .layer(axum::middleware::from_fn(envelope::trace_and_envelope))
}

fn cors(settings: &Settings) -> CorsLayer {
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
        let response = with_layers(router, &Settings::default())
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
