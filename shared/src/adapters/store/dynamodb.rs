//! DynamoDB store: one table, `pk`/`sk` keys, TTL on `expiresAt`.
//!
//! | item         | pk                       | sk               |
//! |--------------|--------------------------|------------------|
//! | conversation | `BOT#{bot}#USER#{user}`  | `SESSION`        |
//! | log entries  | `BOT#{bot}#USER#{user}`  | `MSG#{seq:012}`  |
//! | poll record  | `POLL#{pollId}`          | `POLL`           |
//! | used token   | `JTI#{bot}#{app}#{jti}`  | `JTI`            |
//! | counter      | `BOT#{bot}#USER#{user}`  | `COUNTER#{name}` |
//! | message key  | `IDEM#{digest}`          | `IDEM`           |
//! | kept jobs    | `BOT#{bot}#USER#{user}`  | `OUTBOX#{version:012}` |
//!
//! An app whose users are its own (`trust: anonymous`) keys its users'
//! conversations `BOT#{bot}#APP#{app}#USER#{user}`.
//!
//! A conversation whose idle session an asynchronous instance must be told
//! of carries `idleShard` (`IDLE#{0..16}`, by its pk) and `idleDue` (Unix
//! seconds): the keys of the sparse `idle` index the sweep queries.
//!
//! A conversation written by a turn that owes deliveries carries `owes`, its
//! version in that write: the table's stream hands such writes to the relay
//! (`app::relay`; the worker function's event source filters on it). Jobs
//! too large for the conversation are an `OUTBOX` item of the same write, by
//! that write's version.
//!
//! and the items of [`files`].
//!
//! The conversation's JSON is kept deflated (`state`), with its latest log
//! entries; the others are in log items, deflated (`log`), each keyed by its
//! first seq ([`log`]). DynamoDB bills writes by the kilobyte. Items in the
//! older forms still read, and are written in [`ItemFormat::Turns`] and
//! [`ItemFormat::Legacy`].
//!
//! A turn is one consistent GetItem and one PutItem conditioned on the
//! conversation's version, so concurrent writers never lose or duplicate a
//! message; the entries it moves out of the conversation's item are put
//! first. A turn that writes more (poll records, a message's key, kept jobs,
//! entries too large to hold, another conversation) writes it all in one
//! TransactWriteItems.

mod files;
mod log;
mod stream;

pub use stream::owed_in_image;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableDescription, TimeToLiveSpecification, TransactWriteItem,
};
use serde_json::Value;

use crate::app::idempotency::{IdempotencyKeys, KeyRecord};
use crate::app::queue::QueueMessage;
use crate::app::records::{Conversation, LogEntry, PollRecord};
use crate::app::relay::Changes;
use crate::app::store::{Conversations, Counters, Polls, SeenTokens, TurnWrite};
use crate::error::{Error, Result};
use crate::ids::ConversationKey;

const SESSION_SK: &str = "SESSION";
const POLL_SK: &str = "POLL";
const JTI_SK: &str = "JTI";
const KEY_SK: &str = "IDEM";
const CONVERSATION_GRACE_SECS: i64 = 86_400;
/// The sparse index of idle closures, and its partitions: spread so that
/// asynchronous turns never make one of them hot.
/// The conversation attribute marking a write that owes deliveries.
pub const OWES: &str = "owes";
const IDLE_INDEX: &str = "idle";
const IDLE_SHARDS: u32 = 16;
type Item = HashMap<String, AttributeValue>;

pub struct DynamoStore {
    client: Client,
    table: String,
    /// Opens the table's stream, by its ARN, for a process that relays on
    /// its own. A function behind a pointer: the deployed functions, which
    /// never read the stream, do not link its client.
    streams: Option<OpenStream>,
    format: ItemFormat,
}

/// How conversations and log entries are written: the newest form, or one
/// that older versions read, for their functions still running while a
/// deployment is upgraded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ItemFormat {
    /// Deflated, the latest log entries held in the conversation's item.
    #[default]
    Compact,
    /// Deflated, a turn's entries in an item of their own (what versions
    /// from commit 4af281a read).
    Turns,
    /// The conversation's JSON as text, each entry an item of its own (what
    /// versions before it read).
    Legacy,
}

