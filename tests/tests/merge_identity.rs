//! `mergeIdentity`: a user who chatted anonymously in a widget signs in, and
//! the identified user's conversation continues the anonymous one (context,
//! the question waiting, user data, the log) instead of starting over. Only a
//! token that proves its user, signed by an app of the bot, may name the
//! conversation it continues (`mergeFrom`); on memory and on DynamoDB with
//! SQS, synchronous and asynchronous.

use std::time::Duration;

use hookline_core::process::Settings;
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const BOT: &str = "st-isolation";
const PER_USER_SECRET: &str = "isolation-per-user-secret-0123456789-abcdef";
const WEB_A_SECRET: &str = "isolation-web-a-secret-0123456789-abcdef";
const WEB_B_SECRET: &str = "isolation-web-b-secret-0123456789-abcdef";

async fn isolation_server(backend: Backend) -> Server {
    let yaml = include_str!("../fixtures/bots/isolation-bot.yaml").replace("RECEIVER", "127.0.0.1:9");
    Server::start_on(backend, registry_with(&[("isolation-bot.yaml".into(), yaml)]), Settings::default()).await
}

/// An anonymous widget's token (no user named).
fn anonymous(secret: &str, app: &str) -> String {
    sign_hs(Algorithm::HS256, secret, &json!({"appId": app, "iat": now()}))
}

/// A signed-in user's token, naming the anonymous user it continues.
fn signed_in(user: &str, merge_from: Value) -> String {
    let claims = json!({"appId": "cs-per-user", "userIdentity": user, "iat": now(), "mergeFrom": merge_from});
    sign_hs(Algorithm::HS256, PER_USER_SECRET, &claims)
}

async fn send(server: &Server, token: &str, body: Value) -> Reply {
    server.post(&format!("/chatbot/v2/webhook/{BOT}/hookInstance/a"), token, &body).await
}

fn text(user: &str, val: &str) -> Value {
    json!({"message": {"type": "text", "val": val}, "from": {"id": user}})
}

fn merging(user: &str, val: &str) -> Value {
    json!({"message": {"type": "text", "val": val}, "from": {"id": user}, "mergeIdentity": true})
}

async fn history(server: &Server, token: &str) -> Vec<String> {
    server.get(&format!("/api/chathistory/{BOT}/webhook?limit=100"), token).await.history_texts()
}

async fn signing_in_continues_the_anonymous_conversation(backend: Backend) {
    let server = isolation_server(backend).await;
    let widget = anonymous(WEB_A_SECRET, "cs-web-a");
    let mut first = text("anon-7", "remember my word");
    first["from"]["userInfo"] = json!({"firstName": "Ada"});
    assert_eq!(send(&server, &widget, first).await.texts(), ["What's your secret word?"]);

    // Signed in: the question the anonymous session asked is answered.
    let token = signed_in("ada@example.com", json!({"appId": "cs-web-a", "userId": "anon-7"}));
    let reply = send(&server, &token, merging("ada@example.com", "swordfish")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.texts(), ["I'll remember swordfish."]);
    assert_eq!(reply.body["endReason"], "Fulfilled");
    let recall = send(&server, &token, merging("ada@example.com", "what is my word")).await;
    assert_eq!(recall.texts(), ["Your word is swordfish.", "name=Ada tier="]);
    // The log went with it, once: a second message that asks to merge finds
    // nothing left to merge.
    let expected = [
        "remember my word",
        "What's your secret word?",
        "swordfish",
        "I'll remember swordfish.",
        "what is my word",
        "Your word is swordfish.",
        "name=Ada tier=",
    ];
    assert_eq!(history(&server, &token).await, expected);

    // The anonymous conversation keeps its log, and its session is over.
    assert_eq!(history(&server, &widget_for("anon-7")).await, ["remember my word", "What's your secret word?"]);
    let after = send(&server, &widget, text("anon-7", "swordfish")).await;
    assert_eq!(after.texts(), ["Sorry, I did not get that."]);
}

/// The anonymous widget's token for one of its users (history reads need the user named).
fn widget_for(user: &str) -> String {
    sign_hs(Algorithm::HS256, WEB_A_SECRET, &json!({"appId": "cs-web-a", "userIdentity": user}))
}

