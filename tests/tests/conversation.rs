//! Conversations over HTTP, the same on both stores: flows, sessions, tags,
//! the conversation log, and concurrency.

use std::sync::Arc;
use std::time::Duration;

use hookline_core::app::records::{Conversation, Direction};
use hookline_core::app::store::TurnWrite;
use hookline_core::engine::{ActiveTask, Session};
use hookline_core::ids::ConversationKey;
use hookline_core::process::Settings;
use hookline_tests::*;
use serde_json::json;

async fn questions_validate_save_and_template(backend: Backend) {
    let server = Server::start(backend).await;
    let u = "alice";
    assert_eq!(server.say(u, "I want to register").await.texts(), ["Your name?"]);
    assert_eq!(server.say(u, "Alice").await.texts(), ["Your email?"]);
    assert_eq!(server.say(u, "not an email").await.texts(), ["That is not an email address.", "Your email?"]);
    assert_eq!(server.say(u, "alice@example.com").await.texts(), ["Your phone?"]);
    assert_eq!(
        server.say(u, "call me").await.texts(),
        ["Sorry, that doesn't look like a valid phone number.", "Your phone?"]
    );
    assert_eq!(server.say(u, "+44 20 7946 0958").await.texts(), ["Your age?"]);
    assert_eq!(server.say(u, "forty").await.texts()[1], "Your age?");
    assert_eq!(server.say(u, "40").await.texts(), ["Which plan? (1) basic (2) premium"]);
    assert_eq!(server.say(u, "platinum").await.texts()[1], "Which plan? (1) basic (2) premium");
    let done = server.say(u, "GOLD").await;
    assert_eq!(done.texts(), ["Signed up Alice <alice@example.com> +442079460958, age 40, plan premium."]);
    assert_eq!(
        (
            &done.body["endOfTask"],
            &done.body["endReason"],
            &done.body["completedTaskId"],
            &done.body["completedTaskName"]
        ),
        (&json!(true), &json!("Fulfilled"), &json!("signup"), &json!("sign up"))
    );
    // Collected values stay in the session for later tasks.
    assert_eq!(server.say(u, "who am i").await.texts()[0], "name=Alice first= id=alice");
}

async fn cancel_interrupt_and_fallback(backend: Backend) {
    let server = Server::start(backend).await;
    let u = "bob";
    assert_eq!(server.say(u, "nonsense").await.texts(), ["I did not understand."]);
    server.say(u, "sign up").await;
    let cancelled = server.say(u, "Cancel").await;
    assert_eq!(cancelled.texts(), ["OK, I've cancelled that."]);
    assert_eq!(cancelled.body["endReason"], "Cancelled");
    assert_eq!(cancelled.body["completedTaskId"], "signup");

    server.say(u, "sign up").await;
    let switched = server.say(u, "what's my balance?").await;
    assert_eq!(
        switched.texts(),
        ["You have $45,000 in your Salary account.", "Let me know if you need any other assistance"]
    );
    // The last task ended in the turn is reported.
    assert_eq!(switched.body["completedTaskId"], "dg-balance");

    server.say(u, "sign up").await;
    let interrupted = server.say(u, "hello").await;
    assert_eq!(interrupted.texts(), ["Hello there."]);
    assert_eq!(interrupted.body["completedTaskId"], "greeting");
    // The sign-up is gone: a name is not expected any more.
    assert_eq!(server.say(u, "Bob").await.texts(), ["I did not understand."]);
}

async fn interruption_is_reported_while_the_new_task_waits(backend: Backend) {
    let server = Server::start(backend).await;
    server.say("carol", "sign up").await;
    server.say("carol", "Carol").await;
    let reply = server.say("carol", "I have feedback").await;
    assert_eq!(reply.texts(), ["How would you rate us, 1 to 5?"]);
    assert_eq!(
        (
            &reply.body["endOfTask"],
            &reply.body["endReason"],
            &reply.body["completedTaskId"],
            &reply.body["completedTaskName"]
        ),
        (&json!(true), &json!("Interrupted"), &json!("signup"), &json!("sign up"))
    );
    // The new task runs on; the old one is gone.
    let reply = server.say("carol", "5").await;
    assert_eq!(reply.texts(), ["Thanks for rating us 5."]);
    assert_eq!(reply.body["completedTaskId"], "feedback");
}

