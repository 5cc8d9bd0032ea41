//! `hookline serve`'s browser console, server side: the page, the bots it
//! lists, the tokens it mints, and who may reach them. The page itself is
//! driven in headless Chromium by tests/browser/console.mjs.

mod common;

use common::{post, post_with, request, serve, serve_with};
use serde_json::{Value, json};

const DEV: (&str, &str) = ("x-hookline-dev", "1");

#[test]
fn the_console_lists_the_bots_and_mints_tokens_that_talk_to_them() {
    let served = serve_with(&[], &[("HOOKLINE_LOG", "warn")]);
    let addr = &served.addr;

    let (status, headers, page) = request(addr, "GET", "/console", &[]);
    assert!(status.contains("200"), "{status}");
    assert!(headers.contains("content-type: text/html"), "{headers}");
    assert!(headers.contains("content-security-policy: default-src 'self'"), "{headers}");
    assert!(page.contains("<title>Hookline console</title>"));

    let (status, _, listed) = request(addr, "GET", "/console/api/bots", &[DEV]);
    assert!(status.contains("200"), "{status}: {listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let bot = &listed["bots"][0];
    assert_eq!(bot["id"], "st-hookline-demo");
    assert_eq!(bot["upload"], "/api/attachments/file/st-hookline-demo/rtm");
    let modes: Vec<(&str, &str)> = bot["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].as_str().unwrap(), i["mode"].as_str().unwrap()))
        .collect();
    assert_eq!(modes, [("webchat", "sync"), ("ivr", "sync"), ("polling", "polling"), ("async", "async")]);

    let asked = json!({"bot": "st-hookline-demo", "instance": "polling", "user": "console-user"}).to_string();
    let (status, _, minted) = post_with(addr, "/console/api/token", &[DEV], &asked);
    assert!(status.contains("200"), "{status}: {minted}");
    let minted: Value = serde_json::from_str(&minted).unwrap();
    assert_eq!(minted["app"], "cs-hookline-demo");
    let path = bot["instances"][2]["path"].as_str().unwrap();
    let message = json!({"message": {"type": "text", "val": "balance"}, "from": {"id": "console-user"}});
    let (status, _, answer) = post(addr, path, minted["token"].as_str().unwrap(), &message.to_string());
    assert!(status.contains("200"), "{status}: {answer}");
    assert!(answer.contains("$45,000"), "{answer}");

    for (asked, error) in [
        (json!({"bot": "st-nobody", "instance": "webchat", "user": "u"}), "no bot st-nobody"),
        (json!({"bot": "st-hookline-demo", "instance": "sms", "user": "u"}), "no instance sms"),
        (json!({"bot": "st-hookline-demo", "instance": "webchat", "user": " "}), "give a user id"),
    ] {
        let (status, _, answer) = post_with(addr, "/console/api/token", &[DEV], &asked.to_string());
        assert!(status.contains("400"), "{status}: {answer}");
        assert!(answer.contains(error), "{answer}");
    }
}

#[test]
fn the_console_is_for_this_machine_only() {
    let served = serve_with(&[], &[("HOOKLINE_LOG", "warn")]);
    let addr = &served.addr;
    let asked = json!({"bot": "st-hookline-demo", "instance": "webchat", "user": "u"}).to_string();
    // No dev header: another page's fetch or form.
    let (status, _, answer) = post_with(addr, "/console/api/token", &[], &asked);
    assert!(status.contains("403"), "{status}: {answer}");
    assert!(answer.contains("x-hookline-dev"), "{answer}");
    // Relayed, or for another host name (DNS rebinding): the page too.
    for headers in [[("X-Forwarded-For", "203.0.113.9"), DEV], [("Forwarded", "for=203.0.113.9"), DEV]] {
        let (status, _, _) = post_with(addr, "/console/api/token", &headers, &asked);
        assert!(status.contains("403"), "{status}");
        let (status, _, _) = request(addr, "GET", "/console", &headers[..1]);
        assert!(status.contains("403"), "{status}");
    }
    let (status, _, _) =
        request(addr, "GET", "/console/api/deliveries?bot=st-hookline-demo&user=u&app=cs-hookline-demo", &[DEV]);
    assert!(status.contains("200"), "{status}");
    // Another origin's page must ask first to send the header: not allowed.
    let preflight = [
        ("Origin", "http://elsewhere.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type,x-hookline-dev"),
    ];
    let (status, headers, _) = request(addr, "OPTIONS", "/console/api/token", &preflight);
    assert!(status.contains("403"), "{status}");
    assert!(!headers.contains("access-control-allow-origin"), "{headers}");

    // Behind a proxy, anyone may be "this machine": no console at all.
    let proxied = serve(&["--behind-proxy"]);
    let (status, _, _) = request(&proxied.addr, "GET", "/console", &[]);
    assert!(status.contains("404"), "{status}");
    let (status, _, _) = post_with(&proxied.addr, "/console/api/token", &[DEV], &asked);
    assert!(status.contains("404"), "{status}");
}
