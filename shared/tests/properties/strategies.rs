//! Inputs shared by the properties: awkward text, arbitrary JSON, and
//! mutations of valid JSON documents (a spec sample, a bot definition).

use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value, json};

/// Characters that break naive text handling: NUL and controls, BOM and
/// non-characters, bidi overrides, zero-width and combining marks, astral
/// and multi-codepoint emoji, case mappings that change length, JSON and
/// template syntax.
const ODD: &[&str] = &[
    "\0",
    "\u{7}",
    "\r\n",
    "\t",
    "\u{FEFF}",
    "\u{FFFE}",
    "\u{FFFF}",
    "\u{202E}",
    "\u{200B}",
    "e\u{301}",
    "\u{301}",
    "\u{10FFFF}",
    "\u{1D54F}",
    "\u{1F600}",
    "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}",
    "\u{130}",
    "\u{DF}",
    "\u{FB03}",
    "\u{3A3}",
    "\"",
    "\\",
    "{{",
    "}}",
    "{{ context.x }}",
    "[0]",
    ".",
    "..",
    "/",
    "%00",
    " ",
];

/// Short text: arbitrary code points, odd ones, or plain words.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        3 => prop::collection::vec(select(ODD), 0..8).prop_map(|parts| parts.concat()),
        2 => "[a-zA-Z0-9 ._@+-]{0,24}",
        1 => Just(String::new()),
    ]
}

/// Values a field of the wrong type, or of the right type at its limits, may hold.
pub fn awkward_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!([])),
        Just(json!({})),
        Just(json!("")),
        Just(json!(" ")),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1e308)),
        Just(json!(0.5)),
        Just(json!(true)),
        Just(json!("true")),
        Just(json!("null")),
        Just(json!("{}")),
        Just(json!("{\"userLevelTags\": 5}")),
        Just(json!("ON_CONNECT")),
        Just(json!("https://files.example.com/a.png")),
        Just(json!("javascript:alert(1)")),
        text().prop_map(Value::String),
    ]
}

/// Arbitrary JSON, its object keys often names the protocol uses.
pub fn json_value(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        text().prop_map(Value::String),
        awkward_value(),
    ];
    let key = prop_oneof![3 => select(keys).prop_map(String::from), 1 => text()];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// One change to a JSON document, at a node picked by `at`.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// The node becomes this value (often of another type).
    Replace(Index, Value),
    /// The node leaves its object or array.
    Remove(Index),
    /// An object gains an entry.
    Insert(Index, String, Value),
    /// A string becomes `n` copies of a character (at and past length limits).
    Huge(Index, char, usize),
    /// An array holds its first item `n` times (past count limits).
    Repeat(Index, usize),
    /// The node is wrapped in `n` arrays or objects.
    Nest(Index, bool, usize),
}

pub fn mutation(keys: &'static [&'static str]) -> impl Strategy<Value = Mutation> {
    let at = any::<Index>();
    prop_oneof![
        4 => (at.clone(), awkward_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        2 => (at.clone(), json_value(keys)).prop_map(|(at, v)| Mutation::Replace(at, v)),
        3 => at.clone().prop_map(Mutation::Remove),
        2 => (at.clone(), select(keys).prop_map(String::from), awkward_value())
            .prop_map(|(at, k, v)| Mutation::Insert(at, k, v)),
        2 => (at.clone(), select(&['x', '\u{E9}', '\u{1F600}', '\0'][..]), select(LENGTHS))
            .prop_map(|(at, c, n)| Mutation::Huge(at, c, n)),
        1 => (at.clone(), select(&[2_usize, 21, 51, 300][..])).prop_map(|(at, n)| Mutation::Repeat(at, n)),
        1 => (at, any::<bool>(), select(&[1_usize, 20, 126, 127, 128, 129, 300][..]))
            .prop_map(|(at, array, n)| Mutation::Nest(at, array, n)),
    ]
}

/// Lengths at and just past the protocol's limits (tag names, user ids,
/// URLs, texts) and far past them.
pub const LENGTHS: &[usize] = &[128, 129, 256, 257, 1024, 1025, 2048, 2049, 4096, 4097, 9000];

/// A path to a node: object keys and array positions.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Item(usize),
}

