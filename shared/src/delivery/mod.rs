//! Outbound HTTP: the calls flows make to the customer's APIs (service and
//! webhook nodes). Every call is guarded against server-side request forgery,
//! bounded in time and in response size, and signed (Standard Webhooks) when
//! it carries a body and the bot has signing secrets.

mod guard;
mod signing;

use std::sync::Arc;
use std::time::Duration;

use reqwest::redirect::Policy;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Bot, HeaderValue};
use guard::GuardedResolver;
pub use signing::SigningKey;

/// Attempts of a delivery within one run of the worker, and the first wait
/// between them; later retries come from the queue (visibility backoff, then
/// the dead-letter queue).
const DELIVERY_ATTEMPTS: u32 = 3;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// A Retry-After longer than this is left to the queue.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

/// Redirects followed, and only within the same origin (scheme, host, port).
const MAX_REDIRECTS: usize = 3;

/// One HTTP request a flow wants made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCall {
    pub method: String,
    pub url: String,
    /// Values naming a secret (`{env}`) are resolved when the call is made,
    /// so queued and stored calls never hold secrets.
    pub headers: Vec<(String, HeaderValue)>,
    pub body: Option<Value>,
    pub timeout: Duration,
    /// Loopback and private addresses are reachable (local development only).
    pub allow_private: bool,
    pub max_response_bytes: usize,
}

/// What came back: a status and the body bytes (within the size cap).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    pub body: Vec<u8>,
    /// The answer's Retry-After, in seconds.
    pub retry_after: Option<Duration>,
}

/// The client for flows' calls: two connection pools, one that refuses
/// private, loopback and link-local addresses and one that allows them (for
/// bots whose definition says so).
#[derive(Clone)]
pub struct Outbound {
    public_only: reqwest::Client,
    any_address: reqwest::Client,
}

impl Outbound {
    pub fn new() -> Result<Self, String> {
        Ok(Self { public_only: client(false)?, any_address: client(true)? })
    }

    /// Makes the call once for `bot` (whose secrets its headers may name),
    /// signed with `keys` under `webhook_id`; any failure (refused address,
    /// timeout, transport error, oversized response) is an `Err` with a
    /// reason for the logs.
    pub async fn call(
        &self,
        call: &HttpCall,
        bot: &Bot,
        keys: &[SigningKey],
        webhook_id: &str,
    ) -> Result<HttpReply, String> {
        let url = reqwest::Url::parse(&call.url).map_err(|e| format!("invalid URL {:?}: {e}", call.url))?;
        guard::check_url(&url, call.allow_private)?;
        let method = reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|e| e.to_string())?;
        let client = if call.allow_private { &self.any_address } else { &self.public_only };
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
            let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
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
                    return Err(format!("response larger than {} bytes", call.max_response_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpReply { status, body, retry_after })
        };
        tokio::time::timeout(call.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {} ms", call.timeout.as_millis()))?
    }

    /// Delivers a fire-and-forget POST: a few attempts with exponential
    /// backoff and jitter (or the receiver's short Retry-After) under one
    /// webhook-id, so receivers can drop duplicates.
    pub async fn deliver(&self, call: &HttpCall, bot: &Bot, keys: &[SigningKey], webhook_id: &str) -> Delivered {
        let mut last = String::new();
        for attempt in 0..DELIVERY_ATTEMPTS {
            let wait = match self.call(call, bot, keys, webhook_id).await {
                Ok(reply) if (200..300).contains(&reply.status) => return Delivered::Yes(reply.status),
                Ok(reply) if reply.status == 410 => return Delivered::Gone,
                Ok(reply) => {
                    last = format!("status {}", reply.status);
                    reply.retry_after
                }
                Err(reason) => {
                    last = reason;
                    None
                }
            };
            if wait.is_some_and(|w| w > MAX_INLINE_WAIT) {
                return Delivered::No { reason: last, retry_after: wait };
            }
            if attempt + 1 < DELIVERY_ATTEMPTS {
                let backoff = FIRST_RETRY_DELAY * 2u32.pow(attempt);
                let jittered = backoff.mul_f64(rand::random_range(0.5..1.0));
                tokio::time::sleep(wait.unwrap_or(jittered)).await;
            }
        }
        Delivered::No {
            reason: format!("{DELIVERY_ATTEMPTS} attempts failed, the last with {last}"),
            retry_after: None,
        }
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// A 2xx answer, with its status.
    Yes(u16),
    /// 410 Gone: the receiver asked not to be sent this again.
    Gone,
    /// Still failing: retry later (no sooner than `retry_after` if given).
    No { reason: String, retry_after: Option<Duration> },
}

fn describe(error: reqwest::Error) -> String {
    // The chain carries the guard's reason when an address was refused.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

fn client(allow_private: bool) -> Result<reqwest::Client, String> {
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
        .map_err(|e| e.to_string())
}