type OpenStream = Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Box<dyn Changes>>> + Send>> + Send + Sync>;

fn storage<E: std::error::Error + 'static>(operation: &str, e: E) -> Error {
    Error::Storage(format!("DynamoDB {operation}: {}", DisplayErrorContext(e)))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn outbox_sk(version: u64) -> String {
    format!("OUTBOX#{version:012}")
}

fn poll_pk(poll_id: &str) -> String {
    format!("POLL#{poll_id}")
}

/// The record as an item; `reads` and `readAt` live in attributes of their
/// own so a read can be counted with a conditional update.
fn poll_item(record: &PollRecord) -> Result<Item> {
    let body = serde_json::to_string(record).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(HashMap::from([
        ("pk".to_string(), s(poll_pk(&record.poll_id))),
        ("sk".to_string(), s(POLL_SK)),
        ("reads".to_string(), n(record.reads)),
        ("expiresAt".to_string(), n(record.expires_at)),
        ("poll".to_string(), s(body)),
    ]))
}

fn key_item(record: &KeyRecord) -> Result<Item> {
    let body = serde_json::to_string(record).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(HashMap::from([
        ("pk".to_string(), s(format!("IDEM#{}", record.id))),
        ("sk".to_string(), s(KEY_SK)),
        ("startedAt".to_string(), n(record.started_at)),
        ("done".to_string(), AttributeValue::Bool(record.answer.is_some())),
        ("expiresAt".to_string(), n(record.expires_at)),
        ("key".to_string(), s(body)),
    ]))
}

/// The conversation's attribute: its JSON, with the log entries it holds
/// (`log`), deflated. DynamoDB bills a write by the kilobyte, and the JSON
/// shrinks to a half or a third.
pub const STATE: &str = "state";
/// The attribute older writes kept the conversation in, as JSON text.
pub const CONVERSATION_JSON: &str = "conversation";

/// A `state` attribute's JSON: the conversation's, and the entries held.
#[derive(serde::Serialize)]
struct State<'a> {
    #[serde(flatten)]
    conversation: &'a Conversation,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    log: &'a [&'a LogEntry],
}

fn deflate(conversation: &Conversation, held: &[&LogEntry]) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(&State { conversation, log: held }).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(miniz_oxide::deflate::compress_to_vec(&json, 6))
}

fn inflate_json(state: &[u8]) -> Result<Vec<u8>> {
    // A conversation's JSON and the entries it holds are capped well below this.
    miniz_oxide::inflate::decompress_to_vec_with_limit(state, 4 << 20)
        .map_err(|e| Error::Storage(format!("unreadable {STATE}: {e}")))
}

/// The conversation in a `state` attribute's bytes, with the entries held.
pub fn inflate(state: &[u8]) -> Result<Conversation> {
    let json = inflate_json(state)?;
    let conversation: Conversation =
        serde_json::from_slice(&json).map_err(|e| Error::Storage(format!("unreadable {STATE}: {e}")))?;
    Ok(Conversation { held_log: log::held_in(&json)?, ..conversation })
}

/// A conversation item's conversation, from either form.
fn conversation_attr(item: &Item) -> Result<Conversation> {
    match item.get(STATE).and_then(|v| v.as_b().ok()) {
        Some(state) => inflate(state.as_ref()),
        None => json_attr(item, CONVERSATION_JSON),
    }
}

