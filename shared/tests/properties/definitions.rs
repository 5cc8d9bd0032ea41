//! Bot definitions (`definition::check`, `Registry::from_sources`): any
//! text, and the demo bot broken in every way, is a bot or diagnostics that
//! say what is wrong and where; never a panic.

use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseResult;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use hookline_core::definition::{DEMO_BOT, Diagnostic, Purpose, Registry, Severity, check as load};

use crate::check;
use crate::strategies::{ByteEdit, byte_edit, edited, mutated, mutation, text};

/// Names the definition format uses, for mutations to add.
const KEYS: &[&str] = &[
    "id",
    "name",
    "apps",
    "clientId",
    "algorithm",
    "secret",
    "value",
    "env",
    "publicKey",
    "trust",
    "instances",
    "version",
    "mode",
    "polling",
    "postUrl",
    "signingSecrets",
    "rateLimits",
    "perMinute",
    "tasks",
    "triggers",
    "phrases",
    "keywords",
    "patterns",
    "start",
    "nodes",
    "type",
    "text",
    "messages",
    "template",
    "next",
    "onError",
    "field",
    "entity",
    "choices",
    "prompt",
    "url",
    "method",
    "map",
    "conditions",
    "op",
    "valueOf",
    "else",
    "set",
    "components",
    "languages",
    "default",
    "supported",
    "welcome",
    "fallback",
    "cancel",
    "outbound",
    "events",
    "syncDeadlineMs",
    "maxRetries",
    "onGiveUp",
    "headers",
    "timeoutMs",
    "body",
    "attachment",
    "mime",
];

const PURPOSES: &[Purpose] = &[Purpose::Local, Purpose::Validate, Purpose::Deployed];

/// Whatever is read, the outcome is consistent: a bot exactly when no
/// diagnostic is an error; each diagnostic names the file, says something,
/// and points at a line of it; the registry agrees.
fn loads_or_says_why(source: &str, purpose: Purpose, secret: Option<&str>) -> TestCaseResult {
    let env = |_: &str| secret.map(String::from);
    let (bot, diagnostics) = load("bot.yaml", source, purpose, &env);
    let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    prop_assert_eq!(bot.is_some(), errors == 0, "{}", listed(&diagnostics));
    let lines = source.lines().count().max(1);
    for d in &diagnostics {
        prop_assert_eq!(&d.file, "bot.yaml");
        prop_assert!(!d.message.trim().is_empty(), "{d}");
        prop_assert!(d.line.is_none_or(|l| (1..=lines + 1).contains(&l)), "{d} (of {lines} lines)");
    }
    if purpose == Purpose::Local && secret.is_none() {
        let registry = Registry::from_sources(&[("bot.yaml".into(), source.into())], purpose);
        prop_assert_eq!(registry.is_ok(), bot.is_some());
    }
    Ok(())
}

fn listed(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// YAML fragments: flow collections, anchors and aliases, tags, block
/// scalars, document markers, indentation, and deep nesting.
const YAML_PIECES: &[&str] = &[
    "\n",
    "  ",
    "- ",
    ": ",
    "id",
    "st-x",
    "tasks",
    "nodes",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "*b",
    "!!str ",
    "!!binary ",
    "!custom ",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "? ",
    "#",
    "'",
    "\"",
    "\\u0000",
    "~",
    "null",
    "1e999",
    "0x1F",
    "-.inf",
    ".nan",
    "<<: *a\n",
    "\t",
];

fn yaml_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![3 => select(YAML_PIECES).prop_map(String::from), 1 => text()];
    prop_oneof![
        1 => any::<String>(),
        3 => prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat()),
        1 => (select(&["[", "{a: ", "- "][..]), 1..3000_usize).prop_map(|(open, depth)| open.repeat(depth)),
    ]
}

/// Any text, for any purpose.
#[test]
fn any_text_is_a_bot_or_a_load_error() {
    check(256, (yaml_text(), select(PURPOSES)), |(source, purpose)| loads_or_says_why(&source, purpose, None));
}

fn json_of(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => {
            text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
        }
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        Yaml::Hash(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().map_or_else(|| format!("{k:?}"), String::from), json_of(v)))
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// The demo bot as a JSON document (JSON is YAML too).
fn demo_bot() -> Value {
    let documents = YamlLoader::load_from_str(DEMO_BOT).expect("the demo bot is YAML");
    json_of(&documents[0])
}

/// The demo bot with values of the wrong type, at their limits, removed,
/// repeated or nested, written as JSON: each such bot loads or says why;
/// unchanged, it loads.
#[test]
fn a_changed_demo_bot_loads_or_says_why() {
    let demo = demo_bot();
    let mutations = prop::collection::vec(mutation(KEYS), 0..5);
    check(128, (mutations, select(PURPOSES), prop::option::of(text())), |(mutations, purpose, secret)| {
        let source = serde_json::to_string_pretty(&mutated(demo.clone(), &mutations)).unwrap_or_default();
        if mutations.is_empty() && purpose == Purpose::Local {
            let (bot, diagnostics) = load("bot.yaml", &source, purpose, &|_| None);
            prop_assert!(bot.is_some(), "{}", listed(&diagnostics));
        }
        loads_or_says_why(&source, purpose, secret.as_deref())
    });
}

