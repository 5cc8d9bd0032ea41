//! Lambda: the poll endpoint (GET .../poll/{pollId}) behind API Gateway's
//! HTTP API. State is built once per cold start.

use hookline_core::{api, bootstrap, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let state = bootstrap::lambda_state().await?;
    lambda_http::run(api::poll_router(state)).await
}
