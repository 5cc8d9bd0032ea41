//! The files function's binary under a local Lambda Runtime API, with API
//! Gateway HTTP API events (multipart bodies base64-encoded), against the
//! AWS emulator's DynamoDB and S3.

use std::path::Path;

use hookline_core::adapters::blobs::S3Blobs;
use hookline_core::app::files::Blobs;
use hookline_tests::runtime_api::{Deployment, HELLO_BOT, LambdaRuntime, http_event, response_json};
use hookline_tests::{content, field, file_part, multipart, s3_client, sha256_by_python};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_to_the_bucket() {
    let deployment = Deployment::on_emulator().await;
    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_files")), &deployment.env).await;
    let token = format!("bearer {}", deployment.token("ada"));
    let bytes = content(21, 200_000);
    let (content_type, body) = multipart(&[field("filename", "scan.png"), file_part("scan.png", &bytes)]);
    let headers = [("authorization", token.as_str()), ("content-type", content_type.as_str())];

    let path = format!("/api/attachments/file/{HELLO_BOT}/rtm");
    let response = function.invoke_http(http_event("POST", &path, &headers, &body)).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let stored = response_json(&response);
    assert_eq!(stored["hash"], sha256_by_python(&bytes));
    let blobs = S3Blobs::new(s3_client().await, &deployment.bucket);
    let key = format!("files/{}", stored["fileId"].as_str().unwrap());
    assert!(blobs.get(&key).await.unwrap().unwrap() == bytes, "the bytes are in the bucket");

    // Chunked: a token, one chunk, the commit.
    let json_headers = [("authorization", token.as_str()), ("content-type", "application/json")];
    let base = format!("/api/attachments/{HELLO_BOT}/rtm/token");
    let response = function.invoke_http(http_event("POST", &base, &json_headers, b"{}")).await;
    let file_token = response_json(&response)["fileToken"].as_str().unwrap().to_string();
    let chunk = json!({"chunk": "aGVsbG8=", "chunkNo": "0"}).to_string();
    let response = function
        .invoke_http(http_event("POST", &format!("{base}/{file_token}/chunk"), &json_headers, chunk.as_bytes()))
        .await;
    assert_eq!(response_json(&response)["chunkNo"], "0", "{response}");
    let commit = json!({"filename": "hello.txt", "totalChunks": 1}).to_string();
    let response = function
        .invoke_http(http_event("PUT", &format!("{base}/{file_token}"), &json_headers, commit.as_bytes()))
        .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response_json(&response)["hash"], sha256_by_python(b"hello"));

    let unknown = format!("{base}/{}", "0".repeat(32));
    let response = function.invoke_http(http_event("PUT", &unknown, &json_headers, commit.as_bytes())).await;
    assert_eq!(response["statusCode"], 404, "{response}");
}
