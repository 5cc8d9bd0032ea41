//! Lambda: the poll endpoint (GET .../poll/{pollId}) behind API Gateway's
//! HTTP API. State is built once per cold start.

use hookline_core::api;
use hookline_core::process::{functions, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let state = functions::poll_state().await?;
    lambda_http::run(functions::with_metrics(api::poll_router(state), "poll")).await
}
