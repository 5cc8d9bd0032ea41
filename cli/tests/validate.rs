//! `hookline validate` and `hookline schema`, run as a user would.

use std::process::Command;

fn hookline(args: &[&str]) -> (bool, String, String) {
    hookline_with(args, &[])
}

fn hookline_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HOOKLINE_TEST_UNSET_SECRET")
        .output()
        .expect("run hookline");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

#[test]
fn reports_every_problem_with_file_line_and_path() {
    let (ok, _, stderr) = hookline(&["validate", "tests/fixtures/broken-bot.yaml"]);
    assert!(!ok, "exits non-zero");
    let file = "tests/fixtures/broken-bot.yaml";
    for expected in [
        format!("{file}:10: error: apps[0].secret: HS256 secrets must be at least 32 bytes"),
        format!("{file}:13: warning: apps[1].secret: environment variable HOOKLINE_TEST_UNSET_SECRET is not set here"),
        format!("{file}:16: error: apps[2].publicKey: not an RSA public key in PEM form"),
        format!("{file}:20: error: instances[0].apps[1]: no app has clientId \"cs-missing\""),
        format!("{file}:21: error: welcome: no task has id \"nowhere\""),
        format!("{file}:26: error: tasks[0].triggers.patterns[0]: invalid regular expression: unclosed group"),
        format!("{file}:31: error: tasks[0].nodes.first.text: unclosed '{{{{'"),
        format!("{file}:32: error: tasks[0].nodes.first.next: no node \"missing_node\" in this task"),
        format!("{file}:33: error: tasks[0].nodes.ask.choices: a choice question needs choices"),
        format!("{file}:33: error: tasks[0].nodes.ask: unreachable: no node leads here from start"),
        format!("{file}:37: warning: tasks[0].nodes.ask.prompt: no fr translation"),
        format!("{file}:37: error: tasks[0].nodes.ask.prompt.de: de is not one of the bot's languages"),
    ] {
        assert!(stderr.lines().any(|l| l.starts_with(&expected)), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn reports_type_errors_at_their_line() {
    let (ok, _, stderr) = hookline(&["validate", "tests/fixtures/wrong-type.yaml"]);
    assert!(!ok);
    assert!(
        stderr.starts_with("tests/fixtures/wrong-type.yaml:4: error: session.idleTimeoutMinutes: invalid type"),
        "{stderr}"
    );
}

#[test]
fn reports_yaml_syntax_errors_and_missing_files() {
    let file = scratch_dir("syntax").join("syntax.yaml");
    std::fs::write(&file, "id: st-x\nname: [unclosed\n").unwrap();
    let (ok, _, stderr) = hookline(&["validate", file.to_str().unwrap(), "no-such-file.yaml"]);
    assert!(!ok);
    assert!(stderr.contains("syntax.yaml:3: error:") || stderr.contains("syntax.yaml:2: error:"), "{stderr}");
    assert!(stderr.contains("no-such-file.yaml: error:"), "{stderr}");
}

#[test]
fn the_demo_bot_is_valid_and_warns_about_its_literal_secret() {
    let (ok, stdout, stderr) = hookline(&["validate", "../examples/demo-bot.yaml"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "../examples/demo-bot.yaml: ok");
    assert!(stderr.contains("apps[0].secret: literal secret: for local development only"), "{stderr}");
}

#[test]
fn the_published_schema_is_current() {
    let (ok, stdout, _) = hookline(&["schema"]);
    assert!(ok);
    let published = include_str!("../../docs/bot-definition.schema.json");
    let generated: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let published: serde_json::Value = serde_json::from_str(published).unwrap();
    assert!(generated == published, "out of date: cargo run -p hookline -- schema > docs/bot-definition.schema.json");
}

#[test]
fn token_prints_a_jwt_for_the_demo_bot() {
    let (ok, stdout, stderr) = hookline(&["token", "--bot", "st-hookline-demo", "--user", "ada"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim().split('.').count(), 3);
    let (ok, _, stderr) = hookline(&["token", "--bot", "st-nope", "--user", "ada"]);
    assert!(!ok);
    assert!(stderr.contains("no bot st-nope"), "{stderr}");
}

const DEMO: &str = include_str!("../../examples/demo-bot.yaml");

/// An empty directory of this test's own.
fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hookline-validate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn validates_directories_and_catches_a_bot_defined_twice() {
    let dir = scratch_dir("dir");
    std::fs::write(dir.join("a.yaml"), DEMO).unwrap();
    std::fs::write(dir.join("b.yml"), DEMO).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a definition").unwrap();
    let (ok, _, stderr) = hookline(&["validate", dir.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("b.yml: error: bot id st-hookline-demo is defined twice"), "{stderr}");
    assert!(!stderr.contains("notes.txt"), "{stderr}");
}

#[test]
fn secrets_take_exactly_one_form() {
    let dir = scratch_dir("secret");
    let both = DEMO.replace(
        r#"secret: { value: "hookline-demo-secret-for-local-development-only" }"#,
        r#"secret: { env: SOME_VAR, value: "hookline-demo-secret-for-local-development-only" }"#,
    );
    assert_ne!(both, DEMO);
    let file = dir.join("both.yaml");
    std::fs::write(&file, both).unwrap();
    let (ok, _, stderr) = hookline(&["validate", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains(": error: apps[0].secret: { env: VARIABLE_NAME } or { value: \"...\" }"), "{stderr}");
}

/// A receiver of `requests` HTTP requests on a loopback port: answers 200 on
/// `/ok` and 404 elsewhere, and hands back each request's head and body.
fn receiver(requests: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut head, mut length) = (String::new(), 0);
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let status = if head.starts_with("POST /ok ") { "200 OK" } else { "404 Not Found" };
            write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").unwrap();
            seen.push(format!("{head}\r\n{}", String::from_utf8(body).unwrap()));
        }
        seen
    });
    (port, seen)
}

#[test]
fn verify_posts_a_signed_challenge_to_each_delivery_url() {
    let (port, seen) = receiver(2);
    let definition = format!(
        r#"
id: st-verify
name: Verify
apps: [{{ clientId: cs-v, algorithm: HS256, secret: {{ value: "0123456789abcdef0123456789abcdef" }} }}]
instances:
  - {{ id: out, version: v2, mode: async, postUrl: "http://127.0.0.1:{port}/missing", apps: [cs-v] }}
  - {{ id: unsigned, version: v2, mode: async, postUrl: "http://127.0.0.1:{port}/ok", apps: [cs-v],
      signingSecrets: [{{ env: HOOKLINE_TEST_UNSET_SECRET }}] }}
outbound:
  allowPrivateNetworks: true
  signingSecrets: [{{ value: "whsec_aG9va2xpbmUtdGVzdC1zaWduaW5nLXNlY3JldC0zMmIh" }}]
events: {{ url: "http://127.0.0.1:{port}/ok" }}
"#
    );
    let file = std::env::temp_dir().join(format!("hookline-verify-{port}.yaml"));
    std::fs::write(&file, definition).unwrap();
    let verify = ["validate", "--verify", file.to_str().unwrap()];
    // Loopback is private: refused unless the deployment's setting says yes, as deployed.
    let (_, refused, _) = hookline(&verify);
    let (ok, stdout, _) = hookline_with(&verify, &[("HOOKLINE_ALLOW_PRIVATE_NETWORKS", "true")]);
    std::fs::remove_file(&file).unwrap();
    assert!(refused.contains("events.url") && refused.contains("failed (no answer: refused"), "{refused}");
    let unsigned = format!("instances[unsigned].postUrl http://127.0.0.1:{port}/ok: failed (no answer: not sent");
    assert!(stdout.contains(&unsigned), "{stdout}");
    assert!(!ok, "a URL that does not answer 2xx fails the check");
    assert!(
        stdout.contains(&format!("st-verify events.url http://127.0.0.1:{port}/ok: verified (answered 200)")),
        "{stdout}"
    );
    let missing = format!("st-verify instances[out].postUrl http://127.0.0.1:{port}/missing: failed (answered 404)");
    assert!(stdout.contains(&missing), "{stdout}");
    for request in seen.join().unwrap() {
        let head = request.to_ascii_lowercase();
        assert!(head.contains("webhook-id: verify_") && head.contains("webhook-signature: v1,"), "{request}");
        assert!(
            request.contains(r#""type":"verification""#) && request.contains(r#""botId":"st-verify""#),
            "{request}"
        );
    }
}