/// One change to the demo bot's YAML text, by lines.
#[derive(Debug, Clone)]
enum LineEdit {
    Remove(Index),
    Repeat(Index),
    Swap(Index, Index),
    Indent(Index, usize),
    Dedent(Index),
    /// What follows the line's `: ` becomes this.
    Value(Index, String),
    /// What follows the line's `: ` becomes another line's (a name used
    /// elsewhere, a value of another field).
    ValueOf(Index, Index),
    Insert(Index, String),
}

const YAML_VALUES: &[&str] = &[
    "",
    "~",
    "[]",
    "{}",
    "-1",
    "0",
    "4294967296",
    "99999999999999999999999",
    "1e999",
    ".nan",
    "true",
    "\"{{\"",
    "\"{{ }}\"",
    "'('",
    "&a x",
    "*a",
    "*nowhere",
    "!!binary AAAA",
    "[*a, *a]",
    "{ env: HOME }",
    "|\n  block\n",
    "\"\\u0000\"",
    "\"\\uD800\"",
    "st-\u{1F600}",
    "\"\\b(\"",
];

/// Ten levels of aliases, each ten of the last: a billion nodes if expanded.
const ALIAS_BOMB: &str = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n\
a1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\n\
a2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\n\
a3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n\
a4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]\n\
a5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]\n\
a6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]\n\
a7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]\n\
a8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]\n\
a9: [*a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8]\n";

fn line_edit() -> impl Strategy<Value = LineEdit> {
    let at = any::<Index>();
    let value = prop_oneof![
        3 => select(YAML_VALUES).prop_map(String::from),
        2 => text().prop_map(|t| serde_json::to_string(&t).unwrap_or_default()),
        1 => text(),
    ];
    let line = prop_oneof![
        3 => yaml_text().prop_map(|t| t.replace('\n', " ")),
        1 => Just(ALIAS_BOMB.to_string()),
        1 => Just("tasks: []".to_string()),
    ];
    // Mostly values, so that most documents still parse and reach validation.
    prop_oneof![
        1 => at.clone().prop_map(LineEdit::Remove),
        1 => at.clone().prop_map(LineEdit::Repeat),
        1 => (at.clone(), any::<Index>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        1 => (at.clone(), 1..5_usize).prop_map(|(at, n)| LineEdit::Indent(at, n)),
        1 => at.clone().prop_map(LineEdit::Dedent),
        8 => (at.clone(), value).prop_map(|(at, v)| LineEdit::Value(at, v)),
        8 => (at.clone(), any::<Index>()).prop_map(|(at, from)| LineEdit::ValueOf(at, from)),
        1 => (at, line).prop_map(|(at, l)| LineEdit::Insert(at, l)),
    ]
}

impl LineEdit {
    fn apply(&self, lines: &mut Vec<String>) {
        let len = lines.len();
        if len == 0 {
            return;
        }
        match self {
            LineEdit::Remove(at) => {
                lines.remove(at.index(len));
            }
            LineEdit::Repeat(at) => {
                let i = at.index(len);
                lines.insert(i, lines[i].clone());
            }
            LineEdit::Swap(a, b) => lines.swap(a.index(len), b.index(len)),
            LineEdit::Indent(at, n) => lines[at.index(len)].insert_str(0, &" ".repeat(*n)),
            LineEdit::Dedent(at) => {
                let line = &mut lines[at.index(len)];
                *line = line.trim_start().to_string();
            }
            LineEdit::Value(at, value) => {
                let line = &mut lines[at.index(len)];
                if let Some(i) = line.find(": ") {
                    line.replace_range(i + 2.., value);
                }
            }
            LineEdit::ValueOf(at, from) => {
                let from = &lines[from.index(len)];
                if let Some(value) = from.find(": ").map(|i| from[i + 2..].to_string()) {
                    LineEdit::Value(*at, value).apply(lines);
                }
            }
            LineEdit::Insert(at, line) => lines.insert(at.index(len + 1), line.clone()),
        }
    }
}

/// The demo bot's YAML with lines removed, repeated, moved, re-indented,
/// values replaced (anchors, aliases, tags, odd scalars), lines inserted
/// (an alias bomb among them) and bytes changed: a bot or a load error.
#[test]
fn an_edited_demo_bot_yaml_loads_or_says_why() {
    let bytes = prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(byte_edit(), 1..3)];
    let edits = (prop::collection::vec(line_edit(), 1..4), bytes);
    check(
        128,
        (edits, select(PURPOSES)),
        |((line_edits, byte_edits), purpose): ((Vec<LineEdit>, Vec<ByteEdit>), _)| {
            let mut lines: Vec<String> = DEMO_BOT.lines().map(String::from).collect();
            for edit in &line_edits {
                edit.apply(&mut lines);
            }
            let bytes = edited(lines.join("\n").into_bytes(), &byte_edits);
            let source = String::from_utf8_lossy(&bytes);
            loads_or_says_why(&source, purpose, None)
        },
    );
}
