//! The work a saved turn leaves for the queue: its messages for a POST_URL,
//! the bot-wide event and session-data webhooks, async webhook nodes, and the
//! continuation of a polled turn.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::app::queue::{Delivery, DeliveryKind, Job, QueueMessage};
use crate::app::records::{Direction, LogEntry};
use crate::definition::{Bot, Instance, WebhookVersion};
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

fn delivery(bot: &Bot, kind: DeliveryKind, instance_id: Option<&str>, webhook_id: String, call: HttpCall) -> Job {
    Job::Deliver(Delivery {
        bot_id: bot.id().to_string(),
        kind,
        instance_id: instance_id.map(String::from),
        webhook_id,
        call,
    })
}

/// One POST per bot message, in order, then the end-of-task fields as a
/// message of their own (spec: asynchronous mode). v2 bodies are
/// `{to, from, data: [message], _v}`, v1 bodies `{to, from, text}`; the
/// Chatlayer form adds `recipient.id` and `verifyToken`.
pub fn post_url(
    bot: &Bot,
    instance: &Instance,
    key: &ConversationKey,
    messages: &[V2Data],
    completion: Option<&TaskCompletion>,
    trace_id: &str,
) -> Vec<QueueMessage> {
    let Some(url) = instance.post_url.as_deref() else {
        return Vec::new();
    };
    let envelope = |fields: Map<String, Value>| {
        let mut body = Map::new();
        body.insert("to".into(), json!(key.user_id));
        body.insert("from".into(), json!(key.bot_id));
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
                    body.insert("text".into(), message.val.clone());
                }
                (WebhookVersion::V2, _) => {
                    body.insert("data".into(), json!([message]));
                }
            }
            (format!("msg_{}", message.message_id), envelope(body))
        })
        .collect();
    if let Some(completion) = completion {
        let mut body = Map::new();
        body.insert("endOfTask".into(), json!(true));
        if let Value::Object(fields) = json!(completion) {
            body.extend(fields);
        }
        bodies.push((format!("end_{trace_id}"), envelope(body)));
    }
    bodies
        .into_iter()
        .map(|(webhook_id, body)| {
            let job =
                delivery(bot, DeliveryKind::PostUrl, Some(&instance.id), webhook_id.clone(), post(bot, url, body));
            QueueMessage::in_conversation(key, webhook_id, job)
        })
        .collect()
}

/// The bot-wide event webhook: one POST per message received or sent, with
/// the message JSON-encoded in `data` as the spec shows it.
pub fn events(bot: &Bot, key: &ConversationKey, log: &[LogEntry], client_ip: Option<&str>) -> Vec<QueueMessage> {
    let Some(url) = bot.def.events.url.as_deref() else {
        return Vec::new();
    };
    log.iter()
        .map(|entry| {
            let (direction, message) = match entry.direction {
                Direction::In => ("received", &entry.body["request"]["message"]),
                Direction::Out => ("sent", &entry.body),
            };
            let text = message.get("val").or_else(|| message.get("text")).unwrap_or(message);
            let body = json!({
                "time": entry.created_on,
                "data": text.to_string(),
                "ip": client_ip,
                "userId": key.user_id,
                "botId": key.bot_id,
                "direction": direction,
                "messageId": entry.message_id,
                "seq": entry.seq,
            });
            let webhook_id = format!("evt_{}", entry.message_id);
            let job = delivery(bot, DeliveryKind::Event, None, webhook_id.clone(), post(bot, url, body));
            QueueMessage::beside_conversation(key, webhook_id, job)
        })
        .collect()
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
        "sessionId": session_id,
        "taskId": completion.completed_task_id,
        "taskName": completion.completed_task_name,
        "endReason": completion.end_reason,
        "data": fields,
    });
    // One per step of a turn: a continued turn can end a task again.
    let webhook_id = format!("ses_{trace_id}_{first_seq}");
    let job = delivery(bot, DeliveryKind::SessionData, None, webhook_id.clone(), post(bot, url, body));
    Some(QueueMessage::beside_conversation(key, webhook_id, job))
}

/// Async webhook nodes' calls, fire and forget.
pub fn webhook_nodes(bot: &Bot, key: &ConversationKey, calls: Vec<HttpCall>) -> Vec<QueueMessage> {
    calls
        .into_iter()
        .map(|call| {
            let webhook_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
            let job = delivery(bot, DeliveryKind::WebhookNode, None, webhook_id.clone(), call);
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
