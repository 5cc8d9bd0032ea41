//! Lambda: file uploads (single-shot, uploadfile, and chunked: token, chunk,
//! commit) behind API Gateway's HTTP API. Bytes go to the HOOKLINE_BUCKET
//! bucket; state is built once per cold start.

use hookline_core::{api, bootstrap, telemetry};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let state = bootstrap::lambda_state().await?;
    let blobs = bootstrap::lambda_blobs().await?;
    lambda_http::run(api::files_router(state, blobs)).await
}
