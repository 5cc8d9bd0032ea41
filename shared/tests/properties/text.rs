//! `{{ path }}` templates and trigger matching (`text::template`,
//! `text::matcher`): operators write them, users fill them.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

use hookline_core::text::matcher::{Matcher, Strength, Utterance, compile_pattern, fold, words};
use hookline_core::text::template::{
    check as check_template, lone_placeholder, render, render_url, render_value, value_at,
};

use crate::check;
use crate::strategies::{json_value, text};

const SCOPE_KEYS: &[&str] = &["context", "user", "tags", "firstName", "x", "list", "session", "0", ""];

/// Pieces templates are made of: placeholder syntax, paths, indexes.
const TEMPLATE_PIECES: &[&str] = &[
    "{{",
    "}}",
    "{",
    "}",
    " ",
    "context",
    "user.firstName",
    "context.x",
    ".",
    "..",
    "[",
    "]",
    "[0]",
    "[1]",
    "[99999999999999999999]",
    "[-1]",
    "[ 0 ]",
    "list[0][0]",
    "x[",
    "\u{E9}",
    "\u{1F600}",
    "\\",
    "%",
    "\n",
];

fn template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![3 => select(TEMPLATE_PIECES).prop_map(String::from), 1 => text()];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// A scope as the engine builds one: an object of arbitrary values.
fn scope() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::vec((select(SCOPE_KEYS).prop_map(String::from), json_value(SCOPE_KEYS)), 0..5)
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        1 => json_value(SCOPE_KEYS),
    ]
}

/// Any template over any scope: every function renders, none panics; a
/// template with no `{{` in it is its own rendering and a valid template.
#[test]
fn templates_render_whatever_they_hold() {
    check(256, (template(), scope()), |(template, scope)| {
        let rendered = render(&template, &scope);
        let url = render_url(&template, &scope);
        let value = render_value(&Value::String(template.clone()), &scope);
        let checked = check_template(&template);
        let _ = (lone_placeholder(&template), value_at(&scope, &template));
        if !template.contains("{{") {
            prop_assert_eq!(&rendered, &template);
            prop_assert_eq!(&url, &template);
            prop_assert_eq!(&value, &Value::String(template.clone()));
            prop_assert!(checked.is_ok(), "{:?}", checked);
        }
        if checked.is_err() {
            prop_assert!(template.contains("{{"), "{template:?}: {checked:?}");
        }
        Ok(())
    });
}

/// Text that cannot open a placeholder (`{{`, or a `{` just before one).
fn literal() -> impl Strategy<Value = String> {
    text().prop_map(|t| t.replace('{', "(")).prop_filter("no placeholder", |t| !t.contains("{{"))
}

fn key() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,8}"
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        text().prop_map(Value::String),
    ]
}

