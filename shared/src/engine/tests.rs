//! Table-driven tests of the dialog engine as its drivers see it: bots built
//! from YAML, turns run from a new session, and only what comes out checked
//! (outputs, the task that ended, where the session waits, the context, the
//! calls asked for).

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::definition::{HeaderValue, Purpose, Severity, check};
use crate::protocol::Tag;

/// 2026-11-22T10:00:00Z
const NOW: i64 = 1_795_341_600_000;

const HEADER: &str = r#"
id: st-unit
name: Unit
apps: [{ clientId: cs-unit, algorithm: HS256, secret: { value: "0123456789abcdef0123456789abcdef" } }]
instances: [{ id: main, version: v2, apps: [cs-unit] }]
"#;

/// One task per capability; the tests below name them by trigger.
const BOT: &str = r#"
languages: { default: en, supported: [fr, de] }
welcome: welcome
fallback: { en: "Try 'news'.", fr: "Essayez 'news'." }
cancel: { phrases: [cancel, stop], message: { en: "Cancelled.", fr: "Annulé." } }
tasks:
  - id: welcome
    name: welcome
    start: hi
    nodes:
      hi: { type: message, text: "Hi {{user.id}}!" }
  - id: greet
    name: greet
    triggers: { phrases: [hello] }
    start: hi
    nodes:
      hi: { type: message, text: { en: "Hello {{user.id}}!", fr: "Bonjour {{user.id}} !" } }
  - id: news
    name: news
    triggers: { phrases: [news] }
    start: lines
    nodes:
      lines: { type: message, messages: ["News for {{user.id}}:", "{{context.city}} is sunny."], next: card }
      card: { type: message, template: { type: template, payload: { template_type: button, text: "Menu for {{user.id}}", buttons: [{ type: postback, title: Menu, payload: menu }] } }, next: file }
      file: { type: message, attachment: { url: "https://cdn.example.com/{{user.id}}/menu.pdf", mime: application/pdf } }
  - id: plan
    name: plan
    triggers: { phrases: [plan] }
    start: say
    nodes:
      say: { type: message, text: "Plan {{tags.session.plan}}, tier {{tags.user.tier}}." }
  - id: age
    name: age
    triggers: { phrases: [age] }
    start: ask
    nodes:
      ask:
        { type: question, field: age, entity: number, prompt: "How old are you?", retryPrompt: "Please give a number.",
          maxRetries: 1, onGiveUp: later }
      later: { type: end, reason: Cancelled, text: "Let's do it another time." }
  - id: tier
    name: tier
    triggers: { phrases: [tier] }
    start: points
    nodes:
      points: { type: question, field: points, entity: number, prompt: "Points?", next: rank }
      rank:
        type: logic
        set: { label: "{{context.points}} points", checked: true }
        conditions:
          - { valueOf: context.points, op: greater, value: 100, next: gold }
          - { valueOf: context.points, op: less, value: 10, next: bronze }
        else: silver
      gold: { type: end, text: "Gold with {{context.label}}!" }
      silver: { type: message, text: "Silver with {{context.label}}." }
      bronze: { type: end, reason: Cancelled, text: "Only {{context.label}}." }
  - id: book
    name: book a table
    triggers: { phrases: [book] }
    start: form
    nodes:
      form:
        type: form
        id: booking
        title: Book a table
        prefill: { name: "{{user.id}}" }
        components:
          - { name: name, type: textField, label: Name, required: true }
          - { name: email, type: email, label: Email, required: true }
          - { name: guests, type: number, label: Guests }
        next: booked
      booked: { type: message, text: "Booked for {{context.booking.name}} ({{context.booking.guests}})." }
  - id: weather
    name: weather
    triggers: { keywords: [weather] }
    start: city
    nodes:
      city: { type: question, field: city, prompt: "Which city?", next: fetch }
      fetch:
        type: service
        method: POST
        url: "https://api.example.com/weather?city={{context.city}}"
        headers: { X-User: "{{user.id}}" }
        body: { city: "{{context.city}}", units: metric }
        timeoutMs: 2000
        map: { temp: /current/temp, sky: /current/sky }
        next: report
        onError: no_weather
      report:
        type: logic
        conditions: [{ valueOf: context.temp, op: greater, value: 20, next: warm }]
        else: mild
      warm: { type: message, text: "{{context.city}}: {{context.temp}}°C, {{context.sky}}. Warm!" }
      mild: { type: message, text: "{{context.city}}: {{context.temp}}°C. Take a jacket." }
      no_weather: { type: end, reason: Cancelled, text: "No weather for {{context.city}}." }
  - id: quote
    name: quote
    triggers: { phrases: [quote] }
    start: fetch
    nodes:
      fetch: { type: service, url: "https://api.example.com/quote", map: { quote: /text }, next: say }
      say: { type: message, text: "Quote: {{context.quote}}" }
  - id: order
    name: order status
    triggers: { phrases: [order] }
    start: number
    nodes:
      number: { type: question, field: order, prompt: "Order number?", next: lookup }
      lookup: { type: webhook, url: "https://api.example.com/orders/{{context.order}}", next: done, onError: down }
      done: { type: message, text: "Anything else?" }
      down: { type: message, text: "Order tracking is down." }
  - id: lead
    name: lead
    triggers: { phrases: [lead] }
    start: email
    nodes:
      email: { type: question, field: email, entity: email, prompt: "Your email?", next: send }
      send: { type: webhook, mode: async, url: "https://api.example.com/leads", headers: { X-Source: "{{user.id}}" }, next: thanks }
      thanks: { type: message, text: "Thanks, we'll be in touch." }
