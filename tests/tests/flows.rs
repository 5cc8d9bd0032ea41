//! Flows that call the customer's APIs (a real HTTP server on loopback
//! stands in for them), logic, forms, rich messages and question types: what
//! the API received and what the user was shown.

use hookline_core::process::Settings;
use hookline_tests::*;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const FLOWS_BOT: &str = "st-flows-bot";
const FLOWS_SECRET: &str = "flows-bot-secret-0123456789-abcdefgh";

async fn setup(answers: Vec<(&str, Answer)>) -> (Server, Receiver) {
    setup_with(answers, |yaml| yaml).await
}

async fn setup_with(answers: Vec<(&str, Answer)>, edit: impl Fn(String) -> String) -> (Server, Receiver) {
    let receiver = Receiver::start(answers).await;
    let yaml = include_str!("../fixtures/bots/flows-bot.yaml").replace("RECEIVER", &receiver.addr);
    let registry = registry_with(&[("flows-bot.yaml".into(), edit(yaml))]);
    let store = stores(Backend::Memory).await;
    (Server::start_with_registry(registry, store, Settings::default()).await, receiver)
}

fn token(user: &str) -> String {
    sign_hs(Algorithm::HS256, FLOWS_SECRET, &claims("cs-flows", user))
}

async fn send(server: &Server, path: &str, user: &str, body: Value) -> Reply {
    let mut body = body;
    body["from"] = json!({"id": user, "userInfo": {"firstName": "Ada"}});
    server.post(path, &token(user), &body).await
}

async fn say(server: &Server, user: &str, text: &str) -> Reply {
    send(server, &v2_path(FLOWS_BOT), user, json!({"message": {"type": "text", "val": text}})).await
}

#[tokio::test]
async fn lead_generation_posts_fields_and_transcript_asynchronously() {
    let (server, receiver) = setup(vec![("/leads", Answer { delay_ms: 300, ..Answer::json(json!({})) })]).await;
    say(&server, "lena", "lead").await;
    say(&server, "lena", "lena@example.com").await;
    let started = std::time::Instant::now();
    let reply = say(&server, "lena", "+33 6 12 34 56 78").await;
    // Fire and forget: the answer does not wait for the slow endpoint.
    assert!(started.elapsed().as_millis() < 300, "{:?}", started.elapsed());
    assert_eq!(reply.texts(), ["Thanks, we'll be in touch."]);
    assert_eq!(reply.body["endReason"], "Fulfilled");

    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let lead = &received[0];
    assert_eq!((lead.method.as_str(), lead.path_and_query.as_str()), ("POST", "/leads"));
    assert_eq!(lead.headers["x-source"], "hookline lena");
    assert_eq!(lead.headers["content-type"], "application/json");
    // Without signing secrets: an id to drop duplicates by, and no signature.
    assert!(lead.headers["webhook-id"].to_str().unwrap().starts_with("msg_"));
    assert!(lead.headers.get("webhook-signature").is_none());
    assert_eq!(
        lead.body,
        json!({
            "email": "lena@example.com",
            "phone_number": "+33612345678",
            "conversation": "User: lead\nBot: Your email?\nUser: lena@example.com\nBot: Your phone?\nUser: +33 6 12 34 56 78\n"
        })
    );
}

#[tokio::test]
async fn sync_webhook_responses_are_shown_in_order() {
    let responses = json!({"responses": [
        {"type": "text", "delay": 2000, "elements": [{"label": "Good morning Ada", "order": 1, "placeholder": null}]},
        {"type": "text", "delay": 2000, "elements": [{"label": "Your order is on the way", "order": 1, "placeholder": null}]}
    ]});
    let (server, receiver) = setup(vec![("/orders/", Answer::json(responses))]).await;
    say(&server, "omar", "order status").await;
    let reply = say(&server, "omar", "A/42 x").await;
    assert_eq!(reply.texts(), ["Good morning Ada", "Your order is on the way", "Anything else?"]);
    // Each instruction's delay comes with its first message, for the client to honour.
    let delays: Vec<&Value> = reply.body["data"].as_array().unwrap().iter().map(|m| &m["delay"]).collect();
    assert_eq!(delays, [&json!(2000), &json!(2000), &Value::Null]);
    let call = &receiver.received()[0];
    // The order number is encoded into the path, not spliced into it.
    assert_eq!(call.path_and_query, "/orders/A%2F42%20x");
    assert_eq!(call.body["order_id"], "A/42 x");
    assert!(call.body["conversation"].as_str().unwrap().ends_with("Bot: Order number?\nUser: A/42 x\n"));
}

