//! The webhook function's binary under a local Lambda Runtime API, with API
//! Gateway HTTP API events, against the AWS emulator.

use std::path::Path;

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::app::files::Blobs;
use hookline_tests::runtime_api::{Deployment, HELLO_BOT, LambdaRuntime, http_event, response_json};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_api_gateway_events() {
    let deployment = Deployment::on_emulator().await;
    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_webhook")), &deployment.env).await;
    let token = format!("bearer {}", deployment.token("ada"));
    let body =
        json!({"message": {"type": "text", "val": "hello"}, "from": {"id": "ada", "userInfo": {"firstName": "Ada"}}});
    let headers = [("authorization", token.as_str()), ("content-type", "application/json")];
    let path = format!("/chatbot/v2/webhook/{HELLO_BOT}");

    let response = function.invoke_http(http_event("POST", &path, &headers, body.to_string().as_bytes())).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    let answer = response_json(&response);
    assert_eq!(answer["data"][0]["val"], "Hello Ada! What can I do for you?", "{answer}");
    assert_eq!(answer["to"], "ada");

    // The same process serves the next event; state went to the table.
    let history = function
        .invoke_http(http_event("GET", &format!("/api/chathistory/{HELLO_BOT}/webhook"), &headers[..1], b""))
        .await;
    assert_eq!(history["statusCode"], 200, "{history}");
    assert_eq!(response_json(&history)["messages"].as_array().map(Vec::len), Some(2), "{history}");

    let unauthenticated = [("authorization", "bearer nope"), ("content-type", "application/json")];
    let response = function.invoke_http(http_event("POST", &path, &unauthenticated, body.to_string().as_bytes())).await;
    assert_eq!(response["statusCode"], 401, "{response}");
    assert_eq!(response_json(&response)["errors"][0]["msg"], "Invalid Access token");
}

/// Each invocation prints CloudWatch Embedded Metric Format lines: the
/// first counts the cold start, a turn its latency, an error answer its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invocation_prints_its_metrics() {
    let deployment = Deployment::on_emulator().await;
    let mut env = deployment.env.clone();
    env.push(("HOOKLINE_METRICS_NAMESPACE", "Hookline/test-stack".into()));
    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_webhook")), &env).await;
    let token = format!("bearer {}", deployment.token("em"));
    let body = json!({"message": {"type": "text", "val": "hello"}, "from": {"id": "em"}}).to_string();
    let path = format!("/chatbot/v2/webhook/{HELLO_BOT}");
    for (authorization, status) in [(token.as_str(), 200), ("bearer nope", 401)] {
        let headers = [("authorization", authorization), ("content-type", "application/json")];
        let response = function.invoke_http(http_event("POST", &path, &headers, body.as_bytes())).await;
        assert_eq!(response["statusCode"], status, "{response}");
    }
    // The 401's invocation counted nothing: only its line by status.
    let lines = function.embedded_metrics(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (turn, by_status) = (&lines[0], &lines[1]);
    let declared = &turn["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(
        (&declared["Namespace"], &declared["Dimensions"]),
        (&json!("Hookline/test-stack"), &json!([["Function"]]))
    );
    assert!(declared["Metrics"].as_array().unwrap().contains(&json!({"Name": "TurnLatency", "Unit": "Milliseconds"})));
    assert_eq!((&turn["Function"], &turn["ColdStart"], &turn["Turns"]), (&json!("webhook"), &json!(1), &json!(1)));
    assert!(turn["TurnLatency"][0].as_f64().is_some_and(|ms| ms > 0.0), "{turn}");
    // Counts that are 0 are left out, declared and valued alike.
    let names: Vec<&str> = declared["Metrics"].as_array().unwrap().iter().filter_map(|m| m["Name"].as_str()).collect();
    assert_eq!(names, ["ColdStart", "Turns", "TurnLatency"], "{turn}");
    assert_eq!(turn.get("ServerErrors"), None, "a 401 is not the server's");
    assert_eq!(by_status["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Function", "Status"]]));
    assert_eq!((&by_status["Status"], &by_status["Errors"]), (&json!("401"), &json!(1)));
}