async fn the_same_task_s_trigger_answers_its_question(backend: Backend) {
    let server = Server::start(backend).await;
    server.say("cleo", "sign up").await;
    server.say("cleo", "Cleo").await;
    let reply = server.say("cleo", "sign up").await;
    assert_eq!(reply.texts(), ["That is not an email address.", "Your email?"]);
    assert_eq!(reply.body["endOfTask"], false);
}

async fn new_session_and_idle_timeout_end_the_task(backend: Backend) {
    let server = Server::start(backend).await;
    server.say("dave", "sign up").await;
    let body = json!({"session": {"new": true}, "message": {"type": "text", "val": "Dave"}, "from": {"id": "dave"}});
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("dave"), &body).await;
    assert_eq!(reply.texts(), ["I did not understand."]);

    // A session idle past the bot's timeout (15 minutes) is over.
    let key = ConversationKey::new(TEST_BOT, "erin");
    let stale = Conversation {
        session: Some(Session {
            id: "se-stale".into(),
            started_at: 0,
            last_active_at: (now() - 16 * 60) * 1000,
            language: "en".into(),
            task: Some(ActiveTask { task_id: "signup".into(), node_id: "ask_name".into(), retries: 0 }),
            ..Session::default()
        }),
        next_seq: 0,
        ..Conversation::default()
    };
    let write = TurnWrite::of(&stale, 0, now() + 3600);
    server.stores.conversations.save_turn(&key, write).await.unwrap();
    assert_eq!(server.say("erin", "Erin").await.texts(), ["I did not understand."]);

    // ...while a recent one goes on.
    let fresh = Conversation {
        session: Some(Session {
            id: "se-fresh".into(),
            last_active_at: (now() - 60) * 1000,
            ..stale.session.clone().unwrap()
        }),
        ..stale.clone()
    };
    let key = ConversationKey::new(TEST_BOT, "frank");
    let write = TurnWrite::of(&fresh, 0, now() + 3600);
    server.stores.conversations.save_turn(&key, write).await.unwrap();
    assert_eq!(server.say("frank", "Frank").await.texts(), ["Your email?"]);
}

async fn tags_user_info_and_custom_data(backend: Backend) {
    let server = Server::start(backend).await;
    let body = json!({
        "message": {"type": "text", "val": "who am i"},
        "from": {"id": "gina", "userInfo": {"firstName": "Gina", "lastName": "Lopez"}},
        "metaTags": {
            "userLevelTags": [{"name": "tier", "value": "gold"}],
            "sessionLevelTags": [{"name": "channel", "value": "ivr"}],
            "messageLevelTags": [{"name": "intent", "value": "profile"}]
        },
        "customData": {"customText": "from the IVR"}
    });
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("gina"), &body).await;
    assert_eq!(reply.texts(), ["name= first=Gina id=gina", "tier=gold channel=ivr custom=from the IVR"]);

    // User info and tags are remembered; the session tag ends with the session.
    let body =
        json!({"session": {"new": true}, "message": {"type": "text", "val": "who am i"}, "from": {"id": "gina"}});
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("gina"), &body).await;
    assert_eq!(reply.texts(), ["name= first=Gina id=gina", "tier=gold channel= custom="]);

    // Message tags are kept with the message in the log.
    let log = server.stores.conversations.read_log(&ConversationKey::new(TEST_BOT, "gina"), None, 100).await.unwrap();
    assert_eq!(log[0].body["messageLevelTags"], json!([{"name": "intent", "value": "profile"}]));
}

/// Texts may differ per instance (channel): the phone line's wording on the
/// v1 voice instance, the default elsewhere.
async fn texts_per_instance(backend: Backend) {
    let server = Server::start(backend).await;
    let body = json!({"message": {"text": "where am i"}, "from": {"id": "pia"}});
    let reply = server.post(&format!("{}/hookInstance/voice", v1_path(TEST_BOT)), &hs256_token("pia"), &body).await;
    assert_eq!(reply.body["text"], "You are on the phone.", "{}", reply.body);
    assert_eq!(server.say("pia", "where am i").await.texts(), ["You are chatting."]);
    // preferredChannelForResponse picks another instance's texts; a channel the bot
    // has no instance for (the spec's sample `rtm`) changes nothing.
    let preferring = |channel: &str| json!({"message": {"type": "text", "val": "where am i"}, "from": {"id": "pia"}, "preferredChannelForResponse": channel});
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("pia"), &preferring("voice")).await;
    assert_eq!(reply.texts(), ["You are on the phone."], "{}", reply.body);
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("pia"), &preferring("rtm")).await;
    assert_eq!(reply.texts(), ["You are chatting."], "{}", reply.body);
}

