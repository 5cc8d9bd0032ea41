//! The OpenAPI document (docs/openapi.json, served at GET /openapi.json) and
//! the routers describe the same API: every documented path and method is
//! routed, and every routed one is documented. The routes come from the
//! routers' own listing (`Embedded::routes`, made by the calls that add
//! them); probing the router then shows that the listing is what it serves.

use std::collections::BTreeSet;
use std::sync::Arc;

use hookline_core::adapters::queue::MemoryQueue;
use hookline_core::process::{Embedded, Settings};
use hookline_tests::{in_memory, registry};
use http::{Method, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// A path template with its parameters' names left out: `/a/{b}` and
/// `/a/{c}` are the same route.
fn shape(path: &str) -> String {
    let mut shaped = String::new();
    let mut in_name = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_name = true;
                shaped.push_str("{}");
            }
            '}' => in_name = false,
            c if !in_name => shaped.push(c),
            _ => {}
        }
    }
    shaped
}

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
}

fn paths(doc: &Value) -> &serde_json::Map<String, Value> {
    doc["paths"].as_object().expect("the document has paths")
}

/// Every documented operation, as (METHOD, path shape).
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in paths(doc) {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            operations.insert((method.to_uppercase(), shape(path)));
        }
    }
    operations
}

fn embedded() -> (Embedded, std::path::PathBuf) {
    in_memory(registry(), Arc::new(MemoryQueue::new(1)), Settings::default())
}

#[test]
fn the_document_and_the_routers_list_the_same_operations() {
    let (embedded, root) = embedded();
    let listed = embedded.routes();
    let routed: BTreeSet<(String, String)> = listed.iter().map(|r| (r.method.to_string(), shape(r.path))).collect();
    assert_eq!(routed.len(), listed.len(), "a route is listed twice: {listed:?}");
    let documented = documented(&document());

    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty(), "routed but not in docs/openapi.json: {undocumented:?}");
    assert!(unrouted.is_empty(), "in docs/openapi.json but not routed: {unrouted:?}");
    assert!(routed.contains(&("POST".into(), "/chatbot/v2/webhook/{}".into())), "{routed:?}");
    std::fs::remove_dir_all(root).ok();
}

async fn status(router: &axum::Router, method: Method, uri: &str) -> StatusCode {
    let request = http::Request::builder().method(method).uri(uri).body(axum::body::Body::empty()).unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

/// The listing is what the router serves: each documented operation reaches
/// a handler (neither the fallback of unrouted paths nor a 405), and any
/// other method on a documented path is a 405.
#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let (embedded, root) = embedded();
    // Only paths no route matches reach this fallback.
    let unrouted = StatusCode::IM_A_TEAPOT;
    let router = embedded.router().fallback(move || async move { unrouted });
    assert_eq!(status(&router, Method::GET, "/chatbot/v3/webhook/x").await, unrouted, "the probe tells unrouted paths");

    let doc = document();
    let mut probed = 0;
    for (path, item) in paths(&doc) {
        let uri = shape(path).replace("{}", "x1");
        for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let status = status(&router, method.clone(), &uri).await;
            if item.get(method.as_str().to_lowercase()).is_some() {
                assert_ne!(status, unrouted, "{method} {path} is documented but not routed");
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is documented but not routed");
                probed += 1;
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is routed but not documented");
            }
        }
    }
    assert_eq!(probed, documented(&doc).len());
    std::fs::remove_dir_all(root).ok();
}

#[tokio::test]
async fn the_server_serves_the_document() {
    let (embedded, root) = embedded();
    let request = http::Request::get("/openapi.json").body(axum::body::Body::empty()).unwrap();
    let response = embedded.router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[http::header::CONTENT_TYPE], "application/json");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(body, DOCUMENT.as_bytes());
    std::fs::remove_dir_all(root).ok();
}

/// What tools would refuse: a `$ref` to nothing, a path parameter the
/// operation does not declare (or one it declares that the path lacks).
#[test]
fn the_document_is_consistent() {
    let doc = document();
    assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.1.")), Some(true));
    let resolve = |value: &Value| -> Value {
        match value["$ref"].as_str() {
            Some(pointer) => {
                let target = doc.pointer(pointer.trim_start_matches('#')).cloned();
                target.unwrap_or_else(|| panic!("$ref {pointer} names nothing"))
            }
            None => value.clone(),
        }
    };
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for pointer in refs {
        resolve(&serde_json::json!({ "$ref": pointer }));
    }
    for (path, item) in paths(&doc) {
        let in_path: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let operation = &item[*method];
            assert!(operation["operationId"].is_string(), "{method} {path} has no operationId");
            assert!(operation["responses"]["200"].is_object(), "{method} {path} has no 200 answer");
            let declared: BTreeSet<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(resolve)
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap_or_default().to_string())
                .collect();
            let declared: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
        }
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(pointer)) = map.get("$ref") {
                refs.push(pointer.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}