/// HOOKLINE_BOTS may name a folder in S3: its .yaml files are the bots, read
/// at cold start; nothing else there, and nothing in its subfolders, is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_bot_definitions_from_s3() {
    let deployment = Deployment::on_emulator().await;
    let definitions = hookline_tests::s3_blobs().await;
    let hello = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bots/hello-bot.yaml")).unwrap();
    definitions.put("bots/hello-bot.yaml", hello.into()).await.unwrap();
    definitions.put("bots/notes.txt", "not a definition".into()).await.unwrap();
    definitions.put("bots/old/broken.yaml", "id: [unclosed".into()).await.unwrap();
    let bucket = definitions.bucket();
    let binary = Path::new(env!("CARGO_BIN_EXE_webhook"));

    let mut env = deployment.env.clone();
    env.push(("HOOKLINE_BOTS", format!("s3://{bucket}/bots")));
    let function = LambdaRuntime::start(binary, &env).await;
    let token = format!("bearer {}", deployment.token("bo"));
    let headers = [("authorization", token.as_str()), ("content-type", "application/json")];
    let body = json!({"message": {"type": "text", "val": "hello"}, "from": {"id": "bo"}});
    let event = http_event("POST", &format!("/chatbot/v2/webhook/{HELLO_BOT}"), &headers, body.to_string().as_bytes());
    let response = function.invoke_http(event).await;
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response_json(&response)["from"], HELLO_BOT);

    // A folder without definitions, or a bucket that is not there, stops the cold start saying so.
    env.push(("HOOKLINE_BOTS", format!("s3://{bucket}/nothing-here/")));
    let stderr = LambdaRuntime::failed_start(binary, &env).await;
    assert!(stderr.contains("no bot definition files (.yaml, .yml) there"), "{stderr}");
    env.push(("HOOKLINE_BOTS", "s3://no-such-bucket-for-hookline/bots/".to_string()));
    let stderr = LambdaRuntime::failed_start(binary, &env).await;
    assert!(stderr.contains("s3://no-such-bucket-for-hookline/bots/") && stderr.contains("NoSuchBucket"), "{stderr}");
}

/// A function takes its region and credentials from the environment Lambda
/// gives it, nowhere else (not a profile file): without a region it stops
/// its cold start naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_region_the_cold_start_names_the_variable() {
    let deployment = Deployment::on_emulator().await;
    let profiles = std::env::temp_dir().join(format!("hookline-profiles-{}", std::process::id()));
    std::fs::write(&profiles, "[default]\nregion = eu-west-1\n").unwrap();
    let mut env = deployment.env.clone();
    for name in ["AWS_REGION", "AWS_DEFAULT_REGION", "HOOKLINE_AWS_ENDPOINT"] {
        env.push((name, String::new()));
    }
    env.push(("AWS_CONFIG_FILE", profiles.display().to_string()));
    env.push(("AWS_PROFILE", "default".to_string()));
    let stderr = LambdaRuntime::failed_start(Path::new(env!("CARGO_BIN_EXE_webhook")), &env).await;
    std::fs::remove_file(&profiles).unwrap();
    assert!(stderr.contains("environment variable AWS_REGION is not set"), "{stderr}");
}

