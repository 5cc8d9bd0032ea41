//! GET /openapi.json: the OpenAPI document of every endpoint, as kept in
//! docs/openapi.json (built in, so the server and the file never differ).

use http::{Method, header};

use super::Routes;

/// docs/openapi.json.
const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

pub fn router() -> Routes {
    Routes::new().add(Method::GET, "/openapi.json", document).with_state(())
}

async fn document() -> ([(header::HeaderName, &'static str); 1], &'static str) {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
