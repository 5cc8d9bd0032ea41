//! What the SAM template deploys: the bot definitions it ships (bots/) load
//! the way the deployed functions load them (secrets only from the
//! environment), its HTTP API routes reach the functions they name, and the
//! sam local environment file sets only variables SAM passes on, and its
//! alarms and dashboard read metrics the functions print.

use std::path::Path;

use hookline_core::definition::{Purpose, Registry, Severity, check};

#[test]
fn shipped_bots_load_in_deployed_mode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bots");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files += 1;
            let source = std::fs::read_to_string(&path).unwrap();
            let secret = |_: &str| Some("a-deployment-secret-of-at-least-32-bytes".to_string());
            let (bot, diagnostics) = check(&path.display().to_string(), &source, Purpose::Deployed, &secret);
            assert!(bot.is_some(), "{diagnostics:?}");
            assert!(diagnostics.iter().all(|d| d.severity != Severity::Error));
        }
    }
    assert!(files > 0);
}

#[test]
fn a_folder_without_definitions_is_an_error() {
    let empty = std::env::temp_dir().join(format!("hookline-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let error = Registry::load(&empty, Purpose::Deployed).err().expect("refused");
    std::fs::remove_dir_all(&empty).ok();
    assert!(error.to_string().contains("no bot definition files"), "{error}");
}

/// Every HTTP API route in template.yaml reaches a handler of the function
/// it names (not the router's 404 or 405), preflights included.
#[tokio::test]
async fn template_routes_reach_their_functions() {
    use std::sync::Arc;

    use hookline_core::adapters::queue::MemoryQueue;
    use hookline_core::api;
    use hookline_core::process::Settings;
    use tower::ServiceExt;

    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).unwrap();
    let queue = Arc::new(MemoryQueue::new(1));
    let (wiring, root) = hookline_tests::in_memory(hookline_tests::registry(), queue, Settings::default());
    let routers = [
        ("WebhookFunction", api::webhook_router(wiring.webhook)),
        ("PollFunction", api::poll_router(wiring.poll)),
        ("FilesFunction", api::files_router(wiring.files)),
    ];
    // Resources are indented by two spaces, an event's properties by twelve.
    let (mut function, mut method, mut routes) = (String::new(), String::new(), 0);
    for line in template.lines() {
        if let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ') && l.ends_with(':')) {
            function = name.trim_end_matches(':').to_string();
        } else if let Some(m) = line.strip_prefix("            Method: ") {
            method = m.trim().to_string();
        } else if let Some(path) = line.strip_prefix("            Path: ") {
            let router = routers.iter().find(|(name, _)| *name == function).map(|(_, r)| r.clone());
            let router =
                router.unwrap_or_else(|| panic!("{function} serves {method} {path}, and no router is known for it"));
            let uri = path.trim().replace('{', "x").replace('}', "");
            let request = http::Request::builder()
                .method(method.as_str())
                .uri(&uri)
                .header("origin", "https://chat.example.com")
                .header("access-control-request-method", "POST")
                .body(axum::body::Body::empty())
                .unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            // A handler's 404 (no such bot) says what; the router's says nothing more.
            let unrouted = status == http::StatusCode::NOT_FOUND && !String::from_utf8_lossy(&body).contains("detail");
            assert!(!unrouted, "{function}: {method} {path} is not routed");
            assert_ne!(status, http::StatusCode::METHOD_NOT_ALLOWED, "{function}: {method} {path}");
            routes += 1;
        }
    }
    assert!(routes >= 25, "only {routes} routes read from the template");
    std::fs::remove_dir_all(root).ok();
}

