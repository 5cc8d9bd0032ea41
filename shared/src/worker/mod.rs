//! The worker: runs queued jobs. The same code serves the SQS event source
//! in Lambda ([`sqs_event`]), a polling loop on an SQS queue ([`poller`]) and
//! the in-process queue of the embedded mode.

pub mod poller;
pub mod sqs_event;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use futures_util::future::join_all;
use tokio::time::Instant;

use crate::api::AppState;
use crate::api::inbound;
use crate::config::{Bot, WebhookVersion};
use crate::delivery::Delivered;
use crate::error::Error;
use crate::queue::{Delivery, DeliveryKind, Job, QueuedAnswer, QueuedTurn};
use crate::session::{ConversationKey, PollAnswer, PollRecord};
use crate::turn::{AnswerTo, Calls, Outcome, TurnRequest};

/// Longest wait between two attempts of a job.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// A job that did not succeed this time.
#[derive(Debug)]
pub struct Retry {
    pub reason: String,
    /// Not before this (the receiver's Retry-After).
    pub after: Option<Duration>,
}

impl From<Error> for Retry {
    fn from(error: Error) -> Self {
        Self { reason: error.to_string(), after: None }
    }
}

/// A received queue message.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub group: Option<String>,
    pub body: String,
    /// 1 on the first delivery.
    pub receive_count: u32,
}

/// A message of a batch to make visible again after `retry_after`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub id: String,
    pub retry_after: Duration,
}

/// Exponential backoff with jitter for the `receive_count`th failure.
pub fn backoff(base: Duration, receive_count: u32) -> Duration {
    let exponential = base.saturating_mul(2u32.saturating_pow(receive_count.saturating_sub(1).min(16)));
    exponential.min(MAX_BACKOFF).mul_f64(rand::random_range(0.5..=1.0))
}

pub struct Worker {
    state: AppState,
}

impl Worker {
    pub fn new(state: AppState) -> Arc<Self> {
        Arc::new(Self { state })
    }

    pub fn retry_base(&self) -> Duration {
        self.state.settings.retry_base
    }

    /// Handles a batch as SQS FIFO hands it over: the messages of one group
    /// in order, groups side by side. After a group's first failure the
    /// rest of that group is not run but failed too, so its order holds.
    pub async fn handle_batch(&self, records: Vec<Record>) -> Vec<Failure> {
        let mut groups: Vec<Vec<Record>> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for record in records {
            let group = record.group.clone().unwrap_or_else(|| record.id.clone());
            let at = *index.entry(group).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[at].push(record);
        }
        let runs = groups.into_iter().map(|group| async move {
            let mut failures = Vec::new();
            for record in group {
                if !failures.is_empty() {
                    failures.push(Failure { id: record.id, retry_after: Duration::ZERO });
                    continue;
                }
                if let Err(retry) = self.handle_body(&record.body).await {
                    let retry_after = retry.after.unwrap_or_else(|| backoff(self.retry_base(), record.receive_count));
                    tracing::warn!(message_id = %record.id, receive_count = record.receive_count, reason = %retry.reason, "job failed; it will be retried");
                    failures.push(Failure { id: record.id, retry_after });
                }
            }
            failures
        });
        join_all(runs).await.into_iter().flatten().collect()
    }

    async fn handle_body(&self, body: &str) -> Result<(), Retry> {
        let job: Job = serde_json::from_str(body).map_err(|e| Retry {
            reason: format!("unreadable job (left for the dead-letter queue): {e}"),
            after: None,
        })?;
        self.handle(&job).await
    }

