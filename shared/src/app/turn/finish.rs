//! What a step leaves: its log entries, the conversation as it is after it
//! (with what it owes), the poll records, and the reply; each bounded so the
//! step fits one store write.

use chrono::SecondsFormat;
use serde_json::{Value, json};

use super::TurnReply;
use super::replies::split_form;
use super::run::{Begun, Ran};
use super::step::Plan;
use crate::app::idempotency::{KeyAnswer, KeyRecord};
use crate::app::jobs::{self, EventTurn, TurnEnd};
use crate::app::queue::QueueMessage;
use crate::app::records::{
    Conversation, Direction, IdleClosure, LastTurn, LogEntry, PendingCall, PollAnswer, PollRecord,
};
use crate::definition::Bot;
use crate::engine::{self, Output};
use crate::error::{Error, Result};
use crate::ids::{self, ConversationKey};
use crate::protocol::V2Data;
use crate::text::json_len;

/// A conversation item stays well under DynamoDB's 400 KB item limit.
const MAX_CONVERSATION_BYTES: usize = 300 * 1024;
/// A turn's log fits one TransactWriteItems (100 items: the conversation, the
/// user's message and two poll records besides), should the store write an
/// entry an item. Flow definitions stay well below; only what a webhook
/// answers could go beyond.
pub(super) const MAX_OUTPUTS_PER_TURN: usize = 90;
/// A log entry stays under DynamoDB's 400 KB item limit, a turn's log under
/// the 4 MB of one transaction.
const MAX_LOG_ENTRY_BYTES: usize = 350 * 1024;
const MAX_TURN_LOG_BYTES: usize = 3 * 1024 * 1024;
/// Queued messages remembered as applied.
const MAX_APPLIED_REMEMBERED: usize = 20;
/// What a turn keeps of its deliveries (those not rebuilt from the log) in
/// the conversation; more goes in an item of its own, at most a DynamoDB
/// item's worth.
const MAX_KEPT_JOBS_BYTES: usize = 64 * 1024;
const MAX_KEPT_APART_BYTES: usize = 350 * 1024;

/// A step's reply, the new conversation, its log entries and poll records.
pub(super) struct Finished {
    pub reply: TurnReply,
    pub conversation: Conversation,
    pub log: Vec<LogEntry>,
    pub polls: Vec<PollRecord>,
    /// The message's Idempotency-Key record, done: its answer.
    pub key: Option<KeyRecord>,
    /// The step owes deliveries: those kept apart from the conversation.
    pub owes: Option<Vec<QueueMessage>>,
    /// The conversation's JSON length.
    pub conversation_bytes: usize,
}

