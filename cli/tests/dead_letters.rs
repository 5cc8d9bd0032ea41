//! `hookline dead-letters --serve`: a running `hookline serve`'s in-process
//! dead letters, listed and replayed.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{post, read_request, serve_with};

fn hookline(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline")).args(args).output().unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

/// A POST_URL that fails while `down` is set, and keeps what it took.
fn receiver(down: Arc<AtomicBool>) -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (sender, taken) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let request = read_request(&mut stream);
            let answer: &[u8] = if down.load(Ordering::SeqCst) {
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                let _ = sender.send(request);
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let _ = stream.write_all(answer);
        }
    });
    (addr, taken)
}

#[test]
fn serves_dead_letters_are_listed_and_replayed_in_order() {
    let down = Arc::new(AtomicBool::new(true));
    let (receiver_addr, taken) = receiver(down.clone());
    let bots = std::env::temp_dir().join(format!("hookline-dead-letters-{}", std::process::id()));
    std::fs::create_dir_all(&bots).unwrap();
    let bot = format!(
        r#"
id: st-dead
name: Dead letters
apps: [{{ clientId: cs-dead, algorithm: HS256, secret: {{ value: "dead-letters-secret-0123456789-012345" }} }}]
instances:
  - {{ id: async, version: v2, mode: async, postUrl: "http://{receiver_addr}/post", apps: [cs-dead] }}
outbound: {{ allowPrivateNetworks: true }}
fallback: "Heard you."
"#
    );
    std::fs::write(bots.join("dead.yaml"), bot).unwrap();
    let served = serve_with(&["--bots", bots.to_str().unwrap()], &[("HOOKLINE_RETRY_BASE_MS", "5")]);
    let url = format!("http://{}", served.addr);

    let path = "/chatbot/v2/webhook/st-dead/hookInstance/async";
    let (status, _, body) = post(&served.addr, path, &served.token, &served.body);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    // The message and its end of turn fail every attempt.
    let started = Instant::now();
    let listed = loop {
        let (ok, listed, stderr) = hookline(&["dead-letters", "--serve", &url]);
        assert!(ok, "{stderr}");
        if listed.ends_with("2 message(s) shown of 2\n") {
            break listed;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "not dead-lettered: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(listed.contains("Heard you.") && listed.contains("endOfMessage"), "{listed}");

    // Not from a browser, nor relayed: the dev header and a loopback host are needed.
    let (status, _, answer) = post(&served.addr, "/dev/dead-letters/replay", &served.token, "{}");
    assert_eq!(status, "HTTP/1.1 403 Forbidden", "{answer}");
    let headers = [("x-hookline-dev", "1"), ("x-forwarded-for", "203.0.113.9")];
    let (status, _, _) = common::post_with(&served.addr, "/dev/dead-letters/replay", &headers, "{}");
    assert_eq!(status, "HTTP/1.1 403 Forbidden");

    down.store(false, Ordering::SeqCst);
    let (ok, replayed, stderr) = hookline(&["dead-letters", "--serve", &url, "--replay"]);
    assert!(ok, "{stderr}");
    assert_eq!(replayed, format!("2 message(s) moved back to the in-process queue of {url}/\n"));
    let first = taken.recv_timeout(Duration::from_secs(10)).expect("the message, delivered again");
    let second = taken.recv_timeout(Duration::from_secs(10)).expect("its end of turn");
    assert!(first.contains("Heard you.") && second.contains("endOfMessage"), "in order: {first}\n{second}");
    let (_, listed, _) = hookline(&["dead-letters", "--serve", &url]);
    assert_eq!(listed, "0 message(s) shown of 0\n");
    std::fs::remove_dir_all(bots).ok();
}

/// Replaying jobs is for the developer at the machine: behind a proxy (so
/// reachable from elsewhere) serve does not offer its dead letters.
#[test]
fn behind_a_proxy_serve_keeps_its_dead_letters_to_itself() {
    let served = serve_with(&["--behind-proxy"], &[]);
    let (ok, _, stderr) = hookline(&["dead-letters", "--serve", &format!("http://{}", served.addr)]);
    assert!(!ok);
    assert!(stderr.contains("serves no in-process dead letters"), "{stderr}");
    let (status, _, _) = post(&served.addr, "/dev/dead-letters/replay", &served.token, "{}");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[test]
fn an_address_without_in_process_dead_letters_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            read_request(&mut stream);
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let (ok, _, stderr) = hookline(&["dead-letters", "--serve", &format!("http://{addr}")]);
    assert!(!ok);
    assert!(stderr.contains("serves no in-process dead letters"), "{stderr}");
}
