//! Runs one user turn: load the conversation, run the engine (making the
//! calls its service and webhook nodes wait for, or leaving the first one to
//! the worker when the client polls), append the turn to the log and save,
//! all-or-nothing, retrying when another writer got there first.
//!
//! The parts, one job each: [`step`] works out what a step (a message, or a
//! resumed call) implies; [`run`] runs the engine and its calls; [`finish`]
//! turns the result into the log, the new conversation (with what the turn
//! owes, see `app::relay`) and poll records; [`replies`] reads answers and
//! what a turn owes back from the log; [`merge`] moves a
//! conversation into the identified user's (`mergeIdentity`). This module
//! holds the operations and the conditional-write loop around them.

mod finish;
mod locks;
mod merge;
mod replies;
mod run;
mod step;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use serde_json::{Map, Value};
use tokio::time::{Instant, timeout_at};

use super::idempotency::{KeyAnswer, KeyRecord};
use super::outbound::Outbound;
use super::rate::RateState;
use super::records::{Conversation, IdleClosure, PollAnswer, PollRecord, QueuedMessage};
use super::store::{Conversations, TurnWrite};
use crate::definition::Bot;
use crate::engine::Input;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;
use crate::protocol::{Tag, TaskCompletion, V2Data, V2Response, VERSION_V2};
use finish::finish;
use locks::{Held, Locks};
pub use replies::{owed_jobs, poll_answer};
pub use run::KEYED_OVERRUN;
use run::begin;
use step::Step;

/// Time to save a polled step once its call is made.
const SAVE_AFTER_CALL: Duration = Duration::from_secs(10);
/// Messages that may wait behind a polled call.
const MAX_QUEUED_MESSAGES: usize = 20;

/// How the calls a flow waits for are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// Within the turn, before it answers.
    Inline,
    /// By the worker: the turn answers with what came before the first call
    /// and a pollId for the rest.
    Poll,
}

/// Where a turn's answer goes besides the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerTo {
    /// Only the HTTP answer.
    Caller,
    /// Into this poll record (a message queued behind a call).
    Poll(String),
    /// Each message to this instance's POST_URL (asynchronous mode).
    PostUrl(String),
}

impl AnswerTo {
    /// The instance whose POST_URL gets the messages.
    pub fn post_url(&self) -> Option<&str> {
        match self {
            AnswerTo::PostUrl(instance) => Some(instance),
            _ => None,
        }
    }

    /// The poll record that gets the answer.
    pub fn poll(&self) -> Option<&str> {
        match self {
            AnswerTo::Poll(poll_id) => Some(poll_id),
            _ => None,
        }
    }
}

pub struct TurnRequest {
    pub bot: Arc<Bot>,
    /// Whose conversation: the bot, the user, and the app if its users are its own.
    pub user: ConversationKey,
    /// The hookInstance the message came in on.
    pub instance_id: String,
    /// Another instance whose texts answer (`preferredChannelForResponse`).
    pub texts_instance: Option<String>,
    /// `mergeIdentity`: the conversation this user's continues, as the token proved.
    pub merge_from: Option<ConversationKey>,
    /// The message's Idempotency-Key record (running): written done with the turn.
    pub key: Option<KeyRecord>,
    pub new_session: bool,
    pub input: Input,
    pub user_info: Option<Map<String, Value>>,
    pub user_tags: Vec<Tag>,
    pub message_tags: Vec<Tag>,
    pub trace_id: String,
    pub client_ip: Option<String>,
    pub calls: Calls,
    pub answer_to: AnswerTo,
    /// When the request arrived; reported in timeouts.
    pub started: Instant,
}

#[derive(Debug)]
pub struct TurnReply {
    pub messages: Vec<V2Data>,
    /// `{formDef, formInitialization}` when the turn sent a form.
    pub form: Option<Value>,
    pub completion: Option<TaskCompletion>,
    /// Polling: where the rest of the turn will be found.
    pub poll_id: Option<String>,
    /// The message was counted against the rate limits: the quotas left.
    pub rate: Option<RateState>,
}

impl TurnReply {
    /// The regular v2 answer.
    pub fn v2(&self, key: &ConversationKey) -> V2Response {
        V2Response {
            to: key.user_id.clone(),
            from: key.bot_id.clone(),
            data: self.messages.clone(),
            version: VERSION_V2,
            end_of_task: self.completion.is_some(),
            completion: self.completion.clone(),
            form: self.form.clone(),
            poll_id: self.poll_id.clone(),
        }
    }
}

#[derive(Debug)]
pub enum Outcome {
    Answered(Box<TurnReply>),
    /// The conversation waits for a call the worker makes (polling): the
    /// message must queue behind it.
    Busy,
}

