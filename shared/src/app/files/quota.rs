//! Per-user upload quotas: uploads started and bytes sent in the clock's
//! hour, counted beside the user's conversation. Over them, a 429 that says
//! which and when to try again.

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{FileLimits, Owner};
use crate::app::rate;
use crate::app::store::Counters;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

const UPLOADS: &str = "UPLOADS";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadCounts {
    hour_start: i64,
    uploads: u32,
    bytes: u64,
}

/// Counts `uploads` more uploads and `bytes` more bytes for `owner`, or
/// refuses them. A user is counted by the token's userIdentity, an
/// anonymous app's users who name none together; a trusted server's token
/// that names no one is not counted.
pub(super) async fn count(
    counters: &dyn Counters,
    limits: &FileLimits,
    owner: &Owner,
    uploads: u32,
    bytes: u64,
) -> Result<()> {
    let (max_uploads, max_bytes) = (limits.uploads_per_hour, limits.upload_bytes_per_hour);
    if max_uploads == 0 && max_bytes == 0 {
        return Ok(());
    }
    let key = match (&owner.user_id, &owner.app) {
        (Some(user), app) => ConversationKey::new(&owner.bot_id, user).in_app(app.clone()),
        (None, Some(app)) => ConversationKey::new(&owner.bot_id, "").in_app(Some(app.clone())),
        (None, None) => return Ok(()),
    };
    let now = Utc::now().timestamp();
    let hour_start = now - now.rem_euclid(3600);
    let reset = hour_start + 3600 - now;
    rate::update(counters, &key, UPLOADS, hour_start + 2 * 3600, |counts: &mut UploadCounts| {
        if counts.hour_start != hour_start {
            *counts = UploadCounts { hour_start, ..UploadCounts::default() };
        }
        let over_uploads = max_uploads > 0 && uploads > 0 && counts.uploads + uploads > max_uploads;
        let over_bytes = max_bytes > 0 && counts.bytes.saturating_add(bytes) > max_bytes;
        if over_uploads || over_bytes {
            let reason = if over_uploads {
                format!("a user may start at most {max_uploads} uploads an hour")
            } else {
                format!("a user may upload at most {max_bytes} bytes an hour")
            };
            // The quotas in force (0 is none).
            let quotas =
                [("uploads", u64::from(max_uploads), u64::from(counts.uploads)), ("bytes", max_bytes, counts.bytes)];
            let quotas = quotas.iter().filter(|(_, max, _)| *max > 0);
            let policy = quotas.clone().map(|(name, max, _)| format!("\"{name}\";q={max};w=3600"));
            let current =
                quotas.map(|(name, max, used)| format!("\"{name}\";r={};t={reset}", max.saturating_sub(*used)));
            let (policy, current) = (policy.collect::<Vec<_>>().join(", "), current.collect::<Vec<_>>().join(", "));
            return Err(Error::RateLimited { reason, retry_after: reset.max(1) as u64, policy, current });
        }
        counts.uploads += uploads;
        counts.bytes = counts.bytes.saturating_add(bytes);
        Ok(())
    })
    .await
}