/// `sam local --env-vars` silently drops variables the template does not
/// declare: every one the example file sets must be declared, the local
/// endpoint among them.
#[test]
fn sam_local_env_file_sets_declared_variables() {
    use yaml_rust2::{Yaml, YamlLoader};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
    let template = &YamlLoader::load_from_str(&template).unwrap()[0];
    let variables = |function: &Yaml| -> Vec<String> {
        let variables = &function["Environment"]["Variables"];
        variables.as_hash().into_iter().flatten().filter_map(|(k, _)| k.as_str().map(str::to_string)).collect()
    };
    let mut declared = variables(&template["Globals"]["Function"]);
    for (_, resource) in template["Resources"].as_hash().unwrap() {
        if resource["Type"].as_str() == Some("AWS::Serverless::Function") {
            declared.extend(variables(&resource["Properties"]));
        }
    }
    assert!(declared.iter().any(|v| v == "HOOKLINE_AWS_ENDPOINT"), "{declared:?}");
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("examples/sam-local-env.json")).unwrap()).unwrap();
    let set = env["Parameters"].as_object().unwrap();
    assert!(set.contains_key("HOOKLINE_AWS_ENDPOINT"));
    for name in set.keys() {
        assert!(declared.contains(name), "{name} is not declared in template.yaml, so sam local would not pass it");
    }
}

/// A write started just before the sync deadline is never cut off: the
/// webhook function's timeout holds the longest deadline the template allows,
/// a keyed message's call overrun, and the store's longest request, and stays
/// below API Gateway's 30 s.
#[test]
fn the_webhook_timeout_leaves_room_for_a_write_started_at_the_deadline() {
    use std::time::Duration;

    use hookline_core::app::turn::KEYED_OVERRUN;
    use hookline_core::definition::MAX_LAMBDA_DEADLINE_MS;
    use hookline_core::process::aws::OPERATION_TIMEOUT;
    use yaml_rust2::YamlLoader;

    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).unwrap();
    let template = &YamlLoader::load_from_str(&template).unwrap()[0];
    let timeout = template["Resources"]["WebhookFunction"]["Properties"]["Timeout"].as_i64().unwrap();
    let deadline = &template["Parameters"]["SyncDeadlineMs"];
    let longest = Duration::from_millis(deadline["MaxValue"].as_i64().unwrap() as u64);
    assert_eq!(longest, Duration::from_millis(MAX_LAMBDA_DEADLINE_MS), "validation warns above the same");
    // A keyed message's call may run past the deadline, then its save.
    let worst = longest + KEYED_OVERRUN + OPERATION_TIMEOUT;
    assert!(worst <= Duration::from_secs(timeout as u64), "timeout {timeout} s, worst case {worst:?}");
    assert!(timeout < 30, "API Gateway's integration limit is 30 s");
    let default = deadline["Default"].as_i64().unwrap() as u128;
    assert_eq!(hookline_core::process::Settings::default().http.sync_deadline.as_millis(), default);
}

/// The outbox's relay: the table streams each conversation as written, and
/// the worker reads it, filtered to the writes marked as owing, reporting
/// failed records so that those after them wait.
#[test]
fn the_table_streams_the_writes_that_owe_to_the_worker() {
    use hookline_core::adapters::store::OWES;
    use yaml_rust2::YamlLoader;

    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).unwrap();
    let template = &YamlLoader::load_from_str(&template).unwrap()[0];
    let table = &template["Resources"]["SessionsTable"]["Properties"];
    assert_eq!(table["StreamSpecification"]["StreamViewType"].as_str(), Some("NEW_IMAGE"));
    let changes = &template["Resources"]["WorkerFunction"]["Properties"]["Events"]["Changes"];
    assert_eq!(changes["Type"].as_str(), Some("DynamoDB"));
    let properties = &changes["Properties"];
    assert_eq!(properties["FunctionResponseTypes"][0].as_str(), Some("ReportBatchItemFailures"));
    assert_eq!(properties["MaximumRetryAttempts"].as_i64(), Some(-1), "retried until it succeeds");
    let pattern = properties["FilterCriteria"]["Filters"][0]["Pattern"].as_str().unwrap();
    let pattern: serde_json::Value = serde_json::from_str(pattern).unwrap();
    assert_eq!(pattern["dynamodb"]["NewImage"][OWES]["N"][0]["exists"], true, "{pattern}");
}

