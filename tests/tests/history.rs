//! GET /api/chathistory: a user's own conversation from the log, in pages,
//! newest first, or everything after a seq.

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
    assert_eq!(
        (&messages[2]["direction"], &messages[2]["type"], &messages[2]["val"]),
        (&json!("incoming"), &json!("text"), &json!("balance"))
    );
    assert_eq!(messages[3]["direction"], "outgoing");
    assert_eq!(messages[3]["messageId"], balance.body["data"][0]["messageId"]);
    assert_eq!(messages[3]["val"], "You have $45,000 in your Salary account.");

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

on_both_stores!(pages_newest_first_and_after_a_seq, only_the_callers_own_history);