fn json_attr<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T> {
    let text = item
        .get(name)
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| Error::Storage(format!("item has no {name} attribute")))?;
    serde_json::from_str(text).map_err(|e| Error::Storage(format!("unreadable {name}: {e}")))
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), streams: None, format: ItemFormat::Compact }
    }

    pub fn writing(self, format: ItemFormat) -> Self {
        Self { format, ..self }
    }

    /// A store whose changes (`Conversations::changes`) are read from the
    /// table's stream with `streams`: for processes that relay on their own.
    /// On AWS the worker function's event source reads it instead.
    pub fn reading_stream(self, streams: aws_sdk_dynamodbstreams::Client) -> Self {
        let open: OpenStream = Box::new(move |arn| {
            let streams = streams.clone();
            Box::pin(async move { Ok(Box::new(stream::TableStream::open(streams, arn).await?) as Box<dyn Changes>) })
        });
        Self { streams: Some(open), ..self }
    }

    /// Creates the table (on-demand, TTL on expiresAt) if it does not exist;
    /// an existing table made before the idle index gets it.
    pub async fn create_table(&self) -> Result<()> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attribute("idleShard", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("idleDue", ScalarAttributeType::N)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(IDLE_INDEX)
                    .set_key_schema(Some(idle_key_schema()?))
                    .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                    .build()
                    .map_err(|e| storage("CreateTable", e))?,
            )
            .stream_specification(stream_specification()?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => {
                self.add_stream().await?;
                return self.add_idle_index().await;
            }
            Err(e) => return Err(storage("CreateTable", e)),
        }
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("expiresAt")
            .build()
            .map_err(|e| storage("UpdateTimeToLive", e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| storage("UpdateTimeToLive", e))?;
        Ok(())
    }

    async fn describe(&self) -> Result<TableDescription> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| storage("DescribeTable", e))?;
        described.table.ok_or_else(|| Error::Storage(format!("DynamoDB DescribeTable: no table {}", self.table)))
    }

    /// Turns on the stream of a table made without it.
    async fn add_stream(&self) -> Result<()> {
        if self.describe().await?.stream_specification().is_some_and(|s| s.stream_enabled()) {
            return Ok(());
        }
        self.client
            .update_table()
            .table_name(&self.table)
            .stream_specification(stream_specification()?)
            .send()
            .await
            .map_err(|e| storage("UpdateTable", e))?;
        tracing::info!(table = %self.table, "the table's stream is turned on");
        Ok(())
    }

    /// Adds the idle index to a table made without it (DynamoDB builds it
    /// in the background; the sweep fails until it is active).
    async fn add_idle_index(&self) -> Result<()> {
        let described = self.describe().await?;
        if described.global_secondary_indexes().iter().any(|i| i.index_name() == Some(IDLE_INDEX)) {
            return Ok(());
        }
        let create = CreateGlobalSecondaryIndexAction::builder()
            .index_name(IDLE_INDEX)
            .set_key_schema(Some(idle_key_schema()?))
            .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
            .build()
            .map_err(|e| storage("UpdateTable", e))?;
        let updated = self
            .client
            .update_table()
            .table_name(&self.table)
            .attribute_definitions(attribute("idleShard", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("idleDue", ScalarAttributeType::N)?)
            .global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().create(create).build())
            .send()
            .await;
        match updated {
            Ok(_) => tracing::info!(table = %self.table, "the idle index is being added to the table"),
            // Still taking the stream just turned on: one change at a time.
            Err(e) if e.code() == Some("ResourceInUseException") => tracing::warn!(
                table = %self.table,
                "the table is being updated: create it again (--create-table) once it is active to add the idle index"
            ),
            Err(e) => return Err(storage("UpdateTable", e)),
        }
        Ok(())
    }

    /// A consistent read of one item.
    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| storage("GetItem", e))?;
        Ok(output.item)
    }

    /// Stores `item`, replacing one with the same keys.
    async fn put_item(&self, item: Item) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| storage("PutItem", e))?;
        Ok(())
    }

    /// Stores `item` if `condition` holds (its `:name` values in `values`):
    /// `false` when it does not; `Error::Conflict` when a transaction in
    /// flight holds the item (a turn is run again, as for a lost race).
    async fn put_if(&self, item: Item, condition: &str, values: &[(&str, AttributeValue)]) -> Result<bool> {
        let values = values.iter().map(|(name, value)| (name.to_string(), value.clone())).collect();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values).filter(|v: &HashMap<_, _>| !v.is_empty()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) if e.code() == Some("TransactionConflictException") => Err(Error::Conflict),
            Err(e) => Err(storage("PutItem", e)),
        }
    }

    /// One conversation's write: the log items it moves out of the
    /// conversation's item first, then its puts, each with its condition.
    fn turn_items(&self, key: &ConversationKey, write: &TurnWrite<'_>) -> Result<TurnItems> {
        let pk = partition_key(key);
        let mut conversation = HashMap::from([
            ("pk".to_string(), s(&pk)),
            ("sk".to_string(), s(SESSION_SK)),
            ("version".to_string(), n(write.expected_version + 1)),
            ("nextSeq".to_string(), n(write.conversation.next_seq)),
            // Outlives its log entries, so seq never restarts under them.
            ("expiresAt".to_string(), n(write.expires_at + CONVERSATION_GRACE_SECS)),
        ]);
        if let Some(closure) = &write.conversation.idle_closure {
            conversation.insert("idleShard".to_string(), s(idle_shard(&pk)));
            conversation.insert("idleDue".to_string(), n(closure.due_at));
        }
        if write.owes.is_some() {
            conversation.insert(OWES.to_string(), n(write.expected_version + 1));
        }
        let base = log::item_size(&conversation) + STATE.len();
        let held = &write.conversation.held_log;
        let plan = log::LogPlan::of(self.format, held, write.log, base, |held| deflate(write.conversation, held))?;
        match plan.state {
            Some(state) => conversation.insert(STATE.to_string(), AttributeValue::B(Blob::new(state))),
            None => {
                let json = serde_json::to_string(write.conversation).map_err(|e| Error::Internal(e.to_string()))?;
                conversation.insert(CONVERSATION_JSON.to_string(), s(json))
            }
        };
        // Moved in pages in every form: only functions that read them all
        // ever meet held entries.
        let moved = plan.moved.iter().map(|entries| log::log_item(&pk, entries, write.expires_at, ItemFormat::Compact));
        let mut puts = vec![if write.expected_version == 0 {
            Conditioned::new(conversation, "attribute_not_exists(pk)")
        } else {
            Conditioned::new(conversation, "version = :v").with(":v", n(write.expected_version))
        }];
        let now = n(chrono::Utc::now().timestamp());
        for entries in plan.items {
            let item = log::log_item(&pk, entries, write.expires_at, self.format)?;
            puts.push(Conditioned::new(item, log::NEW_ONLY).with(":now", now.clone()));
        }
        if let Some(jobs) = write.owes.filter(|jobs| !jobs.is_empty()) {
            let body = serde_json::to_string(jobs).map_err(|e| Error::Internal(e.to_string()))?;
            puts.push(Conditioned::always(HashMap::from([
                ("pk".to_string(), s(&pk)),
                ("sk".to_string(), s(outbox_sk(write.expected_version + 1))),
                ("expiresAt".to_string(), n(write.expires_at)),
                ("jobs".to_string(), s(body)),
            ])));
        }
        let records = write.polls.iter().map(poll_item);
        for item in records.chain(write.key.map(key_item)) {
            puts.push(Conditioned::always(item?));
        }
        Ok(TurnItems { moved: moved.collect::<Result<_>>()?, puts })
    }

    /// Puts the log items of entries held before (`log::GROWS_ONLY`): one
    /// that does not grow an item is there already.
    async fn move_held(&self, items: Vec<Item>) -> Result<()> {
        for item in items {
            let last = item.get("lastSeq").cloned().unwrap_or_else(|| n(0));
            let now = n(chrono::Utc::now().timestamp());
            self.put_if(item, log::GROWS_ONLY, &[(":now", now), (":last", last)]).await?;
        }
        Ok(())
    }
}