"#;

fn bot(yaml: &str) -> Bot {
    let (bot, diagnostics) = check("unit.yaml", &format!("{HEADER}{yaml}"), Purpose::Local, &|_| None);
    let errors: Vec<String> =
        diagnostics.iter().filter(|d| d.severity == Severity::Error).map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    bot.expect("a bot without errors")
}

/// A bot with one task, `ask`, whose question takes the given entity.
fn question_bot(entity: &str) -> Bot {
    let choices = match entity {
        "choice" => ", choices: [{ value: inside, label: Indoors, synonyms: [in] }, { value: terrace }]",
        _ => "",
    };
    bot(&r#"
tasks:
  - id: ask
    name: ask
    triggers: { phrases: [ask] }
    start: q
    nodes:
      q: { type: question, field: answer, entity: ENTITY, prompt: "Your answer?", next: saved CHOICES }
      saved: { type: message, text: "Saved." }
"#
    .replace("ENTITY", entity)
    .replace("CHOICES", choices))
}

fn ctx() -> TurnContext {
    TurnContext {
        now_ms: NOW,
        new_session_id: "se-unit".into(),
        user: json!({"id": "u1"}),
        instance: None,
        user_tags: Vec::new(),
    }
}

fn input(event: UserEvent) -> Input {
    Input { event, message: json!({}), language: None, session_tags: Vec::new() }
}

fn text(s: &str) -> Input {
    Input { message: json!({"message": {"type": "text", "val": s}}), ..input(UserEvent::Text(s.into())) }
}

fn with_attachments(s: &str, attachments: Value) -> Input {
    let message = json!({"message": {"type": "text", "val": s, "attachments": attachments}});
    Input { message, ..text(s) }
}

fn in_language(language: Option<&str>, s: &str) -> Input {
    Input { language: language.map(String::from), ..text(s) }
}

fn reply(status: u16, body: &str) -> CallOutcome {
    Ok(HttpReply { status, body: body.as_bytes().to_vec(), retry_after: None })
}

fn tags(list: &[(&str, Value)]) -> Vec<Tag> {
    list.iter().map(|(name, value)| Tag { name: name.to_string(), value: value.clone() }).collect()
}

/// The session after running these texts as turns from a new session.
fn after(bot: &Bot, texts: &[&str]) -> Option<Session> {
    texts.iter().fold(None, |session, t| run_turn(bot, session, text(t), &ctx()).session)
}

