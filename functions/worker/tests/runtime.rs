//! The worker function's binary under a local Lambda Runtime API, with an
//! SQS event as the FIFO queue's event source sends it, against the AWS
//! emulator: deliveries made, and the partial batch response.

use std::path::Path;

use hookline_tests::runtime_api::{Deployment, HELLO_BOT, LambdaRuntime, Outcome};
use hookline_tests::{Answer, Receiver, delivery_job, sqs_record};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_partial_batch_failures() {
    let receiver = Receiver::start(vec![("/ok", Answer::json(json!({}))), ("/down", Answer::raw(500, "{}"))]).await;
    let deployment = Deployment::on_emulator().await;
    let mut env = deployment.env.clone();
    env.push(("HOOKLINE_RETRY_BASE_MS", "100".into()));
    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_worker")), &env).await;
    let event = json!({"Records": [
        sqs_record("a1", "group-a", delivery_job(HELLO_BOT, &receiver, "/down", "a1")),
        sqs_record("b1", "group-b", delivery_job(HELLO_BOT, &receiver, "/ok", "b1")),
        sqs_record("a2", "group-a", delivery_job(HELLO_BOT, &receiver, "/ok", "a2")),
        sqs_record("c1", "group-c", "not a job".into()),
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
