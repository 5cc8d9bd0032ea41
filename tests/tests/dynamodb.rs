//! What the DynamoDB store does on the wire: requests per turn, stored items,
//! TTL, and several processes writing one conversation.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use hookline_core::adapters::store::{DynamoStore, ItemFormat};
use hookline_core::app::records::{Conversation, Direction, LogEntry};
use hookline_core::app::store::{Conversations, Stores, TurnWrite};
use hookline_core::ids::ConversationKey;
use hookline_core::process::Settings;
use hookline_tests::*;

/// Records the operation (X-Amz-Target) of every request the client sends.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context.request().headers().get("x-amz-target").unwrap_or("?");
        let operation = target.rsplit('.').next().unwrap_or(target).to_string();
        self.0.lock().unwrap().push(operation);
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

async fn recorded_store() -> (Arc<DynamoStore>, Recorder, String) {
    let recorder = Recorder::default();
    let client = dynamodb_client().await;
    let config = client.config().to_builder().interceptor(recorder.clone()).build();
    let (store, table) = dynamo_store(aws_sdk_dynamodb::Client::from_conf(config)).await;
    recorder.take();
    (Arc::new(store), recorder, table)
}

/// A plain turn reads the conversation and puts it back, holding its log
/// entries; every few turns the entries held so far move to a log item,
/// put first. The log reads them all, in order.
#[tokio::test]
async fn a_plain_text_turn_is_one_read_and_one_conditioned_put() {
    let (store, recorder, _) = recorded_store().await;
    let server = Server::start_with(Stores::of(store.clone()), Settings::default()).await;
    recorder.take(); // the server's start: finding the table's stream
    let said = ["hello", "balance", "sign up", "Zoe", "not-an-email", "zoe@example.com", "hello", "balance"];
    let mut moves = 0;
    for text in said {
        let reply = server.say("zoe", text).await;
        assert_eq!(reply.status, 200);
        match recorder.take().as_slice() {
            [get, put] if get == "GetItem" && put == "PutItem" => {}
            [get, moved, put] if get == "GetItem" && moved == "PutItem" && put == "PutItem" => moves += 1,
            other => panic!("turn {text:?}: {other:?}"),
        }
    }
    assert!((1..said.len()).contains(&moves), "{moves} turns moved entries");
    let log = store.read_log(&ConversationKey::new(TEST_BOT, "zoe"), None, 100).await.unwrap();
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let texts: Vec<&str> = log.iter().filter_map(|e| e.body["request"]["message"]["val"].as_str()).collect();
    assert_eq!(texts, said);
}

#[tokio::test]
async fn items_are_keyed_by_bot_and_user_and_expire() {
    let client = dynamodb_client().await;
    let (store, table) = dynamo_store(client.clone()).await;
    let server = Server::start_with(Stores::of(Arc::new(store)), Settings::default()).await;
    for _ in 0..4 {
        server.say("yuri", "balance").await;
    }

    let ttl = client.describe_time_to_live().table_name(&table).send().await.unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));

    let items = client
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("BOT#{TEST_BOT}#USER#yuri")))
        .send()
        .await
        .unwrap();
    let sks: Vec<&str> = items.items().iter().map(|i| i["sk"].as_s().unwrap().as_str()).collect();
    // The first turns' entries (each a message and two answers) moved out
    // of the conversation's item together, keyed by the first.
    assert_eq!(sks, ["MSG#000000000000", "SESSION"]);
    // Log entries expire after the retention (30 days); the conversation item
    // a day later, so its seq counter outlives them.
    for item in items.items() {
        let days = if item["sk"].as_s().unwrap() == "SESSION" { 31 } else { 30 };
        let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
        assert!((expires - (now() + days * 86_400)).abs() < 120, "expiresAt {expires}");
    }
    let session = items.items().iter().find(|i| i["sk"].as_s().unwrap() == "SESSION").unwrap();
    assert_eq!(session["version"].as_n().unwrap(), "4");
    assert_eq!(session["nextSeq"].as_n().unwrap(), "12");
}

