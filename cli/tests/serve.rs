//! `hookline serve` as a newcomer runs it: the printed curl works, and every
//! log line of a request is JSON carrying the request's trace id.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The server, and the request its ready-made curl command makes.
struct Served {
    child: Child,
    addr: String,
    path: String,
    token: String,
    body: String,
    /// With --create-queue: the job queue's and the dead-letter queue's URLs.
    queues: Option<(String, String)>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn serve(extra: &[&str]) -> Served {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["serve", "--addr", &addr])
        .args(extra)
        .env("HOOKLINE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hookline serve");
    let (mut path, mut token, mut body, mut queues) = (None, None, None, None);
    let unquote = |s: &str| s.trim_end_matches([' ', '\\']).trim_end_matches('\'').to_string();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Queue ") {
            let (queue, dlq) = rest.split_once(" (dead letters: ").expect("queue line");
            queues = Some((queue.to_string(), dlq.trim_end_matches(')').to_string()));
        } else if let Some(url) = line.strip_prefix("curl -s http://") {
            path = url.split_once('/').map(|(_, p)| format!("/{}", unquote(p)));
        } else if let Some(rest) = line.strip_prefix("-H 'Authorization: bearer ") {
            token = Some(unquote(rest));
        } else if let Some(rest) = line.strip_prefix("-d '") {
            body = Some(unquote(rest));
            break;
        }
    }
    let printed = |part: Option<String>| part.expect("serve prints a complete curl command");
    Served { child, addr, path: printed(path), token: printed(token), body: printed(body), queues }
}

fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// Waits (up to ten seconds) for the demo's POST_URL inbox to hold a delivery containing `needle`.
fn wait_for_inbox(served: &Served, needle: &str) -> String {
    for _ in 0..200 {
        let inbox = get(&served.addr, "/demo/inbox");
        if inbox.contains(needle) {
            return inbox;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing with {needle} reached the inbox: {}", get(&served.addr, "/demo/inbox"));
}

/// The demo's asynchronous instance: acknowledged, then delivered to its POST_URL.
fn check_async_delivery(served: &Served) {
    let path = "/chatbot/v2/webhook/st-hookline-demo/hookInstance/async";
    let (status, _, body) = post(&served.addr, path, &served.token, &served.body);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    let inbox = wait_for_inbox(served, "Hello, how can I help you?");
    assert!(inbox.contains(r#""to":"demo-user""#), "{inbox}");
}

/// One HTTP/1.1 exchange; returns the status line, the headers and the body.
fn post(addr: &str, path: &str, token: &str, body: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap();
    (status.to_string(), headers.to_lowercase(), body.to_string())
}

fn check_conversation(served: &mut Served) {
    assert_eq!(served.path, "/chatbot/v2/webhook/st-hookline-demo");
    let (status, headers, body) = post(&served.addr, &served.path, &served.token, &served.body);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["data"][0]["val"], "Hello, how can I help you?");
    let trace_id = headers.lines().find_map(|l| l.strip_prefix("x-trace-id: ")).expect("trace id header").to_string();

    served.child.kill().unwrap();
    let mut logs = String::new();
    served.child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    let lines: Vec<serde_json::Value> =
        logs.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("log line is not JSON: {l}"))).collect();
    let of_request: Vec<_> = lines.iter().filter(|l| l["span"]["trace_id"] == trace_id.as_str()).collect();
    assert!(!of_request.is_empty(), "no log line carries {trace_id}: {logs}");
    assert!(of_request.iter().any(|l| l["status"] == 200), "{logs}");
}

#[test]
fn the_printed_curl_gets_a_bot_reply_in_memory() {
    let mut served = serve(&[]);
    check_async_delivery(&served);
    check_conversation(&mut served);
}

#[test]
fn serve_on_dynamodb_creates_its_table() {
    let endpoint = std::env::var("HOOKLINE_TEST_AWS_ENDPOINT")
        .expect("HOOKLINE_TEST_AWS_ENDPOINT is not set: run the tests with scripts/test");
    let table = format!("hookline-serve-{}", std::process::id());
    let mut served =
        serve(&["--table", &table, "--aws-endpoint", &endpoint, "--create-table", "--create-queue", &table]);
    check_async_delivery(&served);
    check_dead_letter_replay(&served, &endpoint);
    check_conversation(&mut served);
}

/// A job in the dead-letter queue is listed by `hookline dead-letters` and,
/// replayed, done by the serving worker.
fn check_dead_letter_replay(served: &Served, endpoint: &str) {
    let (queue, dlq) = served.queues.clone().expect("serve printed its queues");
    let job = serde_json::json!({
        "job": "deliver", "botId": "st-hookline-demo", "kind": "postUrl", "instanceId": "async",
        "webhookId": "msg_replayed",
        "call": {"method": "POST", "url": format!("http://{}/demo/inbox", served.addr), "headers": [],
                 "body": {"replayed": "from the dead-letter queue"}, "timeout": {"secs": 2, "nanos": 0},
                 "allow_private": true, "max_response_bytes": 1024}
    });
    let script = "import sys, boto3\n\
                  boto3.client('sqs', endpoint_url=sys.argv[1], region_name='us-east-1').send_message(QueueUrl=sys.argv[2], \
                  MessageBody=sys.argv[3], MessageGroupId='g', MessageDeduplicationId='d')";
    let sent = Command::new("python3").args(["-c", script, endpoint, &dlq, &job.to_string()]).status().unwrap();
    assert!(sent.success());
    let hookline = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_hookline")).args(args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let listed = hookline(&["dead-letters", "--dlq-url", &dlq, "--aws-endpoint", endpoint]);
    assert!(listed.contains("msg_replayed") && listed.contains("1 message(s) shown"), "{listed}");
    let replayed = hookline(&["dead-letters", "--dlq-url", &dlq, "--replay-to", &queue, "--aws-endpoint", endpoint]);
    assert!(replayed.contains("1 message(s) moved"), "{replayed}");
    wait_for_inbox(served, "from the dead-letter queue");
}

#[test]
fn the_demo_bot_calls_its_stand_in_api() {
    let served = serve(&[]);
    let ask = |text: &str| {
        let body = format!(r#"{{"message":{{"type":"text","val":"{text}"}},"from":{{"id":"demo-user"}}}}"#);
        let (status, _, body) = post(&served.addr, &served.path, &served.token, &body);
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
        reply["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["val"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ask("weather"), ["Which city?"]);
    let forecast = ask("Lisbon");
    assert!(forecast[0].starts_with("Lisbon: ") && forecast[0].contains("°C"), "{forecast:?}");
    ask("order status");
    assert_eq!(ask("A-123")[0], "Order A-123 left our warehouse this morning.");
}
