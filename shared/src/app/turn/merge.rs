//! `mergeIdentity`: a user who signs in continues the conversation they had
//! as another user (typically an anonymous widget's): its session (context,
//! the task waiting, language, tags), that session's log, and the user data
//! the identified user lacks move over in one write of both conversations.
//! The other conversation keeps its log and profile; its session ends.

use chrono::Utc;
use tokio::time::{Instant, timeout_at};

use super::run::MAX_USER_KEYS;
use super::{Turns, backoff};
use crate::app::records::LogEntry;
use crate::app::store::TurnWrite;
use crate::definition::Bot;
use crate::engine::merge_tags;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;
use crate::text::json_len;

/// Log entries of the merged session carried over (with the two
/// conversations, one transaction's worth).
const MAX_MERGED_ENTRIES: u64 = 90;
/// Within one transaction's 4 MB, with two conversations' items of up to 350 KiB.
const MAX_MERGED_BYTES: usize = 2 * 1024 * 1024;

impl Turns {
    /// Moves `source`'s active session to `target`. Nothing to do when
    /// `source` has no active session (never had one, or merged already).
    /// While `target` waits for a call nothing moves: its message queues,
    /// and merges when it runs. `Error::Busy` while `source` waits for one.
    pub(super) async fn merge(
        &self,
        bot: &Bot,
        source: &ConversationKey,
        target: &ConversationKey,
        deadline: Instant,
        started: Instant,
    ) -> Result<()> {
        let timed_out = |_| Error::Timeout(deadline.saturating_duration_since(started));
        let _serialised = timeout_at(deadline, self.locks.lock_pair(source, target)).await.map_err(timed_out)?;
        let idle_ms = i64::from(bot.def.session.idle_timeout_minutes) * 60_000;
        let retention = i64::from(bot.def.session.retention_days) * 86_400;
        let mut attempt = 0;
        loop {
            let load = |key| timeout_at(deadline, self.conversations.load(key));
            let Some(mut from) = load(source).await.map_err(timed_out)?? else {
                return Ok(());
            };
            from.drop_stale_queued(Utc::now().timestamp());
            let now_ms = Utc::now().timestamp_millis();
            let Some(session) = from.session.take().filter(|s| now_ms - s.last_active_at < idle_ms) else {
                return Ok(());
            };
            if from.pending.is_some() || !from.queued.is_empty() {
                return Err(Error::Busy);
            }
            let stored = load(target).await.map_err(timed_out)??;
            let mut to = stored.clone().unwrap_or_default();
            to.drop_stale_queued(Utc::now().timestamp());
            if to.pending.is_some() || !to.queued.is_empty() {
                return Ok(());
            }

            let after = from.next_seq.saturating_sub(MAX_MERGED_ENTRIES).checked_sub(1);
            let entries = self.conversations.read_log(source, after, MAX_MERGED_ENTRIES as usize).await?;
            // The session's latest entries, as many as fit beside the two conversations.
            let mut bytes: usize = 0;
            let mut latest: Vec<LogEntry> = entries
                .into_iter()
                .rev()
                .filter(|e| e.session_id.as_deref() == Some(session.id.as_str()))
                .take_while(|e| {
                    bytes = bytes.saturating_add(json_len(e));
                    bytes <= MAX_MERGED_BYTES
                })
                .collect();
            latest.reverse();
            let mut carried = Vec::new();
            for entry in latest {
                carried.push(LogEntry { seq: to.next_seq, ..entry });
                to.next_seq += 1;
            }
            to.session = Some(session);
            to.idle_closure = from.idle_closure.take();
            for (name, value) in &from.user_info {
                if to.user_info.len() < MAX_USER_KEYS && !to.user_info.contains_key(name) {
                    to.user_info.insert(name.clone(), value.clone());
                }
            }
            // The identified user's own tags win over the ones they had before.
            let mut tags = from.user_tags.clone();
            merge_tags(&mut tags, std::mem::take(&mut to.user_tags));
            tags.truncate(MAX_USER_KEYS);
            to.user_tags = tags;

            let expires_at = Utc::now().timestamp() + retention;
            let left = TurnWrite::of(&from, from.version, expires_at);
            let joined =
                TurnWrite { log: &carried, ..TurnWrite::of(&to, stored.as_ref().map_or(0, |c| c.version), expires_at) };
            match self.conversations.save_turns(&[(source, left), (target, joined)]).await {
                Err(Error::Conflict) => {
                    timeout_at(deadline, backoff(attempt)).await.map_err(timed_out)?;
                    attempt += 1;
                }
                outcome => {
                    if outcome.is_ok() {
                        tracing::info!(entries = carried.len(), "conversation merged into the identified user's");
                    }
                    return outcome;
                }
            }
        }
    }
}