/// A button's postback, sent back as a `template` message, runs what its
/// payload names (the menu's Balance button here).
async fn a_buttons_postback_runs_its_payload(backend: Backend) {
    let server = Server::start(backend).await;
    let menu = server.say("una", "show menu").await;
    let button = menu.body["data"][0]["val"]["payload"]["buttons"][0].clone();
    assert_eq!(button["payload"], "balance", "{}", menu.body);
    let click = json!({"message": {"type": "template", "val": button}, "from": {"id": "una"}});
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("una"), &click).await;
    assert_eq!(reply.texts()[0], "You have $45,000 in your Salary account.", "{}", reply.body);
    assert_eq!(reply.body["completedTaskId"], "dg-balance");
    let log = server.stores.conversations.read_log(&ConversationKey::new(TEST_BOT, "una"), None, 10).await.unwrap();
    assert_eq!(log[2].body["request"]["message"]["type"], "template", "the click is logged as sent");

    // As Kore's web SDK (v3) sends a quick reply: its payload JSON-encoded, as text.
    let quick = json!({"message": {"type": "text", "val": "\"balance\""}, "from": {"id": "una"}});
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("una"), &quick).await;
    assert_eq!(reply.body["completedTaskId"], "dg-balance", "{}", reply.body);
}

/// A template reads as text where the client shows text only: in v1, and on
/// an instance that asks for plain text; elsewhere it goes out as it is.
async fn templates_as_text_for_text_only_clients(backend: Backend) {
    let server = Server::start(backend).await;
    let body = json!({"message": {"text": "show menu"}, "from": {"id": "tom"}});
    let reply = server.post(&format!("{}/hookInstance/voice", v1_path(TEST_BOT)), &hs256_token("tom"), &body).await;
    assert_eq!(reply.body["text"], "Pick one\n- Balance", "{}", reply.body);
    let second = format!("{}/hookInstance/second", v2_path(TEST_BOT));
    let reply = server
        .post(
            &second,
            &hs256_token("tom"),
            &json!({"message": {"type": "text", "val": "show menu"}, "from": {"id": "tom"}}),
        )
        .await;
    assert_eq!(
        (&reply.body["data"][0]["type"], &reply.body["data"][0]["val"]),
        (&json!("text"), &json!("Pick one\n- Balance"))
    );
    let reply = server.say("tom", "show menu").await;
    assert_eq!(reply.body["data"][0]["val"]["payload"]["template_type"], "button", "{}", reply.body);
}

/// The v1 table lists the tag fields at the top level; the spec types
/// `metaTags` "String": both are read as meta tags.
async fn tags_at_the_top_level_of_v1_and_meta_tags_as_json_text(backend: Backend) {
    let server = Server::start(backend).await;
    let v1 = json!({
        "message": {"text": "who am i"},
        "from": {"id": "hugo"},
        "userLevelTags": [{"name": "tier", "value": "silver"}],
        "sessionLevelTags": [{"name": "channel", "value": "phone"}]
    });
    let reply = server.post(&v1_path(TEST_BOT), &hs256_token("hugo"), &v1).await;
    assert_eq!(
        reply.body["text"],
        json!(["name= first= id=hugo", "tier=silver channel=phone custom="]),
        "{}",
        reply.body
    );

    let tags = json!({"userLevelTags": [{"name": "tier", "value": "gold"}], "sessionLevelTags": [{"name": "channel", "value": "web"}]});
    let v2 =
        json!({"message": {"type": "text", "val": "who am i"}, "from": {"id": "hugo"}, "metaTags": tags.to_string()});
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("hugo"), &v2).await;
    assert_eq!(reply.texts(), ["name= first= id=hugo", "tier=gold channel=web custom="], "{}", reply.body);

    let broken = json!({"message": {"type": "text", "val": "hi"}, "from": {"id": "hugo"}, "metaTags": "{not json"});
    let reply = server.post(&v2_path(TEST_BOT), &hs256_token("hugo"), &broken).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
}

