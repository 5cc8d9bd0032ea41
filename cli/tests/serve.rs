//! `hookline serve` as a newcomer runs it: the printed curl works, and every
//! log line of a request is JSON carrying the request's trace id.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Served, get, post, read_request, serve, serve_with};

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

/// Jobs in the dead-letter queue are listed by `hookline dead-letters` and,
/// replayed with progress shown, done by the serving worker.
fn check_dead_letter_replay(served: &Served, endpoint: &str) {
    let (queue, dlq) = served.queues.clone().expect("serve printed its queues");
    const JOBS: usize = 25;
    let jobs: Vec<String> = (1..=JOBS)
        .map(|n| {
            serde_json::json!({
                "job": "deliver", "botId": "st-hookline-demo", "kind": "postUrl", "instanceId": "async",
                "webhookId": format!("msg_replayed_{n}"),
                "call": {"method": "POST", "url": format!("http://{}/demo/inbox", served.addr), "headers": [],
                         "body": {"replayed": format!("dead letter {n}")}, "timeout": {"secs": 2, "nanos": 0},
                         "allow_private": true, "max_response_bytes": 1024}
            })
            .to_string()
        })
        .collect();
    let script = "import sys, boto3\n\
                  sqs = boto3.client('sqs', endpoint_url=sys.argv[1], region_name='us-east-1')\n\
                  for n, body in enumerate(sys.argv[4:]):\n    \
                  sqs.send_message(QueueUrl=sys.argv[2], MessageBody=body, MessageGroupId='g', MessageDeduplicationId=sys.argv[3] + str(n))";
    let sent = Command::new("python3").args(["-c", script, endpoint, &dlq, "a"]).args(&jobs).status().unwrap();
    assert!(sent.success());
    let hookline = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_hookline")).args(args).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let replayed = hookline(&["dead-letters", "--dlq-url", &dlq, "--replay-to", &queue, "--aws-endpoint", endpoint]);
    assert!(replayed.starts_with(&format!("Moving about {JOBS} message(s) back to {queue}\n")), "{replayed}");
    assert!(replayed.contains(&format!("moved 10 of about {JOBS}\nmoved 12 of about {JOBS}\n")), "{replayed}");
    assert!(replayed.ends_with(&format!("{JOBS} message(s) moved back to {queue}\n")), "{replayed}");
    let inbox = wait_for_inbox(served, &format!("dead letter {JOBS}\""));
    let order: Vec<usize> = (1..=JOBS).map(|n| inbox.find(&format!("dead letter {n}\"")).expect("delivered")).collect();
    assert!(order.is_sorted(), "replayed in their order: {inbox}");

    // Listed after the replay: the emulator reorders a FIFO group that was
    // received without hiding it (SQS does not).
    let sent = Command::new("python3").args(["-c", script, endpoint, &dlq, "b"]).args(&jobs[..12]).status().unwrap();
    assert!(sent.success());
    let listed = hookline(&["dead-letters", "--dlq-url", &dlq, "--aws-endpoint", endpoint]);
    assert!(listed.contains("msg_replayed_1\"") && listed.ends_with("10 message(s) shown\n"), "{listed}");
}

/// `/metrics` counts what the server did: answers by status, turns, calls
/// and deliveries.
#[test]
fn metrics_count_what_the_server_did() {
    let served = serve(&[]);
    check_async_delivery(&served);
    wait_for_inbox(&served, "endOfMessage");
    let (status, _, _) = post(&served.addr, &served.path, "not-a-token", &served.body);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    let (status, _, _) = post(&served.addr, &served.path, &served.token, &served.body);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let metrics = get(&served.addr, "/metrics");
    let value = |name: &str| {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name}: {metrics}"));
        line.rsplit(' ').next().unwrap().to_string()
    };
    assert_eq!(value("hookline_responses_total{status=\"200\"}"), "2", "the async acknowledgement and the sync answer");
    assert_eq!(value("hookline_responses_total{status=\"401\"}"), "1");
    assert_eq!(value("hookline_turn_seconds_count"), "2");
    assert_eq!(value("hookline_turn_seconds_bucket{le=\"+Inf\"}"), "2");
    assert_eq!(value("hookline_deliveries_total"), "2", "the async message and its end of turn");
    assert_eq!(value("hookline_call_seconds_count"), "2");
    assert_eq!(value("hookline_call_failures_total"), "0");
    assert_eq!(value("hookline_dead_letters_total"), "0");
    assert!(metrics.contains("# TYPE hookline_turn_seconds histogram\n"), "{metrics}");
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