#[tokio::test]
async fn sync_webhook_keys_become_context_for_later_nodes() {
    let status = json!({"delivery_status": "delivered", "delivery_method": "eco"});
    let (server, _receiver) = setup(vec![("/delivery", Answer::json(status))]).await;
    let reply = say(&server, "dina", "delivery status").await;
    assert_eq!(reply.texts(), ["Your parcel is delivered (eco)."]);
}

#[tokio::test]
async fn konverse_reply_formats() {
    let (server, _receiver) = setup(vec![
        ("/konverse/konverse%20text", Answer::json(json!({"konverse": {"type": "text", "text": ["Hello from webhook"]}}))),
        (
            "/konverse/konverse%20file",
            Answer::json(json!({"konverse": {"type": "attachment", "attachment": {"url": "https://cdn.example.com/w.png", "mime": "image/png"}}})),
        ),
        ("/konverse/konverse%20stop", Answer::json(json!({"konverse": {"stopPropagation": true}}))),
    ])
    .await;
    let text = say(&server, "kai", "konverse text").await;
    assert_eq!(text.texts(), ["Hello from webhook", "after the webhook"]);
    let file = say(&server, "kai", "konverse file").await;
    assert_eq!(file.body["data"][0]["type"], "attachment");
    assert_eq!(file.body["data"][0]["val"], json!({"url": "https://cdn.example.com/w.png", "mime": "image/png"}));
    let stop = say(&server, "kai", "konverse stop").await;
    assert_eq!(stop.texts(), Vec::<String>::new());
    assert_eq!(stop.body["endReason"], "Fulfilled");
}

#[tokio::test]
async fn service_answers_are_mapped_into_the_context() {
    let weather = json!({"current": {"temp": 21.5, "sky": "haze"}});
    let (server, receiver) = setup(vec![("/weather", Answer::json(weather))]).await;
    say(&server, "wes", "weather").await;
    let reply = say(&server, "wes", "São Paulo").await;
    assert_eq!(reply.texts(), ["São Paulo: 21.5 degrees, haze."]);
    let call = &receiver.received()[0];
    assert_eq!((call.method.as_str(), call.path_and_query.as_str()), ("GET", "/weather?city=S%C3%A3o%20Paulo"));
    assert_eq!(call.headers["accept"], "application/json");
}

#[tokio::test]
async fn service_posts_a_templated_body() {
    let (server, receiver) = setup(vec![("/tickets", Answer::json(json!({"id": "T-7"})))]).await;
    let reply = say(&server, "tom", "ticket").await;
    assert_eq!(reply.texts(), ["Ticket T-7 created."]);
    let call = &receiver.received()[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.body, json!({"subject": "Help for tom", "priority": null, "tags": ["chat"]}));
}