async fn v1_conversation_on_an_instance(backend: Backend) {
    let server = Server::start(backend).await;
    let path = format!("{}/hookInstance/voice2", v1_path(TEST_BOT));
    let say = |text: &str| {
        let body = json!({"message": {"text": text}, "from": {"id": "ivr-caller"}});
        let token = hs256_token("ivr-caller");
        let path = path.clone();
        let server = &server;
        async move { server.post(&path, &token, &body).await }
    };
    let reply = say("sign up").await;
    assert_eq!(reply.body, json!({"text": "Your name?", "endOfTask": false}));
    let reply = say("Hal").await;
    assert_eq!(reply.body["text"], "Your email?");
}

async fn every_message_is_logged_in_order(backend: Backend) {
    let server = Server::start(backend).await;
    server.say("ivy", "hello").await;
    let balance = server.say("ivy", "balance").await;
    let log = server.stores.conversations.read_log(&ConversationKey::new(TEST_BOT, "ivy"), None, 100).await.unwrap();
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    let directions: Vec<Direction> = log.iter().map(|e| e.direction).collect();
    use Direction::{In, Out};
    assert_eq!(directions, [In, Out, In, Out, Out]);
    assert_eq!(log[2].body["request"]["message"]["val"], "balance");
    // What was answered is what was logged, with the same messageIds.
    assert_eq!(log[3].message_id, balance.body["data"][0]["messageId"].as_str().unwrap());
    assert_eq!(log[4].body, balance.body["data"][1]);
    // Reading after a seq returns only what follows.
    let tail =
        server.stores.conversations.read_log(&ConversationKey::new(TEST_BOT, "ivy"), Some(2), 100).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
}

async fn fifty_concurrent_messages_from_one_user(backend: Backend) {
    // The fifty turns run one after the other; on a busy emulator the last
    // may wait past the default sync deadline, which this test is not about.
    let mut settings = Settings::default();
    settings.http.sync_deadline = Duration::from_secs(300);
    let server = Arc::new(Server::start_with(stores(backend).await, settings).await);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move { server.say("jack", &format!("ping {i}")).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.texts(), [format!("pong ping {i}")]);
    }
    let log = server.stores.conversations.read_log(&ConversationKey::new(TEST_BOT, "jack"), None, 1000).await.unwrap();
    assert_eq!(log.len(), 100);
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
    let mut asked: Vec<String> = log
        .iter()
        .filter(|e| e.direction == Direction::In)
        .map(|e| e.body["request"]["message"]["val"].as_str().unwrap().to_string())
        .collect();
    asked.sort();
    let mut expected: Vec<String> = (0..50).map(|i| format!("ping {i}")).collect();
    expected.sort();
    assert_eq!(asked, expected);
    // Each answer directly follows its question.
    for pair in log.chunks(2) {
        assert_eq!(
            pair[1].body["val"].as_str().unwrap(),
            format!("pong {}", pair[0].body["request"]["message"]["val"].as_str().unwrap())
        );
    }
}

async fn fifty_users_in_parallel_keep_their_own_state(backend: Backend) {
    let server = Arc::new(Server::start(backend).await);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                let user = format!("user-{i}");
                server.say(&user, "sign up").await;
                server.say(&user, &format!("Name {i}")).await;
                server.say(&user, "who am i").await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap();
        assert_eq!(reply.texts()[0], format!("name=Name {i} first= id=user-{i}"));
    }
}

async fn bots_do_not_share_users(backend: Backend) {
    let server = Server::start(backend).await;
    server.say("kim", "sign up").await;
    server.say("kim", "Kim").await;
    let token = sign_hs(jsonwebtoken::Algorithm::HS256, OTHER_ONLY_SECRET, &claims("cs-other", "kim"));
    let body = json!({"message": {"type": "text", "val": "who am i"}, "from": {"id": "kim"}});
    let reply = server.post(&v2_path(OTHER_BOT), &token, &body).await;
    assert_eq!(reply.texts(), ["name="]);
    assert_eq!(reply.body["from"], OTHER_BOT);
}

on_both_stores!(
    questions_validate_save_and_template,
    cancel_interrupt_and_fallback,
    interruption_is_reported_while_the_new_task_waits,
    the_same_task_s_trigger_answers_its_question,
    new_session_and_idle_timeout_end_the_task,
    tags_user_info_and_custom_data,
    tags_at_the_top_level_of_v1_and_meta_tags_as_json_text,
    texts_per_instance,
    templates_as_text_for_text_only_clients,
    a_buttons_postback_runs_its_payload,
    v1_conversation_on_an_instance,
    every_message_is_logged_in_order,
    fifty_concurrent_messages_from_one_user,
    fifty_users_in_parallel_keep_their_own_state,
    bots_do_not_share_users,
);
