//! The worker: runs queued jobs (turns, polled continuations, deliveries).
//! The same code serves the SQS event source in Lambda, a polling loop on an
//! SQS queue, and the in-process queue of the embedded mode (as its
//! [`JobHandler`]).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::join_all;
use tokio::time::Instant;

use super::inbound;
use super::outbound::{self, Delivered, Outbound};
use super::queue::{
    Delivery, DeliveryKind, Job, JobHandler, Queue, QueueMessage, QueuedAnswer, QueuedTurn, Retry, backoff,
};
use super::records::{PollAnswer, PollRecord};
use super::store::Polls;
use super::turn::{AnswerTo, Calls, Outcome, TurnRequest, Turns};
use crate::definition::{Bot, Registry, WebhookVersion};
use crate::engine::MAX_DELAY_MS;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

/// Closures one sweep queues; more wait for the next sweep.
const MAX_CLOSURES_PER_SWEEP: usize = 1000;

/// The worker's timing, from the environment at start.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// First wait before a failed job runs again, doubled each time
    /// (HOOKLINE_RETRY_BASE_MS, default 10 s).
    pub retry_base: Duration,
    /// How long the worker gives one step (a queued turn, or a polled call
    /// and what follows it) (HOOKLINE_WORKER_DEADLINE_MS, default 40 s; keep
    /// it under the worker's timeout).
    pub turn_deadline: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self { retry_base: Duration::from_secs(10), turn_deadline: Duration::from_secs(40) }
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

/// What the worker uses: the bots, the turn driver, the poll records (for
/// answers it refuses), the queue (for what saved turns owe, see
/// `app::relay`, and the idle sweep's jobs) and outbound HTTP.
pub struct Worker {
    pub(super) bots: Arc<Registry>,
    pub(super) turns: Arc<Turns>,
    polls: Arc<dyn Polls>,
    pub(super) queue: Arc<dyn Queue>,
    outbound: Arc<dyn Outbound>,
    settings: WorkerSettings,
    /// Told how each delivery's run ended (the local console shows them).
    watcher: OnceLock<DeliveryWatcher>,
}

/// Sees a delivery and how its run ended.
pub type DeliveryWatcher = Box<dyn Fn(&Delivery, &Delivered) + Send + Sync>;

impl Worker {
    pub fn new(
        bots: Arc<Registry>,
        turns: Arc<Turns>,
        polls: Arc<dyn Polls>,
        queue: Arc<dyn Queue>,
        outbound: Arc<dyn Outbound>,
        settings: WorkerSettings,
    ) -> Arc<Self> {
        Arc::new(Self { bots, turns, polls, queue, outbound, settings, watcher: OnceLock::new() })
    }

    /// Has `watcher` told how each delivery's run ends (the first watcher
    /// given is kept).
    pub fn watch_deliveries(&self, watcher: DeliveryWatcher) {
        let _ = self.watcher.set(watcher);
    }