async fn only_a_token_that_proves_both_sides_merges(backend: Backend) {
    let server = isolation_server(backend).await;
    let widget = anonymous(WEB_A_SECRET, "cs-web-a");
    assert_eq!(send(&server, &widget, text("anon-8", "remember my word")).await.status, 200);
    let from = json!({"appId": "cs-web-a", "userId": "anon-8"});

    // Without mergeIdentity, the claim is not acted on; without the claim,
    // mergeIdentity names nothing to merge (the spec's sample sends it).
    let token = signed_in("bo@example.com", from.clone());
    assert_eq!(
        send(&server, &token, text("bo@example.com", "swordfish")).await.texts(),
        ["Sorry, I did not get that."]
    );
    // A token with a claim of that name in another shape is not refused for it.
    let other = signed_in("bo@example.com", json!("another system's claim"));
    assert_eq!(send(&server, &other, text("bo@example.com", "hi")).await.status, 200);
    let unnamed =
        sign_hs(Algorithm::HS256, PER_USER_SECRET, &json!({"appId": "cs-per-user", "userIdentity": "cy@example.com"}));
    let reply = send(&server, &unnamed, merging("cy@example.com", "swordfish")).await;
    assert_eq!(reply.texts(), ["Sorry, I did not get that."]);

    // Refused: an anonymous app's token (it proves no user), a claim naming
    // an app of no such bot, a malformed claim.
    let cases = [
        (
            "anonymous signer",
            sign_hs(Algorithm::HS256, WEB_B_SECRET, &json!({"appId": "cs-web-b", "mergeFrom": from})),
            "an anonymous app's token proves no user: it cannot merge conversations",
        ),
        (
            "unknown app",
            signed_in("di@example.com", json!({"appId": "cs-elsewhere", "userId": "anon-8"})),
            "mergeFrom names no app of this bot",
        ),
        (
            "malformed",
            signed_in("di@example.com", json!("anon-8")),
            "mergeFrom must be {\"appId\", \"userId\"}, the user a string of at most 256 characters",
        ),
    ];
    for (case, token, msg) in cases {
        let reply = send(&server, &token, merging("di@example.com", "swordfish")).await;
        assert_eq!(reply.status, 401, "{case}: {}", reply.body);
        assert_eq!(reply.error_msg(), "Invalid Access token", "{case}");
        assert_eq!(reply.body["errors"][0]["detail"], msg, "{case}");
    }

    // The anonymous question still waits for its own user.
    assert_eq!(send(&server, &widget, text("anon-8", "marlin")).await.texts(), ["I'll remember marlin."]);
}

/// Asynchronously: the merge travels with the queued message and the
/// answer goes to the POST_URL.
async fn an_asynchronous_message_merges_when_it_runs(backend: Backend) {
    let receiver = Receiver::start(vec![("/post", Answer::json(json!({})))]).await;
    let yaml = include_str!("../fixtures/bots/channel-bot.yaml").replace("RECEIVER", &receiver.addr);
    let registry = registry_with(&[("channel-bot.yaml".into(), yaml)]);
    let mut settings = Settings::default();
    settings.worker.retry_base = Duration::from_millis(100);
    let server = Server::start_on(backend, registry, settings).await;
    let widget =
        sign_hs(Algorithm::HS256, "channel-bot-web-secret-0123456789-abcd", &json!({"appId": "cs-channel-web"}));
    let path = "/chatbot/v2/webhook/st-channel-bot/hookInstance/poll";
    assert_eq!(server.post(path, &widget, &text("anon-9", "survey")).await.texts(), ["Rate us from 1 to 5"]);

    let claims = json!({"appId": "cs-channel", "mergeFrom": {"appId": "cs-channel-web", "userId": "anon-9"}});
    let token = sign_hs(Algorithm::HS256, "channel-bot-secret-0123456789-abcdefgh", &claims);
    let path = "/chatbot/v2/webhook/st-channel-bot/hookInstance/async";
    let ack = server.post(path, &token, &merging("eve", "4")).await;
    assert_eq!(ack.body["status"], "ok", "{}", ack.body);
    let posts = receiver.wait_for_path("/post", 2, 10).await;
    assert_eq!(posts[0].body["to"], "eve");
    assert_eq!(posts[0].body["data"][0]["val"], "Thanks for 4!");
    assert_eq!(posts[1].body["endReason"], "Fulfilled");
}

on_both_stores!(
    signing_in_continues_the_anonymous_conversation,
    only_a_token_that_proves_both_sides_merges,
    an_asynchronous_message_merges_when_it_runs,
);
