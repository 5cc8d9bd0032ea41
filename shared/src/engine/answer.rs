//! Validation of answers by entity type (question nodes and form fields).

use chrono::{DateTime, Days, NaiveDate};
use serde_json::{Number, Value};

use crate::definition::{Choice, Entity, Text};
use crate::text::matcher::{Utterance, words};

/// What an answer may refer to beyond its text.
pub struct AnswerContext {
    pub now_ms: i64,
    /// The message's attachments (null when none).
    pub attachments: Value,
}

/// The value to save, or the name of the expected kind for the re-prompt.
pub fn parse(entity: Entity, choices: &[Choice], text: &str, ctx: &AnswerContext) -> Result<Value, &'static str> {
    let text = text.trim();
    match entity {
        Entity::Text if !text.is_empty() => Ok(Value::String(text.to_string())),
        Entity::Text => Err("answer"),
        Entity::Email => email(text).ok_or("email address"),
        Entity::Phone => phone(text).ok_or("phone number"),
        Entity::Number => number(text).ok_or("number"),
        Entity::Date => date(text, ctx.now_ms).ok_or("date"),
        Entity::Choice => choice(choices, text).ok_or("choice"),
        Entity::YesNo => yes_no(text).ok_or("yes or no"),
        Entity::Attachment => match &ctx.attachments {
            Value::Array(list) if !list.is_empty() => Ok(Value::Array(list.clone())),
            _ => Err("attachment"),
        },
    }
}

fn email(text: &str) -> Option<Value> {
    let (local, domain) = text.split_once('@')?;
    let valid = !local.is_empty()
        && !text.chars().any(char::is_whitespace)
        && !domain.contains('@')
        && domain.split('.').count() >= 2
        && domain.split('.').all(|label| !label.is_empty());
    valid.then(|| Value::String(text.to_string()))
}

/// E.164-sized: 7 to 15 digits, an optional leading +, common separators allowed.
fn phone(text: &str) -> Option<Value> {
    let (plus, rest) = match text.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", text),
    };
    let mut digits = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (7..=15).contains(&digits.len()).then(|| Value::String(format!("{plus}{digits}")))
}

fn number(text: &str) -> Option<Value> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    let f: f64 = text.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

/// ISO (2026-11-22), day first (22/11/2026, 22.11.2026), or today / tomorrow /
/// yesterday; saved as YYYY-MM-DD.
fn date(text: &str, now_ms: i64) -> Option<Value> {
    let today = DateTime::from_timestamp_millis(now_ms)?.date_naive();
    let relative = match words(text).join(" ").as_str() {
        "today" => Some(today),
        "tomorrow" => today.checked_add_days(Days::new(1)),
        "yesterday" => today.checked_sub_days(Days::new(1)),
        _ => None,
    };
    let date = relative.or_else(|| {
        ["%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%d.%m.%Y"]
            .iter()
            .find_map(|format| NaiveDate::parse_from_str(text, format).ok())
    })?;
    Some(Value::String(date.format("%Y-%m-%d").to_string()))
}

fn yes_no(text: &str) -> Option<Value> {
    const YES: &[&str] = &["yes", "y", "yeah", "yep", "sure", "ok", "okay", "true", "oui", "si", "ja"];
    const NO: &[&str] = &["no", "n", "nope", "nah", "false", "non", "nein"];
    let answer = words(text).join(" ");
    if YES.contains(&answer.as_str()) {
        Some(Value::Bool(true))
    } else if NO.contains(&answer.as_str()) {
        Some(Value::Bool(false))
    } else {
        None
    }
}

/// Every wording of a text: each language's, each instance's.
fn all_wordings(text: &Text) -> Vec<&str> {
    match text {
        Text::Plain(s) => vec![s.as_str()],
        Text::PerLanguage(m) => m.values().map(String::as_str).collect(),
        Text::PerInstance(variants) => {
            std::iter::once(&*variants.default).chain(variants.instances.values()).flat_map(all_wordings).collect()
        }
    }
}

