//! The table's stream, read as Lambda's event source reads it, for
//! processes that relay on their own (`hookline serve`, the tests): each
//! shard in order, from the moment it is opened; shards that appear later
//! (DynamoDB splits and rolls them) from their start.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;

use aws_sdk_dynamodbstreams::error::DisplayErrorContext;

use super::{CONVERSATION_JSON, OWES, SESSION_SK, STATE, conversation_key, inflate, storage};
use crate::app::records::Conversation;
use crate::app::relay::{Changes, Owed};
use crate::error::Result;

/// How long to wait when a read finds no new records: doubled while none
/// come, up to the longest.
const IDLE_WAIT: Duration = Duration::from_millis(50);
const LONGEST_IDLE_WAIT: Duration = Duration::from_secs(1);
/// Reads between two looks for new shards.
const READS_PER_DISCOVERY: u32 = 20;

struct Shard {
    id: String,
    /// Where to read next.
    iterator: String,
    /// The last record read: where to start again if the iterator expires
    /// (15 minutes unused, while the relay waits for the queue).
    after: Option<String>,
}

pub struct TableStream {
    client: Client,
    arn: String,
    /// Each open shard being read.
    shards: Vec<Shard>,
    /// Every shard seen, so a closed one is not read again.
    seen: Vec<String>,
    reads: u32,
    idle_wait: Duration,
}

impl TableStream {
    /// The stream `arn` (the table's LatestStreamArn), from its latest records on.
    pub async fn open(client: Client, arn: String) -> Result<Self> {
        let mut stream = Self { client, arn, shards: Vec::new(), seen: Vec::new(), reads: 0, idle_wait: IDLE_WAIT };
        stream.discover(ShardIteratorType::Latest).await?;
        Ok(stream)
    }

    /// Starts reading shards not seen before, at `from`.
    async fn discover(&mut self, from: ShardIteratorType) -> Result<()> {
        let described = self
            .client
            .describe_stream()
            .stream_arn(&self.arn)
            .send()
            .await
            .map_err(|e| storage("DescribeStream", e))?;
        let shards = described.stream_description().map(|d| d.shards().to_vec()).unwrap_or_default();
        for shard in shards {
            let Some(id) = shard.shard_id().map(String::from) else { continue };
            // A closed shard was read to its end once seen; one seen now for
            // the first time but already closed still holds records.
            if self.seen.contains(&id) {
                continue;
            }
            let iterator = self.iterator(&id, from.clone(), None).await?;
            self.seen.push(id.clone());
            if let Some(iterator) = iterator {
                self.shards.push(Shard { id, iterator, after: None });
            }
        }
        Ok(())
    }

    async fn iterator(&self, shard: &str, from: ShardIteratorType, after: Option<&str>) -> Result<Option<String>> {
        let iterator = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard)
            .shard_iterator_type(from)
            .set_sequence_number(after.map(String::from))
            .send()
            .await
            .map_err(|e| storage("GetShardIterator", e))?;
        Ok(iterator.shard_iterator)
    }
}

