//! Answers read back from the log: a poll's answer, and the answer of a turn
//! already saved (a queued turn delivered twice, a continuation run twice),
//! with the deliveries it owes.

use serde_json::Value;

use super::TurnReply;
use super::finish::MAX_OUTPUTS_PER_TURN;
use crate::app::jobs::{self, EventTurn, TurnEnd};
use crate::app::records::{Direction, LastTurn, LogEntry, PollAnswer};
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
    Ok(TurnReply { messages, form, completion, poll_id: answer.poll_id.clone(), jobs: Vec::new(), rate: None })
}

/// The answer of a turn already saved, rebuilt from the log, with the
/// deliveries it owes (which receivers drop by webhook-id if they had them).
pub(super) async fn saved_answer(
    store: &dyn Conversations,
    bot: &Bot,
    key: &ConversationKey,
    last: &LastTurn,
    post_url: Option<&str>,
    client_ip: Option<&str>,
) -> Result<TurnReply> {
    let entries = store.read_log(key, last.first_seq.checked_sub(1), MAX_OUTPUTS_PER_TURN + 1).await?;
    let entries: Vec<LogEntry> = entries.into_iter().filter(|e| e.trace_id == last.trace_id).collect();
    let sent = sent_messages(&entries);
    let mut jobs = Vec::new();
    if let Some(instance) = post_url.and_then(|id| bot.instance_by_id(id)) {
        let end = TurnEnd { completion: last.completion.as_ref(), waiting: last.waiting, trace_id: &last.trace_id };
        jobs = jobs::post_url(bot, instance, key, &sent, end);
    }
    let turn = EventTurn { client_ip, instance: last.instance_id.as_deref(), tasks: &last.tasks };
    jobs.extend(jobs::events(bot, key, &entries, &turn));
    jobs.extend(last.jobs.iter().cloned());
    let (messages, form) = split_form(sent);
    let completion = last.completion.clone();
    Ok(TurnReply { messages, form, completion, poll_id: last.next_poll.clone(), jobs, rate: None })
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