/// By value, label in any language or instance, or synonym, else by number (1-based):
/// an option whose value is "2" wins over the second option.
pub fn choice(choices: &[Choice], text: &str) -> Option<Value> {
    let utterance = Utterance::new(text);
    let named = choices.iter().find(|c| {
        let labels = c.label.iter().flat_map(all_wordings);
        std::iter::once(c.value.as_str())
            .chain(labels)
            .chain(c.synonyms.iter().map(String::as_str))
            .any(|option| words(option) == utterance.words)
    });
    let numbered = || text.trim().parse::<usize>().ok().and_then(|n| n.checked_sub(1)).and_then(|i| choices.get(i));
    named.or_else(numbered).map(|c| Value::String(c.value.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn choices() -> Vec<Choice> {
        vec![
            Choice { value: "inside".into(), label: Some(Text::Plain("Indoors".into())), synonyms: vec!["in".into()] },
            Choice { value: "terrace".into(), label: None, synonyms: vec![] },
        ]
    }

    /// 2026-11-22T10:00:00Z
    const NOW: i64 = 1_795_341_600_000;

    fn parse_as(entity: Entity, text: &str) -> Result<Value, &'static str> {
        let ctx = AnswerContext { now_ms: NOW, attachments: Value::Null };
        parse(entity, &choices(), text, &ctx)
    }

    #[test]
    fn entities() {
        assert_eq!(parse_as(Entity::Email, " a.b@c.io "), Ok("a.b@c.io".into()));
        assert!(parse_as(Entity::Email, "a@b").is_err());
        assert!(parse_as(Entity::Email, "a b@c.io").is_err());
        assert_eq!(parse_as(Entity::Phone, "+1 (555) 010-9999"), Ok("+15550109999".into()));
        assert!(parse_as(Entity::Phone, "12ab345678").is_err());
        assert_eq!(parse_as(Entity::Number, "4"), Ok(4.into()));
        assert_eq!(parse_as(Entity::Number, "2.5"), Ok(2.5.into()));
        assert!(parse_as(Entity::Number, "four").is_err());
        assert!(parse_as(Entity::Text, "  ").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(parse_as(Entity::Date, "2026-12-24"), Ok("2026-12-24".into()));
        assert_eq!(parse_as(Entity::Date, "24/12/2026"), Ok("2026-12-24".into()));
        assert_eq!(parse_as(Entity::Date, "24.12.2026"), Ok("2026-12-24".into()));
        assert_eq!(parse_as(Entity::Date, "Tomorrow"), Ok("2026-11-23".into()));
        assert_eq!(parse_as(Entity::Date, "today"), Ok("2026-11-22".into()));
        assert!(parse_as(Entity::Date, "31/02/2026").is_err());
        assert!(parse_as(Entity::Date, "next week").is_err());
    }

    #[test]
    fn yes_no_and_attachments() {
        assert_eq!(parse_as(Entity::YesNo, "Yes!"), Ok(true.into()));
        assert_eq!(parse_as(Entity::YesNo, "nope"), Ok(false.into()));
        assert!(parse_as(Entity::YesNo, "maybe").is_err());
        assert!(parse_as(Entity::Attachment, "here it is").is_err());
        let with = AnswerContext { now_ms: NOW, attachments: json!([{"url": "https://x.io/a.png"}]) };
        assert_eq!(parse(Entity::Attachment, &[], "here", &with), Ok(json!([{"url": "https://x.io/a.png"}])));
    }

    #[test]
    fn choices_by_number_value_label_synonym() {
        assert_eq!(parse_as(Entity::Choice, "2"), Ok("terrace".into()));
        assert_eq!(parse_as(Entity::Choice, "INDOORS"), Ok("inside".into()));
        assert_eq!(parse_as(Entity::Choice, "in"), Ok("inside".into()));
        assert_eq!(parse_as(Entity::Choice, "Terrace"), Ok("terrace".into()));
        assert!(parse_as(Entity::Choice, "3").is_err());
        assert!(parse_as(Entity::Choice, "roof").is_err());
        let numeric: Vec<Choice> =
            ["0", "1", "2"].map(|v| Choice { value: v.into(), label: None, synonyms: vec![] }).to_vec();
        let ctx = AnswerContext { now_ms: NOW, attachments: Value::Null };
        assert_eq!(parse(Entity::Choice, &numeric, "1", &ctx), Ok("1".into()));
    }
}
