//! Trace ids and the error envelope
//! `{"errors":[{"msg","code"}],"_v":"v2","_t":traceId}`: every error response,
//! whoever produced it (a handler, an extractor, the router, a panic), leaves
//! here in that shape.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tracing::{Instrument, info, info_span, warn};

use super::TRACE_HEADER;
use crate::error::Error;
use crate::ids;
use crate::protocol::{ErrorEnvelope, ErrorItem, VERSION_V2};

/// The current request's trace id, in request extensions.
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

/// The wire form of an error, left in response extensions for the middleware.
#[derive(Debug, Clone)]
struct ErrorReply {
    msg: &'static str,
    detail: Option<String>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, msg) = match &self {
            Error::InvalidPayload(_) => (StatusCode::BAD_REQUEST, "Invalid Request Payload"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Invalid Access token"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "Resource not found"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            Error::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "Request payload too large"),
            Error::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type"),
            Error::NoData => (StatusCode::BAD_REQUEST, "No data found"),
            Error::Busy => (StatusCode::CONFLICT, "The bot is still answering the previous message; retry shortly"),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "Too Many requests"),
            Error::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "Idempotency-Key used for another request"),
            Error::KeyInUse => (StatusCode::CONFLICT, "A request with this Idempotency-Key is still being processed"),
            Error::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "The request has been timed-out"),
            Error::Conflict | Error::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "Service temporarily unavailable"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        };
        // Server-side causes stay in the logs; the client gets the reason only
        // for what it can fix.
        let detail = match &self {
            Error::InvalidPayload(d) | Error::Unauthorized(d) | Error::NotFound(d) => Some(d.clone()),
            Error::PayloadTooLarge { .. } | Error::UnsupportedMediaType(_) | Error::RateLimited { .. } => {
                Some(self.to_string())
            }
            _ => None,
        };
        if status.is_server_error() {
            warn!(error = %self, "request failed");
        } else {
            info!(error = %self, "request rejected");
        }
        let mut response = status.into_response();
        if let Error::RateLimited { retry_after, policy, current, .. } = &self {
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            rate_limit_headers(headers, policy, current);
        }
        response.extensions_mut().insert(ErrorReply { msg, detail });
        response
    }
}

/// The IETF RateLimit header fields of an answer to a message.
pub fn rate_limit_headers(headers: &mut http::HeaderMap, policy: &str, current: &str) {
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
}

/// For error responses produced outside the handlers (router 404/405,
/// extractor rejections).
fn reply_for(status: StatusCode) -> ErrorReply {
    let error = match status {
        StatusCode::NOT_FOUND => Error::NotFound("no such route".into()),
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType("another type"),
        s if s.is_client_error() => Error::InvalidPayload(s.canonical_reason().unwrap_or("bad request").into()),
        _ => Error::Internal(status.to_string()),
    };
    let mut response = error.into_response();
    let msg = response.extensions_mut().remove::<ErrorReply>().map_or("Error", |r| r.msg);
    ErrorReply { msg, detail: None }
}

pub async fn trace_and_envelope(mut request: Request, next: Next) -> Response {
    let trace_id = ids::trace_id();
    request.extensions_mut().insert(TraceId(trace_id.clone()));
    let span = info_span!("request", trace_id = %trace_id, method = %request.method(), path = %request.uri().path());
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    crate::metrics::responded(status.as_u16());
    let reply = response.extensions_mut().remove::<ErrorReply>();
    let is_error = status.is_client_error() || status.is_server_error();
    let reply = reply.or_else(|| is_error.then(|| span.in_scope(|| reply_for(status))));
    if let Some(reply) = reply {
        let envelope = ErrorEnvelope {
            errors: vec![ErrorItem { msg: reply.msg.into(), code: status.as_u16(), detail: reply.detail }],
            version: VERSION_V2.into(),
            trace_id: trace_id.clone(),
        };
        let body = serde_json::to_vec(&envelope).unwrap_or_default();
        let headers = response.headers_mut();
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        *response.body_mut() = Body::from(body);
    }
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert(TRACE_HEADER, value);
    }
    span.in_scope(|| {
        info!(status = status.as_u16(), latency_ms = started.elapsed().as_millis() as u64, "response");
    });
    response
}
