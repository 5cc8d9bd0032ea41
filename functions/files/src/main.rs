//! Lambda: file uploads (single-shot, uploadfile, and chunked: token, chunk,
//! commit) behind API Gateway's HTTP API. Bytes go to the HOOKLINE_BUCKET
//! bucket; state is built once per cold start.

use hookline_core::api;
use hookline_core::process::{functions, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let state = functions::files_state().await?;
    lambda_http::run(functions::with_metrics(api::files_router(state), "files")).await
}