/// One conversation's write: see [`DynamoStore::turn_items`].
struct TurnItems {
    moved: Vec<Item>,
    puts: Vec<Conditioned>,
}

/// An item to put, and the condition it is put on.
struct Conditioned {
    item: Item,
    condition: Option<&'static str>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl Conditioned {
    fn new(item: Item, condition: &'static str) -> Self {
        Self { item, condition: Some(condition), values: Vec::new() }
    }

    fn always(item: Item) -> Self {
        Self { item, condition: None, values: Vec::new() }
    }

    fn with(mut self, name: &'static str, value: AttributeValue) -> Self {
        self.values.push((name, value));
        self
    }

    fn transact_item(self, table: &str) -> Result<TransactWriteItem> {
        let values = self.values.into_iter().map(|(name, value)| (name.to_string(), value)).collect();
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(self.item))
            .set_condition_expression(self.condition.map(String::from))
            .set_expression_attribute_values(Some(values).filter(|v: &HashMap<_, _>| !v.is_empty()))
            .build()
            .map_err(|e| storage("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// New images: each write of a conversation as written, for the relay.
fn stream_specification() -> Result<StreamSpecification> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewImage)
        .build()
        .map_err(|e| storage("CreateTable", e))
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| storage("CreateTable", e))
}

fn idle_key_schema() -> Result<Vec<KeySchemaElement>> {
    Ok(vec![key("idleShard", KeyType::Hash)?, key("idleDue", KeyType::Range)?])
}

