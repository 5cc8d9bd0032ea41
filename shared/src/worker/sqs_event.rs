//! The worker Lambda's handler: an SQS event in, the partial batch response
//! out (ReportBatchItemFailures), so only the failed messages come back.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use super::{Record, Worker};
use crate::queue::SqsQueue;

/// Handles the event's records; failed ones are reported, and when `queue`
/// is given their visibility is set to the retry's backoff.
pub async fn handle(worker: &Worker, event: SqsEvent, queue: Option<&SqsQueue>) -> SqsBatchResponse {
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