#[async_trait]
impl Changes for TableStream {
    async fn next(&mut self) -> Result<Option<Vec<Owed>>> {
        self.reads += 1;
        if self.reads.is_multiple_of(READS_PER_DISCOVERY) {
            self.discover(ShardIteratorType::TrimHorizon).await?;
        }
        let mut owed = Vec::new();
        let mut index = 0;
        while index < self.shards.len() {
            let read = match self.client.get_records().shard_iterator(&self.shards[index].iterator).send().await {
                Ok(read) => read,
                // Expired while unused: again after the last record read (or
                // from the shard's start: what was relayed comes again).
                Err(e) if e.as_service_error().is_some_and(|e| e.is_expired_iterator_exception()) => {
                    let shard = &self.shards[index];
                    let (from, after) = match &shard.after {
                        Some(after) => (ShardIteratorType::AfterSequenceNumber, Some(after.as_str())),
                        None => (ShardIteratorType::TrimHorizon, None),
                    };
                    match self.iterator(&shard.id, from, after).await? {
                        Some(iterator) => self.shards[index].iterator = iterator,
                        None => {
                            self.shards.remove(index);
                        }
                    }
                    continue;
                }
                // The shard stays where it was; what was read is handed on.
                Err(e) if owed.is_empty() => return Err(storage("GetRecords", e)),
                Err(e) => {
                    tracing::warn!(error = %DisplayErrorContext(&e), "reading the table's stream failed; trying again");
                    break;
                }
            };
            for record in read.records() {
                let change = record.dynamodb();
                if let Some(sequence) = change.and_then(|c| c.sequence_number()) {
                    self.shards[index].after = Some(sequence.to_string());
                }
                let Some(image) = change.and_then(|change| change.new_image()) else { continue };
                let attribute =
                    |name: &str| image.get(name).and_then(|v| v.as_s().or(v.as_n()).ok()).map(String::as_str);
                let state = image.get(STATE).and_then(|v| v.as_b().ok()).map(|b| b.as_ref());
                owed.extend(owed_in_image(attribute, state));
            }
            match read.next_shard_iterator {
                Some(next) => {
                    self.shards[index].iterator = next;
                    index += 1;
                }
                // Closed and read to its end.
                None => {
                    self.shards.remove(index);
                }
            }
        }
        if owed.is_empty() {
            tokio::time::sleep(self.idle_wait).await;
            self.idle_wait = (self.idle_wait * 2).min(LONGEST_IDLE_WAIT);
        } else {
            self.idle_wait = IDLE_WAIT;
        }
        Ok(Some(owed))
    }
}

/// The write a stream record's new image shows, if it owes deliveries: a
/// conversation item whose `owes` is its version. `attribute` reads the
/// image's string and number attributes, `state` is its [`STATE`] bytes. An
/// unreadable one is logged and passed over: it could never be relayed, and
/// would hold up those after it.
pub fn owed_in_image<'a>(attribute: impl Fn(&str) -> Option<&'a str>, state: Option<&[u8]>) -> Option<Owed> {
    if attribute("sk") != Some(SESSION_SK) || attribute("version")? != attribute(OWES)? {
        return None;
    }
    let pk = attribute("pk").unwrap_or_default();
    let read = || -> Option<Owed> {
        let key = conversation_key(pk)?;
        let version = attribute("version")?.parse().ok()?;
        let conversation: Conversation = match state {
            Some(state) => inflate(state).ok()?,
            None => serde_json::from_str(attribute(CONVERSATION_JSON)?).ok()?,
        };
        Some(Owed { key, conversation: Arc::new(Conversation { version, ..conversation }) })
    };
    let owed = read();
    if owed.is_none() {
        tracing::error!(%pk, "a stream record of a conversation that owes deliveries is unreadable: passed over");
    }
    owed
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::deflate;
    use super::*;
    use crate::engine::Session;

    /// A stream image's conversation reads the same from its deflated
    /// `state` and from the JSON text of writes made before it.
    #[test]
    fn an_owing_image_is_read_in_either_form() {
        let session = Session { id: "se-1".into(), language: "en".into(), ..Session::default() };
        let conversation = Conversation { next_seq: 7, session: Some(session), ..Conversation::default() };
        let json = serde_json::to_string(&conversation).unwrap();
        let image = HashMap::from([
            ("pk", "BOT#st-bot#USER#ann"),
            ("sk", SESSION_SK),
            ("version", "3"),
            (OWES, "3"),
            (CONVERSATION_JSON, json.as_str()),
        ]);
        let attribute = |name: &str| image.get(name).copied();
        let state = deflate(&conversation, &[]).unwrap();
        for state in [Some(state.as_slice()), None] {
            let owed = owed_in_image(attribute, state).expect("owes");
            assert_eq!(owed.key.user_id, "ann");
            assert_eq!(*owed.conversation, Conversation { version: 3, ..conversation.clone() });
        }
        // Written again without owing: nothing to relay.
        let settled = |name: &str| if name == OWES { Some("2") } else { attribute(name) };
        assert!(owed_in_image(settled, None).is_none());
    }
}