pub(super) fn finish(bot: &Bot, key: &ConversationKey, plan: &Plan<'_>, begun: Begun, ran: Ran) -> Result<Finished> {
    let Begun { mut conversation, active, owed_closure, rate, now, .. } = begun;
    let created_on = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let session = ran.session.as_ref().or(active.as_ref());
    let session_id = session.map(|s| s.id.clone());
    let ended_context = session.map(|s| s.context.clone()).unwrap_or_default();
    let first_seq = conversation.next_seq;

    // The log: the user's message, then the bot's.
    let mut log =
        Log { next_seq: first_seq, trace_id: &plan.trace_id, created_on: &created_on, session_id: session_id.clone() };
    let mut entries = Vec::new();
    // The closure a sweep did not send yet: before what this step says, to
    // the instance the session was on, kept with the turn for a repeat.
    let mut closed = Vec::new();
    if let Some(closure) = &owed_closure {
        let trace_id = IdleClosure::trace_id(key, closure.due_at);
        let closing = engine::close_for_inactivity().outputs.into_iter().next();
        if let Some(message) = closing.and_then(|output| data(output, &created_on, 0)) {
            let body = serde_json::to_value(&message).unwrap_or(Value::Null);
            entries.push(log.entry_of(&trace_id, Direction::Out, message.message_id.clone(), body));
            if let Some(instance) = bot.instance_by_id(&closure.instance_id) {
                let end = TurnEnd { completion: None, waiting: false, trace_id: &trace_id };
                closed = jobs::post_url(bot, instance, key, &[message], end);
            }
        }
    }
    if let Some(request) = plan.message {
        let mut inbound = json!({"request": request.input.message});
        if !request.message_tags.is_empty() {
            inbound["messageLevelTags"] = json!(request.message_tags);
        }
        entries.push(log.entry(Direction::In, ids::message_id(), inbound));
    }
    let mut outputs = ran.outputs;
    if outputs.len() > MAX_OUTPUTS_PER_TURN {
        let dropped = outputs.len() - MAX_OUTPUTS_PER_TURN;
        tracing::warn!(dropped, "a turn sends at most {MAX_OUTPUTS_PER_TURN} messages");
        outputs.truncate(MAX_OUTPUTS_PER_TURN);
    }
    let plain_text = plan.instance_id.as_deref().and_then(|id| bot.instance_by_id(id)).is_some_and(|i| i.plain_text);
    let mut sent: Vec<V2Data> = Vec::new();
    let mut pause = 0;
    for output in outputs {
        match output {
            // Pauses in a row add up, within the longest a message waits.
            Output::Pause(ms) => pause = (pause + ms).min(engine::MAX_DELAY_MS),
            output => {
                let message = data(output, &created_on, std::mem::take(&mut pause));
                let as_text = |m: V2Data| V2Data { kind: "text".into(), val: m.as_text(), ..m };
                sent.extend(message.map(|m| if plain_text && m.kind == "template" { as_text(m) } else { m }));
            }
        }
    }
    for message in &sent {
        let body = serde_json::to_value(message).unwrap_or(Value::Null);
        entries.push(log.entry(Direction::Out, message.message_id.clone(), body));
    }

    // The conversation after the step.
    let waiting = ran.session.as_ref().is_some_and(|s| s.task.is_some());
    let poll_id = ran.pending.as_ref().map(|_| ids::poll_id());
    conversation.next_seq = log.next_seq;
    conversation.session = ran.session;
    conversation.pending = ran.pending.zip(poll_id.clone()).map(|(call, poll_id)| PendingCall {
        poll_id,
        call,
        trace_id: plan.trace_id.clone(),
        calls: ran.calls_made,
        instance_id: plan.instance_id.clone(),
        texts_instance: plan.texts_instance.clone().filter(|t| plan.instance_id.as_ref() != Some(t)),
    });
    // Asynchronous mode: a session left active is closed once idle, and its instance told.
    let idle_ms = i64::from(bot.def.session.idle_timeout_minutes) * 60_000;
    conversation.idle_closure = match (&conversation.session, plan.post_url) {
        (Some(session), Some(instance)) => Some(IdleClosure::of(session, idle_ms, instance)),
        _ => None,
    };
    if let Some(request) = plan.message {
        conversation.queued.retain(|q| q.trace_id != request.trace_id);
    }
    if plan.remember_applied {
        conversation.applied.push(plan.trace_id.clone());
        let excess = conversation.applied.len().saturating_sub(MAX_APPLIED_REMEMBERED);
        conversation.applied.drain(..excess);
    }

    // What the step owes: rebuilt from the log by the relay (see
    // `replies::owed_jobs`), but for what is kept with it.
    let mut owes = !closed.is_empty();
    if let Some(instance) = plan.post_url.and_then(|id| bot.instance_by_id(id)) {
        owes |= jobs::owes_post_url(instance, &sent);
    }
    // The tasks the turn ran: the one it began in, the one it waits in, the one it ended.
    let mut tasks: Vec<String> = [active.as_ref(), conversation.session.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|s| s.task.as_ref().map(|t| t.task_id.clone()))
        .chain(ran.completion.as_ref().map(|c| c.completed_task_id.clone()))
        .collect();
    tasks.sort();
    tasks.dedup();
    let turn = EventTurn { client_ip: plan.client_ip, instance: plan.instance_id.as_deref(), tasks: &tasks };
    owes |= jobs::owes_events(bot, &entries, &turn);
    let mut kept = Vec::new();
    if let Some(poll_id) = &poll_id {
        kept.push(jobs::resume(key, poll_id));
    }
    if let Some(completion) = &ran.completion {
        let id = (plan.trace_id.as_str(), first_seq);
        kept.extend(jobs::session_data(bot, key, session_id.as_deref(), &ended_context, completion, &created_on, id));
    }
    kept.extend(jobs::webhook_nodes(key, ran.effects));
    owes |= !kept.is_empty();
    let (kept, apart) = keep(kept)?;
    conversation.last_turn = Some(LastTurn {
        trace_id: plan.trace_id.clone(),
        first_seq,
        completion: ran.completion.clone(),
        waiting,
        instance_id: plan.instance_id.clone(),
        tasks,
        answered_poll: plan.answers_poll.clone(),
        next_poll: poll_id.clone(),
        post_url: plan.post_url.map(String::from),
        client_ip: plan.client_ip.map(String::from),
        closed,
        jobs: kept,
        jobs_apart: !apart.is_empty(),
    });
    let conversation_bytes = check_sizes(&mut conversation, &entries)?;

    let mut polls = Vec::new();
    let instance = plan.instance_id.as_deref();
    let record = |poll_id: &str, answer| PollRecord::new(poll_id, key, instance, answer, now.timestamp());
    if let Some(answered) = &plan.answers_poll {
        let answer = PollAnswer {
            from_seq: first_seq,
            end_seq: conversation.next_seq,
            completion: ran.completion.clone(),
            poll_id: poll_id.clone(),
            refused: None,
        };
        polls.push(record(answered, Some(answer)));
    }
    if let Some(poll_id) = &poll_id {
        polls.push(record(poll_id, None));
    }
    // The answer again for a retry with the message's key: its own entries.
    let key_record = plan.message.and_then(|m| m.key.as_ref()).map(|record| {
        let from_seq = entries.iter().find(|e| e.trace_id == plan.trace_id).map_or(first_seq, |e| e.seq);
        let answer = PollAnswer {
            from_seq,
            end_seq: conversation.next_seq,
            completion: ran.completion.clone(),
            poll_id: poll_id.clone(),
            refused: None,
        };
        record.done(KeyAnswer::Turn(answer))
    });
    let (messages, form) = split_form(sent);
    let reply = TurnReply { messages, form, completion: ran.completion, poll_id, rate };
    let owes = owes.then_some(apart);
    Ok(Finished { reply, conversation, log: entries, polls, key: key_record, owes, conversation_bytes })
}

