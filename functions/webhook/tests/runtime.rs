//! The webhook function's binary under a local Lambda Runtime API, with API
//! Gateway HTTP API events, against the AWS emulator.

use std::path::Path;

use hookline_tests::runtime_api::{Deployment, HELLO_BOT, LambdaRuntime, http_event, response_json};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_api_gateway_events() {
    let deployment = Deployment::on_emulator().await;
    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_webhook")), &deployment.env).await;
    let token = format!("bearer {}", deployment.token("ada"));
    let body =
        json!({"message": {"type": "text", "val": "hello"}, "from": {"id": "ada", "userInfo": {"firstName": "Ada"}}});
    let headers = [("authorization", token.as_str()), ("content-type", "application/json")];
    let path = format!("/chatbot/v2/webhook/{HELLO_BOT}");

    let response = function.invoke_http(http_event("POST", &path, &headers, body.to_string().as_bytes())).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let answer = response_json(&response);
    assert_eq!(answer["data"][0]["val"], "Hello Ada! What can I do for you?", "{answer}");
    assert_eq!(answer["to"], "ada");

    // The same process serves the next event; state went to the table.
    let history = function
        .invoke_http(http_event("GET", &format!("/api/chathistory/{HELLO_BOT}/webhook"), &headers[..1], b""))
        .await;
    assert_eq!(history["statusCode"], 200, "{history}");
    assert_eq!(response_json(&history)["messages"].as_array().map(Vec::len), Some(2), "{history}");

    let unauthenticated = [("authorization", "bearer nope"), ("content-type", "application/json")];
    let response = function.invoke_http(http_event("POST", &path, &unauthenticated, body.to_string().as_bytes())).await;
    assert_eq!(response["statusCode"], 401, "{response}");
    assert_eq!(response_json(&response)["errors"][0]["msg"], "Invalid Access token");
}