/// A conversation's partition: `BOT#{bot}#USER#{user}`, or
/// `BOT#{bot}#APP#{app}#USER#{user}` for an app whose users are its own.
/// Bot and app ids contain no `#`, so no user id can make one look like another.
fn partition_key(key: &ConversationKey) -> String {
    match &key.app {
        None => format!("BOT#{}#USER#{}", key.bot_id, key.user_id),
        Some(app) => format!("BOT#{}#APP#{app}#USER#{}", key.bot_id, key.user_id),
    }
}

/// The conversation a partition key names (see [`partition_key`]).
fn conversation_key(pk: &str) -> Option<ConversationKey> {
    let (bot, rest) = pk.strip_prefix("BOT#")?.split_once('#')?;
    match rest.strip_prefix("APP#") {
        Some(rest) => {
            let (app, user) = rest.split_once('#')?;
            Some(ConversationKey::new(bot, user.strip_prefix("USER#")?).in_app(Some(app.to_string())))
        }
        None => Some(ConversationKey::new(bot, rest.strip_prefix("USER#")?)),
    }
}

/// The idle index partition of a conversation: FNV-1a of its pk.
fn idle_shard(pk: &str) -> String {
    let hash = pk.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("IDLE#{}", hash % IDLE_SHARDS)
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(|e| storage("CreateTable", e))
}