fn render(output: &Output) -> String {
    match output {
        Output::Text(text) => text.clone(),
        Output::Template(object) => format!("template {object}"),
        Output::Attachment { url, mime } => format!("attachment {mime} {url}"),
        Output::Form(form) => {
            let errors: Vec<&str> =
                form["errors"].as_array().into_iter().flatten().filter_map(|e| e["componentId"].as_str()).collect();
            format!("form {} errors {errors:?}", form["formDef"]["_id"].as_str().unwrap_or_default())
        }
        Output::Event { val, event_type, .. } => format!("event {val} {event_type}"),
        Output::Pause(ms) => format!("pause {ms}"),
    }
}

/// Texts to send, or what a turn shows.
type Lines = &'static [&'static str];

/// What a turn shows, as lines: each output, then `ended: REASON TASK` when a
/// task ended and `waits: TASK/NODE` when the session waits for something.
fn seen(turn: &Turn) -> Vec<String> {
    let mut lines: Vec<String> = turn.outputs.iter().map(render).collect();
    if let Some(c) = &turn.completion {
        lines.push(format!("ended: {} {}", c.end_reason, c.completed_task_id));
    }
    if let Some(a) = turn.session.as_ref().and_then(|s| s.task.as_ref()) {
        lines.push(format!("waits: {}/{}", a.task_id, a.node_id));
    }
    lines
}

fn context(turn: &Turn) -> Value {
    Value::Object(turn.session.as_ref().expect("a session").context.clone())
}

#[test]
fn a_message_node_says_its_texts_template_and_attachment_in_order() {
    let session = Session { context: json!({"city": "Oslo"}).as_object().unwrap().clone(), ..Session::default() };
    let turn = run_turn(&bot(BOT), Some(session), text("news"), &ctx());
    let want = [
        "News for u1:",
        "Oslo is sunny.",
        r#"template {"type":"template","payload":{"template_type":"button","text":"Menu for u1","buttons":[{"type":"postback","title":"Menu","payload":"menu"}]}}"#,
        "attachment application/pdf https://cdn.example.com/u1/menu.pdf",
        "ended: Fulfilled news",
    ];
    assert_eq!(seen(&turn), want);
}

#[test]
fn a_question_saves_a_valid_answer_and_re_prompts_on_an_invalid_one() {
    let receipt = json!([{"url": "https://cdn.example.com/r.png"}]);
    let cases = [
        ("text", text(" Ann "), json!("Ann"), text("   "), "answer"),
        ("email", text("ann@example.com"), json!("ann@example.com"), text("ann@example"), "email address"),
        ("phone", text("+33 6 12 34 56 78"), json!("+33612345678"), text("06 12 ab"), "phone number"),
        ("number", text("2.5"), json!(2.5), text("four"), "number"),
        ("date", text("tomorrow"), json!("2026-11-23"), text("31/02/2026"), "date"),
        ("choice", text("in"), json!("inside"), text("roof"), "choice"),
        ("yesNo", text("Yep!"), json!(true), text("maybe"), "yes or no"),
        ("attachment", with_attachments("here", receipt.clone()), receipt, text("here"), "attachment"),
    ];
    for (entity, valid, saved, invalid, kind) in cases {
        let bot = question_bot(entity);
        let asked = run_turn(&bot, None, text("ask"), &ctx());
        assert_eq!(seen(&asked), ["Your answer?", "waits: ask/q"], "{entity}");

        let turn = run_turn(&bot, asked.session.clone(), valid, &ctx());
        assert_eq!(seen(&turn), ["Saved.", "ended: Fulfilled ask"], "{entity}");
        assert_eq!(context(&turn), json!({"answer": saved}), "{entity}");

        let turn = run_turn(&bot, asked.session, invalid, &ctx());
        let retry = format!("Sorry, that doesn't look like a valid {kind}.");
        assert_eq!(seen(&turn), [retry.as_str(), "Your answer?", "waits: ask/q"], "{entity}");
        assert_eq!(turn.session.as_ref().and_then(|s| s.task.as_ref()).map(|a| a.retries), Some(1), "{entity}");
        assert_eq!(context(&turn), json!({}), "{entity}");
    }
}