#[tokio::test]
async fn creating_an_existing_table_is_fine_and_adds_the_idle_index() {
    let client = dynamodb_client().await;
    let (_, table) = dynamo_store(client.clone()).await;
    DynamoStore::new(client.clone(), &table).create_table().await.unwrap();

    // A table made before the idle index (pk and sk only) gets it.
    let table = format!("hookline-test-{}", uuid::Uuid::new_v4().simple());
    let attribute = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .unwrap();
    DynamoStore::new(client.clone(), &table).create_table().await.unwrap();
    let described = client.describe_table().table_name(&table).send().await.unwrap();
    let indexes: Vec<_> =
        described.table().unwrap().global_secondary_indexes().iter().filter_map(|i| i.index_name()).collect();
    assert_eq!(indexes, ["idle"]);
}

/// Several processes (as Lambda instances would be) serve the same user at
/// once: the version condition makes the losers retry, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_writing_one_conversation_lose_nothing() {
    const PROCESSES: usize = 8;
    const MESSAGES: usize = 48;
    let client = dynamodb_client().await;
    let (_, table) = dynamo_store(client.clone()).await;
    let mut servers = Vec::new();
    for _ in 0..PROCESSES {
        let store = Arc::new(DynamoStore::new(client.clone(), &table));
        servers.push(Arc::new(Server::start_with(Stores::of(store), Settings::default()).await));
    }
    let tasks: Vec<_> = (0..MESSAGES)
        .map(|i| {
            let server = servers[i % PROCESSES].clone();
            tokio::spawn(async move { server.say("max", &format!("ping {i}")).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.texts(), [format!("pong ping {i}")]);
    }
    let log =
        servers[0].stores.conversations.read_log(&ConversationKey::new(TEST_BOT, "max"), None, 1000).await.unwrap();
    let expected: Vec<u64> = (0..2 * MESSAGES as u64).collect();
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), expected, "{log:#?}");
    assert_eq!(log.iter().filter(|e| e.direction == Direction::In).count(), MESSAGES);
    for pair in log.chunks(2) {
        assert_eq!((pair[0].direction, pair[1].direction), (Direction::In, Direction::Out));
    }
}

/// Past its expiry (TTL deletes late), a conversation reads as empty, but its
/// version and seq counter still hold.
#[tokio::test]
async fn an_expired_conversation_reads_as_empty() {
    let client = dynamodb_client().await;
    let (store, _) = dynamo_store(client).await;
    let store = Arc::new(store);
    let server = Server::start_with(Stores::of(store.clone()), Settings::default()).await;
    server.say("old", "sign up").await;
    let key = ConversationKey::new(TEST_BOT, "old");
    let mut conversation = store.load(&key).await.unwrap().unwrap();
    assert!(conversation.session.is_some());
    let version = conversation.version;
    conversation.next_seq += 1;
    let log = [hookline_core::app::records::LogEntry {
        seq: 2,
        direction: Direction::In,
        message_id: "ms-x".into(),
        trace_id: "tr-x".into(),
        created_on: String::new(),
        session_id: None,
        body: serde_json::Value::Null,
    }];
    let write = TurnWrite { log: &log, ..TurnWrite::of(&conversation, version, now() - 2 * 86_400) };
    store.save_turn(&key, write).await.unwrap();

    let expired = store.load(&key).await.unwrap().unwrap();
    assert_eq!((expired.version, expired.next_seq, expired.session), (version + 1, 3, None));
    // The task is gone, and the next turn carries on the seq.
    assert_eq!(server.say("old", "Olga").await.texts(), ["I did not understand."]);
    let seqs: Vec<u64> = store.read_log(&key, Some(2), 10).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [3, 4]);
}

