//! Checks of each node kind's own settings (references between nodes are
//! checked for the task as a whole).

use std::collections::HashSet;

use regex::Regex;
use serde_json::Value;

use super::kore_templates;
use super::model::*;
use super::validate::{Names, Problems, check_text};
use crate::text::matcher::compile_pattern;
use crate::text::template;

fn field_name_ok(name: &str) -> bool {
    name != "session" && Regex::new("^[A-Za-z_][A-Za-z0-9_]{0,63}$").is_ok_and(|r| r.is_match(name))
}

pub fn check(path: &str, node: &Node, names: &Names, p: &mut Problems) {
    match node {
        Node::Message(m) => message(path, m, names, p),
        Node::Question(q) => question(path, q, names, p),
        Node::Form(f) => form(path, f, names, p),
        Node::Service(s) => {
            call_target(path, &s.url, &s.headers, p);
            positive(&format!("{path}.timeoutMs"), s.timeout_ms, p);
            if let Some(body) = &s.body {
                templates_in(&format!("{path}.body"), body, p);
                if s.method == HttpMethod::Get {
                    p.warn(format!("{path}.body"), "a GET request sends no body: this one is ignored");
                }
            }
            for (field, pointer) in &s.map {
                if !field_name_ok(field) {
                    p.error(format!("{path}.map.{field}"), "a name of letters, digits and '_' (not 'session')");
                }
                if !(pointer.is_empty() || pointer.starts_with('/')) {
                    p.error(
                        format!("{path}.map.{field}"),
                        "a JSON pointer: empty for the whole answer, or starting with /",
                    );
                }
            }
        }
        Node::Webhook(w) => {
            call_target(path, &w.url, &w.headers, p);
            positive(&format!("{path}.timeoutMs"), w.timeout_ms, p);
        }
        Node::Logic(l) => {
            for (field, value) in &l.set {
                if !field_name_ok(field) {
                    p.error(format!("{path}.set.{field}"), "a name of letters, digits and '_' (not 'session')");
                }
                templates_in(&format!("{path}.set.{field}"), value, p);
            }
            for (i, condition) in l.conditions.iter().enumerate() {
                let at = format!("{path}.conditions[{i}]");
                let needs_value = !matches!(condition.op, Operator::Exists | Operator::NotExists);
                if needs_value && condition.value.is_none() {
                    p.error(&at, "this operator compares with a value: give one");
                }
                if let (Operator::Matches, Some(Value::String(pattern))) = (condition.op, &condition.value)
                    && !pattern.contains("{{")
                    && let Err(e) = compile_pattern(pattern)
                {
                    p.error(format!("{at}.value"), format!("invalid regular expression: {e}"));
                }
            }
        }
        Node::End(e) => {
            if let Some(text) = &e.text {
                check_text(&format!("{path}.text"), text, names, p);
            }
        }
    }
}

fn message(path: &str, m: &MessageNode, names: &Names, p: &mut Problems) {
    let kinds = [m.text.is_some(), !m.messages.is_empty(), m.template.is_some(), m.attachment.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        p.error(path, "give exactly one of text, messages, template and attachment");
    }
    if let Some(text) = &m.text {
        check_text(&format!("{path}.text"), text, names, p);
    }
    for (i, text) in m.messages.iter().enumerate() {
        check_text(&format!("{path}.messages[{i}]"), text, names, p);
    }
    if let Some(object) = &m.template {
        if !object.is_object() {
            p.error(format!("{path}.template"), "a template message is a JSON object");
        } else {
            kore_templates::check(&format!("{path}.template"), object, p);
        }
        templates_in(&format!("{path}.template"), object, p);
    }
    if let Some(attachment) = &m.attachment {
        url(&format!("{path}.attachment.url"), &attachment.url, p);
        if !ATTACHMENT_MIME_TYPES.contains(&attachment.mime.as_str()) {
            let allowed = ATTACHMENT_MIME_TYPES.join(", ");
            p.error(
                format!("{path}.attachment.mime"),
                format!("{} is not supported; use one of {allowed}", attachment.mime),
            );
        }
    }
}

