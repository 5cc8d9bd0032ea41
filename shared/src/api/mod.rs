//! HTTP API: one axum Router per endpoint family, the error envelope, trace
//! ids, CORS and limits. The Lambda functions and `hookline serve` serve these
//! same routers; each family's state holds only what its endpoints use.

mod botmeta;
mod envelope;
mod files;
mod history;
mod openapi;
mod poll;
mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::handler::Handler;
use axum::routing::MethodFilter;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::app::auth::{self, Caller};
use crate::app::files::{FileStore, Files};
use crate::app::idempotency::IdempotencyKeys;
use crate::app::queue::Queue;
use crate::app::store::{Conversations, Counters, Polls, SeenTokens};
use crate::app::turn::Turns;
use crate::definition::{Bot, Registry};
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
    pub seen_tokens: Arc<dyn SeenTokens>,
    /// Counts of messages to asynchronous instances.
    pub counters: Arc<dyn Counters>,
    /// Idempotency-Key records.
    pub keys: Arc<dyn IdempotencyKeys>,
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
    pub seen_tokens: Arc<dyn SeenTokens>,
    pub http: Arc<HttpSettings>,
}

/// The upload endpoints: files over their records and bytes.
#[derive(Clone)]
pub struct FilesState {
    pub bots: Arc<Registry>,
    pub files: Files,
    pub seen_tokens: Arc<dyn SeenTokens>,
    /// Idempotency-Key records of commits.
    pub keys: Arc<dyn IdempotencyKeys>,
    pub http: Arc<HttpSettings>,
}

/// The caller of a request: its bearer token verified for `bot`, from one of
/// the `allowed` apps; a single-use token seen before is refused.
async fn authenticate<'b>(
    seen: &dyn SeenTokens,
    bot: &'b Bot,
    allowed: &[String],
    headers: &HeaderMap,
) -> Result<Caller<'b>> {
    let caller = auth::authenticate(bot, allowed, bearer_token(headers)?, chrono::Utc::now().timestamp())?;
    if let Some((jti, until)) = &caller.single_use {
        let id = format!("{}#{}#{jti}", bot.id(), caller.app.client_id);
        if !seen.first_use(&id, *until).await? {
            return Err(Error::Unauthorized("token already used".into()));
        }
    }
    Ok(caller)
}

/// Every app of the bot: endpoints that name no instance take any of them.
fn every_app(bot: &Bot) -> Vec<String> {
    bot.def.apps.iter().map(|a| a.client_id.clone()).collect()
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

/// The caller's address, as the process that took the request saw it (never
/// what the client writes in X-Forwarded-For): given to event webhooks.
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

/// Tells the routers each request's [`ClientIp`], as `ip_of` finds it.
pub fn with_client_ip(router: Router, ip_of: fn(&axum::extract::Request) -> Option<String>) -> Router {
    router.layer(axum::middleware::map_request(move |mut request: axum::extract::Request| async move {
        if let Some(ip) = ip_of(&request) {
            request.extensions_mut().insert(ClientIp(ip));
        }
        request
    }))
}

/// The socket's peer, for a server run with connect info.
pub fn peer_ip(request: &axum::extract::Request) -> Option<String> {
    let ConnectInfo(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
    Some(peer.ip().to_string())
}

/// Behind a trusted proxy: the address it added to X-Forwarded-For (the last
/// one, of the last header line; what comes before is the client's to
/// write), or the peer when the proxy added none.
pub fn proxied_ip(request: &axum::extract::Request) -> Option<String> {
    let forwarded = request.headers().get_all("x-forwarded-for").iter().next_back().and_then(|v| v.to_str().ok());
    let last = forwarded.and_then(|f| f.rsplit(',').next()).map(str::trim);
    match last.and_then(|ip| ip.parse::<std::net::IpAddr>().ok()) {
        Some(ip) => Some(ip.to_string()),
        None => peer_ip(request),
    }
}

/// One route as served: its method and its path as axum matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
}

/// A family's routes, each added with its method, so that what is served can
/// be listed (an axum `Router` cannot list its routes): the OpenAPI document
/// is checked against the list.
pub struct Routes<S = ()> {
    router: Router<S>,
    listed: Vec<Route>,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    fn new() -> Self {
        Self { router: Router::new(), listed: Vec::new() }
    }

    /// Serves `handler` for `method` requests to `path`.
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
        self.router = self.router.route(path, axum::routing::on(filter, handler));
        self.listed.push(Route { method, path });
        self
    }

    fn with_state(self, state: S) -> Routes {
        Routes { router: self.router.with_state(state), listed: self.listed }
    }
}

