//! Message rate limits per bot and user: counts over fixed windows, kept in
//! the conversation (so a turn counts its message in the write it makes
//! anyway), and the IETF RateLimit header fields that report them.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::store::Counters;
use crate::definition::RateLimits;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

/// Messages counted in the current minute and hour (windows aligned to the
/// clock, Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageCounts {
    #[serde(default)]
    pub minute_start: i64,
    #[serde(default)]
    pub minute: u32,
    #[serde(default)]
    pub hour_start: i64,
    #[serde(default)]
    pub hour: u32,
}

/// One window's quota as the answer reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Quota {
    name: &'static str,
    limit: u32,
    window: i64,
    remaining: u32,
    /// Seconds until the window starts over.
    reset: i64,
}

/// The quotas after a message was counted (or refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateState {
    quotas: Vec<Quota>,
}

impl MessageCounts {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Counts one more message at `now`, or (when `refuse`) refuses it with a
    /// 429 when a window's limit is reached: a refused message is not counted.
    pub fn admit(&mut self, limits: &RateLimits, now: i64, refuse: bool) -> Result<RateState> {
        let minute_start = now - now.rem_euclid(60);
        let hour_start = now - now.rem_euclid(3600);
        if self.minute_start != minute_start {
            (self.minute_start, self.minute) = (minute_start, 0);
        }
        if self.hour_start != hour_start {
            (self.hour_start, self.hour) = (hour_start, 0);
        }
        let windows = [
            ("minute", limits.per_minute, 60, self.minute, minute_start),
            ("hour", limits.per_hour, 3600, self.hour, hour_start),
        ];
        let quota = |(name, limit, window, used, start): (&'static str, u32, i64, u32, i64), extra: u32| Quota {
            name,
            limit,
            window,
            remaining: limit.saturating_sub(used + extra),
            reset: start + window - now,
        };
        let enabled = windows.into_iter().filter(|w| w.1 > 0);
        if let Some(full) = enabled.clone().filter(|w| refuse && w.3 >= w.1).max_by_key(|w| w.4 + w.2) {
            let state = RateState { quotas: enabled.map(|w| quota(w, 0)).collect() };
            let retry_after = (full.4 + full.2 - now).max(1) as u64;
            let (policy, current) = state.header_values();
            let reason = format!("at most {} messages a {}", full.1, full.0);
            return Err(Error::RateLimited { reason, retry_after, policy, current });
        }
        self.minute += 1;
        self.hour += 1;
        Ok(RateState { quotas: enabled.map(|w| quota(w, 1)).collect() })
    }
}

/// Counts a message to an asynchronous instance as it is accepted (its turn
/// runs later): the quotas left, or `None` when the limits are off.
pub async fn admit_queued(
    counters: &dyn Counters,
    key: &ConversationKey,
    limits: &RateLimits,
    now: i64,
) -> Result<Option<RateState>> {
    if limits.off() {
        return Ok(None);
    }
    // Useless once its hour is over.
    let expires_at = now - now.rem_euclid(3600) + 2 * 3600;
    let state = update(counters, key, QUEUED_MESSAGES, expires_at, |counts: &mut MessageCounts| {
        counts.admit(limits, now, true)
    })
    .await?;
    Ok(Some(state))
}

/// The counter of messages to asynchronous instances.
const QUEUED_MESSAGES: &str = "RATE";

/// Changes a user's counter `name` with `change` and stores it, unless
/// `change` refuses; run again on a concurrent change.
pub async fn update<C, R>(
    counters: &dyn Counters,
    key: &ConversationKey,
    name: &str,
    expires_at: i64,
    mut change: impl FnMut(&mut C) -> Result<R>,
) -> Result<R>
where
    C: Serialize + DeserializeOwned + Default,
{
    for attempt in 0..10u32 {
        if attempt > 0 {
            // Writers of one user's counter at once (parallel chunks): spread out.
            let cap = 5u64 << attempt.min(5);
            tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(cap / 2..=cap))).await;
        }
        let (stored, version) = counters.load_counter(key, name).await?;
        let mut counter: C = match stored {
            Some(value) => {
                serde_json::from_value(value).map_err(|e| Error::Storage(format!("unreadable counter: {e}")))?
            }
            None => C::default(),
        };
        let outcome = change(&mut counter)?;
        let value = serde_json::to_value(&counter).map_err(|e| Error::Internal(e.to_string()))?;
        match counters.save_counter(key, name, &value, version, expires_at).await {
            Err(Error::Conflict) => continue,
            saved => return saved.map(|()| outcome),
        }
    }
    Err(Error::Conflict)
}

impl RateState {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers):
    /// each window's quota and size, then what remains of it and when it resets.
    pub fn header_values(&self) -> (String, String) {
        let policy = self.quotas.iter().map(|q| format!("\"{}\";q={};w={}", q.name, q.limit, q.window));
        let current = self.quotas.iter().map(|q| format!("\"{}\";r={};t={}", q.name, q.remaining, q.reset));
        (policy.collect::<Vec<_>>().join(", "), current.collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, per_hour: u32) -> RateLimits {
        RateLimits { per_minute, per_hour }
    }

    #[test]
    fn counts_up_to_the_limit_then_refuses_until_the_window_turns() {
        let mut counts = MessageCounts::default();
        let start = 1_800_000_000; // a minute's (and an hour's) first second
        for n in 1..=3 {
            let state = counts.admit(&limits(3, 100), start + 10, true).unwrap();
            let (policy, current) = state.header_values();
            assert_eq!(policy, r#""minute";q=3;w=60, "hour";q=100;w=3600"#);
            assert_eq!(current, format!("\"minute\";r={};t=50, \"hour\";r={};t=3590", 3 - n, 100 - n));
        }
        match counts.admit(&limits(3, 100), start + 20, true) {
            Err(Error::RateLimited { retry_after, current, .. }) => {
                assert_eq!(retry_after, 40);
                assert_eq!(current, r#""minute";r=0;t=40, "hour";r=97;t=3580"#);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(counts.minute, 3, "a refused message is not counted");
        // The next minute starts over; the hour goes on counting.
        let state = counts.admit(&limits(3, 100), start + 60, true).unwrap();
        assert_eq!(state.header_values().1, r#""minute";r=2;t=60, "hour";r=96;t=3540"#);
    }

    #[test]
    fn the_hour_limit_waits_for_the_hour_and_zero_turns_a_window_off() {
        let mut counts = MessageCounts::default();
        let start = 1_800_000_000;
        counts.admit(&limits(0, 2), start, true).unwrap();
        counts.admit(&limits(0, 2), start + 100, true).unwrap();
        match counts.admit(&limits(0, 2), start + 200, true) {
            Err(Error::RateLimited { retry_after, policy, .. }) => {
                assert_eq!(retry_after, 3400);
                assert_eq!(policy, r#""hour";q=2;w=3600"#);
            }
            other => panic!("{other:?}"),
        }
        for _ in 0..1000 {
            counts.admit(&limits(0, 0), start + 300, true).unwrap();
        }
    }
}
