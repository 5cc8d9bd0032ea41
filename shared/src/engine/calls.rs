//! Service and webhook nodes: the requests they make, and what their answers
//! mean for the flow.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{CallOutcome, HttpCall, Instructions, MAX_DELAY_MS, Output, Session};
use crate::definition::{ATTACHMENT_MIME_TYPES, Bot, HeaderValue, HttpMethod, ServiceNode, WebhookNode};
use crate::text::template;

fn call(
    bot: &Bot,
    method: &str,
    url: &str,
    headers: &[(&String, &HeaderValue)],
    timeout_ms: Option<u64>,
    scope: &Value,
) -> HttpCall {
    let outbound = &bot.def.outbound;
    HttpCall {
        method: method.to_string(),
        url: template::render_url(url, scope),
        headers: headers
            .iter()
            .map(|(name, value)| {
                let value = match value {
                    HeaderValue::Text(text) => HeaderValue::Text(template::render(text, scope)),
                    secret => (*secret).clone(),
                };
                (name.to_string(), value)
            })
            .collect(),
        body: None,
        timeout: Duration::from_millis(timeout_ms.unwrap_or(outbound.timeout_ms)),
        allow_private: outbound.allow_private_networks,
        max_response_bytes: outbound.max_response_bytes,
    }
}

pub fn service_call(bot: &Bot, node: &ServiceNode, scope: &Value) -> HttpCall {
    let method = match node.method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
    };
    let headers: Vec<_> = node.headers.iter().collect();
    HttpCall {
        body: node
            .body
            .as_ref()
            .filter(|_| node.method != HttpMethod::Get)
            .map(|body| template::render_value(body, scope)),
        ..call(bot, method, &node.url, &headers, node.timeout_ms, scope)
    }
}

/// The Joonbot payload: every collected field, and `conversation`, the
/// transcript as "Bot: ...\nUser: ...\n" lines.
pub fn webhook_call(bot: &Bot, node: &WebhookNode, session: &Session, scope: &Value) -> HttpCall {
    let mut body = session.context.clone();
    body.insert("conversation".into(), Value::String(session.transcript.text()));
    let headers: Vec<_> = node.headers.iter().collect();
    HttpCall { body: Some(Value::Object(body)), ..call(bot, "POST", &node.url, &headers, node.timeout_ms, scope) }
}

/// A 2xx answer's JSON body (null when empty).
fn success_json(outcome: CallOutcome) -> Result<Value, String> {
    let reply = outcome.map_err(|e| e.to_string())?;
    if !(200..300).contains(&reply.status) {
        return Err(format!("status {}", reply.status));
    }
    if reply.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&reply.body).map_err(|e| format!("answer is not JSON: {e}"))
}

/// The context values a service node's `map` takes from its answer.
pub fn service_values(node: &ServiceNode, outcome: CallOutcome) -> Result<Map<String, Value>, String> {
    let answer = success_json(outcome)?;
    Ok(node
        .map
        .iter()
        .map(|(field, pointer)| (field.clone(), answer.pointer(pointer).cloned().unwrap_or(Value::Null)))
        .collect())
}

/// What a sync webhook's answer asks for: Joonbot `responses` to show,
/// Konverse instructions, or (any other object) context variables.
pub fn webhook_instructions(outcome: CallOutcome) -> Result<Instructions, String> {
    let mut answer = match success_json(outcome)? {
        Value::Null => return Ok(Instructions::default()),
        Value::Object(answer) => answer,
        _ => return Err("answer is not a JSON object".into()),
    };
    if let Some(konverse) = answer.get("konverse") {
        return konverse_instructions(konverse);
    }
    if let Some(responses) = answer.get("responses") {
        let responses = responses.as_array().ok_or("responses is not an array")?;
        let mut outputs = Vec::new();
        for (i, response) in responses.iter().enumerate() {
            outputs.extend(joonbot_instruction(response).map_err(|e| format!("responses[{i}]: {e}"))?);
        }
        return Ok(Instructions { outputs, ..Instructions::default() });
    }
    // `session` is where templates find the last message: not settable.
    answer.remove("session");
    Ok(Instructions { context: answer, ..Instructions::default() })
}

