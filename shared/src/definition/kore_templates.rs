//! Kore templates as Kore's web SDK renders them: a message's `template`
//! (`{"type": "template", "payload": {"template_type": ...}}`) checked for what
//! the SDK's template manager needs, so a mistake is an error at its field
//! rather than a message the chat window silently drops (the SDK throws on a
//! missing list, and on a button without type or payload when clicked).

use serde_json::Value;

use super::validate::Problems;
use crate::text::template::lone_placeholder;

/// Payload lists each `template_type` needs (kore-web-sdk 10.1.12).
const REQUIRED_LISTS: &[(&str, &[&str])] = &[
    ("button", &["buttons"]),
    ("quick_replies", &["quick_replies"]),
    ("carousel", &["elements"]),
    ("list", &["elements"]),
    ("listView", &["elements"]),
    ("table", &["columns", "elements"]),
    ("mini_table", &["elements"]),
    ("dropdown_template", &["elements"]),
    ("multi_select", &["elements", "buttons"]),
    ("radioOptionTemplate", &["radioOptions"]),
    ("advanced_multi_select", &["elements", "buttons"]),
    ("form_template", &["formFields"]),
    ("advancedListTemplate", &["listItems"]),
    ("piechart", &["elements"]),
    ("barchart", &["X_axis", "elements"]),
    ("linechart", &["X_axis", "elements"]),
    ("cardTemplate", &[]),
    ("feedbackTemplate", &[]),
    ("dateTemplate", &[]),
    ("daterange", &[]),
    ("clockTemplate", &[]),
];

pub(super) fn check(path: &str, template: &Value, p: &mut Problems) {
    if filled_at_runtime(template) || filled_at_runtime(&template["payload"]) {
        return;
    }
    if template["type"] != "template" {
        p.warn(format!("{path}.type"), "Kore's clients render objects with type: template; this one goes out as it is");
        return;
    }
    let payload = &template["payload"];
    let Some(kind) = payload["template_type"].as_str() else {
        p.error(format!("{path}.payload.template_type"), "name the template's type");
        return;
    };
    let at = |field: &str| format!("{path}.payload.{field}");
    let Some((_, lists)) = REQUIRED_LISTS.iter().find(|(k, _)| *k == kind) else {
        let known: Vec<&str> = REQUIRED_LISTS.iter().map(|(k, _)| *k).collect();
        p.warn(
            at("template_type"),
            format!("not a type Kore's web SDK renders (it shows an empty bubble); known: {}", known.join(", ")),
        );
        return;
    };
    for list in lists.iter().filter(|l| !filled_at_runtime(&payload[**l])) {
        if payload[*list].as_array().is_none_or(|l| l.is_empty()) {
            p.error(at(list), format!("a {kind} template needs a non-empty list here"));
        }
    }
    match kind {
        "button" => actions(&at("buttons"), &payload["buttons"], "type", p),
        "quick_replies" => actions(&at("quick_replies"), &payload["quick_replies"], "content_type", p),
        "carousel" if payload["carousel_type"] != "stacked" => {
            for (i, element) in items(&payload["elements"]) {
                let buttons = &element["buttons"];
                actions(&format!("{}[{i}].buttons", at("elements")), buttons, "type", p);
                if buttons.as_array().is_none_or(|b| b.len() < 2) {
                    let field = format!("{}[{i}].buttons", at("elements"));
                    p.warn(field, "the SDK's v3 carousel draws two buttons per card and fails with fewer");
                }
            }
        }
        "list" => {
            for (i, element) in items(&payload["elements"]) {
                if element.get("buttons").is_none() && !element["default_action"]["url"].is_string() {
                    p.error(format!("{}[{i}]", at("elements")), "a list element needs buttons or default_action.url");
                }
                actions(&format!("{}[{i}].buttons", at("elements")), &element["buttons"], "type", p);
            }
        }
        "table" if !matches!(payload["table_design"].as_str(), Some("regular" | "responsive")) => {
            p.error(at("table_design"), "regular or responsive (the SDK draws nothing else)");
        }
        "dropdown_template" => {
            for (i, element) in items(&payload["elements"]) {
                if !(element["title"].is_string() && non_empty(&element["value"])) {
                    p.error(format!("{}[{i}]", at("elements")), "each option needs a title and a value");
                }
            }
        }
        _ => {}
    }
}

/// Buttons or quick replies: a kind the SDK acts on, a title, and what a
/// click sends (a postback's payload) or opens (an absolute URL).
fn actions(path: &str, list: &Value, kind_field: &str, p: &mut Problems) {
    for (i, action) in items(list) {
        let at = format!("{path}[{i}]");
        if !(action["title"].is_string() || action["title"].is_number()) {
            p.error(format!("{at}.title"), "each needs a title");
        }
        match action[kind_field].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("postback" | "text") => {
                if !non_empty(&action["payload"]) && !non_empty(&action["value"]) {
                    p.error(format!("{at}.payload"), "a postback sends its payload: a non-empty string");
                }
            }
            Some("url" | "web_url") => {
                let url = action["url"].as_str().unwrap_or_default();
                if !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with("{{")) {
                    p.error(format!("{at}.url"), "an absolute http(s) URL to open");
                }
            }
            _ => p.error(format!("{at}.{kind_field}"), "postback, text, url or web_url"),
        }
    }
}

/// The items of a list, but those a lone `{{...}}` fills when the message is sent.
fn items(list: &Value) -> impl Iterator<Item = (usize, &Value)> {
    list.as_array().into_iter().flatten().enumerate().filter(|(_, item)| !filled_at_runtime(item))
}

/// A lone `{{...}}` placeholder: its value, of any type, comes from the context.
fn filled_at_runtime(value: &Value) -> bool {
    value.as_str().is_some_and(|s| lone_placeholder(s).is_some())
}

/// A non-empty string: what a click sends must be one (the SDK trims it).
fn non_empty(value: &Value) -> bool {
    value.as_str().is_some_and(|s| !s.trim().is_empty())
}
