//! The outbound HTTP port (the customer's APIs and every delivery's
//! receiver), and delivery: a fire-and-forget POST tried a few times before
//! the queue takes over.

use std::time::Duration;

use async_trait::async_trait;

use crate::definition::{Bot, Mode};
use crate::engine::{CallOutcome, HttpCall};
use crate::signing::SigningKey;

/// Attempts of a delivery within one run of the worker, and the first wait
/// between them; later retries come from the queue (visibility backoff, then
/// the dead-letter queue).
const DELIVERY_ATTEMPTS: u32 = 3;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// A Retry-After longer than this is left to the queue.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(5);

#[async_trait]
pub trait Outbound: Send + Sync {
    /// Makes the call once for `bot` (whose secrets its headers may name),
    /// signed with `keys` under `webhook_id`.
    async fn call(&self, call: &HttpCall, bot: &Bot, keys: &[SigningKey], webhook_id: &str) -> CallOutcome;
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

/// Delivers a fire-and-forget POST: a few attempts with exponential backoff
/// and jitter (or the receiver's short Retry-After) under one webhook-id, so
/// receivers can drop duplicates.
pub async fn deliver(
    outbound: &dyn Outbound,
    call: &HttpCall,
    bot: &Bot,
    keys: &[SigningKey],
    webhook_id: &str,
) -> Delivered {
    let mut last = String::new();
    for attempt in 0..DELIVERY_ATTEMPTS {
        let wait = match outbound.call(call, bot, keys, webhook_id).await {
            Ok(reply) if (200..300).contains(&reply.status) => return Delivered::Yes(reply.status),
            Ok(reply) if reply.status == 410 => return Delivered::Gone,
            Ok(reply) => {
                last = format!("status {}", reply.status);
                reply.retry_after
            }
            Err(error) => {
                last = error.to_string();
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
    Delivered::No { reason: format!("{DELIVERY_ATTEMPTS} attempts failed, the last with {last}"), retry_after: None }
}

/// A delivery URL's answer to a verification POST.
#[derive(Debug)]
pub struct Verified {
    /// Where the definition names it: `events.url`, `instances[webchat].postUrl`, ...
    pub field: String,
    pub url: String,
    /// The status a receiver answered, or why none did.
    pub outcome: Result<u16, String>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Ok(status) if (200..300).contains(&status))
    }
}

/// Sends each URL the bot delivers to (event webhooks, asynchronous
/// instances' POST_URLs) one POST signed as its deliveries are:
/// `{"type": "verification", "botId", "challenge"}` under a `verify_`
/// webhook-id, which receivers can tell from deliveries. Private addresses
/// only when both the bot and `allow_private` allow them, as deployed; a URL
/// whose signing secrets are not set here is reported, not sent unsigned.
pub async fn verify_urls(outbound: &dyn Outbound, bot: &Bot, allow_private: bool) -> Vec<Verified> {
    let events = &bot.def.events;
    let bot_signs = !bot.def.outbound.signing_secrets.is_empty();
    let mut targets: Vec<(String, &str, &[SigningKey], bool)> = Vec::new();
    for (field, url) in [("events.url", &events.url), ("events.sessionDataUrl", &events.session_data_url)] {
        if let Some(url) = url {
            targets.push((field.into(), url, bot.signing_keys(), bot_signs));
        }
    }
    for instance in bot.def.instances.iter().filter(|i| i.mode == Mode::Async) {
        if let Some(url) = &instance.post_url {
            let signs = !instance.signing_secrets.is_empty() || bot_signs;
            let field = format!("instances[{}].postUrl", instance.id);
            targets.push((field, url, bot.post_url_keys(&instance.id), signs));
        }
    }
    let mut verified = Vec::new();
    for (field, url, keys, signs) in targets {
        if signs && keys.is_empty() {
            let outcome = Err("not sent: its signing secrets are not set here".to_string());
            verified.push(Verified { field, url: url.to_string(), outcome });
            continue;
        }
        let challenge = crate::ids::random_uuid().simple().to_string();
        let call = HttpCall {
            method: "POST".into(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Some(serde_json::json!({"type": "verification", "botId": bot.id(), "challenge": challenge})),
            timeout: Duration::from_millis(bot.def.outbound.timeout_ms),
            allow_private: bot.def.outbound.allow_private_networks && allow_private,
            max_response_bytes: 64 * 1024,
        };
        let outcome = outbound.call(&call, bot, keys, &format!("verify_{challenge}")).await;
        verified.push(Verified {
            field,
            url: url.to_string(),
            outcome: outcome.map(|reply| reply.status).map_err(|e| e.to_string()),
        });
    }
    verified
}
