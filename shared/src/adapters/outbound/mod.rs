//! Outbound HTTP with reqwest: the calls flows make to the customer's APIs
//! (service and webhook nodes) and every delivery. Each call is guarded
//! against server-side request forgery, bounded in time and in response
//! size, and signed (Standard Webhooks) when it carries a body and the bot
//! has signing secrets.

mod guard;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::redirect::Policy;

use crate::app::outbound::Outbound;
use crate::definition::{Bot, HeaderValue};
use crate::engine::{CallError, CallOutcome, HttpCall, HttpReply};
use crate::signing::{self, SigningKey};
use guard::GuardedResolver;

/// Redirects followed, and only within the same origin (scheme, host, port).
const MAX_REDIRECTS: usize = 3;

/// The client for outbound calls: two connection pools, one that refuses
/// private, loopback and link-local addresses and one that allows them (for
/// bots whose definition says so). Each is built at its first call: a
/// reqwest client reads the system's root certificates as it is built, a
/// large part of a cold start (BENCHMARKS.md), and many processes never call
/// out.
#[derive(Default)]
pub struct HttpOutbound {
    public_only: OnceLock<reqwest::Client>,
    any_address: OnceLock<reqwest::Client>,
}

impl HttpOutbound {
    pub fn new() -> Self {
        Self::default()
    }

    fn client(&self, allow_private: bool) -> Result<&reqwest::Client, CallError> {
        let pool = if allow_private { &self.any_address } else { &self.public_only };
        if let Some(client) = pool.get() {
            return Ok(client);
        }
        let built = client(allow_private).map_err(|e| CallError::Transport(format!("no HTTP client: {e}")))?;
        Ok(pool.get_or_init(|| built))
    }
}

#[async_trait]
impl Outbound for HttpOutbound {
    async fn call(&self, call: &HttpCall, bot: &Bot, keys: &[SigningKey], webhook_id: &str) -> CallOutcome {
        let url = reqwest::Url::parse(&call.url)
            .map_err(|e| CallError::Refused(format!("invalid URL {:?}: {e}", call.url)))?;
        guard::check_url(&url, call.allow_private).map_err(CallError::Refused)?;
        let method =
            reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|e| CallError::Refused(e.to_string()))?;
        let client = self.client(call.allow_private)?;
        let mut request = client.request(method, url);
        // The body's type and the signature headers are the client's own.
        let reserved = |name: &str| {
            let name = name.to_ascii_lowercase();
            call.body.is_some() && (name == "content-type" || name.starts_with("webhook-"))
        };
        for (name, value) in call.headers.iter().filter(|(name, _)| !reserved(name)) {
            let value = match value {
                HeaderValue::Text(text) => text.as_str(),
                HeaderValue::Secret { env } => bot.secret(env).unwrap_or_default(),
            };
            request = request.header(name, value);
        }
        if let Some(body) = &call.body {
            // Signed and sent as the same bytes.
            let bytes = serde_json::to_vec(body).map_err(|e| CallError::Refused(e.to_string()))?;
            let timestamp = chrono::Utc::now().timestamp();
            for (name, value) in signing::headers(keys, webhook_id, timestamp, &bytes) {
                request = request.header(name, value);
            }
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes);
        }
        let exchange = async {
            let mut response = request.send().await.map_err(describe)?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(describe)? {
                if body.len() + chunk.len() > call.max_response_bytes {
                    return Err(CallError::TooLarge(call.max_response_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpReply { status, body, retry_after })
        };
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(call.timeout, exchange).await.map_err(|_| CallError::Timeout(call.timeout));
        let outcome = outcome.and_then(|answered| answered);
        crate::metrics::call(started.elapsed(), outcome.is_ok());
        outcome
    }
}

fn describe(error: reqwest::Error) -> CallError {
    // The chain carries the guard's reason when an address was refused.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    CallError::Transport(message)
}

fn client(allow_private: bool) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        // A proxy would resolve names itself, out of the guard's reach.
        .no_proxy()
        .redirect(Policy::custom(|attempt| {
            let origin = |url: &reqwest::Url| {
                (url.scheme().to_string(), url.host_str().map(String::from), url.port_or_known_default())
            };
            let same_origin = attempt.previous().first().map(origin) == Some(origin(attempt.url()));
            if same_origin && attempt.previous().len() <= MAX_REDIRECTS { attempt.follow() } else { attempt.stop() }
        }))
        .connect_timeout(Duration::from_secs(3))
        .user_agent(concat!("Hookline/", env!("CARGO_PKG_VERSION")))
        .build()
}
