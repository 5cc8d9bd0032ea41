//! Lambda: the Webhook channel message ingress (v1, v2, botmeta, chat
//! history) behind API Gateway's HTTP API. State is built once per cold start.

use hookline_core::api;
use hookline_core::process::{functions, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let state = functions::webhook_state().await?;
    lambda_http::run(api::webhook_router(state)).await
}
