//! The smallest `lambda_http` function: the floor for a function's cold
//! start, memory and binary size.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

async fn hello(_request: Request) -> Result<Response<Body>, Error> {
    Ok(Response::builder().header("content-type", "application/json").body(Body::from(r#"{"_v":"v2","data":[]}"#))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(hello)).await
}
