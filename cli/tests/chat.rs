//! `hookline chat` driven as a person would type into it: buttons picked by
//! number, a polled answer followed, a form answered, a file uploaded, an
//! asynchronous instance's replies read from the demo's inbox.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Served, serve, serve_with};

/// What chat prints for these typed lines (stdin closed after them).
fn chat(served: &Served, args: &[&str], typed: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookline"))
        .args(["chat", "--url", &format!("http://{}", served.addr)])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(typed.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn chat_picks_buttons_by_number_and_answers_forms() {
    let served = serve(&[]);
    let typed = "menu\n2\nLisbon\nreservation form\n/form bogus=1\n\
                 /form name=Ada email=ada@example.com guests=2 day=2026-12-24 seating=terrace\n";
    let shown = chat(&served, &["--user", "ada"], typed);
    let expected = [
        "bot: What would you like, ?\n  [1] Balance\n  [2] Weather\n  [3] Book a table\n",
        // Button 2's payload, "weather", starts the weather task.
        "bot: Which city?\nbot: Lisbon: ",
        "bot: form \"Book a table\"\n  name (textField, required) = \"\"\n  email (email, required)\n",
        "  seating (dropdown, one of inside|terrace)\n",
        "! the form has no field bogus (it has name, email, guests, day, seating)\n",
        "bot: Booked: 2 guests for Ada on 2026-12-24 (terrace).\n",
    ];
    let mut rest = shown.as_str();
    for part in expected {
        let at = rest.find(part).unwrap_or_else(|| panic!("no {part:?} after what came before in:\n{shown}"));
        rest = &rest[at + part.len()..];
    }
}

#[test]
fn chat_follows_polls_and_reads_asynchronous_replies() {
    let served = serve(&[]);
    let polled = chat(&served, &["--instance", "polling", "--user", "pol"], "weather\nLisbon\n");
    assert!(polled.contains("bot: Which city?\nbot: Lisbon: "), "the forecast came through the poll:\n{polled}");

    let shown = chat(&served, &["--instance", "async", "--user", "asy", "--raw"], "hello\n");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[1], r#"> {"message":{"type":"text","val":"hello"},"from":{"id":"asy"}}"#, "{shown}");
    assert!(lines[2].starts_with(r#"< {"status":"ok""#), "the acknowledgement:\n{shown}");
    assert!(lines[3].starts_with(r#"< {"to":"asy""#) && lines[4] == "bot: Hello, how can I help you?", "{shown}");
    assert!(shown.ends_with("   (end of task: Fulfilled)\n"), "{shown}");
}

#[test]
fn chat_uploads_a_file_and_sends_it() {
    let served = serve(&[]);
    let receipt = std::env::temp_dir().join(format!("hookline-chat-receipt-{}.txt", std::process::id()));
    std::fs::write(&receipt, "lunch with a client: 21\n").unwrap();
    let typed = format!("expense claim\n/upload {} here it is\n/upload /no/such/file\n", receipt.display());
    let shown = chat(&served, &["--user", "ada"], &typed);
    let name = receipt.file_name().unwrap().to_str().unwrap();
    assert!(shown.contains("bot: Please attach the receipt.\n   (uploaded "), "{shown}");
    assert!(shown.contains(&format!("bot: Thanks, {name} (24 bytes) is with accounting.\n")), "{shown}");
    assert!(shown.ends_with("! /no/such/file: No such file or directory (os error 2)\n"), "{shown}");
    std::fs::remove_file(receipt).ok();
}

/// A number picks from the last answer's buttons only; after an answer
/// without any, it is sent as typed.
#[test]
fn a_number_picks_from_the_last_answer_only() {
    let served = serve(&[]);
    let shown = chat(&served, &["--user", "num"], "menu\nhello\n2\n");
    let after_hello = shown.split("bot: Hello, how can I help you?").nth(1).expect("the greeting");
    assert!(!after_hello.contains("Which city?"), "2 was not button 2 any more:\n{shown}");
}

/// The demo inbox keeps its latest 100 deliveries: chat still shows each
/// turn's replies once it is full.
#[test]
fn chat_reads_a_full_inbox() {
    // Quiet: nobody reads the server's log, whose pipe would fill.
    let served = serve_with(&[], &[("HOOKLINE_LOG", "warn")]);
    let shown = chat(&served, &["--instance", "async", "--user", "full"], &"hello\n".repeat(60));
    assert_eq!(shown.matches("bot: Hello, how can I help you?\n").count(), 60, "{shown}");
    assert!(!shown.contains("! "), "{shown}");
}

#[test]
fn chat_says_what_the_server_refused() {
    let served = serve(&[]);
    let shown = chat(&served, &["--token", "not-a-token"], "hello\n");
    assert!(shown.contains("! 401 Unauthorized: Invalid Access token\n"), "{shown}");
}
