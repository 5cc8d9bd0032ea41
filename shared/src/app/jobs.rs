//! The work a saved turn leaves for the queue: its messages for a POST_URL,
//! the bot-wide event and session-data webhooks, async webhook nodes, and the
//! continuation of a polled turn.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::app::queue::{Delivery, DeliveryKind, Job, QueueMessage};
use crate::app::records::{Direction, LogEntry};
use crate::definition::{Bot, DeliveryFormat, EventDirection, Instance, WebhookVersion};
use crate::engine::HttpCall;
use crate::ids::ConversationKey;
use crate::protocol::{TaskCompletion, V2Data, VERSION_V2};

/// Receivers answer deliveries with little; more is not read.
const MAX_DELIVERY_RESPONSE_BYTES: usize = 64 * 1024;

/// A POST of `body` to `url` with the bot's outbound settings.
fn post(bot: &Bot, url: &str, body: Value) -> HttpCall {
    HttpCall {
        method: "POST".into(),
        url: url.to_string(),
        headers: Vec::new(),
        body: Some(body),
        timeout: Duration::from_millis(bot.def.outbound.timeout_ms),
        allow_private: bot.def.outbound.allow_private_networks,
        max_response_bytes: MAX_DELIVERY_RESPONSE_BYTES,
    }
}

fn delivery(
    key: &ConversationKey,
    kind: DeliveryKind,
    instance_id: Option<&str>,
    webhook_id: String,
    call: HttpCall,
) -> Job {
    Job::Deliver(Delivery {
        bot_id: key.bot_id.clone(),
        user_id: key.user_id.clone(),
        app: key.app.clone(),
        kind,
        instance_id: instance_id.map(String::from),
        webhook_id,
        call,
        delay_ms: None,
    })
}

/// What a turn's POST_URL deliveries say of the turn.
pub struct TurnEnd<'a> {
    pub completion: Option<&'a TaskCompletion>,
    /// The session waits within a task (a question, a form) for the user.
    pub waiting: bool,
    pub trace_id: &'a str,
}

/// One POST per bot message, in order, then the end-of-task fields as a
/// message of their own (spec: asynchronous mode): each message is a
/// `partialMessage` of the turn, the last carries `endOfMessage`, and
/// `endOfTask` says whether the turn left no task waiting for the user (a
/// task ended, or none ran: a fallback). v2 bodies are `{to, from, data:
/// [message], _v}`, v1 bodies `{to, from, text}`; a `verifyToken` adds
/// `recipient.id` and it. In Chatlayer's format, one POST per message only.
pub fn post_url(
    bot: &Bot,
    instance: &Instance,
    key: &ConversationKey,
    messages: &[V2Data],
    end: TurnEnd<'_>,
) -> Vec<QueueMessage> {
    let Some(url) = instance.post_url.as_deref() else {
        return Vec::new();
    };
    let bodies = match instance.delivery_format {
        DeliveryFormat::Kore => kore_bodies(bot, instance, key, messages, end),
        DeliveryFormat::Chatlayer => chatlayer_bodies(bot, instance, key, messages),
    };
    // The end-of-task message has no id of its own among the messages: no delay.
    let delays: std::collections::HashMap<String, u64> =
        messages.iter().filter_map(|m| Some((format!("msg_{}", m.message_id), m.delay?))).collect();
    bodies
        .into_iter()
        .map(|(webhook_id, body)| {
            let mut job =
                delivery(key, DeliveryKind::PostUrl, Some(&instance.id), webhook_id.clone(), post(bot, url, body));
            if let Job::Deliver(delivery) = &mut job {
                delivery.delay_ms = delays.get(&webhook_id).copied();
            }
            QueueMessage::in_conversation(key, webhook_id, job)
        })
        .collect()
}

/// Whether [`post_url`] delivers anything for these messages, without
/// building the bodies (a turn asks; the relay builds them from the log).
pub fn owes_post_url(instance: &Instance, messages: &[V2Data]) -> bool {
    instance.post_url.is_some()
        && match instance.delivery_format {
            // The end of the turn is always delivered.
            DeliveryFormat::Kore => true,
            DeliveryFormat::Chatlayer => messages.iter().any(|message| chatlayer_message(message).is_some()),
        }
}