#[test]
fn a_question_re_prompts_on_invalid_answers_then_gives_up() {
    let retry: Lines = &["Sorry, that doesn't look like a valid number.", "Your answer?", "waits: ask/q"];
    let cases: [(&str, Bot, &str, &[Lines]); 2] = [
        (
            "maxRetries 1, then onGiveUp",
            bot(BOT),
            "age",
            &[
                &["Please give a number.", "How old are you?", "waits: age/ask"],
                &["Let's do it another time.", "ended: Cancelled age"],
            ],
        ),
        (
            "three re-prompts by default, then stop",
            question_bot("number"),
            "ask",
            &[retry, retry, retry, &["Sorry, let's stop here.", "ended: Cancelled ask"]],
        ),
    ];
    for (name, bot, trigger, turns) in cases {
        let mut session = after(&bot, &[trigger]);
        for (i, want) in turns.iter().enumerate() {
            let turn = run_turn(&bot, session, text("old"), &ctx());
            assert_eq!(seen(&turn), *want, "{name}, invalid answer {}", i + 1);
            session = turn.session;
        }
    }
}

#[test]
fn a_logic_node_sets_values_then_branches_by_the_first_condition_that_holds() {
    let cases = [
        ("greater: an end node, Fulfilled by default", 150, ["Gold with 150 points!", "ended: Fulfilled tier"]),
        ("no condition: else, a message node", 50, ["Silver with 50 points.", "ended: Fulfilled tier"]),
        ("less: an end node with reason Cancelled", 5, ["Only 5 points.", "ended: Cancelled tier"]),
    ];
    let bot = bot(BOT);
    for (name, points, want) in cases {
        let turn = run_turn(&bot, after(&bot, &["tier"]), text(&points.to_string()), &ctx());
        assert_eq!(seen(&turn), want, "{name}");
        let label = format!("{points} points");
        assert_eq!(context(&turn), json!({"points": points, "label": label, "checked": true}), "{name}");
    }
}

#[test]
fn a_form_is_sent_prefilled_and_its_data_saved_when_valid_else_sent_again_with_the_problems() {
    let bot = bot(BOT);
    let sent = run_turn(&bot, None, text("book"), &ctx());
    assert_eq!(seen(&sent), ["form booking errors []", "waits: book/form"]);
    let Output::Form(form) = &sent.outputs[0] else { unreachable!() };
    assert_eq!(form["formDef"]["displayName"], "Book a table");
    assert_eq!(form["formInitialization"]["valueMap"], json!({"name": "u1"}));

    let data = |form_id: &str, name: &str, email: &str| {
        let inputs = [("name", name), ("email", email), ("guests", "4")];
        let data: Vec<Value> = inputs.iter().map(|(id, input)| json!({"componentId": id, "input": input})).collect();
        json!({"formId": form_id, "data": data})
    };
    let cases: [(&str, Value, Lines, Value); 3] = [
        (
            "valid: saved under the form id, then next",
            data("booking", " Ann ", "ann@example.com"),
            &["Booked for Ann (4).", "ended: Fulfilled book"],
            json!({"booking": {"name": "Ann", "email": "ann@example.com", "guests": 4}}),
        ),
        (
            "invalid: every problem said, and the form again",
            data("booking", "", "ann@"),
            &[
                "Please check the form. Name: is required; Email: is not a valid email address",
                r#"form booking errors ["name", "email"]"#,
                "waits: book/form",
            ],
            json!({}),
        ),
        (
            "another form's data",
            data("survey", "Ann", "ann@example.com"),
            &[
                "Please check the form. form: expected formId booking",
                r#"form booking errors [""]"#,
                "waits: book/form",
            ],
            json!({}),
        ),
    ];
    for (name, form_data, want, saved) in cases {
        let turn = run_turn(&bot, sent.session.clone(), input(UserEvent::FormData(form_data)), &ctx());
        assert_eq!(seen(&turn), want, "{name}");
        assert_eq!(context(&turn), saved, "{name}");
    }

    // The form sent again keeps what was submitted.
    let turn = run_turn(&bot, sent.session, input(UserEvent::FormData(data("booking", "", "ann@"))), &ctx());
    let Some(Output::Form(form)) = turn.outputs.last() else { unreachable!() };
    assert_eq!(form["formInitialization"]["valueMap"], json!({"name": "", "email": "ann@", "guests": "4"}));
}