    /// Runs one job. A panic is a failure of that job alone: it is retried
    /// and dead-lettered like any other, and the rest of the batch goes on.
    pub async fn handle(&self, job: &Job) -> Result<(), Retry> {
        match AssertUnwindSafe(self.dispatch(job)).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => Err(Retry { reason: "the job panicked".into(), after: None }),
        }
    }

    async fn dispatch(&self, job: &Job) -> Result<(), Retry> {
        let started = Instant::now();
        match job {
            Job::Deliver(delivery) => self.deliver(delivery).await,
            Job::Turn(turn) => self.turn(turn, started).await,
            Job::Resume { bot_id, user_id, poll_id } => {
                let bot = self.state.bot(bot_id)?;
                self.resume(&bot, user_id, poll_id, started).await
            }
        }
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), Retry> {
        let bot = self.state.bot(&delivery.bot_id)?;
        let keys = match (delivery.kind, &delivery.instance_id) {
            (DeliveryKind::PostUrl, Some(instance)) => bot.post_url_keys(instance),
            _ => bot.signing_keys(),
        };
        let call = &delivery.call;
        match self.state.outbound.deliver(call, &bot, keys, &delivery.webhook_id).await {
            Delivered::Yes(status) => {
                tracing::info!(kind = ?delivery.kind, url = %call.url, webhook_id = %delivery.webhook_id, status, "delivered");
                Ok(())
            }
            Delivered::Gone => {
                tracing::warn!(kind = ?delivery.kind, url = %call.url, webhook_id = %delivery.webhook_id, "410 Gone: the receiver asked not to be sent this again");
                Ok(())
            }
            Delivered::No { reason, retry_after } => {
                Err(Retry { reason: format!("delivery to {} failed: {reason}", call.url), after: retry_after })
            }
        }
    }

    /// A queued message: run it (after any call its conversation still
    /// waits for) and queue what it leaves, its continuation included.
    async fn turn(&self, queued: &QueuedTurn, started: Instant) -> Result<(), Retry> {
        let bot = self.state.bot(&queued.bot_id)?;
        let instance = bot
            .instance_by_id(&queued.instance_id)
            .ok_or_else(|| Error::NotFound(format!("no instance {} in bot {}", queued.instance_id, bot.id())))?;
        let body = serde_json::to_vec(&queued.body).map_err(|e| Error::Internal(e.to_string()))?;
        let parsed = match instance.version {
            WebhookVersion::V1 => inbound::parse_v1(&body),
            WebhookVersion::V2 => inbound::parse_v2(&body),
        }?;
        let (calls, answer_to) = match &queued.answer {
            QueuedAnswer::PostUrl => (Calls::Inline, AnswerTo::PostUrl(instance.id.clone())),
            QueuedAnswer::Poll { poll_id } => (Calls::Poll, AnswerTo::Poll(poll_id.clone())),
        };
        let request = TurnRequest {
            client_ip: queued.client_ip.clone(),
            calls,
            answer_to,
            ..parsed.into_turn(&bot, queued.user_id.clone(), queued.trace_id.clone())
        };
        let key = ConversationKey::new(bot.id(), &queued.user_id);
        for _ in 0..2 {
            let outcome = match self.state.turns.run(&request, self.deadline(started)).await {
                // It will never succeed: a polling client is told, not left waiting.
                Err(Error::InvalidPayload(detail)) => return self.refuse(queued, detail).await,
                outcome => outcome?,
            };
            match outcome {
                Outcome::Answered(reply) => return Ok(self.state.queue.send(&reply.jobs).await?),
                // Waiting for a call whose job was lost or dead-lettered:
                // finish that first, then the message.
                Outcome::Busy => {
                    while let Some(pending) = self.state.turns.store().load(&key).await?.and_then(|c| c.pending) {
                        if started.elapsed() >= self.state.settings.worker_turn_deadline {
                            break;
                        }
                        self.resume(&bot, &queued.user_id, &pending.poll_id, started).await?;
                    }
                }
            }
        }
        Err(Retry { reason: "the conversation still waits for a call".into(), after: None })
    }

    /// One step of a polled conversation: the call it waits for under
    /// `poll_id`, and the flow on to the next call (whose own job is queued
    /// with the step) or question.
    async fn resume(&self, bot: &Arc<Bot>, user_id: &str, poll_id: &str, started: Instant) -> Result<(), Retry> {
        let turns = &self.state.turns;
        let resumed = match turns.resume(bot, user_id, poll_id, self.deadline(started)).await {
            // It can never be resumed: give up on it, or the conversation stays stuck.
            Err(e @ (Error::InvalidPayload(_) | Error::Internal(_))) => {
                tracing::error!(error = %e, %poll_id, "a polled call cannot be resumed: the task is abandoned");
                turns.abandon(bot, user_id, poll_id, Instant::now() + self.state.settings.worker_turn_deadline).await?
            }
            resumed => resumed?,
        };
        if let Some(reply) = resumed {
            self.state.queue.send(&reply.jobs).await?;
        }
        Ok(())
    }

    /// A queued message the turn refuses (e.g. state grown past its bounds):
    /// a polled answer becomes the error; a POST_URL message is logged.
    async fn refuse(&self, queued: &QueuedTurn, detail: String) -> Result<(), Retry> {
        tracing::error!(trace_id = %queued.trace_id, %detail, "queued message refused");
        let bot = self.state.bot(&queued.bot_id)?;
        self.state.turns.forget_queued(&bot, &queued.user_id, &queued.trace_id).await?;
        let QueuedAnswer::Poll { poll_id } = &queued.answer else {
            return Ok(());
        };
        let answer = PollAnswer { refused: Some(detail), ..PollAnswer::default() };
        let key = ConversationKey::new(&queued.bot_id, &queued.user_id);
        let record = PollRecord::new(poll_id, &key, Some(answer), chrono::Utc::now().timestamp());
        Ok(self.state.turns.store().put_poll(&record).await?)
    }

    /// A step's deadline: its full time, within twice that since the job
    /// started (the worker's timeout stays above).
    fn deadline(&self, job_started: Instant) -> Instant {
        let step = self.state.settings.worker_turn_deadline;
        (Instant::now() + step).min(job_started + step * 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let base = Duration::from_secs(2);
        for receive in 1..6 {
            let wait = backoff(base, receive);
            let full = base * 2u32.pow(receive - 1);
            assert!(wait >= full / 2 && wait <= full, "{receive}: {wait:?}");
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF);
    }
}
