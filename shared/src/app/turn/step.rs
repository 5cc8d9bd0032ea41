//! What starts a step of a conversation, and what that implies, worked out
//! once: the rest of the turn reads the [`Plan`], never the kind of step.

use super::{AnswerTo, Calls, TurnRequest};
use crate::app::idempotency::KeyRecord;
use crate::app::records::{Conversation, IdleClosure};
use crate::definition::RateLimits;
use crate::engine::{CallOutcome, Input};

/// What a step starts from: a user's message, or a call's outcome for a
/// conversation that waited for it.
pub(super) enum Step<'r> {
    Message(&'r TurnRequest),
    /// The call's outcome, or `None` to give up on it.
    Resume {
        poll_id: &'r str,
        outcome: Option<CallOutcome>,
    },
    /// The session's end for inactivity, told to the asynchronous instance
    /// that last used it, if nothing happened since the closure was found due.
    CloseIdle {
        closure: &'r IdleClosure,
        trace_id: String,
    },
}

/// Where the engine starts.
pub(super) enum Start<'r> {
    /// The user's message.
    Message(&'r Input),
    /// The outcome of the call the session waited for.
    Resume(&'r CallOutcome),
    /// Giving up on the call the session waited for.
    GiveUp,
    /// Ending the idle session.
    CloseIdle,
}

/// What a step implies.
pub(super) struct Plan<'r> {
    pub start: Start<'r>,
    /// The user's message the step runs: logged, its user data merged in.
    pub message: Option<&'r TurnRequest>,
    /// The trace id of the step's log entries: the message's, or when
    /// resuming, that of the message whose call it was.
    pub trace_id: String,
    /// The instance the message came in on: its URL reads the step's polls.
    pub instance_id: Option<String>,
    /// The instance whose text variants the bot answers with.
    pub texts_instance: Option<String>,
    pub calls: Calls,
    /// The session ends if it has been idle past the bot's timeout (a
    /// resumed session waited for its call: it is as active as when it
    /// started it).
    pub idle_ends_session: bool,
    /// The message asks for a new session (`session.new`).
    pub new_session: bool,
    pub client_ip: Option<&'r str>,
    /// The poll record the step's answer goes to.
    pub answers_poll: Option<String>,
    /// The instance whose POST_URL gets the step's messages.
    pub post_url: Option<&'r str>,
    /// A queued message: remembered as applied, so a second delivery of it
    /// is not run again.
    pub remember_applied: bool,
    /// A message from the client, counted against these limits (messages
    /// queued were counted when they were accepted).
    pub rate_limits: Option<RateLimits>,
}

impl Plan<'_> {
    /// The message's Idempotency-Key record, when it has one.
    pub fn keyed(&self) -> Option<&KeyRecord> {
        self.message.and_then(|m| m.key.as_ref())
    }
}

impl<'r> Step<'r> {
    /// Whether the step can run on `conversation` now. A message waits while
    /// a call is pending, and while messages are queued unless it comes from
    /// the queue itself (which keeps their order); a resume applies only to
    /// the call still waited for.
    pub fn applies(&self, conversation: &Conversation) -> bool {
        match self {
            Step::Message(request) => {
                conversation.pending.is_none()
                    && (request.answer_to != AnswerTo::Caller || conversation.queued.is_empty())
            }
            Step::Resume { poll_id, .. } => conversation.pending.as_ref().is_some_and(|p| p.poll_id == *poll_id),
            Step::CloseIdle { closure, .. } => {
                conversation.pending.is_none()
                    && conversation.queued.is_empty()
                    && conversation.idle_closure.as_ref() == Some(closure)
            }
        }
    }

    pub fn plan(&self, conversation: &Conversation) -> Plan<'_> {
        match self {
            Step::Message(request) => Plan {
                start: Start::Message(&request.input),
                message: Some(request),
                trace_id: request.trace_id.clone(),
                instance_id: Some(request.instance_id.clone()),
                texts_instance: request.texts_instance.clone().or(Some(request.instance_id.clone())),
                calls: request.calls,
                idle_ends_session: true,
                new_session: request.new_session,
                client_ip: request.client_ip.as_deref(),
                answers_poll: request.answer_to.poll().map(String::from),
                post_url: request.answer_to.post_url(),
                remember_applied: request.answer_to != AnswerTo::Caller,
                rate_limits: (request.answer_to == AnswerTo::Caller)
                    .then(|| request.bot.rate_limits(&request.instance_id))
                    .filter(|limits| !limits.off()),
            },
            Step::Resume { poll_id, outcome } => Plan {
                start: outcome.as_ref().map_or(Start::GiveUp, Start::Resume),
                message: None,
                trace_id: conversation.pending.as_ref().map(|p| p.trace_id.clone()).unwrap_or_default(),
                instance_id: conversation.pending.as_ref().and_then(|p| p.instance_id.clone()),
                texts_instance: conversation
                    .pending
                    .as_ref()
                    .and_then(|p| p.texts_instance.clone().or(p.instance_id.clone())),
                calls: Calls::Poll,
                idle_ends_session: false,
                new_session: false,
                client_ip: None,
                answers_poll: Some(poll_id.to_string()),
                post_url: None,
                remember_applied: false,
                rate_limits: None,
            },
            Step::CloseIdle { closure, trace_id } => Plan {
                start: Start::CloseIdle,
                message: None,
                trace_id: trace_id.clone(),
                instance_id: Some(closure.instance_id.clone()),
                texts_instance: Some(closure.instance_id.clone()),
                calls: Calls::Inline,
                idle_ends_session: false,
                new_session: false,
                client_ip: None,
                answers_poll: None,
                post_url: Some(&closure.instance_id),
                remember_applied: false,
                rate_limits: None,
            },
        }
    }
}