#[test]
fn a_service_node_waits_for_its_rendered_call() {
    let bot = bot(BOT);
    let turn = run_turn(&bot, after(&bot, &["weather"]), text("New York"), &ctx());
    assert_eq!(seen(&turn), ["waits: weather/fetch"]);
    let call = HttpCall {
        method: "POST".into(),
        url: "https://api.example.com/weather?city=New%20York".into(),
        headers: vec![("X-User".into(), HeaderValue::Text("u1".into()))],
        body: Some(json!({"city": "New York", "units": "metric"})),
        timeout: Duration::from_millis(2000),
        allow_private: false,
        max_response_bytes: 256 * 1024,
    };
    assert_eq!(turn.pending, Some(call));
    assert!(turn.effects.is_empty());
}

#[test]
fn resuming_a_service_maps_its_answer_or_takes_the_error_path() {
    let (weather, quote): (Lines, Lines) = (&["weather", "Paris"], &["quote"]);
    let no_weather: Lines = &["No weather for Paris.", "ended: Cancelled weather"];
    let sorry: Lines = &["Sorry, something went wrong. Please try again later.", "ended: Cancelled quote"];
    let timeout = || Err(CallError::Timeout(Duration::from_secs(2)));
    let cases: [(&str, Lines, CallOutcome, Lines, Value); 9] = [
        (
            "2xx: mapped, then on to next",
            weather,
            reply(200, r#"{"current": {"temp": 25, "sky": "sunny"}}"#),
            &["Paris: 25°C, sunny. Warm!", "ended: Fulfilled weather"],
            json!({"city": "Paris", "temp": 25, "sky": "sunny"}),
        ),
        (
            "2xx: a pointer that finds nothing maps null",
            weather,
            reply(200, r#"{"current": {"temp": 12}}"#),
            &["Paris: 12°C. Take a jacket.", "ended: Fulfilled weather"],
            json!({"city": "Paris", "temp": 12, "sky": null}),
        ),
        ("non-2xx: onError", weather, reply(503, "{}"), no_weather, json!({"city": "Paris"})),
        ("timeout: onError", weather, timeout(), no_weather, json!({"city": "Paris"})),
        ("an answer that is not JSON: onError", weather, reply(200, "<html>"), no_weather, json!({"city": "Paris"})),
        (
            "2xx without onError",
            quote,
            reply(200, r#"{"text": "Carpe diem"}"#),
            &["Quote: Carpe diem", "ended: Fulfilled quote"],
            json!({"quote": "Carpe diem"}),
        ),
        ("non-2xx without onError: the apology", quote, reply(500, ""), sorry, json!({})),
        ("timeout without onError: the apology", quote, timeout(), sorry, json!({})),
        ("a question waiting ignores the outcome", &["weather"], reply(200, "{}"), &["waits: weather/city"], json!({})),
    ];
    let bot = bot(BOT);
    for (name, setup, outcome, want, saved) in cases {
        let turn = resume(&bot, after(&bot, setup).expect("a session"), outcome, &ctx());
        assert_eq!(seen(&turn), want, "{name}");
        assert_eq!(context(&turn), saved, "{name}");
    }
}

#[test]
fn a_sync_webhook_waits_for_its_call_with_the_context_and_transcript() {
    let bot = bot(BOT);
    let turn = run_turn(&bot, after(&bot, &["order"]), text("A 7"), &ctx());
    assert_eq!(seen(&turn), ["waits: order/lookup"]);
    let call = turn.pending.expect("a pending call");
    assert_eq!((call.method.as_str(), call.url.as_str()), ("POST", "https://api.example.com/orders/A%207"));
    let conversation = "User: order\nBot: Order number?\nUser: A 7\n";
    assert_eq!(call.body, Some(json!({"order": "A 7", "conversation": conversation})));
    assert!(turn.effects.is_empty());
}

#[test]
fn only_a_bot_with_a_webhook_node_keeps_a_transcript() {
    let with = bot(BOT);
    let session = after(&with, &["hello", "news"]).expect("a session");
    assert_eq!(session.transcript.text().lines().next(), Some("User: hello"), "{:?}", session.transcript);
    let without = bot(r#"
tasks:
  - { id: greet, name: greet, triggers: { phrases: [hello] }, start: hi, nodes: { hi: { type: message, text: Hi } } }
"#);
    let session = after(&without, &["hello", "what?"]).expect("a session");
    assert_eq!(session.transcript, Transcript::default(), "nothing reads it");
}

#[test]
fn an_async_webhook_is_an_effect_and_the_flow_goes_on() {
    let bot = bot(BOT);
    let turn = run_turn(&bot, after(&bot, &["lead"]), text("ann@example.com"), &ctx());
    assert_eq!(seen(&turn), ["Thanks, we'll be in touch.", "ended: Fulfilled lead"]);
    assert_eq!(turn.pending, None);
    let [call] = turn.effects.as_slice() else { panic!("one effect: {:?}", turn.effects) };
    assert_eq!((call.method.as_str(), call.url.as_str()), ("POST", "https://api.example.com/leads"));
    assert_eq!(call.headers, [("X-Source".to_string(), HeaderValue::Text("u1".into()))]);
    let conversation = "User: lead\nBot: Your email?\nUser: ann@example.com\n";
    assert_eq!(call.body, Some(json!({"email": "ann@example.com", "conversation": conversation})));
}

#[test]
fn resuming_a_sync_webhook_follows_its_answer() {
    let joonbot = r#"{"responses": [{"type": "text", "elements": [{"label": "b", "order": 2}, {"label": "a", "order": 1}]},
                                     {"type": "text", "delay": 2000, "elements": [{"label": "c", "order": 1}]}]}"#;
    let unsupported =
        r#"{"responses": [{"type": "text", "elements": [{"label": "a"}]}, {"type": "image", "elements": []}]}"#;
    let stop = r#"{"konverse": {"type": "text", "text": ["Bye."], "stopPropagation": true}}"#;
    const DONE: &str = "ended: Fulfilled order";
    let down: Lines = &["Order tracking is down.", DONE];
    let cases: [(&str, CallOutcome, Lines, Value); 9] = [
        (
            "Joonbot responses are said, each after its delay",
            reply(200, joonbot),
            &["a", "b", "pause 2000", "c", "Anything else?", DONE],
            json!({}),
        ),
        ("an unsupported Joonbot instruction: onError", reply(200, unsupported), down, json!({})),
        (
            "Konverse text is said",
            reply(200, r#"{"konverse": {"type": "text", "text": "Shipped."}}"#),
            &["Shipped.", "Anything else?", DONE],
            json!({}),
        ),
        (
            "plain keys set the context, but not session",
            reply(200, r#"{"status": "shipped", "session": "x"}"#),
            &["Anything else?", DONE],
            json!({"status": "shipped"}),
        ),
        ("stopPropagation ends the task without next", reply(200, stop), &["Bye.", DONE], json!({})),
        ("an empty answer goes on", reply(204, ""), &["Anything else?", DONE], json!({})),
        ("non-2xx: onError", reply(500, "{}"), down, json!({})),
        ("timeout: onError", Err(CallError::Timeout(Duration::from_secs(5))), down, json!({})),
        ("not an object: onError", reply(200, "[1]"), down, json!({})),
    ];
    let bot = bot(BOT);
    for (name, outcome, want, set) in cases {
        let turn = resume(&bot, after(&bot, &["order", "A7"]).expect("a session"), outcome, &ctx());
        assert_eq!(seen(&turn), want, "{name}");
        let mut saved = json!({"order": "A7"});
        saved.as_object_mut().unwrap().extend(set.as_object().unwrap().clone());
        assert_eq!(context(&turn), saved, "{name}");
    }
}

#[test]
fn abandon_apologises_and_cancels_the_task_waiting_for_a_call() {
    let cases: &[(&str, Lines, Lines)] = &[
        (
            "waiting for a call",
            &["weather", "Paris"],
            &["Sorry, something went wrong. Please try again later.", "ended: Cancelled weather"],
        ),
        ("nothing waiting: nothing said", &["hello"], &[]),
    ];
    let bot = bot(BOT);
    for &(name, setup, want) in cases {
        let turn = abandon(&bot, after(&bot, setup).expect("a session"), &ctx());
        assert_eq!(seen(&turn), want, "{name}");
    }
}

#[test]
fn text_cancels_interrupts_answers_or_gets_the_fallback_depending_on_what_waits() {
    let cases: &[(&str, Lines, &str, Lines)] = &[
        ("nothing matches outside a task: the fallback", &[], "what?", &["Try 'news'."]),
        ("a cancel phrase outside a task is plain text", &[], "cancel", &["Try 'news'."]),
        ("a cancel phrase ends the waiting task", &["weather"], "Stop!", &["Cancelled.", "ended: Cancelled weather"]),
        (
            "another trigger interrupts",
            &["weather"],
            "lead",
            &["Your email?", "ended: Interrupted weather", "waits: lead/email"],
        ),
        ("the new task's end wins", &["weather"], "hello", &["Hello u1!", "ended: Fulfilled greet"]),
        ("the waiting task's own trigger is an answer", &["weather"], "weather", &["waits: weather/fetch"]),
        (
            "a waiting form comes again",
            &["book"],
            "hi",
            &["Please fill in the form.", "form booking errors []", "waits: book/form"],
        ),
        ("a cancel phrase ends a waiting form", &["book"], "cancel", &["Cancelled.", "ended: Cancelled book"]),
    ];
    let bot = bot(BOT);
    for &(name, setup, said, want) in cases {
        let turn = run_turn(&bot, after(&bot, setup), text(said), &ctx());
        assert_eq!(seen(&turn), want, "{name}");
    }
}

#[test]
fn interactive_language_switches_the_session_and_its_texts_fall_back_to_the_default() {
    // `earlier`: a turn in that language left a question waiting.
    let cases = [
        ("a new session speaks the default", None, None, "hello", "Hello u1!", "en"),
        ("interactiveLanguage switches", None, Some("fr"), "hello", "Bonjour u1 !", "fr"),
        ("a missing translation falls back to the default", None, Some("de"), "hello", "Hello u1!", "de"),
        ("the fallback is translated too", None, Some("fr"), "quoi ?", "Essayez 'news'.", "fr"),
        ("the language stays for the session", Some("fr"), None, "hello", "Bonjour u1 !", "fr"),
        ("and so does the cancel message", Some("fr"), None, "stop", "Annulé.", "fr"),
    ];
    let bot = bot(BOT);
    for (name, earlier, language, said, answer, language_after) in cases {
        let session = earlier.and_then(|l| run_turn(&bot, None, in_language(Some(l), "weather"), &ctx()).session);
        let turn = run_turn(&bot, session, in_language(language, said), &ctx());
        assert_eq!(turn.outputs, [Output::Text(answer.into())], "{name}");
        assert_eq!(turn.session.map(|s| s.language).as_deref(), Some(language_after), "{name}");
    }
}

#[test]
fn events_and_postbacks_act_like_the_text_they_carry() {
    let postback = UserEvent::Template;
    let cases: [(&str, Lines, UserEvent, Lines); 6] = [
        ("ON_CONNECT runs the welcome task", &[], UserEvent::OnConnect, &["Hi u1!", "ended: Fulfilled welcome"]),
        (
            "ON_CONNECT drops a waiting question",
            &["weather"],
            UserEvent::OnConnect,
            &["Hi u1!", "ended: Fulfilled welcome"],
        ),
        (
            "a postback's payload is its text",
            &[],
            postback(json!({"title": "News", "payload": "hello"})),
            &["Hello u1!", "ended: Fulfilled greet"],
        ),
        ("else its text", &["weather"], postback(json!({"text": "Paris"})), &["waits: weather/fetch"]),
        ("no payload or text: fallback", &["weather"], postback(json!({})), &["Try 'news'.", "waits: weather/city"]),
        (
            "formData without a form: fallback",
            &["weather"],
            UserEvent::FormData(json!({})),
            &["Try 'news'.", "waits: weather/city"],
        ),
    ];
    let bot = bot(BOT);
    for (name, setup, event, want) in cases {
        let turn = run_turn(&bot, after(&bot, setup), input(event), &ctx());
        assert_eq!(seen(&turn), want, "{name}");
    }
}

#[test]
fn a_new_session_takes_its_id_time_and_language_from_the_context_and_bot() {
    let turn = run_turn(&bot(BOT), None, input(UserEvent::OnConnect), &ctx());
    let session = turn.session.expect("a session");
    assert_eq!((session.id.as_str(), session.started_at, session.language.as_str()), ("se-unit", NOW, "en"));
}

#[test]
fn session_closure_ends_the_session_saying_whether_there_was_one() {
    let cases: &[(&str, Lines, &str)] = &[
        ("with a session, a question waiting", &["weather"], "event SESSION_CLOSURE SESSION_CLOSURE_SUCCESS"),
        ("without a session", &[], "event SESSION_CLOSURE SESSION_CLOSURE_IGNORED"),
    ];
    let bot = bot(BOT);
    for &(name, setup, event) in cases {
        let turn = run_turn(&bot, after(&bot, setup), input(UserEvent::SessionClosure), &ctx());
        assert_eq!(seen(&turn), [event], "{name}");
        assert!(turn.session.is_none(), "{name}");
    }
}

#[test]
fn merge_tags_replaces_by_name_and_ignores_empty_names() {
    let cases = [
        (
            "a new name is added",
            tags(&[("plan", json!("gold"))]),
            tags(&[("tier", json!(1))]),
            tags(&[("plan", json!("gold")), ("tier", json!(1))]),
        ),
        (
            "the latest value replaces, in place",
            tags(&[("plan", json!("gold")), ("tier", json!(1))]),
            tags(&[("plan", json!("silver")), ("plan", json!("bronze"))]),
            tags(&[("plan", json!("bronze")), ("tier", json!(1))]),
        ),
        ("an empty name is ignored", tags(&[]), tags(&[("", json!("x"))]), tags(&[])),
    ];
    for (name, mut existing, new, merged) in cases {
        merge_tags(&mut existing, new);
        assert_eq!(existing, merged, "{name}");
    }
}

#[test]
fn session_tags_are_merged_into_the_session_and_read_by_templates() {
    let bot = bot(BOT);
    let first = Input { session_tags: tags(&[("plan", json!("gold"))]), ..text("hello") };
    let session = run_turn(&bot, None, first, &ctx()).session;
    let later = Input { session_tags: tags(&[("plan", json!("platinum")), ("", json!("x"))]), ..text("plan") };
    let ctx = TurnContext { user_tags: tags(&[("tier", json!(2))]), ..ctx() };
    let turn = run_turn(&bot, session, later, &ctx);
    assert_eq!(seen(&turn), ["Plan platinum, tier 2.", "ended: Fulfilled plan"]);
    assert_eq!(turn.session.map(|s| s.tags), Some(tags(&[("plan", json!("platinum"))])));
}

#[test]
fn a_text_may_differ_per_instance_and_per_language_within_it() {
    let bot = bot(r#"
languages: { default: en, supported: [fr] }
tasks:
  - id: where
    name: where
    triggers: { phrases: [where] }
    start: say
    nodes:
      say:
        type: message
        text:
          default: { en: "You are chatting.", fr: "Vous discutez." }
          instances: { main: "You are on the main line." }
"#);
    let said = |instance: Option<&str>, language: Option<&str>| {
        let ctx = TurnContext { instance: instance.map(String::from), ..ctx() };
        let input = Input { language: language.map(String::from), ..text("where") };
        run_turn(&bot, None, input, &ctx).outputs.iter().map(render).collect::<Vec<_>>()
    };
    assert_eq!(said(Some("main"), None), ["You are on the main line."]);
    assert_eq!(said(Some("other"), None), ["You are chatting."]);
    assert_eq!(said(None, Some("fr")), ["Vous discutez."]);
}
