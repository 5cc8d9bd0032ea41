//! The outbox. What a turn owes (its POST_URL messages, event and
//! session-data webhooks, async webhook node calls, a polled call's
//! continuation) is durable in the turn's own write: what can be rebuilt
//! from its log entries is, the rest is kept with the conversation
//! (`LastTurn`), or beside it when too large. A write that owes is marked;
//! the store's changes (DynamoDB's stream, on AWS read by the worker
//! function and locally polled; in memory a feed of the writes) reach
//! [`Worker::relay`] in the order they were made, which queues the jobs.
//! Neither the request nor the job that ran the turn queues them: a turn
//! acknowledged is a turn whose deliveries will leave, in the
//! conversation's order, whatever happens to that process or the queue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedReceiver;

use super::queue::{Retry, backoff};
use super::records::Conversation;
use super::turn::owed_jobs;
use super::worker::Worker;
use crate::error::Result;
use crate::ids::ConversationKey;

/// A write that owes deliveries: the conversation as written.
#[derive(Debug, Clone)]
pub struct Owed {
    pub key: ConversationKey,
    /// Shared with the store that wrote it, where it is kept.
    pub conversation: Arc<Conversation>,
}

impl Worker {
    /// Queues what the write owes, rebuilt as the turn made it. A bot no
    /// longer deployed owes nothing.
    pub async fn relay(&self, owed: &Owed) -> Result<(), Retry> {
        let Some(bot) = self.bots.get(&owed.key.bot_id) else {
            tracing::warn!(bot_id = %owed.key.bot_id, "deliveries of a bot no longer deployed: dropped");
            return Ok(());
        };
        let store = self.turns.conversations();
        let jobs = owed_jobs(store.as_ref(), bot, &owed.key, &owed.conversation).await?;
        self.queue.send(&jobs).await?;
        Ok(())
    }
}

/// Where the writes that owe deliveries come from, in the order they were
/// made: a store's own feed, or DynamoDB's stream.
#[async_trait]
pub trait Changes: Send {
    /// The next writes (empty when none came for a while), or `None` once
    /// no more can come.
    async fn next(&mut self) -> Result<Option<Vec<Owed>>>;
}

/// A store's feed of its writes (the in-memory store's).
#[async_trait]
impl Changes for UnboundedReceiver<Owed> {
    async fn next(&mut self) -> Result<Option<Vec<Owed>>> {
        let Some(first) = self.recv().await else {
            return Ok(None);
        };
        let mut owed = vec![first];
        while let Ok(more) = self.try_recv() {
            owed.push(more);
        }
        Ok(Some(owed))
    }
}

/// Relays every change in order, each until its jobs are queued, until no
/// more can come.
pub async fn relay_changes(worker: Arc<Worker>, mut changes: Box<dyn Changes>) {
    loop {
        match changes.next().await {
            Ok(Some(owed)) => {
                for owed in &owed {
                    relay_until_queued(&worker, owed).await;
                }
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading the store's changes failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Relays one write, trying again (backing off, at most a minute apart)
/// until its jobs are queued: those after it wait, so order holds.
pub async fn relay_until_queued(worker: &Worker, owed: &Owed) {
    let mut attempt = 1;
    while let Err(retry) = worker.relay(owed).await {
        let wait = retry.after.unwrap_or_else(|| backoff(worker.retry_base(), attempt)).min(Duration::from_secs(60));
        tracing::warn!(reason = %retry.reason, attempt, ?wait, "what a turn owes could not be queued yet");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}
