//! Lambda: the Webhook channel message ingress (v1, v2, botmeta, chat
//! history) behind API Gateway's HTTP API, or its function URL (which
//! serves the polls of its messages too). State is built once per cold start.

use hookline_core::api;
use hookline_core::process::{functions, telemetry};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init();
    let (webhook, poll) = functions::webhook_state().await?;
    let router = api::webhook_router(webhook).merge(api::poll_router(poll));
    let router = api::with_client_ip(router, source_ip);
    lambda_http::run(functions::with_metrics(router, "webhook")).await
}

/// The caller's address as API Gateway (or the function URL) saw it.
fn source_ip<B>(request: &http::Request<B>) -> Option<String> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.clone(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API Gateway's own record of the caller, not the client's X-Forwarded-For.
    #[test]
    fn the_client_ip_is_api_gateways_source_ip() {
        let event = include_str!("../../../tests/fixtures/apigw/v2-message.json")
            .replace(r#""x-forwarded-for": "203.0.113.10""#, r#""x-forwarded-for": "6.6.6.6, 203.0.113.10""#)
            .replace(r#""sourceIp": "203.0.113.10""#, r#""sourceIp": "198.51.100.4""#);
        let request = lambda_http::request::from_str(&event).expect("an API Gateway event");
        assert_eq!(source_ip(&request).as_deref(), Some("198.51.100.4"));
    }
}