/// One Joonbot instruction: after its `delay`, each element in `order`. Text
/// is the only type the spec prints; any other fails the call, so the flow
/// takes its error path rather than leaving something unsaid.
fn joonbot_instruction(response: &Value) -> Result<Vec<Output>, String> {
    match response["type"].as_str() {
        Some("text") => {}
        Some(other) => return Err(format!("instructions of type {other} are not supported (only text)")),
        None => return Err("an instruction needs a type".into()),
    }
    let elements =
        response["elements"].as_array().filter(|e| !e.is_empty()).ok_or("elements is not a non-empty list")?;
    let mut elements: Vec<&Value> = elements.iter().collect();
    elements.sort_by_key(|e| e["order"].as_i64().unwrap_or(0));
    let mut outputs = Vec::new();
    if let Some(delay) = response["delay"].as_u64().filter(|d| *d > 0) {
        outputs.push(Output::Pause(delay.min(MAX_DELAY_MS)));
    }
    for element in elements {
        let label = element["label"].as_str().ok_or("each element needs a label")?;
        outputs.push(Output::Text(label.to_string()));
    }
    Ok(outputs)
}

fn konverse_instructions(konverse: &Value) -> Result<Instructions, String> {
    let stop = konverse["stopPropagation"] == Value::Bool(true);
    let outputs = match konverse["type"].as_str() {
        Some("text") => match &konverse["text"] {
            Value::String(text) => vec![Output::Text(text.clone())],
            Value::Array(texts) => {
                texts.iter().filter_map(Value::as_str).map(|t| Output::Text(t.to_string())).collect()
            }
            _ => return Err("konverse text is neither a string nor an array".into()),
        },
        Some("attachment") => {
            let attachment = &konverse["attachment"];
            let (Some(url), Some(mime)) = (attachment["url"].as_str(), attachment["mime"].as_str()) else {
                return Err("konverse attachment needs url and mime".into());
            };
            if !ATTACHMENT_MIME_TYPES.contains(&mime) {
                return Err(format!("attachment MIME type {mime} is not supported"));
            }
            vec![Output::Attachment { url: url.to_string(), mime: mime.to_string() }]
        }
        Some("quickReply" | "quick_reply") => vec![konverse_quick_reply(&konverse["quickReply"])?],
        Some(other) => return Err(format!("unknown konverse type {other}")),
        None if stop => Vec::new(),
        None => return Err("konverse instruction without type".into()),
    };
    Ok(Instructions { outputs, context: Map::new(), stop })
}

