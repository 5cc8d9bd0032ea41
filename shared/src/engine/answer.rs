//! Validation of question answers by entity type.

use serde_json::{Number, Value};

use super::matcher::{Utterance, words};
use crate::config::{Entity, QuestionNode, Text};

/// The value to save, or the name of the expected kind for the re-prompt.
pub fn parse(question: &QuestionNode, text: &str) -> Result<Value, &'static str> {
    let text = text.trim();
    match question.entity {
        Entity::Text if !text.is_empty() => Ok(Value::String(text.to_string())),
        Entity::Text => Err("answer"),
        Entity::Email => email(text).ok_or("email address"),
        Entity::Phone => phone(text).ok_or("phone number"),
        Entity::Number => number(text).ok_or("number"),
        Entity::Choice => choice(question, text).ok_or("choice"),
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
    (7..=15)
        .contains(&digits.len())
        .then(|| Value::String(format!("{plus}{digits}")))
}

fn number(text: &str) -> Option<Value> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    let f: f64 = text.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

fn choice(question: &QuestionNode, text: &str) -> Option<Value> {
    let chosen = match text.parse::<usize>() {
        Ok(n) if (1..=question.choices.len()).contains(&n) => Some(&question.choices[n - 1]),
        _ => {
            let utterance = Utterance::new(text);
            question.choices.iter().find(|c| {
                let labels = c.label.iter().flat_map(|l| match l {
                    Text::Plain(s) => vec![s.as_str()],
                    Text::PerLanguage(m) => m.values().map(String::as_str).collect(),
                });
                std::iter::once(c.value.as_str())
                    .chain(labels)
                    .chain(c.synonyms.iter().map(String::as_str))
                    .any(|option| words(option) == utterance.words)
            })
        }
    };
    chosen.map(|c| Value::String(c.value.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Choice;

    fn question(entity: Entity) -> QuestionNode {
        QuestionNode {
            prompt: Text::Plain("?".into()),
            field: "f".into(),
            entity,
            choices: vec![
                Choice {
                    value: "inside".into(),
                    label: Some(Text::Plain("Indoors".into())),
                    synonyms: vec!["in".into()],
                },
                Choice {
                    value: "terrace".into(),
                    label: None,
                    synonyms: vec![],
                },
            ],
            retry_prompt: None,
            next: None,
        }
    }

    #[test]
    fn entities() {
        assert_eq!(
            parse(&question(Entity::Email), " a.b@c.io "),
            Ok("a.b@c.io".into())
        );
        assert!(parse(&question(Entity::Email), "a@b").is_err());
        assert!(parse(&question(Entity::Email), "a b@c.io").is_err());
        assert_eq!(
            parse(&question(Entity::Phone), "+1 (555) 010-9999"),
            Ok("+15550109999".into())
        );
        assert!(parse(&question(Entity::Phone), "12ab345678").is_err());
        assert_eq!(parse(&question(Entity::Number), "4"), Ok(4.into()));
        assert_eq!(parse(&question(Entity::Number), "2.5"), Ok(2.5.into()));
        assert!(parse(&question(Entity::Number), "four").is_err());
        assert!(parse(&question(Entity::Text), "  ").is_err());
    }

    #[test]
    fn choices_by_number_value_label_synonym() {
        let q = question(Entity::Choice);
        assert_eq!(parse(&q, "2"), Ok("terrace".into()));
        assert_eq!(parse(&q, "INDOORS"), Ok("inside".into()));
        assert_eq!(parse(&q, "in"), Ok("inside".into()));
        assert_eq!(parse(&q, "Terrace"), Ok("terrace".into()));
        assert!(parse(&q, "3").is_err());
        assert!(parse(&q, "roof").is_err());
    }
}