#[tokio::test]
async fn failed_calls_take_the_error_path() {
    let cases = [
        ("500", Answer::raw(500, r#"{"error":"down"}"#)),
        ("invalid JSON", Answer::raw(200, "<html>oops</html>")),
        ("oversized", Answer::json(json!({"current": {"temp": 1, "sky": "x".repeat(2000)}}))),
        ("timeout", Answer { delay_ms: 2500, ..Answer::json(json!({"current": {"temp": 1}})) }),
    ];
    for (case, answer) in cases {
        let (server, _receiver) = setup(vec![("/weather", answer)]).await;
        say(&server, "eve", "weather").await;
        let reply = say(&server, "eve", "Oslo").await;
        assert_eq!(reply.status, 200, "{case}");
        assert_eq!(reply.texts(), ["No weather for Oslo right now."], "{case}");
        assert_eq!(reply.body["endReason"], "Fulfilled", "{case}");
    }
    // Without onError the bot apologises and the task ends as Cancelled.
    let (server, _receiver) = setup(vec![("/tickets", Answer::raw(503, ""))]).await;
    let reply = say(&server, "eve", "ticket").await;
    assert_eq!(reply.texts(), ["Sorry, something went wrong. Please try again later."]);
    assert_eq!(reply.body["endReason"], "Cancelled");
    // A sync webhook that fails goes to its onError too.
    let (server, _receiver) = setup(vec![("/orders/", Answer::raw(500, "{}"))]).await;
    say(&server, "eve", "order status").await;
    assert_eq!(say(&server, "eve", "7").await.texts(), ["The order service is down."]);
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let (server, receiver) = setup_with(vec![("/private", Answer::json(json!({})))], |yaml| {
        yaml.replace("allowPrivateNetworks: true", "allowPrivateNetworks: false")
    })
    .await;
    assert_eq!(say(&server, "sam", "private").await.texts(), ["refused"]);
    assert!(receiver.received().is_empty(), "nothing reached the private address");

    let (server, receiver) = setup(vec![("/private", Answer::json(json!({})))]).await;
    assert_eq!(say(&server, "sam", "private").await.texts(), ["called"]);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn redirects_are_followed_only_within_the_same_origin() {
    let elsewhere = Receiver::start(vec![("/", Answer::json(json!({"current": {"temp": 9, "sky": "rain"}})))]).await;
    let away = format!("http://{}/weather", elsewhere.addr);
    let (server, receiver) = setup(vec![("/weather", Answer::redirect(away))]).await;
    say(&server, "rex", "weather").await;
    assert_eq!(say(&server, "rex", "Rome").await.texts(), ["No weather for Rome right now."]);
    assert_eq!(receiver.received().len(), 1);
    assert!(elsewhere.received().is_empty(), "the redirect to another origin was not followed");

    let (server, receiver) = setup_with(
        vec![
            ("/weather", Answer::redirect("/moved".into())),
            ("/moved", Answer::json(json!({"current": {"temp": 9, "sky": "rain"}}))),
        ],
        |yaml| yaml,
    )
    .await;
    say(&server, "rex", "weather").await;
    assert_eq!(say(&server, "rex", "Rome").await.texts(), ["Rome: 9 degrees, rain."]);
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn logic_sets_variables_and_branches() {
    let (server, _receiver) = setup(vec![]).await;
    say(&server, "lou", "shop").await;
    assert_eq!(say(&server, "lou", "150").await.texts(), ["Free shipping (total 150)."]);
    say(&server, "lou", "shop").await;
    assert_eq!(say(&server, "lou", "20").await.texts(), ["Shipping is 5 (total 20)."]);
    say(&server, "lou", "shop").await;
    let zero = say(&server, "lou", "0").await;
    assert_eq!(zero.texts(), ["Nothing to ship."]);
    assert_eq!(zero.body["endReason"], "Cancelled");
    assert_eq!(zero.body["completedTaskId"], "shop");
}

#[tokio::test]
async fn forms_are_sent_validated_and_saved() {
    let (server, _receiver) = setup(vec![]).await;
    let reply = say(&server, "fay", "book").await;
    let form = &reply.body["form"];
    assert_eq!(form["formDef"]["_id"], "booking");
    assert_eq!(form["formDef"]["displayName"], "Book a table");
    let components = form["formDef"]["components"].as_array().unwrap();
    assert_eq!(components.len(), 7);
    assert_eq!(components[0]["metaData"]["type"], "textField");
    assert_eq!(components[0]["metaData"]["required"], true);
    assert_eq!(
        components[4]["metaData"]["values"],
        json!([{"label": "inside", "value": "inside"}, {"label": "terrace", "value": "terrace"}])
    );
    assert_eq!(components[6]["metaData"]["buttonAction"], "submit");
    assert_eq!(form["formInitialization"]["valueMap"], json!({"name": "Ada"}));

    let submit =
        |data: Value| json!({"message": {"type": "formData", "val": {"formId": "booking", "data": data, "meta": {}}}});
    let bad = submit(json!([
        {"componentId": "name", "input": ""},
        {"componentId": "email", "input": "not-an-email"},
        {"componentId": "guests", "input": "many"}
    ]));
    let reply = send(&server, &v2_path(FLOWS_BOT), "fay", bad).await;
    assert_eq!(
        reply.texts(),
        [
            "Please check the form. Name: is required; Email: is not a valid email address; Guests: is not a valid number"
        ]
    );
    assert_eq!(
        reply.body["form"]["errors"],
        json!([{"componentId": "name", "msg": "is required"}, {"componentId": "email", "msg": "is not a valid email address"}, {"componentId": "guests", "msg": "is not a valid number"}])
    );
    assert_eq!(reply.body["form"]["formInitialization"]["valueMap"]["email"], "not-an-email");

    let good = submit(json!([
        {"componentId": "name", "input": "Fay"},
        {"componentId": "email", "input": "fay@example.com"},
        {"componentId": "guests", "input": "4"},
        {"componentId": "day", "input": "2026-12-24"},
        {"componentId": "seating", "input": "Terrace"},
        {"componentId": "newsletter", "input": true},
        {"componentId": "Submit", "input": "Submit"}
    ]));
    let reply = send(&server, &v2_path(FLOWS_BOT), "fay", good).await;
    assert_eq!(reply.texts(), ["Booked for Fay <fay@example.com>, 4 guests, terrace, newsletter true."]);
    assert!(reply.body.get("form").is_none());
}

#[tokio::test]
async fn forms_reach_v1_clients_too() {
    let (server, _receiver) = setup(vec![]).await;
    let path = format!("{}/hookInstance/voice", v1_path(FLOWS_BOT));
    let reply = send(&server, &path, "vic", json!({"message": {"text": "book"}})).await;
    assert_eq!(reply.body["text"], json!([]));
    assert_eq!(reply.body["form"]["formDef"]["name"], "booking");
}

#[tokio::test]
async fn rich_messages_carry_their_objects() {
    let (server, _receiver) = setup(vec![]).await;
    let reply = say(&server, "ria", "menu").await;
    let data = reply.body["data"].as_array().unwrap();
    assert_eq!(data[0]["type"], "template");
    assert_eq!(
        data[0]["val"],
        json!({"type": "template", "payload": {"template_type": "button", "text": "Hi ria, pick one", "buttons": [{"type": "postback", "title": "Balance", "payload": "balance"}]}})
    );
    assert_eq!(data[1]["type"], "attachment");
    assert_eq!(data[1]["val"], json!({"url": "https://files.example.com/ria/menu.pdf", "mime": "application/pdf"}));

    let path = format!("{}/hookInstance/voice", v1_path(FLOWS_BOT));
    let v1 = send(&server, &path, "ria", json!({"message": {"text": "menu"}})).await;
    // v1 shows text only: the template as readable text.
    assert_eq!(v1.body["text"][0], "Hi ria, pick one\n- Balance", "{}", v1.body);
}

#[tokio::test]
async fn date_yes_no_attachment_questions_and_giving_up() {
    let (server, _receiver) = setup(vec![]).await;
    say(&server, "dan", "documents").await;
    assert_eq!(
        say(&server, "dan", "next week").await.texts(),
        ["Sorry, that doesn't look like a valid date.", "Which day?"]
    );
    assert_eq!(say(&server, "dan", "24/12/2026").await.texts(), ["Sure?"]);
    assert_eq!(say(&server, "dan", "yep").await.texts(), ["Attach it."]);
    let attached =
        json!({"message": {"type": "text", "val": "here", "attachments": [{"url": "https://x.example.com/a.pdf"}]}});
    let reply = send(&server, &v2_path(FLOWS_BOT), "dan", attached).await;
    assert_eq!(reply.texts(), ["Got https://x.example.com/a.pdf for 2026-12-24 (true)."]);

    say(&server, "dan", "documents").await;
    say(&server, "dan", "today").await;
    say(&server, "dan", "no").await;
    assert_eq!(
        say(&server, "dan", "no file").await.texts(),
        ["Sorry, that doesn't look like a valid attachment.", "Attach it."]
    );
    let gave_up = say(&server, "dan", "still none").await;
    assert_eq!(gave_up.texts(), ["Let's do it another time."]);
    assert_eq!(gave_up.body["endReason"], "Cancelled");
}

#[tokio::test]
async fn past_the_instance_deadline_the_turn_is_504_and_the_session_unchanged() {
    let (server, receiver) = setup(vec![("/slow", Answer { delay_ms: 1500, ..Answer::json(json!({})) })]).await;
    let quick = format!("{}/hookInstance/quick", v2_path(FLOWS_BOT));
    let ask = |text: &str| send(&server, &quick, "sue", json!({"message": {"type": "text", "val": text}}));
    assert_eq!(ask("slow").await.texts(), ["Step?"]);
    let reply = ask("one").await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.error_msg(), "The request has been timed-out");
    assert_eq!(receiver.received().len(), 1);
    // Nothing of the timed-out turn was kept: the question still waits.
    let log = server
        .stores
        .conversations
        .read_log(&hookline_core::ids::ConversationKey::new(FLOWS_BOT, "sue"), None, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 2);
    let reply = send(&server, &v2_path(FLOWS_BOT), "sue", json!({"message": {"type": "text", "val": "two"}})).await;
    assert_eq!(reply.texts(), ["done"]);
}

const SIGNING_SECRET: &str = "whsec_aG9va2xpbmUtdGVzdC1zaWduaW5nLXNlY3JldC0zMmIh";

#[tokio::test]
async fn async_webhooks_are_signed_and_retried_under_one_webhook_id() {
    let answers =
        vec![("/leads", Answer::raw(500, "{}")), ("/leads", Answer::raw(503, "{}")), ("/leads", Answer::raw(204, ""))];
    let signed = |yaml: String| {
        yaml.replace(
            "  maxResponseBytes: 1024",
            &format!("  maxResponseBytes: 1024\n  signingSecrets: [{{ value: \"{SIGNING_SECRET}\" }}]"),
        )
    };
    let (server, receiver) = setup_with(answers, signed).await;
    say(&server, "sig", "lead").await;
    say(&server, "sig", "sig@example.com").await;
    let reply = say(&server, "sig", "+44 20 7946 0000").await;
    assert_eq!(reply.texts(), ["Thanks, we'll be in touch."]);

    let received = receiver.wait_for(3).await;
    assert_eq!(received.len(), 3, "two failures, then delivered");
    let ids: Vec<&str> = received.iter().map(|r| r.headers["webhook-id"].to_str().unwrap()).collect();
    assert!(ids[0].starts_with("msg_") && ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    for attempt in &received {
        assert!(verify_signature(SIGNING_SECRET, attempt, &attempt.raw), "signature verifies");
    }
    let mut tampered = received[2].raw.clone();
    tampered.extend_from_slice(b" ");
    assert!(!verify_signature(SIGNING_SECRET, &received[2], &tampered), "a tampered body fails");
    assert!(!verify_signature("whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0zMmIh", &received[2], &received[2].raw));
}

#[tokio::test]
async fn a_410_stops_the_retries() {
    let (server, receiver) = setup(vec![("/leads", Answer::raw(410, ""))]).await;
    say(&server, "gone", "lead").await;
    say(&server, "gone", "gone@example.com").await;
    say(&server, "gone", "+44 20 7946 0001").await;
    receiver.wait_for(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_turn_makes_at_most_ten_calls() {
    let (server, receiver) = setup(vec![("/down", Answer::raw(500, "{}"))]).await;
    let reply = say(&server, "rita", "retry loop").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.texts(), ["Sorry, something went wrong. Please try again later."]);
    assert_eq!(reply.body["endReason"], "Cancelled");
    assert_eq!(receiver.received().len(), 10);
}