impl Routes {
    fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.listed.extend(other.listed);
        self
    }

    /// Every route, in the order added.
    pub fn listed(&self) -> &[Route] {
        &self.listed
    }

    fn into_router(self) -> Router {
        self.router
    }
}

/// The message ingress family: v1 and v2 webhooks, bot metadata and chat history.
pub fn webhook_router(state: WebhookState) -> Router {
    let http = state.http.clone();
    let routes = webhook::router(state.clone()).merge(botmeta::router(state.clone())).merge(history::router(state));
    with_layers(routes.into_router(), &http)
}

/// GET .../poll/{pollId}.
pub fn poll_router(state: PollState) -> Router {
    let http = state.http.clone();
    with_layers(poll::router(state).into_router(), &http)
}

/// File uploads: single-shot, uploadfile, and chunked (token, chunk, commit).
pub fn files_router(state: FilesState) -> Router {
    let http = state.http.clone();
    with_layers(files::router(state).into_router(), &http)
}

/// Every endpoint family, for the single local process.
pub fn app(webhook: WebhookState, poll: PollState, files: FilesState) -> Router {
    let http = webhook.http.clone();
    with_layers(app_routes(webhook, poll, files).into_router(), &http)
}

/// What [`app`] serves: every endpoint family and the OpenAPI document
/// (`GET /openapi.json`) that describes them.
pub fn app_routes(webhook: WebhookState, poll: PollState, files: FilesState) -> Routes {
    webhook::router(webhook.clone())
        .merge(botmeta::router(webhook.clone()))
        .merge(history::router(webhook))
        .merge(poll::router(poll))
        .merge(files::router(files))
        .merge(openapi::router())
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
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("idempotency-key"),
        ])
        // A browser client reads when to send a refused message again.
        .expose_headers([
            HeaderName::from_static(TRACE_HEADER),
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit-policy"),
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(Duration::from_secs(600))
}

/// The `Idempotency-Key` header, if sent (a structured-field string, quoted
/// or not).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| Error::InvalidPayload("Idempotency-Key must be ASCII text".into()))?;
    let value = value.trim();
    Ok(Some(value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)))
}

/// An answer given again for an Idempotency-Key.
fn replayed(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// A request body of at most `limit` bytes: 413 when it says or turns out
/// to be larger, 400 when it cannot be read (a client that hangs up,
/// malformed chunked encoding).
async fn read_body(body: axum::body::Body, headers: &HeaderMap, limit: usize) -> Result<bytes::Bytes> {
    use futures_util::StreamExt;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut stream = body.into_data_stream();
    let mut read = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::InvalidPayload(format!("the request body could not be read: {e}")))?;
        if read.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_a_proxy_the_client_ip_is_what_the_proxy_added() {
        let request = |lines: &[&str]| {
            let mut builder = http::Request::get("/");
            for line in lines {
                builder = builder.header("x-forwarded-for", *line);
            }
            let mut request = builder.body(axum::body::Body::empty()).unwrap();
            request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 4000))));
            request
        };
        let cases: [(&[&str], &str); 5] = [
            (&["203.0.113.7"], "203.0.113.7"),
            (&["6.6.6.6, 203.0.113.7"], "203.0.113.7"),
            (&["6.6.6.6", "203.0.113.7"], "203.0.113.7"),
            (&["203.0.113.7, <script>"], "10.0.0.9"),
            (&[], "10.0.0.9"),
        ];
        for (lines, ip) in cases {
            assert_eq!(proxied_ip(&request(lines)).as_deref(), Some(ip), "{lines:?}");
            assert_eq!(peer_ip(&request(lines)).as_deref(), Some("10.0.0.9"), "{lines:?}");
        }
    }
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