/// A value as a template shows it: strings as they are, null as nothing.
fn shown(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Text between placeholders stays as it is; each placeholder becomes its
/// value (nothing when missing or null), whatever the spaces around the
/// path, and array items by index.
#[test]
fn placeholders_render_to_their_values() {
    let segment = (literal(), prop::option::of((key(), leaf(), any::<bool>(), any::<bool>())));
    check(256, (prop::collection::vec(segment, 0..6), literal(), key()), |(segments, tail, missing)| {
        let mut context = Map::new();
        for (_, placeholder) in &segments {
            if let Some((key, value, ..)) = placeholder {
                context.insert(key.clone(), json!([value]));
            }
        }
        context.remove(&missing);
        let scope = json!({"context": context});
        let (mut template, mut expected) = (String::new(), String::new());
        for (literal, placeholder) in &segments {
            template.push_str(literal);
            expected.push_str(literal);
            let Some((key, _, spaced, indexed)) = placeholder else { continue };
            let space = if *spaced { " " } else { "" };
            if *indexed {
                template.push_str(&format!("{{{{{space}context.{key}[0]{space}}}}}"));
                expected.push_str(&shown(context.get(key).map(|list| &list[0])));
            } else {
                template.push_str(&format!("{{{{{space}context.{key}{space}}}}}"));
                expected.push_str(&shown(context.get(key)));
            }
        }
        template.push_str(&format!("{{{{context.{missing}}}}}{tail}"));
        expected.push_str(&tail);
        prop_assert_eq!(render(&template, &scope), expected);
        prop_assert!(check_template(&template).is_ok(), "{template:?}");
        Ok(())
    });
}

/// In a URL, an inserted value is percent-encoded (only unreserved
/// characters stay), decodes back to itself, and `.` or `..` empty the URL.
#[test]
fn url_values_are_percent_encoded() {
    check(256, text(), |value| {
        let scope = json!({"context": {"v": value}});
        let url = render_url("https://api.example.com/orders/{{ context.v }}?q=1", &scope);
        if value == "." || value == ".." {
            prop_assert_eq!(url, "");
            return Ok(());
        }
        let inserted = url.strip_prefix("https://api.example.com/orders/").and_then(|u| u.strip_suffix("?q=1"));
        prop_assert!(inserted.is_some(), "{url:?}");
        let inserted = inserted.unwrap_or_default();
        prop_assert!(
            inserted.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "{value:?} inserted as {inserted:?}"
        );
        prop_assert_eq!(percent_decode(inserted), value.as_bytes().to_vec());
        Ok(())
    });
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A string that is one placeholder takes the value itself, of any type;
/// a document whose strings hold no `{{` renders to itself.
#[test]
fn values_keep_their_type() {
    check(256, (json_value(SCOPE_KEYS), scope()), |(value, scope)| {
        let holder = json!({"context": {"v": value}});
        prop_assert_eq!(render_value(&json!(" {{ context.v }} "), &holder), value.clone());
        if !value.to_string().contains("{{") {
            prop_assert_eq!(render_value(&value, &scope), value);
        }
        Ok(())
    });
}

/// Pieces trigger patterns are made of, valid and not.
const PATTERN_PIECES: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "a",
    "\u{E9}",
    "\\b",
    "\\p{L}",
    "\\pL",
    "\\D",
    "{1000}",
    "{2,}",
    "{",
    "}",
    "*",
    "+",
    "?",
    "|",
    ".",
    "^",
    "$",
    "(?i)",
    "(?P<n>",
    "\\",
    "\\1",
    "(?=",
    "[^",
    "-",
    "\\u{10FFFF}",
    "\\x{110000}",
];

fn pattern() -> impl Strategy<Value = String> {
    let piece = prop_oneof![3 => select(PATTERN_PIECES).prop_map(String::from), 1 => text()];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

/// Any triggers compile (or name the pattern that does not) and match any
/// utterance without panicking.
#[test]
fn triggers_compile_or_say_which_pattern_is_wrong() {
    let list = |s: BoxedStrategy<String>| prop::collection::vec(s, 0..4);
    let triggers = (list(text().boxed()), list(text().boxed()), list(pattern().boxed()));
    check(256, (triggers, text()), |((phrases, keywords, patterns), utterance)| {
        let said = Utterance::new(&utterance);
        prop_assert_eq!(&said.folded, &fold(&utterance));
        prop_assert_eq!(&said.words, &words(&utterance));
        prop_assert!(said.words.iter().all(|w| !w.is_empty() && w.chars().all(char::is_alphanumeric)), "{said:?}");
        for pattern in &patterns {
            if let Err(message) = compile_pattern(pattern) {
                prop_assert!(!message.is_empty(), "{pattern:?}");
            }
        }
        match Matcher::compile(&phrases, &keywords, &patterns) {
            Ok(matcher) => {
                let _ = matcher.strength(&said);
                for phrase in &phrases {
                    let _ = said.is(phrase);
                }
            }
            Err((i, message)) => {
                prop_assert!(i < patterns.len() && !message.is_empty());
                prop_assert!(compile_pattern(&patterns[i]).is_err(), "{:?}", patterns[i]);
            }
        }
        Ok(())
    });
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9\u{E9}\u{E8}\u{E0}\u{E7}\u{F1}\u{FC}\u{C9}]{1,8}"
}

/// Words with any separators, in any case.
fn say(words: &[String], separators: &[&str], upper: bool) -> String {
    let mut said = String::from(separators[0]);
    for (i, word) in words.iter().enumerate() {
        if upper {
            said.push_str(&word.to_uppercase());
        } else {
            said.push_str(word);
        }
        said.push_str(separators[(i + 1) % separators.len()]);
    }
    said
}

/// A phrase matches an utterance of the same words, whatever the case,
/// accents and punctuation; a keyword matches wherever it stands.
#[test]
fn phrases_and_keywords_match_regardless_of_case_and_punctuation() {
    let words_ = || prop::collection::vec(word(), 1..4);
    let separators = prop::collection::vec(select(&[" ", "  ", ", ", "! ", "? ", " - ", "\u{2026}"][..]), 1..4);
    check(
        256,
        (words_(), words_(), words_(), separators, any::<bool>()),
        |(phrase, before, after, separators, upper)| {
            let matcher = Matcher::compile(&[phrase.join(" ")], &[], &[]).map_err(|e| TestCaseError::fail(e.1))?;
            let said = Utterance::new(&say(&phrase, &separators, upper));
            prop_assert_eq!(matcher.strength(&said), Some(Strength::Phrase), "{:?}", said);
            prop_assert!(said.is(&phrase.join(" ")));

            let matcher = Matcher::compile(&[], &[phrase.join(" ")], &[]).map_err(|e| TestCaseError::fail(e.1))?;
            let around = [before, phrase, after].concat();
            let said = Utterance::new(&say(&around, &separators, upper));
            prop_assert_eq!(matcher.strength(&said), Some(Strength::Keyword), "{:?}", said);
            Ok(())
        },
    );
}
