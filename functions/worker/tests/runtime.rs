//! The worker function's binary under a local Lambda Runtime API, with an
//! SQS event as the FIFO queue's event source sends it, against the AWS
//! emulator: deliveries made, and the partial batch response; with the
//! table's stream event, what saved turns owe queued (the outbox's relay);
//! and with the schedule's event, the sweep of idle sessions.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use hookline_core::adapters::store::DynamoStore;
use hookline_core::app::queue::{Job, QueueMessage};
use hookline_core::app::records::{Conversation, IdleClosure};
use hookline_core::app::store::{Conversations, TurnWrite};
use hookline_core::engine::Session;
use hookline_core::ids::ConversationKey;
use hookline_tests::runtime_api::{Deployment, HELLO_BOT, LambdaRuntime, Outcome};
use hookline_tests::{Answer, Receiver, delivery_job, dynamodb_client, now, sqs_record, stream_event};
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

    // What the invocation did, as Embedded Metric Format: a call for each
    // request the receiver saw, a1 and c1 failed their attempt (a2 was not
    // tried), b1 was delivered.
    let metrics = function.embedded_metrics(1).await;
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    // A count that is 0 (CallFailures: the receiver answered each) is left out.
    let counts: Vec<&serde_json::Value> = ["Function", "ColdStart", "Calls", "CallFailures", "Deliveries", "Retries"]
        .iter()
        .map(|n| &metrics[0][n])
        .collect();
    assert_eq!(
        counts,
        [&json!("worker"), &json!(1), &json!(seen.len()), &json!(null), &json!(1), &json!(2)],
        "{metrics:?}"
    );
}

/// The schedule's event sweeps idle sessions: each due closure is queued in
/// its conversation's group, and the queued job closes the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_queues_the_closure_of_idle_sessions() {
    let deployment = Deployment::on_emulator().await;
    let store = DynamoStore::new(dynamodb_client().await, &deployment.table);
    let key = ConversationKey::new(HELLO_BOT, "zoe");
    let due_at = now() - 30;
    let idle = Conversation {
        session: Some(Session { id: "se-idle".into(), last_active_at: (now() - 16 * 60) * 1000, ..Session::default() }),
        idle_closure: Some(IdleClosure { due_at, instance_id: "default".into() }),
        ..Conversation::default()
    };
    let write = TurnWrite::of(&idle, 0, now() + 3600);
    store.save_turn(&key, write).await.unwrap();

    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_worker")), &deployment.env).await;
    let schedule = json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": Utc::now().to_rfc3339(),
        "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/hookline-sweep"], "detail": {}
    });
    let Outcome::Response(_) = function.invoke(schedule).await else { panic!("the sweep failed") };
    let queued = deployment.queue.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    let job: Job = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(job, Job::CloseIdle { bot_id: HELLO_BOT.into(), user_id: "zoe".into(), app: None, due_at });

    let group = queued[0].group.clone().unwrap();
    let event = json!({"Records": [sqs_record("close-1", &group, queued[0].body.clone())]});
    let Outcome::Response(response) = function.invoke(event).await else { panic!("the worker failed") };
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let closed = store.load(&key).await.unwrap().unwrap();
    assert_eq!((closed.session, closed.idle_closure), (None, None));
    assert_eq!(closed.last_turn.map(|t| t.trace_id), Some(IdleClosure::trace_id(&key, due_at)));
}

/// The table's stream event: a write that owes has what it kept queued in
/// its conversation's group; a write that does not, and other items, relay nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_event_queues_what_saved_turns_owe() {
    let receiver = Receiver::start(vec![("/lead", Answer::json(json!({})))]).await;
    let deployment = Deployment::on_emulator().await;
    let store = DynamoStore::new(dynamodb_client().await, &deployment.table);
    let key = ConversationKey::new(HELLO_BOT, "lea");
    let job: Job = serde_json::from_str(&delivery_job(HELLO_BOT, &receiver, "/lead", "lead-1")).unwrap();
    let kept = QueueMessage::in_conversation(&key, "lead-1", job.clone());
    let last = json!({"traceId": "tr-lead", "firstSeq": 0, "jobs": [kept]});
    let owing = Conversation { last_turn: Some(serde_json::from_value(last).unwrap()), ..Conversation::default() };
    let write = |conversation, expected_version, owes| TurnWrite {
        owes,
        ..TurnWrite::of(conversation, expected_version, now() + 3600)
    };
    store.save_turn(&key, write(&owing, 0, Some(&[]))).await.unwrap();
    // Written again without owing: relayed nothing more.
    store.save_turn(&key, write(&owing, 1, None)).await.unwrap();

    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_worker")), &deployment.env).await;
    let event = stream_event(&deployment.table).await;
    assert_eq!(event["Records"].as_array().unwrap().len(), 2, "{event}");
    let Outcome::Response(response) = function.invoke(event).await else { panic!("the relay failed") };
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    let queued = deployment.queue.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(serde_json::from_str::<Job>(&queued[0].body).unwrap(), job);
    assert_eq!(queued[0].group.as_deref(), Some(kept.group.as_str()));
}