/// While a deployment from before the compact items is upgraded,
/// HOOKLINE_ITEM_FORMAT=legacy writes as its functions read: the
/// conversation as JSON text, each log entry an item of its own; `turns`,
/// as those from commit 4af281a read: a turn's entries in an item of their
/// own, none held in the conversation's. Another value stops the cold start
/// saying which are allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_can_write_older_items() {
    let deployment = Deployment::on_emulator().await;
    let binary = Path::new(env!("CARGO_BIN_EXE_webhook"));
    let mut env = deployment.env.clone();
    for (format, user) in [("legacy", "uma"), ("turns", "ule"), ("compact", "uli")] {
        let mut env = env.clone();
        env.push(("HOOKLINE_ITEM_FORMAT", format.to_string()));
        let function = LambdaRuntime::start(binary, &env).await;
        let token = format!("bearer {}", deployment.token(user));
        let headers = [("authorization", token.as_str()), ("content-type", "application/json")];
        let body = json!({"message": {"type": "text", "val": "hello"}, "from": {"id": user}});
        let path = format!("/chatbot/v2/webhook/{HELLO_BOT}");
        let event = http_event("POST", &path, &headers, body.to_string().as_bytes());
        assert_eq!(function.invoke_http(event).await["statusCode"], 200);
        let items = hookline_tests::dynamodb_client()
            .await
            .query()
            .table_name(&deployment.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("BOT#{HELLO_BOT}#USER#{user}")))
            .send()
            .await
            .unwrap();
        let items = items.items();
        let sks: Vec<&str> = items.iter().map(|i| i["sk"].as_s().unwrap().as_str()).collect();
        let inflate = |item: &std::collections::HashMap<String, AttributeValue>, name: &str| -> serde_json::Value {
            let bytes = miniz_oxide::inflate::decompress_to_vec(item[name].as_b().unwrap().as_ref()).unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let (entries, conversation) = match format {
            "legacy" => {
                assert_eq!(sks, ["MSG#000000000000", "MSG#000000000001", "SESSION"]);
                assert!(!items[2].contains_key("state"));
                let entry: serde_json::Value = serde_json::from_str(items[1]["entry"].as_s().unwrap()).unwrap();
                assert_eq!(entry["seq"], 1);
                (json!([entry]), serde_json::from_str(items[2]["conversation"].as_s().unwrap()).unwrap())
            }
            "turns" => {
                assert_eq!(sks, ["MSG#000000000000", "SESSION"]);
                (inflate(&items[0], "log"), inflate(&items[1], "state"))
            }
            _ => {
                assert_eq!(sks, ["SESSION"], "the entries held");
                let conversation = inflate(&items[0], "state");
                (conversation["log"].clone(), conversation)
            }
        };
        let seqs: Vec<&serde_json::Value> = entries.as_array().unwrap().iter().map(|e| &e["seq"]).collect();
        assert_eq!(seqs.last(), Some(&&json!(1)), "{format}: {entries}");
        assert_eq!(conversation["nextSeq"], 2);
        assert_eq!(conversation.get("log").is_some(), format == "compact", "{format}: {conversation}");
    }

    env.push(("HOOKLINE_ITEM_FORMAT", "zipped".to_string()));
    let stderr = LambdaRuntime::failed_start(binary, &env).await;
    assert!(stderr.contains("HOOKLINE_ITEM_FORMAT must be one of compact, turns, legacy, got \"zipped\""), "{stderr}");
}

/// Through its function URL the webhook function answers the polls of its
/// messages too: a poll is routed to the poll handler (its envelope for an
/// unknown pollId), not refused as an unknown path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_url_serves_polls_too() {
    let deployment = Deployment::on_emulator().await;
    let function = LambdaRuntime::start(Path::new(env!("CARGO_BIN_EXE_webhook")), &deployment.env).await;
    let token = format!("bearer {}", deployment.token("pia"));
    let path = format!("/chatbot/v2/webhook/{HELLO_BOT}/poll/0123456789abcdef0123456789abcdef");
    let mut event = http_event("GET", &path, &[("authorization", token.as_str())], b"");
    // As a function URL sends it: its own domain, no route key.
    event["requestContext"]["domainName"] = json!("abcdefghij.lambda-url.us-east-1.on.aws");
    event["routeKey"] = json!("$default");
    let response = function.invoke_http(event).await;
    assert_eq!(response["statusCode"], 400, "{response}");
    assert_eq!(response_json(&response)["errors"][0]["msg"], "No data found");
}
