//! The ingress and files Lambdas' routers driven by API Gateway HTTP API (payload 2.0)
//! events, parsed by lambda_http exactly as the Lambda runtime would.

use std::sync::Arc;

use hookline_core::adapters::queue::MemoryQueue;
use hookline_core::api;
use hookline_core::app::files::Blobs;
use hookline_core::process::{Embedded, Settings};
use hookline_tests::{hs256_token, registry};
use http::StatusCode;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The routers' state over memory, with nothing running the queue.
fn wiring() -> (Embedded, std::path::PathBuf) {
    hookline_tests::in_memory(registry(), Arc::new(MemoryQueue::new(1)), Settings::default())
}

async fn invoke(fixture: &str) -> (StatusCode, http::HeaderMap, Value) {
    let event = fixture.replace("__TOKEN__", &hs256_token("lambda-user"));
    let request = lambda_http::request::from_str(&event).expect("API Gateway event");
    let (wiring, root) = wiring();
    let response = api::webhook_router(wiring.webhook).oneshot(request).await.expect("infallible");
    std::fs::remove_dir_all(root).ok();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn v2_message_event() {
    let (status, headers, body) = invoke(include_str!("../fixtures/apigw/v2-message.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["to"], "lambda-user");
    assert_eq!(body["data"][0]["val"], "You have $45,000 in your Salary account.");
    assert_eq!(body["completedTaskName"], "show balance");
    assert!(headers.contains_key("x-trace-id"));
}

#[tokio::test]
async fn v1_instance_event_with_base64_body() {
    let (status, _, body) = invoke(include_str!("../fixtures/apigw/v1-instance-base64.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"text": "Your name?", "endOfTask": false}));
}

#[tokio::test]
async fn botmeta_event() {
    let (status, _, body) = invoke(include_str!("../fixtures/apigw/botmeta.json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Test Bot");
}

#[tokio::test]
async fn preflight_event() {
    let (status, headers, _) = invoke(include_str!("../fixtures/apigw/preflight.json")).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(headers["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn unauthenticated_event_gets_the_envelope() {
    let fixture = include_str!("../fixtures/apigw/v2-message.json").replace("bearer __TOKEN__", "bearer nope");
    let event = lambda_http::request::from_str(&fixture).unwrap();
    let (wiring, root) = wiring();
    let response = api::webhook_router(wiring.webhook).oneshot(event).await.unwrap();
    std::fs::remove_dir_all(root).ok();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["errors"][0]["msg"], "Invalid Access token");
}

/// The files router behind API Gateway: a multipart upload arrives as a
/// base64-encoded body, as API Gateway hands binary bodies to Lambda.
#[tokio::test]
async fn multipart_upload_event() {
    use base64::Engine;
    let bytes = hookline_tests::content(11, 100_000);
    let (content_type, body) = hookline_tests::multipart(&[
        hookline_tests::field("filename", "photo.jpg"),
        hookline_tests::file_part("photo.jpg", &bytes),
    ]);
    let mut event: Value = serde_json::from_str(include_str!("../fixtures/apigw/v1-instance-base64.json")).unwrap();
    let path = "/api/attachments/file/st-test-bot/rtm";
    event["routeKey"] = json!("POST /api/attachments/file/{streamId}/{channelType}");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"] = json!({"streamId": "st-test-bot", "channelType": "rtm"});
    event["headers"]["content-type"] = json!(content_type);
    event["headers"]["content-length"] = json!(body.len().to_string());
    event["headers"]["authorization"] = json!(format!("bearer {}", hs256_token("lambda-user")));
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&body));
    let request = lambda_http::request::from_str(&event.to_string()).expect("API Gateway event");

    let (wiring, root) = wiring();
    let response = api::files_router(wiring.files).oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(reply["hash"], hookline_tests::sha256_by_python(&bytes));
    let blobs = hookline_core::adapters::blobs::LocalBlobs::new(&root);
    let stored = blobs.get(&format!("files/{}", reply["fileId"].as_str().unwrap())).await.unwrap().unwrap();
    assert!(stored == bytes, "the decoded bytes are stored");
    std::fs::remove_dir_all(root).unwrap();
}
