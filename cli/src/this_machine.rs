//! For the developer at this machine only: `hookline serve` mounts these
//! routes (the console, the in-process dead letters) when it listens on a
//! loopback address, not behind a proxy, and refuses each request that may
//! come from elsewhere.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

/// The header their API asks for: a browser sends it to another origin only
/// after a preflight, which they do not answer, so no other web page can
/// call them.
pub const DEV_HEADER: &str = "x-hookline-dev";

/// `pages` (reached by following a link: no header) and `api` (asks for
/// [`DEV_HEADER`]), each behind the checks of [`from_this_machine`].
pub fn only_here(pages: Router, api: Router) -> Router {
    let api = api.layer(axum::middleware::from_fn(with_dev_header));
    pages.merge(api).layer(axum::middleware::from_fn(from_this_machine))
}

/// Refuses a request from another address (or none known), relayed
/// (forwarding headers), or for another host name (a DNS rebinding page).
async fn from_this_machine(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(name, port)| if port.contains(']') { host } else { name });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = peer.is_some_and(|peer| peer.ip().is_loopback())
        && !headers.contains_key("forwarded")
        && !headers.contains_key("x-forwarded-for")
        && (host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()));
    if !local {
        return forbidden("only from this machine, for localhost or a loopback address, not through a proxy");
    }
    next.run(request).await
}

/// Refuses a request without [`DEV_HEADER`] (a cross-origin form or fetch).
async fn with_dev_header(request: Request, next: Next) -> Response {
    if !request.headers().contains_key(DEV_HEADER) {
        return forbidden(&format!(
            "only with the {DEV_HEADER} header (the console and hookline dead-letters send it)"
        ));
    }
    next.run(request).await
}

fn forbidden(error: &str) -> Response {
    (StatusCode::FORBIDDEN, Json(json!({"error": error}))).into_response()
}
