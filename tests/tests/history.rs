//! GET /api/chathistory: a user's own conversation from the log, in pages,
//! newest first, or everything after a seq, in the shape Kore's web SDK reads.

use hookline_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

async fn history(server: &Server, token: &str, query: &str) -> Reply {
    let path = format!("/api/chathistory/{TEST_BOT}/webhook{query}");
    Server::send(server.request(reqwest::Method::GET, &path).header("Authorization", format!("bearer {token}"))).await
}

fn seqs(reply: &Reply) -> Vec<u64> {
    reply.body["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

async fn pages_newest_first_and_after_a_seq(backend: Backend) {
    let server = Server::start(backend).await;
    server.say("hana", "hello").await; // seq 0 in, 1 out
    let balance = server.say("hana", "balance").await; // 2 in, 3 and 4 out
    server.say("hana", "ping 7").await; // 5 in, 6 out
    let token = hs256_token("hana");

    let all = history(&server, &token, "").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(seqs(&all), (0..7).collect::<Vec<_>>());
    assert_eq!(all.body["moreAvailable"], false);
    let messages = all.body["messages"].as_array().unwrap();
    assert_eq!((&messages[2]["type"], text_of(&messages[2])), (&json!("incoming"), "balance"));
    assert_eq!(messages[3]["type"], "outgoing");
    assert_eq!(messages[3]["_id"], balance.body["data"][0]["messageId"]);
    assert_eq!(text_of(&messages[3]), "You have $45,000 in your Salary account.");

    let newest = history(&server, &token, "?limit=2").await;
    assert_eq!((seqs(&newest), newest.body["moreAvailable"].clone()), (vec![5, 6], json!(true)));
    let older = history(&server, &token, "?limit=2&offset=2").await;
    assert_eq!(seqs(&older), [3, 4]);
    let oldest = history(&server, &token, "?limit=5&offset=5").await;
    assert_eq!((seqs(&oldest), oldest.body["moreAvailable"].clone()), (vec![0, 1], json!(false)));

    let after = history(&server, &token, "?after=3").await;
    assert_eq!((seqs(&after), after.body["moreAvailable"].clone()), (vec![4, 5, 6], json!(false)));
    let after_limited = history(&server, &token, "?after=0&limit=2").await;
    assert_eq!((seqs(&after_limited), after_limited.body["moreAvailable"].clone()), (vec![1, 2], json!(true)));
    assert_eq!(seqs(&history(&server, &token, "?after=6").await), Vec::<u64>::new());
}

async fn only_the_callers_own_history(backend: Backend) {
    let server = Server::start(backend).await;
    server.say("ivan", "hello").await;
    let stranger = history(&server, &hs256_token("someone-else"), "").await;
    assert_eq!((stranger.status, stranger.body["messages"].clone()), (200, json!([])));

    let no_identity = sign_hs(Algorithm::HS256, HS256_SECRET, &json!({"appId": "cs-hs256"}));
    let reply = history(&server, &no_identity, "").await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error_msg(), "Invalid Access token");
    let other_bot = sign_hs(Algorithm::HS256, OTHER_ONLY_SECRET, &claims("cs-other", "ivan"));
    assert_eq!(history(&server, &other_bot, "").await.status, 401);
    let bad: Value = history(&server, &hs256_token("ivan"), "?limit=lots").await.body;
    assert_eq!(bad["errors"][0]["code"], 400);
}

fn text_of(message: &Value) -> &str {
    message["components"][0]["data"]["text"].as_str().unwrap()
}

/// A history message as kore-web-sdk 10.1.12 turns it into a chat bubble.
#[derive(Debug, PartialEq)]
enum Bubble {
    User(String),
    Bot(String),
    /// A bot template, by its `payload.template_type`.
    Template(String),
}

/// What the SDK renders of a history answer, following its code:
/// `onBackWardHistory` (kore-bot-sdk-client.js) reads `moreAvailable`, and per
/// message `_id`, `type` (`"incoming"` is the user, anything else the bot,
/// which gets the answer's `icon`), `createdOn`, and `components[].cT`, taking
/// `data.text` as the body of `"text"` components (the only ones drawn);
/// `historySyncing` (chatWindow.ts) then `JSON.parse`s the body: an object
/// with a `text` collapses to that text, one with a `payload` is a template,
/// and what does not parse is text.
fn as_the_sdk_renders(answer: &Value) -> (Vec<Bubble>, bool) {
    let more = answer["moreAvailable"].as_bool().expect("moreAvailable is read as a boolean");
    let bubbles = answer["messages"]
        .as_array()
        .expect("messages is an array")
        .iter()
        .map(|message| {
            let id = message["_id"].as_str().expect("_id names the message");
            // It is looked up as `div#<id>`: a CSS id, not starting with a digit.
            assert!(!id.starts_with(|c: char| c.is_ascii_digit()) && !id.contains(' '), "{id}");
            let created = message["createdOn"].as_str().expect("createdOn");
            // `new Date(createdOn)`: an ISO 8601 instant, as 2026-11-30T01:02:03.456Z.
            let shape = created.bytes().map(|b| if b.is_ascii_digit() { b'0' } else { b }).collect::<Vec<_>>();
            assert_eq!(shape, b"0000-00-00T00:00:00.000Z", "{created}");
            let component = &message["components"][0];
            assert_eq!(component["cT"], "text", "only text components are drawn");
            let body = component["data"]["text"].as_str().expect("data.text is the body");
            let bot = message["type"] != "incoming";
            if bot {
                assert!(answer["icon"].as_str().is_some_and(|i| i.starts_with("http")), "bot messages get the icon");
            }
            match serde_json::from_str::<Value>(body) {
                Ok(parsed) if parsed["text"].is_string() => Bubble::Bot(parsed["text"].as_str().unwrap().into()),
                Ok(parsed) if parsed["payload"]["template_type"].is_string() => {
                    Bubble::Template(parsed["payload"]["template_type"].as_str().unwrap().into())
                }
                _ if bot => Bubble::Bot(body.into()),
                _ => Bubble::User(body.into()),
            }
        })
        .collect();
    (bubbles, more)
}

/// The SDK's first request when its chat window opens, and its paging.
async fn kore_web_sdk_renders_the_history(backend: Backend) {
    let server = Server::start(backend).await;
    server.say("kim", "hello").await;
    server.say("kim", "show menu").await;
    let token = hs256_token("kim");
    let first = history(&server, &token, &format!("?botId={TEST_BOT}&limit=10")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let (bubbles, more) = as_the_sdk_renders(&first.body);
    assert_eq!(
        bubbles,
        [
            Bubble::User("hello".into()),
            Bubble::Bot("Hello there.".into()),
            Bubble::User("show menu".into()),
            Bubble::Template("button".into()),
        ]
    );
    assert!(!more);
    // Scrolling up asks for the next page by offset; each page oldest first.
    let page = history(&server, &token, &format!("?botId={TEST_BOT}&offset=2&limit=2")).await;
    assert_eq!(
        as_the_sdk_renders(&page.body),
        (vec![Bubble::User("hello".into()), Bubble::Bot("Hello there.".into())], false)
    );
    let newest = history(&server, &token, &format!("?botId={TEST_BOT}&limit=2")).await;
    assert!(as_the_sdk_renders(&newest.body).1, "more pages to scroll to");
}

on_both_stores!(pages_newest_first_and_after_a_seq, only_the_callers_own_history, kore_web_sdk_renders_the_history);