fn kore_bodies(
    bot: &Bot,
    instance: &Instance,
    key: &ConversationKey,
    messages: &[V2Data],
    end: TurnEnd<'_>,
) -> Vec<(String, Value)> {
    let envelope = |fields: Map<String, Value>| {
        let mut body = Map::new();
        body.insert("to".into(), json!(key.user_id));
        body.insert("from".into(), json!(key.bot_id));
        if let Some(app) = &key.app {
            // The user is that app's own: another app's user may have the same id.
            body.insert("appId".into(), json!(app));
        }
        body.extend(fields);
        if instance.version == WebhookVersion::V2 {
            body.entry("data").or_insert_with(|| json!([]));
            body.insert("_v".into(), json!(VERSION_V2));
        }
        if let Some(token) = bot.verify_token(&instance.id) {
            body.insert("recipient".into(), json!({"id": key.user_id}));
            body.insert("verifyToken".into(), json!(token));
        }
        Value::Object(body)
    };
    let mut bodies: Vec<(String, Value)> = messages
        .iter()
        .map(|message| {
            let mut body = Map::new();
            match (instance.version, message.kind.as_str()) {
                (_, "form") => {
                    body.insert("form".into(), message.val.clone());
                }
                (WebhookVersion::V1, _) => {
                    body.insert("text".into(), message.as_text());
                }
                (WebhookVersion::V2, _) => {
                    body.insert("data".into(), json!([message]));
                }
            }
            body.insert("partialMessage".into(), json!(true));
            (format!("msg_{}", message.message_id), envelope(body))
        })
        .collect();
    let mut body = Map::new();
    body.insert("endOfTask".into(), json!(end.completion.is_some() || !end.waiting));
    if let Some(Value::Object(fields)) = end.completion.map(|completion| json!(completion)) {
        body.extend(fields);
    }
    body.insert("endOfMessage".into(), json!(true));
    bodies.push((format!("end_{}", end.trace_id), envelope(body)));
    bodies
}

/// Chatlayer's message objects (Messenger's shapes): text; Kore button and
/// other templates as a template attachment, quick replies as
/// `quick_replies`; files as media attachments. Forms and events have no
/// Chatlayer object and are not sent in this format.
fn chatlayer_bodies(
    bot: &Bot,
    instance: &Instance,
    key: &ConversationKey,
    messages: &[V2Data],
) -> Vec<(String, Value)> {
    messages
        .iter()
        .filter_map(|message| {
            let object = chatlayer_message(message)?;
            let mut body = json!({"recipient": {"id": key.user_id}, "message": object});
            if let Some(token) = bot.verify_token(&instance.id) {
                body["verifyToken"] = json!(token);
            }
            Some((format!("msg_{}", message.message_id), body))
        })
        .collect()
}

fn chatlayer_message(message: &V2Data) -> Option<Value> {
    let val = &message.val;
    match message.kind.as_str() {
        "text" => Some(json!({"text": val})),
        "template" => {
            let payload = &val["payload"];
            if payload["template_type"] == "quick_replies" {
                let replies: Vec<Value> = payload["quick_replies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| json!({"content_type": "text", "title": r["title"], "payload": r["payload"]}))
                    .collect();
                Some(json!({"text": payload["text"], "quick_replies": replies}))
            } else {
                Some(json!({"attachment": {"type": "template", "payload": payload}}))
            }
        }
        "attachment" => {
            let mime = val["mime"].as_str().unwrap_or_default();
            let kind = ["image", "video", "audio"].into_iter().find(|k| mime.starts_with(k)).unwrap_or("file");
            Some(json!({"attachment": {"type": kind, "payload": {"url": val["url"]}}}))
        }
        _ => None,
    }
}

/// What the event webhook's filters look at in a turn.
pub struct EventTurn<'a> {
    pub client_ip: Option<&'a str>,
    /// The instance the turn's message came in on.
    pub instance: Option<&'a str>,
    /// The tasks the turn started, continued or ended.
    pub tasks: &'a [String],
}