/// `{"type": "quickReply", "quickReply": {"text": "...", "replies": [...]}}`,
/// shaped as the text and attachment forms are (the spec names quick replies
/// but prints no form); a reply is a string, or `{title, payload}`. Sent as
/// Kore's quick replies template.
fn konverse_quick_reply(quick: &Value) -> Result<Output, String> {
    let text = quick["text"].as_str().ok_or("konverse quickReply needs a text")?;
    let replies = quick["replies"].as_array().filter(|r| !r.is_empty()).ok_or("konverse quickReply needs replies")?;
    let replies = replies
        .iter()
        .map(|reply| match reply {
            Value::String(title) => Ok(serde_json::json!({"content_type": "text", "title": title, "payload": title})),
            Value::Object(reply) => {
                let title = reply.get("title").and_then(Value::as_str).ok_or("a quick reply needs a title")?;
                let payload = reply.get("payload").and_then(Value::as_str).unwrap_or(title);
                Ok(serde_json::json!({"content_type": "text", "title": title, "payload": payload}))
            }
            _ => Err("a quick reply is a string or {title, payload}".to_string()),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Output::Template(serde_json::json!({
        "type": "template",
        "payload": {"template_type": "quick_replies", "text": text, "quick_replies": replies},
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CallError, HttpReply};
    use serde_json::json;
    use std::time::Duration;

    fn reply(status: u16, body: &str) -> CallOutcome {
        Ok(HttpReply { status, body: body.as_bytes().to_vec(), retry_after: None })
    }

    #[test]
    fn joonbot_responses_are_shown_in_order_after_their_delay() {
        let body = json!({"responses": [
            {"type": "text", "delay": 2000, "elements": [{"label": "second", "order": 2}, {"label": "first", "order": 1}]},
            {"type": "text", "elements": [{"label": "third", "order": 1, "placeholder": null}]},
            {"type": "text", "delay": 60000, "elements": [{"label": "fourth"}]}
        ]});
        let instructions = webhook_instructions(reply(200, &body.to_string())).unwrap();
        let text = |t: &str| Output::Text(t.into());
        assert_eq!(
            instructions.outputs,
            [
                Output::Pause(2000),
                text("first"),
                text("second"),
                text("third"),
                Output::Pause(MAX_DELAY_MS),
                text("fourth")
            ]
        );
        for broken in [
            json!({"responses": [{"type": "image", "elements": []}]}),
            json!({"responses": [{"elements": [{"label": "x"}]}]}),
            json!({"responses": [{"type": "text", "elements": [{"order": 1}]}]}),
            json!({"responses": [{"type": "text"}]}),
        ] {
            assert!(webhook_instructions(reply(200, &broken.to_string())).is_err(), "{broken}");
        }
    }

    #[test]
    fn other_objects_set_context_variables() {
        let instructions =
            webhook_instructions(reply(200, r#"{"delivery_status":"delivered","session":"x"}"#)).unwrap();
        assert_eq!(Value::Object(instructions.context), json!({"delivery_status": "delivered"}));
    }

    #[test]
    fn konverse_formats() {
        let text =
            webhook_instructions(reply(200, r#"{"konverse":{"type":"text","text":["Hello from webhook"]}}"#)).unwrap();
        assert_eq!(text.outputs, [Output::Text("Hello from webhook".into())]);
        let file = r#"{"konverse":{"type":"attachment","attachment":{"url":"https://x.io/w.png","mime":"image/png"}}}"#;
        let file = webhook_instructions(reply(200, file)).unwrap();
        assert_eq!(file.outputs, [Output::Attachment { url: "https://x.io/w.png".into(), mime: "image/png".into() }]);
        let bad = r#"{"konverse":{"type":"attachment","attachment":{"url":"https://x.io/a.exe","mime":"application/x-msdownload"}}}"#;
        assert!(webhook_instructions(reply(200, bad)).is_err());
        let stop = webhook_instructions(reply(200, r#"{"konverse":{"stopPropagation":true}}"#)).unwrap();
        assert!(stop.stop && stop.outputs.is_empty());
    }

    #[test]
    fn konverse_quick_replies_become_kore_quick_replies() {
        let body = json!({"konverse": {"type": "quickReply", "quickReply": {
            "text": "Pick one", "replies": ["Yes", {"title": "Not now", "payload": "later"}]}}});
        let quick = webhook_instructions(reply(200, &body.to_string())).unwrap();
        let expected = json!({"type": "template", "payload": {"template_type": "quick_replies", "text": "Pick one",
            "quick_replies": [{"content_type": "text", "title": "Yes", "payload": "Yes"},
                              {"content_type": "text", "title": "Not now", "payload": "later"}]}});
        assert_eq!(quick.outputs, [Output::Template(expected)]);
        for broken in [
            json!({"type": "quickReply", "quickReply": {"replies": ["Yes"]}}),
            json!({"type": "quickReply", "quickReply": {"text": "Pick", "replies": []}}),
            json!({"type": "quickReply", "quickReply": {"text": "Pick", "replies": [{"payload": "x"}]}}),
            json!({"type": "carousel"}),
        ] {
            let body = json!({"konverse": broken}).to_string();
            assert!(webhook_instructions(reply(200, &body)).is_err(), "{broken}");
        }
    }

    #[test]
    fn failures() {
        assert!(webhook_instructions(reply(500, "{}")).is_err());
        assert!(webhook_instructions(reply(200, "not json")).is_err());
        assert!(webhook_instructions(reply(200, "[1]")).is_err());
        assert!(webhook_instructions(Err(CallError::Timeout(Duration::from_secs(1)))).is_err());
        assert_eq!(webhook_instructions(reply(204, "")).unwrap(), Instructions::default());
    }
}
