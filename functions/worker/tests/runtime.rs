//! The worker function's binary under a local Lambda Runtime API, with an
//! SQS event as the FIFO queue's event source sends it, against the AWS
//! emulator: deliveries made, and the partial batch response.

use std::path::Path;

use hookline_tests::runtime_api::{Deployment, HELLO_BOT, LambdaRuntime, Outcome};
use hookline_tests::{Answer, Receiver};
use serde_json::{Value, json};

fn delivery(receiver: &Receiver, path: &str, webhook_id: &str) -> String {
    json!({
        "job": "deliver",
        "botId": HELLO_BOT,
        "kind": "webhookNode",
        "webhookId": webhook_id,
        "call": {
            "method": "POST",
            "url": format!("http://{}{path}", receiver.addr),
            "headers": [],
            "body": {"id": webhook_id},
            "timeout": {"secs": 2, "nanos": 0},
            "allow_private": true,
            "max_response_bytes": 1024
        }
    })
    .to_string()
}

fn record(id: &str, group: &str, body: String) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("receipt-{id}"),
        "body": body,
        "attributes": {"MessageGroupId": group, "ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:hookline.fifo",
        "awsRegion": "us-east-1"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_partial_batch_failures() {
    let receiver = Receiver::start(vec![("/ok", Answer::json(json!({}))), ("/down", Answer::raw(500, "{}"))]).await;
    let deployment = Deployment::on_emulator().await;
    let mut env = deployment.env.clone();
    env.push(("HOOKLINE_RETRY_BASE_MS", "100".into()));
    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_worker")), &env).await;
    let event = json!({"Records": [
        record("a1", "group-a", delivery(&receiver, "/down", "a1")),
        record("b1", "group-b", delivery(&receiver, "/ok", "b1")),
        record("a2", "group-a", delivery(&receiver, "/ok", "a2")),
        record("c1", "group-c", "not a job".into()),
    ]});
    let Outcome::Response(response) = function.invoke(event).await else { panic!("the worker failed") };
    let mut failed: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect();
    failed.sort();
    // a1 failed, so a2 (behind it in its group) did not run; c1 is unreadable.
    assert_eq!(failed, ["a1", "a2", "c1"]);
    let seen: Vec<String> = receiver.received().iter().map(|r| r.path_and_query.clone()).collect();
    assert!(seen.contains(&"/ok".to_string()) && seen.iter().filter(|p| *p == "/ok").count() == 1, "{seen:?}");
    assert!(seen.iter().all(|p| p == "/ok" || p == "/down"), "{seen:?}");
}