fn question(path: &str, q: &QuestionNode, names: &Names, p: &mut Problems) {
    check_text(&format!("{path}.prompt"), &q.prompt, names, p);
    if let Some(text) = &q.retry_prompt {
        check_text(&format!("{path}.retryPrompt"), text, names, p);
    }
    if !field_name_ok(&q.field) {
        p.error(format!("{path}.field"), "a name of letters, digits and '_' (not 'session')");
    }
    match (q.entity == Entity::Choice, q.choices.is_empty()) {
        (true, true) => p.error(format!("{path}.choices"), "a choice question needs choices"),
        (false, false) => p.warn(format!("{path}.choices"), "only used with entity: choice"),
        _ => {}
    }
    for (i, choice) in q.choices.iter().enumerate() {
        if let Some(label) = &choice.label {
            check_text(&format!("{path}.choices[{i}].label"), label, names, p);
        }
    }
}

/// Durations and sizes given must be at least 1.
pub fn positive(path: &str, value: Option<impl Into<u64>>, p: &mut Problems) {
    if value.is_some_and(|v| v.into() == 0) {
        p.error(path, "must be at least 1");
    }
}

fn form(path: &str, f: &FormNode, names: &Names, p: &mut Problems) {
    if !Regex::new("^[A-Za-z0-9_-]{1,96}$").is_ok_and(|r| r.is_match(&f.id)) || f.id == "session" {
        p.error(format!("{path}.id"), "letters, digits, '-' and '_' only, at most 96 (not 'session')");
    }
    check_text(&format!("{path}.title"), &f.title, names, p);
    if let Some(label) = &f.submit_label {
        check_text(&format!("{path}.submitLabel"), label, names, p);
    }
    if let Some(field) = &f.field
        && !field_name_ok(field)
    {
        p.error(format!("{path}.field"), "a name of letters, digits and '_' (not 'session')");
    }
    if f.components.is_empty() {
        p.error(format!("{path}.components"), "a form needs at least one component");
    }
    let mut seen = HashSet::new();
    for (i, c) in f.components.iter().enumerate() {
        let at = format!("{path}.components[{i}]");
        if !seen.insert(c.name.as_str()) {
            p.error(format!("{at}.name"), format!("component name {} is used twice", c.name));
        }
        if c.name == "Submit" || !field_name_ok(&c.name) {
            p.error(format!("{at}.name"), "a name of letters, digits and '_' (not Submit or session)");
        }
        check_text(&format!("{at}.label"), &c.label, names, p);
        if let Some(placeholder) = &c.placeholder {
            check_text(&format!("{at}.placeholder"), placeholder, names, p);
        }
        for (j, option) in c.options.iter().enumerate() {
            if let Some(label) = &option.label {
                check_text(&format!("{at}.options[{j}].label"), label, names, p);
            }
        }
        match (c.kind == ComponentType::Dropdown, c.options.is_empty()) {
            (true, true) => p.error(format!("{at}.options"), "a dropdown needs options"),
            (false, false) => p.warn(format!("{at}.options"), "only used by a dropdown"),
            _ => {}
        }
    }
    for (name, value) in &f.prefill {
        if !seen.contains(name.as_str()) {
            p.error(format!("{path}.prefill.{name}"), "no component has this name");
        }
        if let Err(e) = template::check(value) {
            p.error(format!("{path}.prefill.{name}"), e);
        }
    }
}

/// The URL and headers of a service or webhook node.
fn call_target(path: &str, target: &str, headers: &std::collections::BTreeMap<String, HeaderValue>, p: &mut Problems) {
    url(&format!("{path}.url"), target, p);
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            p.error(format!("{path}.headers.{name}"), "not a valid header name");
        }
        if let HeaderValue::Text(text) = value
            && let Err(e) = template::check(text)
        {
            p.error(format!("{path}.headers.{name}"), e);
        }
    }
}

fn url(path: &str, url: &str, p: &mut Problems) {
    if let Err(e) = template::check(url) {
        return p.error(path, e);
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        p.error(path, "must be an http:// or https:// URL");
    }
}

/// Every string inside a JSON value is a valid template.
fn templates_in(path: &str, value: &Value, p: &mut Problems) {
    match value {
        Value::String(s) => {
            if let Err(e) = template::check(s) {
                p.error(path, e);
            }
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| templates_in(&format!("{path}[{i}]"), v, p)),
        Value::Object(entries) => entries.iter().for_each(|(k, v)| templates_in(&format!("{path}.{k}"), v, p)),
        _ => {}
    }
}