/// The conversation is kept deflated; an item written before, its JSON as
/// text, still reads, and the next turn carries on from it.
#[tokio::test]
async fn the_conversation_is_kept_deflated_and_older_items_still_read() {
    let client = dynamodb_client().await;
    let (store, table) = dynamo_store(client.clone()).await;
    let store = Arc::new(store);
    let server = Server::start_with(Stores::of(store.clone()), Settings::default()).await;
    for text in ["hello", "balance", "hello", "balance", "hello", "balance", "sign up"] {
        server.say("cleo", text).await;
    }
    let key = ConversationKey::new(TEST_BOT, "cleo");
    let pk = AttributeValue::S(format!("BOT#{TEST_BOT}#USER#cleo"));
    let item =
        client.get_item().table_name(&table).key("pk", pk.clone()).key("sk", AttributeValue::S("SESSION".into()));
    let item = item.send().await.unwrap().item.unwrap();
    let conversation = store.load(&key).await.unwrap().unwrap();
    let json = serde_json::to_string(&conversation).unwrap();
    let state = item["state"].as_b().unwrap().as_ref().len();
    let inflated = miniz_oxide::inflate::decompress_to_vec(item["state"].as_b().unwrap().as_ref()).unwrap();
    assert!(state < inflated.len(), "{state} bytes deflated, {} as JSON", inflated.len());
    let mut stored: serde_json::Value = serde_json::from_slice(&inflated).unwrap();
    let held = stored.as_object_mut().unwrap().remove("log").unwrap();
    assert!(!conversation.held_log.is_empty());
    assert_eq!(held, serde_json::to_value(&conversation.held_log).unwrap(), "the entries held beside it");
    assert_eq!(stored, serde_json::to_value(&conversation).unwrap());
    assert!(!item.contains_key("conversation"));

    // As an older version wrote it.
    let mut older = item.clone();
    older.remove("state");
    older.insert("conversation".into(), AttributeValue::S(json));
    client.put_item().table_name(&table).set_item(Some(older)).send().await.unwrap();
    let conversation = Conversation { held_log: Vec::new(), ..conversation };
    assert_eq!(store.load(&key).await.unwrap().unwrap(), conversation);
    assert_eq!(server.say("cleo", "Cleo").await.status, 200);
    let carried_on = store.load(&key).await.unwrap().unwrap();
    assert_eq!(carried_on.version, conversation.version + 1);
    assert_eq!(carried_on.session.unwrap().context["name"], "Cleo");
}

/// Turns of `format` on `key`'s conversation, each with `entries` of its
/// own, through the store's port as the turn code writes them.
async fn write_turns(store: &DynamoStore, key: &ConversationKey, turns: usize, entries: u64) {
    for _ in 0..turns {
        let mut conversation = store.load(key).await.unwrap().unwrap_or_default();
        let log: Vec<LogEntry> = (conversation.next_seq..conversation.next_seq + entries).map(entry).collect();
        conversation.next_seq += entries;
        let write = TurnWrite { log: &log, ..TurnWrite::of(&conversation, conversation.version, now() + 3600) };
        store.save_turn(key, write).await.unwrap();
    }
}

/// A log entry of a few hundred bytes that deflate little.
fn entry(seq: u64) -> LogEntry {
    LogEntry {
        seq,
        direction: if seq.is_multiple_of(2) { Direction::In } else { Direction::Out },
        message_id: format!("ms-{}", uuid::Uuid::new_v4()),
        trace_id: format!("tr-{}", uuid::Uuid::new_v4().simple()),
        created_on: "2026-11-30T10:00:00.000Z".into(),
        session_id: Some("se-1".into()),
        body: serde_json::json!({"type": "text", "val": format!("{seq}: {}", uuid::Uuid::new_v4())}),
    }
}

