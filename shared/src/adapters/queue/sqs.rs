//! SQS FIFO queue: group per conversation, deduplication ids, and a
//! dead-letter queue behind a redrive policy.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry};

use crate::app::queue::{MAX_JOB_BYTES, Queue, QueueMessage};
use crate::error::{Error, Result};

/// SQS takes at most 10 messages and 256 KiB per batch.
const BATCH_ENTRIES: usize = 10;
const BATCH_BYTES: usize = 200 * 1024;
/// Longest visibility timeout SQS accepts.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

pub struct SqsQueue {
    client: Client,
    url: String,
}

/// A received message, as the worker needs it.
#[derive(Debug, Clone)]
pub struct SqsMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub group: Option<String>,
    /// 1 on the first delivery.
    pub receive_count: u32,
    pub body: String,
}

fn failed<E: std::error::Error + 'static>(operation: &str, e: E) -> Error {
    Error::Storage(format!("SQS {operation}: {}", DisplayErrorContext(e)))
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates a FIFO queue `name` and its dead-letter queue `name-dlq`,
    /// which takes a message after `max_receive_count` failed receives (for
    /// local runs and tests; deployments get theirs from the template).
    pub async fn create_fifo(
        client: &Client,
        name: &str,
        visibility: Duration,
        max_receive_count: u32,
    ) -> Result<(Self, Self)> {
        let create = |name: String, attributes: HashMap<QueueAttributeName, String>| {
            let client = client.clone();
            async move {
                let created = client
                    .create_queue()
                    .queue_name(format!("{name}.fifo"))
                    .set_attributes(Some(attributes))
                    .send()
                    .await
                    .map_err(|e| failed("CreateQueue", e))?;
                created.queue_url.ok_or_else(|| Error::Storage("SQS CreateQueue returned no URL".into()))
            }
        };
        let fifo = HashMap::from([(QueueAttributeName::FifoQueue, "true".to_string())]);
        let dlq_url = create(format!("{name}-dlq"), fifo.clone()).await?;
        let dlq_arn = client
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| failed("GetQueueAttributes", e))?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| Error::Storage("SQS GetQueueAttributes returned no QueueArn".into()))?;
        let mut attributes = fifo;
        attributes.insert(QueueAttributeName::VisibilityTimeout, visibility.as_secs().to_string());
        attributes.insert(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}).to_string(),
        );
        let url = create(name.to_string(), attributes).await?;
        Ok((Self::new(client.clone(), url), Self::new(client.clone(), dlq_url)))
    }

    /// Up to `max` messages, waiting up to `wait` for the first (long polling).
    pub async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<SqsMessage>> {
        self.receive_hiding(max, wait, None).await
    }

    /// Up to `max` messages without hiding them from the next receive.
    pub async fn peek(&self, max: i32) -> Result<Vec<SqsMessage>> {
        self.receive_hiding(max, Duration::ZERO, Some(0)).await
    }

    async fn receive_hiding(&self, max: i32, wait: Duration, visibility: Option<i32>) -> Result<Vec<SqsMessage>> {
        let wait = wait.min(Duration::from_secs(20));
        // A long poll answers when its wait ends: the attempt must outlast
        // it. Cut short, SQS hands a message to a request no one reads: it
        // stays hidden until its visibility ends, its receive counted
        // towards the dead-letter queue.
        let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(wait + Duration::from_secs(5))
            .operation_timeout(wait + Duration::from_secs(10))
            .build();
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs() as i32)
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .customize()
            .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(timeouts))
            .send()
            .await
            .map_err(|e| failed("ReceiveMessage", e))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let attribute = |name| m.attributes.as_ref().and_then(|a| a.get(&name)).cloned();
                SqsMessage {
                    message_id: m.message_id.clone().unwrap_or_default(),
                    receipt_handle: m.receipt_handle.clone().unwrap_or_default(),
                    group: attribute(MessageSystemAttributeName::MessageGroupId),
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    body: m.body.unwrap_or_default(),
                }
            })
            .collect())
    }

    pub async fn delete(&self, receipt_handle: &str) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| failed("DeleteMessage", e))?;
        Ok(())
    }

    /// Makes a received message visible again after `after`: the retry's backoff.
    pub async fn retry_after(&self, receipt_handle: &str, after: Duration) -> Result<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(after.min(MAX_VISIBILITY).as_secs() as i32)
            .send()
            .await
            .map_err(|e| failed("ChangeMessageVisibility", e))?;
        Ok(())
    }

    /// About how many messages the queue holds (SQS counts approximately).
    pub async fn approximate_count(&self) -> Result<usize> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| failed("GetQueueAttributes", e))?;
        let count = attributes.attributes().and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages));
        Ok(count.and_then(|n| n.parse().ok()).unwrap_or(0))
    }

    /// Moves up to `limit` messages from this (dead-letter) queue back to
    /// `target`, keeping each one's group and so its order, telling
    /// `progress` the count after each. Returns how many moved.
    pub async fn move_messages(
        &self,
        target: &SqsQueue,
        limit: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<usize> {
        let mut moved = 0;
        while moved < limit {
            let batch = self.receive(i32::try_from(limit - moved).unwrap_or(10), Duration::ZERO).await?;
            if batch.is_empty() {
                break;
            }
            for message in batch {
                let group = message.group.clone().unwrap_or_else(|| "replayed".into());
                // A fresh deduplication id: the original may still be remembered.
                let dedup = format!("replay-{}", crate::ids::random_uuid().simple());
                self.client
                    .send_message()
                    .queue_url(&target.url)
                    .message_group_id(group)
                    .message_deduplication_id(dedup)
                    .message_body(&message.body)
                    .send()
                    .await
                    .map_err(|e| failed("SendMessage", e))?;
                self.delete(&message.receipt_handle).await?;
                moved += 1;
                progress(moved);
            }
        }
        Ok(moved)
    }
}