#[async_trait]
impl Conversations for DynamoStore {
    async fn load(&self, key: &ConversationKey) -> Result<Option<Conversation>> {
        let Some(item) = self.get_item(partition_key(key), SESSION_SK).await? else {
            return Ok(None);
        };
        let number = |name: &str| -> Result<u64> {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| Error::Storage(format!("conversation item has no {name}")))
        };
        let (version, next_seq) = (number("version")?, number("nextSeq")?);
        // TTL deletes late: an expired item is read as empty, but its version
        // and seq counter stay in force until it is gone. The entries it
        // holds expire with the log, before it.
        let (now, expires_at) = (chrono::Utc::now().timestamp().max(0) as u64, number("expiresAt")?);
        let conversation = if expires_at < now {
            Conversation { next_seq, ..Conversation::default() }
        } else {
            let conversation = conversation_attr(&item)?;
            let held_log =
                if expires_at < now + CONVERSATION_GRACE_SECS as u64 { Vec::new() } else { conversation.held_log };
            Conversation { held_log, ..conversation }
        };
        Ok(Some(Conversation { version, ..conversation }))
    }

    async fn save_turns(&self, writes: &[(&ConversationKey, TurnWrite<'_>)]) -> Result<()> {
        let mut puts = Vec::new();
        for (key, write) in writes {
            let items = self.turn_items(key, write)?;
            self.move_held(items.moved).await?;
            puts.extend(items.puts);
        }
        if let [put] = puts.as_slice()
            && let Some(condition) = put.condition
        {
            // The conversation alone: a plain put, billed once.
            let Some(put) = puts.pop() else { return Ok(()) };
            let stored = self.put_if(put.item, condition, &put.values).await?;
            return if stored { Ok(()) } else { Err(Error::Conflict) };
        }
        let items = puts.into_iter().map(|put| put.transact_item(&self.table)).collect::<Result<Vec<_>>>()?;
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                // A failed condition on the conversation (its version) or on a log
                // entry (its seq already taken) both mean another writer got there
                // first; the turn is run again on fresh state, within its deadline.
                TransactWriteItemsError::TransactionCanceledException(cancelled)
                    if cancelled
                        .cancellation_reasons()
                        .iter()
                        .any(|r| matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict"))) =>
                {
                    Err(Error::Conflict)
                }
                other => Err(storage("TransactWriteItems", other)),
            },
            Err(e) => Err(storage("TransactWriteItems", e)),
        }
    }

    async fn read_log(&self, key: &ConversationKey, after_seq: Option<u64>, limit: usize) -> Result<Vec<LogEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let from = after_seq.map_or(0, |s| s + 1);
        self.log_between(key, from, from.saturating_add(limit as u64 - 1).min(log::MAX_SEQ)).await
    }

    async fn changes(&self) -> Result<Option<Box<dyn Changes>>> {
        let Some(open) = &self.streams else {
            return Ok(None);
        };
        let arn = self.describe().await?.latest_stream_arn.ok_or_else(|| {
            Error::Storage(format!("the table {} has no stream (--create-table turns it on)", self.table))
        })?;
        Ok(Some(open(arn).await?))
    }

    async fn read_outbox(&self, key: &ConversationKey, version: u64) -> Result<Vec<QueueMessage>> {
        match self.get_item(partition_key(key), &outbox_sk(version)).await? {
            Some(item) => json_attr(&item, "jobs"),
            None => Err(Error::Storage(format!("no kept jobs of version {version}"))),
        }
    }

    async fn idle_due(&self, now: i64, limit: usize) -> Result<Vec<(ConversationKey, i64)>> {
        // Each shard up to `limit`: closures that stay due (a bot no longer
        // deployed, a delivery failing) never hide the others behind them.
        let per_shard = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
        let mut due = Vec::new();
        for shard in 0..IDLE_SHARDS {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(IDLE_INDEX)
                .key_condition_expression("idleShard = :shard AND idleDue <= :now")
                .expression_attribute_values(":shard", s(format!("IDLE#{shard}")))
                .expression_attribute_values(":now", n(now))
                .limit(per_shard)
                .send()
                .await
                .map_err(|e| storage("Query", e))?;
            for item in page.items() {
                let pk = item.get("pk").and_then(|v| v.as_s().ok());
                let due_at = item.get("idleDue").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
                match (pk.and_then(|pk| conversation_key(pk)), due_at) {
                    (Some(key), Some(due_at)) => due.push((key, due_at)),
                    _ => tracing::warn!(?pk, "an idle index item names no conversation"),
                }
            }
        }
        Ok(due)
    }
}

#[async_trait]
impl SeenTokens for DynamoStore {
    async fn first_use(&self, id: &str, expires_at: i64) -> Result<bool> {
        let item = HashMap::from([
            ("pk".to_string(), s(format!("JTI#{id}"))),
            ("sk".to_string(), s(JTI_SK)),
            ("expiresAt".to_string(), n(expires_at)),
        ]);
        // TTL deletes late: an expired id is as good as none.
        let now = n(chrono::Utc::now().timestamp());
        self.put_if(item, "attribute_not_exists(pk) OR expiresAt < :now", &[(":now", now)]).await
    }
}

#[async_trait]
impl IdempotencyKeys for DynamoStore {
    async fn put_new_key(&self, record: &KeyRecord) -> Result<Option<KeyRecord>> {
        // A record forgotten between the put and the read: put again.
        for _ in 0..3 {
            // TTL deletes late: an expired record is as good as none.
            let now = n(chrono::Utc::now().timestamp());
            let condition = "attribute_not_exists(pk) OR expiresAt < :now";
            if self.put_if(key_item(record)?, condition, &[(":now", now)]).await? {
                return Ok(None);
            }
            if let Some(item) = self.get_item(format!("IDEM#{}", record.id), KEY_SK).await? {
                return json_attr(&item, "key").map(Some);
            }
        }
        Err(Error::KeyInUse)
    }

    async fn take_over_key(&self, record: &KeyRecord, started_at: i64) -> Result<bool> {
        let values = [(":started", n(started_at)), (":running", AttributeValue::Bool(false))];
        self.put_if(key_item(record)?, "startedAt = :started AND done = :running", &values).await
    }

