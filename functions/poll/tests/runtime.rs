//! The poll function's binary under a local Lambda Runtime API, with API
//! Gateway HTTP API events, against the AWS emulator.

use std::path::Path;

use hookline_tests::runtime_api::{Deployment, HELLO_BOT, LambdaRuntime, http_event, response_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_api_gateway_events() {
    let deployment = Deployment::on_emulator().await;
    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_poll")), &deployment.env).await;
    let token = format!("bearer {}", deployment.token("ada"));
    let path = format!("/chatbot/v2/webhook/{HELLO_BOT}/poll/0123456789abcdef0123456789abcdef");

    // A pollId the table does not hold: the spec's answer.
    let response = function.invoke_http(http_event("GET", &path, &[("authorization", &token)], b"")).await;
    assert_eq!(response["statusCode"], 400, "{response}");
    assert_eq!(response_json(&response)["errors"][0]["msg"], "No data found");

    let response = function.invoke_http(http_event("GET", &path, &[], b"")).await;
    assert_eq!(response["statusCode"], 401, "{response}");
    let preflight = [("origin", "https://chat.example.com"), ("access-control-request-method", "GET")];
    let response = function.invoke_http(http_event("OPTIONS", &path, &preflight, b"")).await;
    assert_eq!(response["statusCode"], 200, "{response}");
}