/// The log reads the same from any seq across every form its entries were
/// written in: each an item (legacy), a turn an item, held in the
/// conversation's item and moved out of it.
#[tokio::test]
async fn the_log_reads_from_any_seq_across_its_forms() {
    let client = dynamodb_client().await;
    let (store, table) = dynamo_store(client.clone()).await;
    let key = ConversationKey::new(TEST_BOT, "lou");
    for format in [ItemFormat::Legacy, ItemFormat::Turns, ItemFormat::Compact] {
        write_turns(&DynamoStore::new(client.clone(), &table).writing(format), &key, 4, 2).await;
    }
    let pk = AttributeValue::S(format!("BOT#{TEST_BOT}#USER#lou"));
    let items = client.query().table_name(&table).key_condition_expression("pk = :pk");
    let items = items.expression_attribute_values(":pk", pk).send().await.unwrap();
    let sks: Vec<&str> = items.items().iter().map(|i| i["sk"].as_s().unwrap().as_str()).collect();
    let legacy = (0..8).map(|seq| format!("MSG#{seq:012}"));
    let turns = (8..16).step_by(2).map(|seq| format!("MSG#{seq:012}"));
    assert!(sks.iter().map(|s| s.to_string()).take(12).eq(legacy.chain(turns)), "{sks:?}");
    assert_eq!(sks.last(), Some(&"SESSION"));
    assert!(store.load(&key).await.unwrap().unwrap().held_log.len() >= 2, "the latest held");

    let all = store.read_log(&key, None, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (0..24).collect::<Vec<u64>>());
    for after in [None].into_iter().chain((0..24).map(Some)) {
        for limit in [1, 2, 5, 100] {
            let read = store.read_log(&key, after, limit).await.unwrap();
            let from = after.map_or(0, |a| a as usize + 1);
            let expected: Vec<_> = all.iter().skip(from).take(limit).cloned().collect();
            assert_eq!(read, expected, "after {after:?}, limit {limit}");
        }
    }
}

/// A writer that read the conversation before others moved its entries
/// out never shrinks the log item they moved to, in whatever form it
/// writes: its own move is refused, its turn conflicts, and every entry
/// stays, read from any seq.
#[tokio::test]
async fn a_late_writer_never_shrinks_moved_entries() {
    let client = dynamodb_client().await;
    let (store, table) = dynamo_store(client.clone()).await;
    for (late_format, user) in [(ItemFormat::Turns, "lea"), (ItemFormat::Legacy, "leo")] {
        let key = ConversationKey::new(TEST_BOT, user);
        write_turns(&store, &key, 2, 1).await;
        let late = store.load(&key).await.unwrap().unwrap();
        assert_eq!(late.held_log.len(), 2);
        write_turns(&store, &key, 1, 1).await;
        assert_eq!(store.load(&key).await.unwrap().unwrap().held_log.len(), 3, "all three held");
        // Another writes a turn the older way: the held three move to MSG#0.
        let turns = DynamoStore::new(client.clone(), &table).writing(ItemFormat::Turns);
        write_turns(&turns, &key, 1, 1).await;

        // The late writer (its view: entries 0 and 1 held) moves them, then puts.
        let mut conversation = late.clone();
        let log = [entry(2)];
        conversation.next_seq = 3;
        let write = TurnWrite { log: &log, ..TurnWrite::of(&conversation, late.version, now() + 3600) };
        let refused = DynamoStore::new(client.clone(), &table).writing(late_format).save_turn(&key, write).await;
        assert!(matches!(refused, Err(hookline_core::error::Error::Conflict)), "{refused:?}");
        let pk = AttributeValue::S(format!("BOT#{TEST_BOT}#USER#{user}"));
        let items = client.query().table_name(&table).key_condition_expression("pk = :pk");
        let items = items.expression_attribute_values(":pk", pk).send().await.unwrap();
        let sks: Vec<&str> = items.items().iter().map(|i| i["sk"].as_s().unwrap().as_str()).collect();
        assert_eq!(sks, ["MSG#000000000000", "MSG#000000000003", "SESSION"], "{late_format:?}");
        assert_eq!(items.items()[0]["lastSeq"].as_n().unwrap(), "2", "still all three");
        for after in [None, Some(0), Some(1), Some(2)] {
            let read = store.read_log(&key, after, 10).await.unwrap();
            let from = after.map_or(0, |a| a + 1);
            assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), (from..4).collect::<Vec<_>>());
        }
    }
}

