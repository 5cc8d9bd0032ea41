//! Outbound HTTP: the calls flows make to the customer's APIs (service and
//! webhook nodes). Every call is guarded against server-side request forgery,
//! bounded in time and in response size.

mod guard;

use std::sync::Arc;
use std::time::Duration;

use reqwest::redirect::Policy;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use guard::GuardedResolver;

/// Redirects followed, and only within the same origin (scheme, host, port).
const MAX_REDIRECTS: usize = 3;

/// One HTTP request a flow wants made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpCall {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
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

    /// Makes the call; any failure (refused address, timeout, transport
    /// error, oversized response) is an `Err` with a reason for the logs.
    pub async fn call(&self, call: &HttpCall) -> Result<HttpReply, String> {
        let url = reqwest::Url::parse(&call.url).map_err(|e| format!("invalid URL {:?}: {e}", call.url))?;
        guard::check_url(&url, call.allow_private)?;
        let method = reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|e| e.to_string())?;
        let client = if call.allow_private { &self.any_address } else { &self.public_only };
        let mut request = client.request(method, url);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let exchange = async {
            let mut response = request.send().await.map_err(describe)?;
            let status = response.status().as_u16();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(describe)? {
                if body.len() + chunk.len() > call.max_response_bytes {
                    return Err(format!("response larger than {} bytes", call.max_response_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpReply { status, body })
        };
        tokio::time::timeout(call.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {} ms", call.timeout.as_millis()))?
    }
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