/// The alarms and the dashboard read metrics the functions print: every
/// metric name the template names in the stack's namespace is one that the
/// Embedded Metric Format lines declare.
#[test]
fn the_dashboard_and_alarms_read_metrics_the_functions_print() {
    use hookline_core::metrics;
    metrics::keep_invocation_values();
    metrics::turn(std::time::Duration::from_millis(3));
    // Every count once: one that is 0 is not declared.
    metrics::call(std::time::Duration::from_millis(2), false);
    metrics::responded(404);
    metrics::responded(503);
    metrics::delivered();
    metrics::retried();
    let declared: Vec<String> = metrics::embedded_metrics("Hookline/stack", "webhook", 0)
        .iter()
        .flat_map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            let names = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().clone();
            names.into_iter().map(|m| m["Name"].as_str().unwrap().to_string())
        })
        .collect();
    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).unwrap();
    let alarm_metrics =
        template.lines().filter_map(|l| l.trim().strip_prefix("MetricName: ")).filter(|m| !m.contains("Approximate"));
    let dashboard_metrics = template.match_indices("[\"${Namespace}\", \"").map(|(i, m)| {
        let rest = &template[i + m.len()..];
        &rest[..rest.find('"').unwrap()]
    });
    let searched = template.match_indices("MetricName=\\\"").map(|(i, m)| {
        let rest = &template[i + m.len()..];
        &rest[..rest.find('\\').unwrap()]
    });
    let named: Vec<&str> = alarm_metrics.chain(dashboard_metrics).chain(searched).collect();
    assert!(named.len() >= 10, "{named:?}");
    for name in named {
        assert!(
            declared.iter().any(|d| d == name),
            "the template reads {name}, which no function prints: {declared:?}"
        );
    }
}

/// Function URLs are opt-in (FunctionUrls=true): the webhook and files
/// functions each get a public URL and the two permissions a URL needs,
/// lambda:InvokeFunction only through the URL.
#[test]
fn function_urls_are_opt_in_and_reach_the_webhook_and_files_functions() {
    use yaml_rust2::YamlLoader;

    let template = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")).unwrap();
    let template = &YamlLoader::load_from_str(&template).unwrap()[0];
    assert_eq!(template["Parameters"]["FunctionUrls"]["Default"].as_str(), Some("false"));
    let resources = template["Resources"].as_hash().unwrap();
    let conditional = |kind: &str| -> Vec<&yaml_rust2::Yaml> {
        resources
            .values()
            .filter(|r| r["Type"].as_str() == Some(kind) && r["Condition"].as_str() == Some("HasFunctionUrls"))
            .collect()
    };
    let urls = conditional("AWS::Lambda::Url");
    let targets: Vec<&str> = urls.iter().map(|u| u["Properties"]["TargetFunctionArn"].as_str().unwrap()).collect();
    assert_eq!(targets, ["WebhookFunction.Arn", "FilesFunction.Arn"]);
    assert!(urls.iter().all(|u| u["Properties"]["AuthType"].as_str() == Some("NONE")));
    for function in ["WebhookFunction", "FilesFunction"] {
        let permissions: Vec<&yaml_rust2::Yaml> = conditional("AWS::Lambda::Permission")
            .into_iter()
            .filter(|p| p["Properties"]["FunctionName"].as_str() == Some(function))
            .collect();
        let actions: Vec<&str> = permissions.iter().map(|p| p["Properties"]["Action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"], "{function}");
        assert_eq!(permissions[0]["Properties"]["FunctionUrlAuthType"].as_str(), Some("NONE"));
        assert_eq!(permissions[1]["Properties"]["InvokedViaFunctionUrl"].as_bool(), Some(true), "only through the URL");
    }
}