    async fn put_key(&self, record: &KeyRecord) -> Result<()> {
        self.put_item(key_item(record)?).await
    }

    async fn forget_key(&self, record: &KeyRecord) -> Result<()> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("IDEM#{}", record.id)))
            .key("sk", s(KEY_SK))
            .condition_expression("startedAt = :started AND done = :running")
            .expression_attribute_values(":started", n(record.started_at))
            .expression_attribute_values(":running", AttributeValue::Bool(false))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(storage("DeleteItem", e)),
        }
    }
}

#[async_trait]
impl Counters for DynamoStore {
    async fn load_counter(&self, key: &ConversationKey, name: &str) -> Result<(Option<Value>, u64)> {
        let Some(item) = self.get_item(partition_key(key), &counter_sk(name)).await? else {
            return Ok((None, 0));
        };
        let version = item.get("version").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
        let expires = item.get("expiresAt").and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
        // TTL deletes late: an expired counter counts nothing (its version stays).
        if expires.is_some_and(|at| at < chrono::Utc::now().timestamp()) {
            return Ok((None, version));
        }
        Ok((Some(json_attr(&item, "counter")?), version))
    }

    async fn save_counter(
        &self,
        key: &ConversationKey,
        name: &str,
        counter: &Value,
        version: u64,
        expires_at: i64,
    ) -> Result<()> {
        let item = HashMap::from([
            ("pk".to_string(), s(partition_key(key))),
            ("sk".to_string(), s(counter_sk(name))),
            ("version".to_string(), n(version + 1)),
            ("expiresAt".to_string(), n(expires_at)),
            ("counter".to_string(), s(counter.to_string())),
        ]);
        let stored = match version {
            0 => self.put_if(item, "attribute_not_exists(pk)", &[]).await?,
            _ => self.put_if(item, "version = :v", &[(":v", n(version))]).await?,
        };
        if stored { Ok(()) } else { Err(Error::Conflict) }
    }
}

/// A counter's item beside the conversation (never a log entry's `MSG#`).
fn counter_sk(name: &str) -> String {
    format!("COUNTER#{name}")
}

#[async_trait]
impl Polls for DynamoStore {
    async fn put_poll(&self, record: &PollRecord) -> Result<()> {
        self.put_item(poll_item(record)?).await
    }

    async fn get_poll(&self, poll_id: &str) -> Result<Option<PollRecord>> {
        let Some(item) = self.get_item(poll_pk(poll_id), POLL_SK).await? else {
            return Ok(None);
        };
        let record: PollRecord = json_attr(&item, "poll")?;
        if record.expires_at < chrono::Utc::now().timestamp() {
            return Ok(None);
        }
        let reads = item.get("reads").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
        let read_at = item.get("readAt").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
        Ok(Some(PollRecord { reads, read_at, ..record }))
    }

    async fn record_poll_read(&self, poll_id: &str, reads: u32, now: i64) -> Result<bool> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(poll_pk(poll_id)))
            .key("sk", s(POLL_SK))
            .update_expression("SET #reads = :next, readAt = if_not_exists(readAt, :now)")
            .condition_expression("#reads = :reads")
            .expression_attribute_names("#reads", "reads")
            .expression_attribute_values(":reads", n(reads))
            .expression_attribute_values(":next", n(reads + 1))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(storage("UpdateItem", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_name_their_conversation_back() {
        let keys = [
            ConversationKey::new("st-bot", "ada"),
            ConversationKey::new("st-bot", "USER#APP#x#USER#y"),
            ConversationKey::new("st-bot", "APP#a#USER#b").in_app(Some("cs-web".into())),
        ];
        for key in keys {
            assert_eq!(conversation_key(&partition_key(&key)), Some(key.clone()), "{key:?}");
        }
        assert_eq!(conversation_key("POLL#abc"), None);
        let shards: std::collections::HashSet<String> =
            (0..200).map(|i| idle_shard(&format!("BOT#b#USER#{i}"))).collect();
        assert_eq!(shards.len(), IDLE_SHARDS as usize);
    }
}
