//! Runs a step's engine: the session and context as the step starts, then
//! the engine and the calls its flow waits for, made within the deadline or,
//! when the client polls, left for the worker.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::time::Instant;

use super::step::{Plan, Start};
use super::{Calls, Turns};
use crate::app::rate::RateState;
use crate::app::records::{Conversation, IdleClosure};
use crate::definition::Bot;
use crate::engine::{self, CallOutcome, HttpCall, Output, Session, TurnContext, merge_tags};
use crate::error::{Error, Result};
use crate::ids::{self, ConversationKey};
use crate::protocol::TaskCompletion;

/// User-level data outlives sessions: bounded so no one can grow it forever.
pub(super) const MAX_USER_KEYS: usize = 100;
/// How long past the deadline a call of a message with an Idempotency-Key
/// may take (and its save go on after a concurrent write): within the webhook
/// function's timeout, with the save after it.
pub const KEYED_OVERRUN: Duration = Duration::from_secs(2);
/// Service and sync webhook calls one turn may make.
pub(super) const MAX_CALLS_PER_TURN: usize = 10;

/// The conversation as the step starts: the session still active (not
/// closed, not idle past the timeout), user data merged in.
pub(super) struct Begun {
    /// The stored conversation, without its session (which is `active`).
    pub conversation: Conversation,
    pub active: Option<Session>,
    /// The stored session ended for inactivity and its instance was not told yet.
    pub owed_closure: Option<IdleClosure>,
    /// The message counted against the rate limits: the quotas left.
    pub rate: Option<RateState>,
    pub ctx: TurnContext,
    pub now: chrono::DateTime<Utc>,
}

pub(super) fn begin(
    bot: &Bot,
    key: &ConversationKey,
    plan: &Plan<'_>,
    mut conversation: Conversation,
    retried: bool,
) -> Result<Begun> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let idle_ms = i64::from(bot.def.session.idle_timeout_minutes) * 60_000;
    let idle = |s: &Session| plan.idle_ends_session && now_ms - s.last_active_at >= idle_ms;
    let stored = conversation.session.take();
    // A session that ended for inactivity before a sweep told its
    // asynchronous instance: told with this step.
    let owed_closure = conversation.idle_closure.clone().filter(|_| stored.as_ref().is_some_and(idle));
    let active = stored.filter(|s| !plan.new_session && !idle(s));
    // A run retried after a concurrent write counts the message it already
    // admitted (its calls may be made), and never refuses it.
    let rate = match &plan.rate_limits {
        Some(limits) => Some(conversation.rate.admit(limits, now.timestamp(), !retried)?),
        None => None,
    };
    if let Some(request) = plan.message {
        for (name, value) in request.user_info.iter().flatten() {
            if !matches!(value, Value::Null) && value.as_str() != Some("") {
                conversation.user_info.insert(name.clone(), value.clone());
            }
        }
        merge_tags(&mut conversation.user_tags, request.user_tags.clone());
    }
    if conversation.user_info.len() > MAX_USER_KEYS || conversation.user_tags.len() > MAX_USER_KEYS {
        let detail = format!("a user keeps at most {MAX_USER_KEYS} userInfo keys and {MAX_USER_KEYS} user-level tags");
        return Err(Error::InvalidPayload(detail));
    }
    let mut user = conversation.user_info.clone();
    user.insert("id".into(), Value::String(key.user_id.clone()));
    if let Some(app) = &key.app {
        // An anonymous app's user is whoever its browser claims to be: flows can tell.
        user.insert("app".into(), Value::String(app.clone()));
    }
    let ctx = TurnContext {
        now_ms,
        new_session_id: ids::session_id(),
        user: Value::Object(user),
        instance: plan.texts_instance.clone(),
        user_tags: conversation.user_tags.clone(),
    };
    Ok(Begun { conversation, active, owed_closure, rate, ctx, now })
}

/// What the engine did in one step, calls included.
pub(super) struct Ran {
    pub outputs: Vec<Output>,
    pub completion: Option<TaskCompletion>,
    pub session: Option<Session>,
    /// Polling: the call left for the worker, and the calls made for this
    /// message by then (it included).
    pub pending: Option<HttpCall>,
    pub calls_made: usize,
    pub effects: Vec<HttpCall>,
}

impl Ran {
    /// Adds what a continued turn produced; its session stays with the turn.
    fn absorb(&mut self, turn: &mut engine::Turn) {
        self.outputs.append(&mut turn.outputs);
        self.completion = turn.completion.take().or(self.completion.take());
        self.effects.append(&mut turn.effects);
    }
}