    pub fn retry_base(&self) -> Duration {
        self.settings.retry_base
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
                    crate::metrics::retried();
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

    async fn dispatch(&self, job: &Job) -> Result<(), Retry> {
        let started = Instant::now();
        match job {
            Job::Deliver(delivery) => self.deliver(delivery).await,
            Job::Turn(turn) => self.turn(turn, started).await,
            Job::Resume { bot_id, user_id, app, poll_id } => {
                let bot = self.bots.require(bot_id)?;
                let key = ConversationKey::new(bot_id, user_id).in_app(app.clone());
                self.resume(&bot, &key, poll_id, started).await
            }
            Job::CloseIdle { bot_id, user_id, app, due_at } => {
                let bot = self.bots.require(bot_id)?;
                let key = ConversationKey::new(bot_id, user_id).in_app(app.clone());
                self.turns.close_idle(&bot, &key, *due_at, self.deadline(started)).await?;
                Ok(())
            }
        }
    }

    /// Queues the closure of every session found idle past its bot's timeout
    /// by `now` (Unix seconds) in asynchronous mode, in its conversation's
    /// order; returns how many. Bots no longer deployed are passed over.
    pub async fn sweep_idle(&self, now: i64) -> Result<usize> {
        let due = self.turns.conversations().idle_due(now, MAX_CLOSURES_PER_SWEEP).await?;
        let jobs: Vec<QueueMessage> = due
            .into_iter()
            .filter(|(key, _)| self.bots.get(&key.bot_id).is_some())
            .take(MAX_CLOSURES_PER_SWEEP)
            .map(|(key, due_at)| {
                let job = Job::CloseIdle {
                    bot_id: key.bot_id.clone(),
                    user_id: key.user_id.clone(),
                    app: key.app.clone(),
                    due_at,
                };
                let mut message = QueueMessage::in_conversation(&key, "", job);
                message.dedup_id = format!("idle-{due_at}-{}", message.group);
                message
            })
            .collect();
        self.queue.send(&jobs).await?;
        Ok(jobs.len())
    }

    async fn deliver(&self, delivery: &Delivery) -> Result<(), Retry> {
        let bot = self.bots.require(&delivery.bot_id)?;
        let keys = match (delivery.kind, &delivery.instance_id) {
            (DeliveryKind::PostUrl, Some(instance)) => bot.post_url_keys(instance),
            _ => bot.signing_keys(),
        };
        let call = &delivery.call;
        if let Some(delay) = delivery.delay_ms {
            // Spaced as the bot's webhook asked; the group's next delivery waits behind it.
            tokio::time::sleep(Duration::from_millis(delay.min(MAX_DELAY_MS))).await;
        }
        let delivered = outbound::deliver(self.outbound.as_ref(), call, &bot, keys, &delivery.webhook_id).await;
        if let Some(watcher) = self.watcher.get() {
            watcher(delivery, &delivered);
        }
        match delivered {
            Delivered::Yes(status) => {
                crate::metrics::delivered();
                tracing::info!(kind = ?delivery.kind, url = %call.url, webhook_id = %delivery.webhook_id, status, "delivered");
                Ok(())
            }
            Delivered::Gone => {
                crate::metrics::delivered();
                tracing::warn!(kind = ?delivery.kind, url = %call.url, webhook_id = %delivery.webhook_id, "410 Gone: the receiver asked not to be sent this again");
                Ok(())
            }
            Delivered::No { reason, retry_after } => {
                Err(Retry { reason: format!("delivery to {} failed: {reason}", call.url), after: retry_after })
            }
        }
    }

    /// A queued message: run it (after any call its conversation still
    /// waits for); what it owes, its continuation included, is relayed.
    async fn turn(&self, queued: &QueuedTurn, started: Instant) -> Result<(), Retry> {
        let bot = self.bots.require(&queued.bot_id)?;
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
        let key = queued.key();
        let request = TurnRequest {
            client_ip: queued.client_ip.clone(),
            merge_from: queued.merge_from.clone(),
            calls,
            answer_to,
            ..parsed.into_turn(&bot, &instance.id, key.clone(), queued.trace_id.clone())
        };
        for _ in 0..2 {
            let outcome = match self.turns.run(&request, self.deadline(started)).await {
                // It will never succeed: a polling client is told, not left waiting.
                Err(Error::InvalidPayload(detail)) => return self.refuse(queued, detail).await,
                outcome => outcome?,
            };
            match outcome {
                Outcome::Answered(_) => return Ok(()),
                // Waiting for a call whose job was lost or dead-lettered:
                // finish that first, then the message.
                Outcome::Busy => {
                    while let Some(pending) = self.turns.conversations().load(&key).await?.and_then(|c| c.pending) {
                        if started.elapsed() >= self.settings.turn_deadline {
                            break;
                        }
                        self.resume(&bot, &key, &pending.poll_id, started).await?;
                    }
                }
            }
        }
        Err(Retry { reason: "the conversation still waits for a call".into(), after: None })
    }

    /// One step of a polled conversation: the call it waits for under
    /// `poll_id`, and the flow on to the next call (whose own job is queued
    /// with the step) or question.
    async fn resume(
        &self,
        bot: &Arc<Bot>,
        key: &ConversationKey,
        poll_id: &str,
        started: Instant,
    ) -> Result<(), Retry> {
        let turns = &self.turns;
        match turns.resume(bot, key, poll_id, self.deadline(started)).await {
            // It can never be resumed: give up on it, or the conversation stays stuck.
            Err(e @ (Error::InvalidPayload(_) | Error::Internal(_))) => {
                tracing::error!(error = %e, %poll_id, "a polled call cannot be resumed: the task is abandoned");
                turns.abandon(bot, key, poll_id, Instant::now() + self.settings.turn_deadline).await?;
            }
            resumed => {
                resumed?;
            }
        }
        Ok(())
    }

    /// A queued message the turn refuses (e.g. state grown past its bounds):
    /// a polled answer becomes the error; a POST_URL message is logged.
    async fn refuse(&self, queued: &QueuedTurn, detail: String) -> Result<(), Retry> {
        tracing::error!(trace_id = %queued.trace_id, %detail, "queued message refused");
        let bot = self.bots.require(&queued.bot_id)?;
        let key = queued.key();
        self.turns.forget_queued(&bot, &key, &queued.trace_id).await?;
        let QueuedAnswer::Poll { poll_id } = &queued.answer else {
            return Ok(());
        };
        let answer = PollAnswer { refused: Some(detail), ..PollAnswer::default() };
        let instance = Some(queued.instance_id.as_str());
        let record = PollRecord::new(poll_id, &key, instance, Some(answer), chrono::Utc::now().timestamp());
        Ok(self.polls.put_poll(&record).await?)
    }

    /// A step's deadline: its full time, within twice that since the job
    /// started (the worker's timeout stays above).
    fn deadline(&self, job_started: Instant) -> Instant {
        let step = self.settings.turn_deadline;
        (Instant::now() + step).min(job_started + step * 2)
    }
}

#[async_trait]
impl JobHandler for Worker {
    /// Runs one job. A panic is a failure of that job alone: it is retried
    /// and dead-lettered like any other, and the rest of the batch goes on.
    async fn handle(&self, job: &Job) -> Result<(), Retry> {
        match AssertUnwindSafe(self.dispatch(job)).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => Err(Retry { reason: "the job panicked".into(), after: None }),
        }
    }
}