pub struct Turns {
    conversations: Arc<dyn Conversations>,
    outbound: Arc<dyn Outbound>,
    /// Serialises one user's turns inside this process, so concurrent requests
    /// queue instead of spinning on conflicts; other processes (Lambda
    /// instances) are kept consistent by the store's conditional write.
    locks: Locks,
}

impl Turns {
    pub fn new(conversations: Arc<dyn Conversations>, outbound: Arc<dyn Outbound>) -> Self {
        Self { conversations, outbound, locks: Locks::default() }
    }

    pub fn conversations(&self) -> &Arc<dyn Conversations> {
        &self.conversations
    }

    /// The conversation, read while this process's writers of it wait.
    async fn lock_and_load(
        &self,
        key: &ConversationKey,
        deadline: Instant,
        started: Instant,
    ) -> Result<(Held<'_>, Option<Conversation>)> {
        let timed_out = |_| Error::Timeout(deadline.saturating_duration_since(started));
        let serialised = timeout_at(deadline, self.lock(key)).await.map_err(timed_out)?;
        let stored = timeout_at(deadline, self.conversations.load(key)).await.map_err(timed_out)??;
        Ok((serialised, stored))
    }

    async fn lock(&self, key: &ConversationKey) -> Held<'_> {
        self.locks.lock(key).await
    }

    /// Runs the turn, answering `Error::Timeout` if it cannot be committed by
    /// `deadline`. A write that has started is always awaited: the client is
    /// never told "timed out" about a turn that was saved. A queued turn
    /// delivered a second time is not run again: its saved answer comes back.
    pub async fn run(&self, request: &TurnRequest, deadline: Instant) -> Result<Outcome> {
        let started = std::time::Instant::now();
        let outcome = self.run_turn(request, deadline).await;
        crate::metrics::turn(started.elapsed());
        outcome
    }

    async fn run_turn(&self, request: &TurnRequest, deadline: Instant) -> Result<Outcome> {
        let key = &request.user;
        if let Some(source) = request.merge_from.as_ref().filter(|source| *source != key) {
            self.merge(&request.bot, source, key, deadline, request.started).await?;
        }
        let (_serialised, stored) = self.lock_and_load(key, deadline, request.started).await?;
        if let Some(last) =
            stored.as_ref().and_then(|c| c.last_turn.as_ref()).filter(|t| t.trace_id == request.trace_id)
        {
            let saved = replies::saved_answer(self.conversations.as_ref(), key, last).await;
            return saved.map(|reply| Outcome::Answered(Box::new(reply)));
        }
        if stored.as_ref().is_some_and(|c| c.applied.contains(&request.trace_id)) {
            // Applied before later turns: what it owed was relayed then.
            tracing::warn!(trace_id = %request.trace_id, "a queued message delivered again after later turns: not run again");
            let reply = TurnReply { messages: Vec::new(), form: None, completion: None, poll_id: None, rate: None };
            return Ok(Outcome::Answered(Box::new(reply)));
        }
        let reply = self.commit(&request.bot, key, Step::Message(request), stored, deadline, request.started).await?;
        Ok(reply.map_or(Outcome::Busy, |reply| Outcome::Answered(Box::new(reply))))
    }

    /// Makes the call a polled conversation waits for under `poll_id` and
    /// runs the flow on to the next call or question. `None` if the
    /// conversation no longer waits for that poll (it was resumed already).
    pub async fn resume(
        &self,
        bot: &Arc<Bot>,
        key: &ConversationKey,
        poll_id: &str,
        deadline: Instant,
    ) -> Result<Option<TurnReply>> {
        let started = Instant::now();
        let timed_out = |_| Error::Timeout(deadline.saturating_duration_since(started));
        let stored = timeout_at(deadline, self.conversations.load(key)).await.map_err(timed_out)??.unwrap_or_default();
        let Some(pending) = stored.pending.filter(|p| p.poll_id == poll_id) else {
            // Resumed already: if that was the last step, its answer again.
            return match stored.last_turn.filter(|t| t.answered_poll.as_deref() == Some(poll_id)) {
                Some(last) => replies::saved_answer(self.conversations.as_ref(), key, &last).await.map(Some),
                None => Ok(None),
            };
        };
        // Not serialised while the call runs: a message arriving meanwhile
        // is told at once that it queues behind the call.
        let outcome = self.make_call(bot, &pending.call, deadline, started).await?;
        // The call is made: saving what follows gets time of its own, or a
        // call that used the whole deadline could never be saved.
        let (deadline, saving) = (Instant::now() + SAVE_AFTER_CALL, Instant::now());
        let (_serialised, stored) = self.lock_and_load(key, deadline, saving).await?;
        self.commit(bot, key, Step::Resume { poll_id, outcome: Some(outcome) }, stored, deadline, started).await
    }

    /// Ends the session of a conversation whose idle closure was found due at
    /// `due_at` (asynchronous mode), with the deliveries that tell its
    /// instance. `None` if the conversation has moved on since, or is not
    /// idle yet by the bot's current timeout (then it is due later).
    pub async fn close_idle(
        &self,
        bot: &Arc<Bot>,
        key: &ConversationKey,
        due_at: i64,
        deadline: Instant,
    ) -> Result<Option<TurnReply>> {
        let started = Instant::now();
        let (_serialised, stored) = self.lock_and_load(key, deadline, started).await?;
        let trace_id = IdleClosure::trace_id(key, due_at);
        if let Some(last) = stored.as_ref().and_then(|c| c.last_turn.as_ref()).filter(|t| t.trace_id == trace_id) {
            // Closed already (its job delivered twice): what it owed was relayed then.
            return replies::saved_answer(self.conversations.as_ref(), key, last).await.map(Some);
        }
        let Some(mut conversation) = stored.clone() else {
            return Ok(None);
        };
        let Some(closure) = conversation.idle_closure.clone().filter(|c| c.due_at == due_at) else {
            return Ok(None);
        };
        let idle_ms = i64::from(bot.def.session.idle_timeout_minutes) * 60_000;
        let due = conversation.session.as_ref().map(|s| IdleClosure::of(s, idle_ms, &closure.instance_id));
        if due.as_ref().is_none_or(|due| due.due_at > Utc::now().timestamp()) {
            // A longer timeout since (a new deployment), or no session to close.
            conversation.idle_closure = due;
            let retention = i64::from(bot.def.session.retention_days) * 86_400;
            let expires_at = Utc::now().timestamp() + retention;
            let write = TurnWrite::of(&conversation, conversation.version, expires_at);
            return match self.conversations.save_turn(key, write).await {
                // Written meanwhile: the next sweep sees it as it is now.
                Ok(()) | Err(Error::Conflict) => Ok(None),
                Err(e) => Err(e),
            };
        }
        let step = Step::CloseIdle { closure: &closure, trace_id };
        self.commit(bot, key, step, stored, deadline, started).await
    }

    /// Records that the message queues behind the conversation's call (or
    /// the messages already queued behind it), with the poll record its
    /// answer will go to, and counts it against the rate limits: the
    /// answer (the pollId to read). `None` if the conversation is free by now.
    pub async fn queue_behind(
        &self,
        request: &TurnRequest,
        record: &PollRecord,
        deadline: Instant,
    ) -> Result<Option<TurnReply>> {
        let key = &request.user;
        let timed_out = |_| Error::Timeout(deadline.saturating_duration_since(request.started));
        let _serialised = timeout_at(deadline, self.lock(key)).await.map_err(timed_out)?;
        let retention = i64::from(request.bot.def.session.retention_days) * 86_400;
        let mut attempt = 0;
        loop {
            let stored = timeout_at(deadline, self.conversations.load(key)).await.map_err(timed_out)??;
            let now = Utc::now().timestamp();
            let Some(mut conversation) = stored.map(|mut c| {
                c.drop_stale_queued(now);
                c
            }) else {
                return Ok(None);
            };
            if conversation.pending.is_none() && conversation.queued.is_empty() {
                return Ok(None);
            }
            if conversation.queued.len() >= MAX_QUEUED_MESSAGES {
                return Err(Error::Busy);
            }
            let limits = request.bot.rate_limits(&request.instance_id);
            let rate = if limits.off() { None } else { Some(conversation.rate.admit(&limits, now, true)?) };
            conversation.queued.push(QueuedMessage { trace_id: request.trace_id.clone(), queued_at: now });
            // With a key, its answer (the pollId to read) is saved in this write.
            let answer = PollAnswer { poll_id: Some(record.poll_id.clone()), ..PollAnswer::default() };
            let done = request.key.as_ref().map(|k| k.done(KeyAnswer::Turn(answer)));
            let write = TurnWrite {
                polls: std::slice::from_ref(record),
                key: done.as_ref(),
                ..TurnWrite::of(&conversation, conversation.version, Utc::now().timestamp() + retention)
            };
            match self.conversations.save_turn(key, write).await {
                Err(Error::Conflict) => {
                    timeout_at(deadline, backoff(attempt)).await.map_err(timed_out)?;
                    attempt += 1;
                }
                outcome => {
                    let poll_id = Some(record.poll_id.clone());
                    let messages = Vec::new();
                    return outcome.map(|()| Some(TurnReply { messages, form: None, completion: None, poll_id, rate }));
                }
            }
        }
    }

    /// Forgets a queued message that will not run (its job could not be
    /// queued, or the bot refused it), so it holds nothing up.
    pub async fn forget_queued(&self, bot: &Bot, key: &ConversationKey, trace_id: &str) -> Result<()> {
        let _serialised = self.lock(key).await;
        let retention = i64::from(bot.def.session.retention_days) * 86_400;
        for attempt in 0..5 {
            let Some(mut conversation) = self.conversations.load(key).await? else {
                return Ok(());
            };
            if !conversation.queued.iter().any(|q| q.trace_id == trace_id) {
                return Ok(());
            }
            conversation.queued.retain(|q| q.trace_id != trace_id);
            let write = TurnWrite::of(&conversation, conversation.version, Utc::now().timestamp() + retention);
            match self.conversations.save_turn(key, write).await {
                Err(Error::Conflict) => backoff(attempt).await,
                outcome => return outcome,
            }
        }
        Err(Error::Conflict)
    }

    /// Gives up on the call a polled conversation waits for under `poll_id`
    /// (it cannot be resumed): the user gets an apology and the session
    /// ends, so the conversation takes messages again.
    pub async fn abandon(
        &self,
        bot: &Arc<Bot>,
        key: &ConversationKey,
        poll_id: &str,
        deadline: Instant,
    ) -> Result<Option<TurnReply>> {
        let started = Instant::now();
        let (_serialised, stored) = self.lock_and_load(key, deadline, started).await?;
        self.commit(bot, key, Step::Resume { poll_id, outcome: None }, stored, deadline, started).await
    }

    /// Runs the step on the stored conversation and saves it; on a
    /// concurrent write, reloads and runs again (no call is made again: the
    /// outcomes of those made are reused). `None` when the step does not apply: a
    /// message for a conversation waiting for a call, or a resume of a call
    /// no longer waited for.
    async fn commit(
        &self,
        bot: &Arc<Bot>,
        key: &ConversationKey,
        step: Step<'_>,
        mut stored: Option<Conversation>,
        deadline: Instant,
        started: Instant,
    ) -> Result<Option<TurnReply>> {
        // A message with a key saves what its calls did even past the
        // deadline (within its overrun): its retry gets that, and no call is
        // made twice.
        let keyed = matches!(step, Step::Message(request) if request.key.is_some());
        let save_by = if keyed { deadline + KEYED_OVERRUN } else { deadline };
        let timed_out = |_| Error::Timeout(deadline.saturating_duration_since(started));
        let mut attempt = 0;
        let mut made = Vec::new();
        loop {
            // Taken, not copied: a retry reloads it.
            let expected_version = stored.as_ref().map_or(0, |c| c.version);
            let mut conversation = stored.take().unwrap_or_default();
            if let Step::Message(request) = &step
                && attempt > 0
                && let Some(last) = conversation.last_turn.as_ref().filter(|t| t.trace_id == request.trace_id)
            {
                // Our write landed though its answer was lost (the store's
                // retry of it then failed its condition): saved once, answered.
                return replies::saved_answer(self.conversations.as_ref(), key, last).await.map(Some);
            }
            conversation.drop_stale_queued(Utc::now().timestamp());
            if !step.applies(&conversation) {
                return Ok(None);
            }
            let plan = step.plan(&conversation);
            let begun = begin(bot, key, &plan, conversation, attempt > 0)?;
            let ran = self.run_engine(bot, &plan, &begun, &mut made, deadline, started).await?;
            let finished = finish(bot, key, &plan, begun, ran)?;
            let retention = i64::from(bot.def.session.retention_days) * 86_400;
            let write = TurnWrite {
                log: &finished.log,
                polls: &finished.polls,
                key: finished.key.as_ref(),
                owes: finished.owes.as_deref(),
                conversation_bytes: Some(finished.conversation_bytes),
                ..TurnWrite::of(&finished.conversation, expected_version, Utc::now().timestamp() + retention)
            };
            if !keyed && Instant::now() >= deadline {
                return Err(Error::Timeout(deadline.saturating_duration_since(started)));
            }
            match self.conversations.save_turn(key, write).await {
                Err(Error::Conflict) => {
                    tracing::debug!(attempt, "conversation written concurrently; retrying the turn");
                    timeout_at(save_by, backoff(attempt)).await.map_err(timed_out)?;
                    attempt += 1;
                    stored = timeout_at(save_by, self.conversations.load(key)).await.map_err(timed_out)??;
                }
                outcome => return outcome.map(|()| Some(finished.reply)),
            }
        }
    }
}

/// Exponential backoff with full jitter, capped low: contention is between a
/// handful of writers of one conversation, and the deadline bounds the total.
async fn backoff(attempt: u32) {
    let cap = (10u64 << attempt.min(5)).min(200);
    let wait = rand::rng().random_range(cap / 4..=cap);
    tokio::time::sleep(Duration::from_millis(wait)).await;
}