/// Numbers a step's log entries.
struct Log<'a> {
    next_seq: u64,
    trace_id: &'a str,
    created_on: &'a str,
    session_id: Option<String>,
}

impl Log<'_> {
    fn entry(&mut self, direction: Direction, message_id: String, body: Value) -> LogEntry {
        let trace_id = self.trace_id;
        self.entry_of(trace_id, direction, message_id, body)
    }

    /// An entry of another trace than the step's.
    fn entry_of(&mut self, trace_id: &str, direction: Direction, message_id: String, body: Value) -> LogEntry {
        self.next_seq += 1;
        LogEntry {
            seq: self.next_seq - 1,
            direction,
            message_id,
            trace_id: trace_id.to_string(),
            created_on: self.created_on.to_string(),
            session_id: self.session_id.clone(),
            body,
        }
    }
}

/// Splits what a turn keeps into what the conversation holds and what goes
/// in an item of its own (all of it, when too large for the conversation).
fn keep(kept: Vec<QueueMessage>) -> Result<(Vec<QueueMessage>, Vec<QueueMessage>)> {
    let size = json_len(&kept);
    if size <= MAX_KEPT_JOBS_BYTES {
        return Ok((kept, Vec::new()));
    }
    if size > MAX_KEPT_APART_BYTES {
        let detail = format!(
            "this turn's deliveries (webhook node calls, session data) come to more than {MAX_KEPT_APART_BYTES} bytes"
        );
        return Err(Error::InvalidPayload(detail));
    }
    Ok((Vec::new(), kept))
}

/// The conversation stays one item, each log entry fits one, and the turn
/// fits one transaction. The conversation's JSON length.
fn check_sizes(conversation: &mut Conversation, log: &[LogEntry]) -> Result<usize> {
    let size = conversation.json_len();
    if size > MAX_CONVERSATION_BYTES {
        let detail = "the conversation's state has grown too large; start a new session (session.new)";
        return Err(Error::InvalidPayload(detail.into()));
    }
    let sizes: Vec<usize> = log.iter().map(json_len).collect();
    if sizes.iter().any(|&n| n > MAX_LOG_ENTRY_BYTES) || sizes.iter().sum::<usize>() > MAX_TURN_LOG_BYTES {
        let detail = format!(
            "a message of this turn is larger than {MAX_LOG_ENTRY_BYTES} bytes, or all of them than {MAX_TURN_LOG_BYTES}"
        );
        return Err(Error::InvalidPayload(detail));
    }
    Ok(size)
}

/// A bot message as the v2 answer's `data` carries it, shown `delay_ms` after
/// the one before; a pause is no message.
fn data(output: Output, created_on: &str, delay_ms: u64) -> Option<V2Data> {
    let (kind, val, event_type, description) = match output {
        Output::Text(text) => ("text", Value::String(text), None, None),
        Output::Template(object) => ("template", object, None, None),
        Output::Attachment { url, mime } => ("attachment", json!({"url": url, "mime": mime}), None, None),
        Output::Form(form) => ("form", form, None, None),
        Output::Event { val, event_type, description } => {
            ("event", Value::String(val.into()), Some(event_type.into()), Some(description.into()))
        }
        Output::Pause(_) => return None,
    };
    Some(V2Data {
        kind: kind.into(),
        val,
        event_type,
        description,
        created_on: created_on.into(),
        message_id: ids::message_id(),
        delay: (delay_ms > 0).then_some(delay_ms),
    })
}