/// What a client that never finishes sending gets: its connection closed
/// (headers) or a 400 (body), in bounded time; the server goes on serving.
#[test]
fn slow_clients_are_cut_off() {
    let timeouts = [("HOOKLINE_HEADER_TIMEOUT_MS", "300"), ("HOOKLINE_BODY_TIMEOUT_MS", "300")];
    let served = serve_with(&[], &timeouts);
    // A connection that never sends a byte.
    let started = Instant::now();
    let mut silent = TcpStream::connect(&served.addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = silent.read_to_end(&mut Vec::new());
    assert!(started.elapsed() < Duration::from_secs(4), "silent: still open after {:?}", started.elapsed());
    let started = Instant::now();
    let mut trickling = TcpStream::connect(&served.addr).unwrap();
    trickling.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(trickling, "POST {} HTTP/1.1\r\nHost: x\r\n", served.path).unwrap();
    let mut answer = Vec::new();
    let _ = trickling.read_to_end(&mut answer);
    assert!(started.elapsed() < Duration::from_secs(4), "headers: still open after {:?}", started.elapsed());

    let mut slow_body = TcpStream::connect(&served.addr).unwrap();
    slow_body.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        slow_body,
        "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"mess",
        served.path, served.token
    )
    .unwrap();
    let mut answer = String::new();
    let _ = slow_body.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");

    let (status, _, body) = post(&served.addr, &served.path, &served.token, &served.body);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
}

/// At the connection cap, a new connection waits (in the listen backlog)
/// until one closes, then is served.
#[test]
fn connections_beyond_the_cap_wait_their_turn() {
    let served = serve_with(&[], &[("HOOKLINE_MAX_CONNECTIONS", "2"), ("HOOKLINE_HEADER_TIMEOUT_MS", "60000")]);
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&served.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = TcpStream::connect(&served.addr).unwrap();
    waiting.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        served.path,
        served.token,
        served.body.len(),
        served.body
    );
    waiting.write_all(request.as_bytes()).unwrap();
    let mut first = [0u8; 1];
    assert!(waiting.read(&mut first).is_err(), "served while at the cap");
    drop(idle);
    waiting.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    waiting.read_to_string(&mut answer).unwrap();
    assert!(format!("{}{answer}", first[0] as char).contains("200 OK"), "{answer}");
}

/// SIGTERM: the server stops accepting, and the in-process queue's jobs (an
/// asynchronous message's delivery to a slow POST_URL) finish before it exits.
#[test]
fn sigterm_finishes_queued_deliveries_before_exiting() {
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver_addr = receiver.local_addr().unwrap();
    let bots = std::env::temp_dir().join(format!("hookline-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&bots).unwrap();
    let bot = format!(
        "id: st-sigterm\nname: Sigterm\napps:\n  - clientId: cs-sigterm\n    algorithm: HS256\n    secret: {{ value: \"sigterm-secret-0123456789-0123456789\" }}\n\
         instances:\n  - id: async\n    version: v2\n    mode: async\n    postUrl: http://{receiver_addr}/post\n    apps: [cs-sigterm]\n\
         outbound:\n  allowPrivateNetworks: true\nfallback: \"Heard you.\"\n"
    );
    std::fs::write(bots.join("sigterm.yaml"), bot).unwrap();
    let mut served = serve_with(&["--bots", bots.to_str().unwrap()], &[]);
    let deliveries = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        // The turn's message, then its end-of-turn fields, each answered slowly.
        for _ in 0..2 {
            let (mut stream, _) = receiver.accept().unwrap();
            std::thread::sleep(Duration::from_millis(400));
            bodies.push(read_request(&mut stream));
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").unwrap();
        }
        bodies
    });
    let path = "/chatbot/v2/webhook/st-sigterm/hookInstance/async";
    let (status, _, body) = post(&served.addr, path, &served.token, &served.body);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let pid = served.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = served.child.wait().unwrap();
    assert!(exited.success(), "{exited:?}");
    let bodies = deliveries.join().unwrap();
    assert!(bodies[0].contains("Heard you."), "{bodies:?}");
    assert!(bodies[1].contains("endOfMessage"), "{bodies:?}");
    std::fs::remove_dir_all(bots).ok();
}
