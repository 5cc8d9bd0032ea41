//! What the DynamoDB store does on the wire: requests per turn, stored items,
//! TTL, and several processes writing one conversation.

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::api::Settings;
use hookline_core::session::{ConversationKey, Direction};
use hookline_core::store::DynamoStore;
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
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("?");
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
    let config = client
        .config()
        .to_builder()
        .interceptor(recorder.clone())
        .build();
    let (store, table) = dynamo_store(aws_sdk_dynamodb::Client::from_conf(config)).await;
    recorder.take();
    (Arc::new(store), recorder, table)
}

#[tokio::test]
async fn a_plain_text_turn_is_one_read_and_one_transactional_write() {
    let (store, recorder, _) = recorded_store().await;
    let server = Server::start_with(store, Settings::default()).await;
    for text in ["hello", "balance", "sign up", "Zoe", "not-an-email"] {
        let reply = server.say("zoe", text).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            recorder.take(),
            ["GetItem", "TransactWriteItems"],
            "turn {text:?}"
        );
    }
}

#[tokio::test]
async fn items_are_keyed_by_bot_and_user_and_expire() {
    let client = dynamodb_client().await;
    let (store, table) = dynamo_store(client.clone()).await;
    let server = Server::start_with(Arc::new(store), Settings::default()).await;
    server.say("yuri", "balance").await;

    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));

    let items = client
        .query()
        .table_name(&table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            AttributeValue::S(format!("BOT#{TEST_BOT}#USER#yuri")),
        )
        .send()
        .await
        .unwrap();
    let sks: Vec<&str> = items
        .items()
        .iter()
        .map(|i| i["sk"].as_s().unwrap().as_str())
        .collect();
    assert_eq!(
        sks,
        [
            "MSG#000000000000",
            "MSG#000000000001",
            "MSG#000000000002",
            "SESSION"
        ]
    );
    let thirty_days = 30 * 86_400;
    for item in items.items() {
        let expires: i64 = item["expiresAt"].as_n().unwrap().parse().unwrap();
        assert!(
            (expires - (now() + thirty_days)).abs() < 120,
            "expiresAt {expires}"
        );
    }
    let session = items
        .items()
        .iter()
        .find(|i| i["sk"].as_s().unwrap() == "SESSION")
        .unwrap();
    assert_eq!(session["version"].as_n().unwrap(), "1");
    assert_eq!(session["nextSeq"].as_n().unwrap(), "3");
}

#[tokio::test]
async fn creating_an_existing_table_is_fine() {
    let client = dynamodb_client().await;
    let (_, table) = dynamo_store(client.clone()).await;
    DynamoStore::new(client, &table)
        .create_table()
        .await
        .unwrap();
}

/// Two processes (as two Lambda instances would be) serve the same user at
/// once: the version condition makes one retry, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_writing_one_conversation_lose_nothing() {
    let client = dynamodb_client().await;
    let (store, table) = dynamo_store(client.clone()).await;
    let a = Arc::new(Server::start_with(Arc::new(store), Settings::default()).await);
    let b = Arc::new(
        Server::start_with(
            Arc::new(DynamoStore::new(client, &table)),
            Settings::default(),
        )
        .await,
    );
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let server = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { server.say("max", &format!("ping {i}")).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.texts(), [format!("pong ping {i}")]);
    }
    let log = a
        .store
        .read_log(&ConversationKey::new(TEST_BOT, "max"), None, 1000)
        .await
        .unwrap();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..80).collect::<Vec<_>>()
    );
    assert_eq!(
        log.iter().filter(|e| e.direction == Direction::In).count(),
        40
    );
    for pair in log.chunks(2) {
        assert_eq!(
            (pair[0].direction, pair[1].direction),
            (Direction::In, Direction::Out)
        );
    }
}