fn paths(value: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match value {
        Value::Object(entries) => {
            for (key, child) in entries {
                here.push(Step::Key(key.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(Step::Item(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn node_at<'v>(value: &'v mut Value, path: &[Step]) -> &'v mut Value {
    path.iter().fold(value, |node, step| match step {
        Step::Key(key) => &mut node[key.as_str()],
        Step::Item(i) => &mut node[*i],
    })
}

fn pick(document: &Value, at: &Index) -> Vec<Step> {
    let mut all = Vec::new();
    paths(document, &mut Vec::new(), &mut all);
    all.swap_remove(at.index(all.len()))
}

/// A string node, if the document has one.
fn pick_string(document: &Value, at: &Index) -> Option<Vec<Step>> {
    let mut all = Vec::new();
    paths(document, &mut Vec::new(), &mut all);
    all.retain(|path| path.iter().try_fold(document, |node, step| step.in_(node)).is_some_and(Value::is_string));
    (!all.is_empty()).then(|| all.swap_remove(at.index(all.len())))
}

impl Step {
    fn in_<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        match self {
            Step::Key(key) => value.get(key),
            Step::Item(i) => value.get(i),
        }
    }
}

impl Mutation {
    pub fn apply(&self, document: &mut Value) {
        match self {
            Mutation::Replace(at, value) => *node_at(document, &pick(document, at)) = value.clone(),
            Mutation::Remove(at) => {
                let mut path = pick(document, at);
                let Some(last) = path.pop() else {
                    *document = Value::Null;
                    return;
                };
                match (node_at(document, &path), last) {
                    (Value::Object(entries), Step::Key(key)) => {
                        entries.shift_remove(&key);
                    }
                    (Value::Array(items), Step::Item(i)) => {
                        items.remove(i);
                    }
                    _ => {}
                }
            }
            Mutation::Insert(at, key, value) => {
                let path = pick(document, at);
                if let Value::Object(entries) = node_at(document, &path) {
                    entries.insert(key.clone(), value.clone());
                }
            }
            Mutation::Huge(at, c, n) => {
                if let Some(path) = pick_string(document, at) {
                    *node_at(document, &path) = Value::String(std::iter::repeat_n(*c, *n).collect());
                }
            }
            Mutation::Repeat(at, n) => {
                if let Value::Array(items) = node_at(document, &pick(document, at))
                    && let Some(first) = items.first().cloned()
                {
                    *items = vec![first; *n];
                }
            }
            Mutation::Nest(at, array, n) => {
                let node = node_at(document, &pick(document, at));
                let mut nested = node.take();
                for _ in 0..*n {
                    nested = if *array {
                        Value::Array(vec![nested])
                    } else {
                        Value::Object(Map::from_iter([("x".into(), nested)]))
                    };
                }
                *node = nested;
            }
        }
    }
}

/// A document after some mutations.
pub fn mutated(mut document: Value, mutations: &[Mutation]) -> Value {
    for mutation in mutations {
        mutation.apply(&mut document);
    }
    document
}

/// One change to raw bytes (of a JSON or YAML text, a multipart body).
#[derive(Debug, Clone)]
pub enum ByteEdit {
    Cut(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
}

/// Bytes that mean something to JSON, multipart and UTF-8.
const SNIPPETS: &[&[u8]] = &[b"\r\n", b"--", b"\"", b"{", b"}", b"[", b"]", b":", b",", b"\\", b"\xff", b"\xc3", b"\0"];

pub fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let at = any::<Index>();
    let snippet = prop_oneof![prop::collection::vec(any::<u8>(), 1..8), select(SNIPPETS).prop_map(<[u8]>::to_vec)];
    prop_oneof![
        1 => at.clone().prop_map(ByteEdit::Cut),
        2 => (at.clone(), any::<u8>()).prop_map(|(at, b)| ByteEdit::Flip(at, b)),
        2 => (at.clone(), snippet).prop_map(|(at, s)| ByteEdit::Insert(at, s)),
        2 => (at, 1..16_usize).prop_map(|(at, n)| ByteEdit::Delete(at, n)),
    ]
}

impl ByteEdit {
    pub fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            ByteEdit::Cut(at) => bytes.truncate(at.index(len + 1)),
            ByteEdit::Flip(at, b) if len > 0 => bytes[at.index(len)] ^= b | 1,
            ByteEdit::Flip(..) => {}
            ByteEdit::Insert(at, snippet) => {
                let at = at.index(len + 1);
                bytes.splice(at..at, snippet.iter().copied());
            }
            ByteEdit::Delete(at, n) => {
                let start = at.index(len + 1);
                bytes.drain(start..(start + n).min(len));
            }
        }
    }
}

pub fn edited(mut bytes: Vec<u8>, edits: &[ByteEdit]) -> Vec<u8> {
    for edit in edits {
        edit.apply(&mut bytes);
    }
    bytes
}