impl Turns {
    /// Runs the engine, making each call it waits for within the deadline,
    /// or (polling) stopping at the first one. `made` holds the calls made
    /// by earlier runs of this step (a run retried after a concurrent write)
    /// and their outcomes: the same call in the same place is not made again.
    pub(super) async fn run_engine(
        &self,
        bot: &Bot,
        plan: &Plan<'_>,
        begun: &Begun,
        made: &mut Vec<(HttpCall, CallOutcome)>,
        deadline: Instant,
        started: Instant,
    ) -> Result<Ran> {
        let session = begun.active.clone();
        let mut turn = match plan.start {
            Start::Message(input) => engine::run_turn(bot, session, input.clone(), &begun.ctx),
            Start::Resume(outcome) => engine::resume(bot, waiting(session)?, outcome.clone(), &begun.ctx),
            // Given up: an apology, and no session, which keeps the state small.
            Start::GiveUp => engine::Turn { session: None, ..engine::abandon(bot, waiting(session)?, &begun.ctx) },
            Start::CloseIdle => engine::close_for_inactivity(),
        };
        let mut ran = Ran {
            outputs: std::mem::take(&mut turn.outputs),
            completion: turn.completion.take(),
            session: None,
            pending: None,
            calls_made: 0,
            effects: std::mem::take(&mut turn.effects),
        };
        // Calls already made for this message, across the steps of a polled turn.
        let mut calls_made = begun.conversation.pending.as_ref().map_or(0, |p| p.calls);
        while let Some(call) = turn.pending.take() {
            let Some(session) = turn.session.take() else {
                break;
            };
            if plan.calls == Calls::Poll && calls_made < MAX_CALLS_PER_TURN {
                ran.pending = Some(call);
                ran.calls_made = calls_made + 1;
                turn.session = Some(session);
                break;
            }
            calls_made += 1;
            if calls_made > MAX_CALLS_PER_TURN || plan.calls == Calls::Poll {
                // A flow that keeps calling (a retry loop through onError) ends
                // instead of running to the deadline.
                tracing::warn!(calls_made, "a turn makes at most {MAX_CALLS_PER_TURN} calls: task abandoned");
                turn = engine::abandon(bot, session, &begun.ctx);
                ran.absorb(&mut turn);
                break;
            }
            let place = calls_made - 1 - begun.conversation.pending.as_ref().map_or(0, |p| p.calls);
            let outcome = match made.get(place).filter(|(earlier, _)| *earlier == call) {
                Some((_, outcome)) => outcome.clone(),
                None => {
                    let overrun = if plan.keyed().is_some() { KEYED_OVERRUN } else { Duration::ZERO };
                    if !overrun.is_zero() && Instant::now() >= deadline {
                        // A message with a key is answered with what its calls
                        // did, never with a timeout its retry would make them
                        // again for: past the deadline no call starts, and its
                        // task ends.
                        turn = engine::abandon(bot, session, &begun.ctx);
                        ran.absorb(&mut turn);
                        break;
                    }
                    let outcome = self.make_call(bot, &call, deadline + overrun, started).await?;
                    made.truncate(place);
                    made.push((call, outcome.clone()));
                    outcome
                }
            };
            turn = engine::resume(bot, session, outcome, &begun.ctx);
            ran.absorb(&mut turn);
        }
        ran.session = turn.session;
        Ok(ran)
    }

    /// Makes a call the flow waits for, within what is left of the deadline.
    pub(super) async fn make_call(
        &self,
        bot: &Bot,
        call: &HttpCall,
        deadline: Instant,
        started: Instant,
    ) -> Result<CallOutcome> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::Timeout(deadline.saturating_duration_since(started)));
        }
        let call = HttpCall { timeout: call.timeout.min(remaining), ..call.clone() };
        let webhook_id = format!("msg_{}", crate::ids::random_uuid().simple());
        let outcome = self.outbound.call(&call, bot, bot.signing_keys(), &webhook_id).await;
        match &outcome {
            Ok(reply) => {
                tracing::info!(method = %call.method, url = %call.url, status = reply.status, "flow call answered")
            }
            Err(reason) => tracing::warn!(method = %call.method, url = %call.url, %reason, "flow call failed"),
        }
        Ok(outcome)
    }
}

/// The session of a conversation waiting for a call.
fn waiting(session: Option<Session>) -> Result<Session> {
    session.ok_or_else(|| Error::Internal("a conversation waiting for a call has a session".into()))
}
