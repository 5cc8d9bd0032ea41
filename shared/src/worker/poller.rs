//! Runs the worker on an SQS queue from any process, the way Lambda's event
//! source mapping does: receive a batch, handle it, delete what succeeded
//! and set a backoff on what failed (the redrive policy dead-letters a
//! message after its last receive).

use std::sync::Arc;
use std::time::Duration;

use super::{Record, Worker};
use crate::queue::SqsQueue;

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
pub async fn poll_once(worker: &Worker, queue: &SqsQueue, wait: Duration) -> crate::error::Result<usize> {
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