/// Reading from inside a log item looks back past expired items of an
/// earlier conversation (TTL deletes late) to the live one holding it.
#[tokio::test]
async fn the_look_back_passes_expired_items_over() {
    let client = dynamodb_client().await;
    let (store, table) = dynamo_store(client.clone()).await;
    let key = ConversationKey::new(TEST_BOT, "ivo");
    write_turns(&store.writing(ItemFormat::Turns), &key, 1, 3).await;
    let pk = AttributeValue::S(format!("BOT#{TEST_BOT}#USER#ivo"));
    put_expired_log_item(&client, &table, pk, &serde_json::to_vec(&[entry(1), entry(2)]).unwrap()).await;
    let store = DynamoStore::new(client.clone(), &table);
    let whole = store.read_log(&key, None, 10).await.unwrap();
    assert_eq!(whole.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(store.read_log(&key, Some(1), 10).await.unwrap(), whole[2..]);
}

/// A large turn is paged over items; the log reads from inside any of them,
/// and an expired item left behind (TTL deletes late) is not read.
#[tokio::test]
async fn a_large_turn_spans_items_and_expired_items_are_not_read() {
    let client = dynamodb_client().await;
    let (store, table) = dynamo_store(client.clone()).await;
    let key = ConversationKey::new(TEST_BOT, "max");
    let entry = |seq: u64, text: String| LogEntry {
        seq,
        direction: Direction::Out,
        message_id: format!("ms-{seq}"),
        trace_id: "tr-large".into(),
        created_on: String::new(),
        session_id: None,
        body: serde_json::json!({"type": "text", "val": text}),
    };
    // Three entries of 120 KiB: two fit an item's 300 KiB, the third starts another.
    let log: Vec<LogEntry> = (0..3).map(|seq| entry(seq, format!("{seq}").repeat(120 << 10))).collect();
    let conversation = Conversation { next_seq: 3, ..Conversation::default() };
    store.save_turn(&key, TurnWrite { log: &log, ..TurnWrite::of(&conversation, 0, now() + 3600) }).await.unwrap();
    let pk = AttributeValue::S(format!("BOT#{TEST_BOT}#USER#max"));
    let items = client.query().table_name(&table).key_condition_expression("pk = :pk");
    let items = items.expression_attribute_values(":pk", pk.clone()).send().await.unwrap();
    let sks: Vec<&str> = items.items().iter().map(|i| i["sk"].as_s().unwrap().as_str()).collect();
    assert_eq!(sks, ["MSG#000000000000", "MSG#000000000002", "SESSION"]);
    let seqs = |entries: Vec<LogEntry>| entries.iter().map(|e| e.seq).collect::<Vec<u64>>();
    assert_eq!(seqs(store.read_log(&key, Some(0), 10).await.unwrap()), [1, 2]);
    assert_eq!(seqs(store.read_log(&key, Some(0), 1).await.unwrap()), [1]);
    assert_eq!(seqs(store.read_log(&key, Some(1), 10).await.unwrap()), [2]);
    assert_eq!(store.read_log(&key, Some(0), 10).await.unwrap()[0], log[1]);

    // A stale item of an earlier conversation, expired but not yet deleted,
    // between them: never read.
    let stale = [entry(1, "stale".into()), entry(2, "stale".into()), entry(3, "stale".into())];
    put_expired_log_item(&client, &table, pk, &serde_json::to_vec(&stale).unwrap()).await;
    assert_eq!(seqs(store.read_log(&key, None, 10).await.unwrap()), [0, 1, 2]);
    assert_eq!(seqs(store.read_log(&key, Some(1), 10).await.unwrap()), [2]);
    assert!(store.read_log(&key, None, 10).await.unwrap().iter().all(|e| e.trace_id == "tr-large"));
}

/// Deflated as the store deflates a log item.
/// A log item `MSG#000000000001` of an earlier conversation, expired a
/// minute ago but not yet deleted (TTL deletes late), holding `entries`' JSON.
async fn put_expired_log_item(client: &aws_sdk_dynamodb::Client, table: &str, pk: AttributeValue, entries: &[u8]) {
    let item = [
        ("pk", pk),
        ("sk", AttributeValue::S("MSG#000000000001".into())),
        ("seq", AttributeValue::N("1".into())),
        ("expiresAt", AttributeValue::N((now() - 60).to_string())),
        ("log", AttributeValue::B(miniz_oxide::deflate::compress_to_vec(entries, 6).into())),
    ];
    let item = item.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    client.put_item().table_name(table).set_item(Some(item)).send().await.unwrap();
}
