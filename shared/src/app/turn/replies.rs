//! Read back from the log: a poll's answer, the answer of a turn already
//! saved (a queued turn delivered twice, a continuation run twice), and the
//! deliveries a saved turn owes.

use serde_json::Value;

use super::TurnReply;
use super::finish::MAX_OUTPUTS_PER_TURN;
use crate::app::jobs::{self, EventTurn, TurnEnd};
use crate::app::queue::QueueMessage;
use crate::app::records::{Conversation, Direction, LastTurn, LogEntry, PollAnswer};
use crate::app::store::Conversations;
use crate::definition::Bot;
use crate::error::Result;
use crate::ids::ConversationKey;
use crate::protocol::V2Data;

/// A poll's answer, read back from the log.
pub async fn poll_answer(store: &dyn Conversations, key: &ConversationKey, answer: &PollAnswer) -> Result<TurnReply> {
    let count = answer.end_seq.saturating_sub(answer.from_seq) as usize;
    let entries = store.read_log(key, answer.from_seq.checked_sub(1), count).await?;
    let (messages, form) = split_form(sent_messages(&entries));
    let completion = answer.completion.clone();
    Ok(TurnReply { messages, form, completion, poll_id: answer.poll_id.clone(), rate: None })
}

/// The answer of a turn already saved, rebuilt from the log (what it owes
/// was relayed when it was saved).
pub(super) async fn saved_answer(
    store: &dyn Conversations,
    key: &ConversationKey,
    last: &LastTurn,
) -> Result<TurnReply> {
    let entries = store.read_log(key, last.first_seq.checked_sub(1), MAX_OUTPUTS_PER_TURN + 1).await?;
    let entries: Vec<LogEntry> = entries.into_iter().filter(|e| e.trace_id == last.trace_id).collect();
    let (messages, form) = split_form(sent_messages(&entries));
    let completion = last.completion.clone();
    Ok(TurnReply { messages, form, completion, poll_id: last.next_poll.clone(), rate: None })
}

/// What the write of `written` owes, as its turn made it: the idle closure
/// it sent first, its messages for the POST_URL, the event webhooks of its
/// log entries (up to the conversation's next seq as written), then what it
/// kept. Receivers drop by webhook-id what they had already.
pub async fn owed_jobs(
    store: &dyn Conversations,
    bot: &Bot,
    key: &ConversationKey,
    written: &Conversation,
) -> Result<Vec<QueueMessage>> {
    let Some(last) = &written.last_turn else {
        return Ok(Vec::new());
    };
    // The entries the write held are the turn's, as written (DynamoDB's
    // stream image carries them): no read.
    let entries = match written.held_log.first() {
        Some(first) if first.seq <= last.first_seq => {
            written.held_log.iter().filter(|e| e.seq >= last.first_seq).cloned().collect()
        }
        _ => {
            let count = written.next_seq.saturating_sub(last.first_seq) as usize;
            store.read_log(key, last.first_seq.checked_sub(1), count).await?
        }
    };
    let mut jobs = last.closed.clone();
    if let Some(instance) = last.post_url.as_deref().and_then(|id| bot.instance_by_id(id)) {
        let own: Vec<LogEntry> = entries.iter().filter(|e| e.trace_id == last.trace_id).cloned().collect();
        let end = TurnEnd { completion: last.completion.as_ref(), waiting: last.waiting, trace_id: &last.trace_id };
        jobs.extend(jobs::post_url(bot, instance, key, &sent_messages(&own), end));
    }
    let turn =
        EventTurn { client_ip: last.client_ip.as_deref(), instance: last.instance_id.as_deref(), tasks: &last.tasks };
    jobs.extend(jobs::events(bot, key, &entries, &turn));
    if last.jobs_apart {
        jobs.extend(store.read_outbox(key, written.version).await?);
    } else {
        jobs.extend(last.jobs.iter().cloned());
    }
    Ok(jobs)
}

/// The messages the bot sent among `entries`.
fn sent_messages(entries: &[LogEntry]) -> Vec<V2Data> {
    entries
        .iter()
        .filter(|e| e.direction == Direction::Out)
        .filter_map(|e| serde_json::from_value(e.body.clone()).ok())
        .collect()
}

/// A form travels in the answer's `form`, as the spec shows it.
pub(super) fn split_form(sent: Vec<V2Data>) -> (Vec<V2Data>, Option<Value>) {
    let mut form = None;
    let mut messages = Vec::new();
    for message in sent {
        if message.kind == "form" {
            form = Some(message.val);
        } else {
            messages.push(message);
        }
    }
    (messages, form)
}