/// The bot-wide event webhook: one POST per message received or sent, with
/// the message JSON-encoded in `data` as the spec shows it; only those its
/// filters (directions, tasks, instances) let through.
pub fn events(bot: &Bot, key: &ConversationKey, log: &[LogEntry], turn: &EventTurn<'_>) -> Vec<QueueMessage> {
    let Some(url) = bot.def.events.url.as_deref() else {
        return Vec::new();
    };
    events_wanted(bot, log, turn)
        .map(|entry| {
            let (direction, message) = match entry.direction {
                Direction::In => ("received", &entry.body["request"]["message"]),
                Direction::Out => ("sent", &entry.body),
            };
            let text = message.get("val").or_else(|| message.get("text")).unwrap_or(message);
            let body = json!({
                "time": entry.created_on,
                "data": text.to_string(),
                "ip": turn.client_ip,
                "userId": key.user_id,
                "appId": key.app,
                "botId": key.bot_id,
                "direction": direction,
                "messageId": entry.message_id,
                "seq": entry.seq,
            });
            let webhook_id = format!("evt_{}", entry.message_id);
            let job = delivery(key, DeliveryKind::Event, None, webhook_id.clone(), post(bot, url, body));
            QueueMessage::beside_conversation(key, webhook_id, job)
        })
        .collect()
}

/// Whether [`events`] delivers anything for these log entries, without
/// building the bodies (a turn asks; the relay builds them from the log).
pub fn owes_events(bot: &Bot, log: &[LogEntry], turn: &EventTurn<'_>) -> bool {
    events_wanted(bot, log, turn).next().is_some()
}

/// The log entries the event webhook's filters let through: none without its URL.
fn events_wanted<'l>(bot: &Bot, log: &'l [LogEntry], turn: &EventTurn<'_>) -> impl Iterator<Item = &'l LogEntry> {
    let events = &bot.def.events;
    let task_wanted = events.tasks.as_ref().is_none_or(|tasks| turn.tasks.iter().any(|t| tasks.contains(t)));
    let instance_wanted =
        events.instances.as_ref().is_none_or(|ids| turn.instance.is_some_and(|i| ids.iter().any(|id| id == i)));
    let wanted = events.url.is_some() && task_wanted && instance_wanted;
    let directions = events.directions.clone();
    log.iter().filter(move |entry| {
        let direction = match entry.direction {
            Direction::In => EventDirection::Received,
            Direction::Out => EventDirection::Sent,
        };
        wanted && directions.as_ref().is_none_or(|d| d.contains(&direction))
    })
}

/// The session-data webhook when a task ends: the fields the session collected.
pub fn session_data(
    bot: &Bot,
    key: &ConversationKey,
    session_id: Option<&str>,
    fields: &Map<String, Value>,
    completion: &TaskCompletion,
    time: &str,
    (trace_id, first_seq): (&str, u64),
) -> Option<QueueMessage> {
    let url = bot.def.events.session_data_url.as_deref()?;
    let body = json!({
        "time": time,
        "botId": key.bot_id,
        "userId": key.user_id,
        "appId": key.app,
        "sessionId": session_id,
        "taskId": completion.completed_task_id,
        "taskName": completion.completed_task_name,
        "endReason": completion.end_reason,
        "data": fields,
    });
    // One per step of a turn: a continued turn can end a task again.
    let webhook_id = format!("ses_{trace_id}_{first_seq}");
    let job = delivery(key, DeliveryKind::SessionData, None, webhook_id.clone(), post(bot, url, body));
    Some(QueueMessage::beside_conversation(key, webhook_id, job))
}

/// Async webhook nodes' calls, fire and forget.
pub fn webhook_nodes(key: &ConversationKey, calls: Vec<HttpCall>) -> Vec<QueueMessage> {
    calls
        .into_iter()
        .map(|call| {
            let webhook_id = format!("msg_{}", crate::ids::random_uuid().simple());
            let job = delivery(key, DeliveryKind::WebhookNode, None, webhook_id.clone(), call);
            QueueMessage::beside_conversation(key, webhook_id, job)
        })
        .collect()
}

/// The worker's continuation of a polled turn.
pub fn resume(key: &ConversationKey, poll_id: &str) -> QueueMessage {
    let job = Job::Resume {
        bot_id: key.bot_id.clone(),
        user_id: key.user_id.clone(),
        app: key.app.clone(),
        poll_id: poll_id.to_string(),
    };
    QueueMessage::in_conversation(key, format!("resume-{poll_id}"), job)
}
