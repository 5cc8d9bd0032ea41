//! The worker on SQS: the worker Lambda's handler (an SQS event in, the
//! partial batch response out, so only the failed messages come back; the
//! table's stream, whose writes that owe deliveries it relays; or the
//! schedule that sweeps idle sessions), and a
//! polling loop for other processes that does what Lambda's event source
//! mapping does (receive, handle, delete what succeeded, back off the rest;
//! the redrive policy dead-letters a message after its last receive).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use futures_util::future::join_all;

use crate::adapters::queue::SqsQueue;
use base64::Engine;

use crate::adapters::store::{STATE, owed_in_image};
use crate::app::relay::Owed;
use crate::app::worker::{Record, Worker};
use crate::error::Result;
use crate::ids::ConversationKey;

/// What the worker function is invoked with: jobs from the queue, the
/// table's changes (writes that owe deliveries, to relay), or the schedule
/// that sweeps idle sessions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WorkerEvent {
    Schedule(ScheduledEvent),
    Changes(StreamEvent),
    Jobs(SqsEvent),
}

/// A DynamoDB stream event: each record's sequence number and new image
/// (the string, number and binary attributes the relay reads).
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records")]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    pub dynamodb: StreamChange,
}

#[derive(Debug, Deserialize)]
pub struct StreamChange {
    #[serde(rename = "SequenceNumber")]
    pub sequence_number: String,
    #[serde(rename = "NewImage", default)]
    pub new_image: HashMap<String, HashMap<String, serde_json::Value>>,
}

/// An EventBridge schedule's event: only its time is read.
#[derive(Debug, Deserialize)]
pub struct ScheduledEvent {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub time: DateTime<Utc>,
}

/// Handles an invocation: the queue's jobs, or (at the schedule's time) the
/// closures of the sessions idle by then.
pub async fn handle_invocation(worker: &Worker, event: WorkerEvent, queue: Option<&SqsQueue>) -> SqsBatchResponse {
    match event {
        WorkerEvent::Jobs(event) => handle_event(worker, event, queue).await,
        WorkerEvent::Changes(event) => relay_changes(worker, event).await,
        WorkerEvent::Schedule(schedule) => {
            match worker.sweep_idle(schedule.time.timestamp()).await {
                Ok(queued) => tracing::info!(queued, "idle sessions swept"),
                // The next sweep finds them: nothing is marked swept before it is queued.
                Err(e) => tracing::error!(error = %e, "sweeping idle sessions failed"),
            }
            SqsBatchResponse::default()
        }
    }
}

/// Relays what each record's write owes, the records of one conversation in
/// order, conversations side by side. On a failure the earliest failed
/// record is reported: Lambda retries the batch from it (a record relayed
/// again is queued under the same deduplication ids and webhook-ids).
pub async fn relay_changes(worker: &Worker, event: StreamEvent) -> SqsBatchResponse {
    let mut conversations: Vec<Vec<(String, Owed)>> = Vec::new();
    let mut index: HashMap<ConversationKey, usize> = HashMap::new();
    for record in event.records {
        let change = record.dynamodb;
        let image = &change.new_image;
        let attribute = |name: &str| {
            let value = image.get(name)?;
            value.get("S").or_else(|| value.get("N")).and_then(serde_json::Value::as_str)
        };
        let state = image.get(STATE).and_then(|v| v.get("B")).and_then(serde_json::Value::as_str);
        let state = state.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        let Some(owed) = owed_in_image(attribute, state.as_deref()) else { continue };
        let at = *index.entry(owed.key.clone()).or_insert_with(|| {
            conversations.push(Vec::new());
            conversations.len() - 1
        });
        conversations[at].push((change.sequence_number, owed));
    }
    let runs = conversations.into_iter().map(|writes| async move {
        for (sequence_number, owed) in writes {
            if let Err(retry) = worker.relay(&owed).await {
                tracing::warn!(reason = %retry.reason, %sequence_number, "what a turn owes could not be queued; retried");
                return Some(sequence_number);
            }
        }
        None
    });
    // Sequence numbers are decimal numbers of up to 40 digits.
    let earliest = join_all(runs).await.into_iter().flatten().min_by_key(|n| (n.len(), n.clone()));
    let mut response = SqsBatchResponse::default();
    if let Some(sequence_number) = earliest {
        let mut item = BatchItemFailure::default();
        item.item_identifier = sequence_number;
        response.batch_item_failures.push(item);
    }
    response
}

/// Handles the event's records; failed ones are reported, and when `queue`
/// is given their visibility is set to the retry's backoff.
pub async fn handle_event(worker: &Worker, event: SqsEvent, queue: Option<&SqsQueue>) -> SqsBatchResponse {
    let records: Vec<Record> = event
        .records
        .iter()
        .map(|r| Record {
            id: r.message_id.clone().unwrap_or_default(),
            group: r.attributes.get("MessageGroupId").cloned(),
            body: r.body.clone().unwrap_or_default(),
            receive_count: r.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
        })
        .collect();
    let failures = worker.handle_batch(records).await;
    let mut response = SqsBatchResponse::default();
    for failure in failures {
        let receipt = event
            .records
            .iter()
            .find(|r| r.message_id.as_deref() == Some(failure.id.as_str()))
            .and_then(|r| r.receipt_handle.as_deref());
        if let (Some(queue), Some(receipt)) = (queue, receipt)
            && let Err(e) = queue.retry_after(receipt, failure.retry_after).await
        {
            tracing::warn!(message_id = %failure.id, error = %e, "could not set the retry's backoff");
        }
        let mut item = BatchItemFailure::default();
        item.item_identifier = failure.id;
        response.batch_item_failures.push(item);
    }
    response
}

/// Serves the queue until the task is dropped. One consumer: this is for
/// local runs and tests, where SQS emulators do not all keep a FIFO group
/// out of reach of a second consumer while one of its messages is in flight.
pub async fn run(worker: Arc<Worker>, queue: Arc<SqsQueue>) {
    loop {
        if let Err(e) = poll_once(&worker, &queue, Duration::from_secs(20)).await {
            tracing::warn!(error = %e, "receiving from the queue failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One receive of one message (waiting up to `wait`), handled; returns how
/// many messages were handled. One at a time, as the worker Lambda's batch
/// size of 1: a message received beside a failing one of its group would be
/// failed with it, and count receives towards the dead-letter queue without
/// ever being run.
pub async fn poll_once(worker: &Worker, queue: &SqsQueue, wait: Duration) -> Result<usize> {
    let messages = queue.receive(1, wait).await?;
    let records = messages
        .iter()
        .map(|m| Record {
            id: m.message_id.clone(),
            group: m.group.clone(),
            body: m.body.clone(),
            receive_count: m.receive_count,
        })
        .collect();
    let failures = worker.handle_batch(records).await;
    for message in &messages {
        let outcome = match failures.iter().find(|f| f.id == message.message_id) {
            Some(failure) => queue.retry_after(&message.receipt_handle, failure.retry_after).await,
            None => queue.delete(&message.receipt_handle).await,
        };
        if let Err(e) = outcome {
            tracing::warn!(message_id = %message.message_id, error = %e, "could not settle a received message");
        }
    }
    Ok(messages.len())
}
