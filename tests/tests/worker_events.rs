//! The worker Lambda's handler: an SQS event from the FIFO queue in, the
//! partial batch response out.

use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use hookline_core::process::Settings;
use hookline_core::process::sqs_worker;
use hookline_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_reported_per_message_and_stop_their_group() {
    let receiver = Receiver::start(vec![("/ok", Answer::json(json!({}))), ("/down", Answer::raw(500, "{}"))]).await;
    let mut settings = Settings::default();
    settings.worker.retry_base = Duration::from_millis(100);
    let server = Server::start_on(Backend::Memory, registry(), settings).await;
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        sqs_record("a1", "group-a", delivery_job(TEST_BOT, &receiver, "/down", "a1")),
        sqs_record("b1", "group-b", delivery_job(TEST_BOT, &receiver, "/ok", "b1")),
        sqs_record("a2", "group-a", delivery_job(TEST_BOT, &receiver, "/ok", "a2")),
        sqs_record("c1", "group-c", "not a job".into()),
        sqs_record("b2", "group-b", delivery_job(TEST_BOT, &receiver, "/ok", "b2")),
    ]}))
    .unwrap();
    let response = sqs_worker::handle_event(&server.worker(), event, None).await;
    let mut failed: Vec<String> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    failed.sort();
    // a1 failed, so a2 (after it in its group) was not run; c1 is unreadable.
    assert_eq!(failed, ["a1", "a2", "c1"]);
    let seen: Vec<String> = receiver.received().iter().map(|r| r.body["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen.iter().filter(|id| *id == "a1").count(), 3, "three attempts: {seen:?}");
    assert!(!seen.contains(&"a2".to_string()), "{seen:?}");
    let group_b: Vec<&String> = seen.iter().filter(|id| id.starts_with('b')).collect();
    assert_eq!(group_b, ["b1", "b2"]);
    // The response is what Lambda expects with ReportBatchItemFailures.
    let wire = serde_json::to_value(&response).unwrap();
    assert!(wire["batchItemFailures"].as_array().unwrap().iter().any(|f| f["itemIdentifier"] == "a1"), "{wire}");
}