#[async_trait]
impl Queue for SqsQueue {
    /// Batches hold at most one message of a group, and are sent one after
    /// the other: a batch entry that fails can then never be overtaken by a
    /// later message of its group. (Sending again is safe: deduplication ids
    /// drop what already went through.)
    async fn send(&self, messages: &[QueueMessage]) -> Result<()> {
        let mut pending: Vec<(&QueueMessage, String)> = Vec::new();
        for message in messages {
            let body = serde_json::to_string(&message.job).map_err(|e| Error::Internal(e.to_string()))?;
            let body = sqs_safe(body);
            if body.len() > MAX_JOB_BYTES {
                // It can never be sent; the rest still can.
                tracing::error!(bytes = body.len(), dedup_id = %message.dedup_id, "job too large for the queue: not sent");
                continue;
            }
            pending.push((message, body));
        }
        while !pending.is_empty() {
            let mut groups = HashSet::new();
            let mut bytes = 0;
            let mut batch = Vec::new();
            let mut later = Vec::new();
            for (message, body) in pending {
                let fits = batch.is_empty() || (batch.len() < BATCH_ENTRIES && bytes + body.len() <= BATCH_BYTES);
                if fits && groups.insert(message.group.as_str()) {
                    bytes += body.len();
                    let entry = SendMessageBatchRequestEntry::builder()
                        .id(batch.len().to_string())
                        .message_group_id(&message.group)
                        .message_deduplication_id(&message.dedup_id)
                        .message_body(body)
                        .build()
                        .map_err(|e| failed("SendMessageBatch", e))?;
                    batch.push(entry);
                } else {
                    // Keeps its place among the messages of its group.
                    groups.insert(message.group.as_str());
                    later.push((message, body));
                }
            }
            self.send_batch(batch).await?;
            pending = later;
        }
        Ok(())
    }
}

/// SQS refuses bodies holding U+FFFE or U+FFFF (outside the XML character
/// range), which a user's text may hold; in JSON (only ever inside strings)
/// they are written as escapes instead, which read back the same.
fn sqs_safe(json: String) -> String {
    if !json.contains(['\u{fffe}', '\u{ffff}']) {
        return json;
    }
    json.replace('\u{fffe}', "\\ufffe").replace('\u{ffff}', "\\uffff")
}

impl SqsQueue {
    /// A batch with any failed entry is an error.
    async fn send_batch(&self, entries: Vec<SendMessageBatchRequestEntry>) -> Result<()> {
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| failed("SendMessageBatch", e))?;
        match output.failed.first() {
            Some(entry) => Err(Error::Storage(format!(
                "SQS SendMessageBatch: entry {} failed: {} {}",
                entry.id,
                entry.code,
                entry.message.as_deref().unwrap_or_default()
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_sqs_refuses_are_escaped_and_read_back_the_same() {
        let text = "a\u{fffe}b\u{ffff}c";
        let body = sqs_safe(serde_json::to_string(&serde_json::json!({"val": text})).unwrap());
        assert!(!body.contains(['\u{fffe}', '\u{ffff}']), "{body}");
        let read: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(read["val"], text);
    }
}
