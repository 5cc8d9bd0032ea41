//! `hookline listen` as a bot developer runs it: deliveries checked against
//! a secret, a line each, forwarded, and a summary when it stops.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{free_port, post, post_with, read_request, serve_with};
use hookline_core::signing::{self, SigningKey};

const SECRET: &str = "whsec_aG9va2xpbmUtdGVzdC1zaWduaW5nLXNlY3JldC0zMmIh";

/// A running `hookline listen` and the lines it prints.
struct Listening {
    child: Child,
    addr: String,
    lines: mpsc::Receiver<String>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

impl Listening {
    fn start(port: u16, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookline"))
            .args(["listen", "--addr", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start hookline listen");
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let listening = Self { child, addr: format!("127.0.0.1:{port}"), lines };
        listening.line_with(&format!("Listening on http://127.0.0.1:{port}"));
        listening
    }

    /// The next printed line containing `needle` (within ten seconds).
    fn line_with(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {needle:?}: {e}"),
            }
        }
    }

    /// Stops it as Ctrl-C or a service manager would; the summary line.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        assert!(self.child.wait().unwrap().success());
        self.line_with(" deliveries")
    }
}

fn signed_headers(webhook_id: &str, timestamp: i64, body: &str) -> Vec<(String, String)> {
    signing::headers(&[SigningKey::parse(SECRET).unwrap()], webhook_id, timestamp, body.as_bytes())
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect()
}

#[test]
fn listen_checks_each_signature_and_sums_up() {
    let listening = Listening::start(free_port(), &["--secret", SECRET]);
    let body = r#"{"to":"u1","from":"st-x","data":[{"type":"text","val":"Hello"}],"_v":"v2"}"#;
    let now = chrono::Utc::now().timestamp();

    let headers = signed_headers("msg_1", now, body);
    let (status, _, _) = post_with(&listening.addr, "/post", &as_refs(&headers), body);
    assert_eq!(status, "HTTP/1.1 204 No Content");
    let line = listening.line_with("msg_1");
    assert!(line.ends_with(r#"  msg_1  verified  /post  to u1: text "Hello""#), "{line}");

    let tampered = body.replace("Hello", "Hullo");
    let (status, _, answer) = post_with(&listening.addr, "/post", &as_refs(&headers), &tampered);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    assert!(answer.contains("no signature matches the secret"), "{answer}");
    let line = listening.line_with("msg_1");
    assert!(line.contains("msg_1  NOT VERIFIED (no signature matches the secret)  /post"), "{line}");

    let stale = signed_headers("msg_2", now - 600, body);
    let (status, _, _) = post_with(&listening.addr, "/post", &as_refs(&stale), body);
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    let line = listening.line_with("msg_2");
    assert!(line.contains(&format!("NOT VERIFIED (webhook-timestamp {} is not within", now - 600)), "{line}");

    assert_eq!(listening.stop(), "3 deliveries: 1 verified, 2 not verified");
}

/// A served bot's asynchronous instance delivers to the listener, which
/// checks them with the instance's own keys (read from its definition) and
/// forwards them, headers and all, to the developer's endpoint.
#[test]
fn listen_checks_a_bots_deliveries_with_its_keys_and_forwards_them() {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    let forwarded = std::thread::spawn(move || {
        let mut requests = Vec::new();
        // The turn's message, then its end of turn.
        for _ in 0..2 {
            let (mut stream, _) = target.accept().unwrap();
            requests.push(read_request(&mut stream));
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").unwrap();
        }
        requests
    });
    let port = free_port();
    let bots = std::env::temp_dir().join(format!("hookline-listen-{}", std::process::id()));
    std::fs::create_dir_all(&bots).unwrap();
    let bot = format!(
        r#"
id: st-listen
name: Listen
apps: [{{ clientId: cs-listen, algorithm: HS256, secret: {{ value: "listen-secret-0123456789-0123456789" }} }}]
instances:
  - {{ id: async, version: v2, mode: async, postUrl: "http://127.0.0.1:{port}/post", apps: [cs-listen],
      signingSecrets: [{{ value: "{SECRET}" }}] }}
outbound: {{ allowPrivateNetworks: true }}
fallback: "Heard you."
"#
    );
    std::fs::write(bots.join("listen.yaml"), bot).unwrap();
    let config = bots.to_str().unwrap();
    let forward_to = format!("http://{target_addr}/hook");
    let listening = Listening::start(
        port,
        &["--bot", "st-listen", "--instance", "async", "--config", config, "--forward-to", &forward_to],
    );
    let served = serve_with(&["--bots", config], &[]);

    let path = "/chatbot/v2/webhook/st-listen/hookInstance/async";
    let (status, _, body) = post(&served.addr, path, &served.token, &served.body);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let line = listening.line_with("Heard you.");
    assert!(line.contains("  verified  /post  to "), "{line}");
    assert!(listening.line_with("forwarded to").ends_with(": 200"));
    let line = listening.line_with("end of message");
    assert!(line.contains("  verified  /post  "), "{line}");

    let requests = forwarded.join().unwrap();
    assert!(requests[0].starts_with("POST /hook HTTP/1.1"), "{requests:?}");
    assert!(requests[0].contains("Heard you.") && requests[1].contains("endOfMessage"), "{requests:?}");
    assert!(requests.iter().all(|r| r.contains("webhook-signature: v1,")), "{requests:?}");
    assert_eq!(listening.stop(), "2 deliveries: 2 verified, 0 not verified; 2 forwarded, 0 failed to forward");
    std::fs::remove_dir_all(bots).ok();
}

#[test]
fn listen_refuses_a_malformed_secret_or_an_unknown_instance() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_hookline")).args(["listen", "--secret", "not-a-secret"]).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "hookline: --secret: a signing secret starts with whsec_");
    let out = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["listen", "--bot", "st-hookline-demo", "--instance", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "hookline: no instance nowhere in bot st-hookline-demo");
}
