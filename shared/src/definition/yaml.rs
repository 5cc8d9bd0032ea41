//! YAML to JSON values, remembering the line of every path so that errors can
//! say where they are (`tasks[0].nodes.ask.next`, line 42).

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A parsed document and the 1-based line of each path in it.
pub struct Document {
    pub value: Value,
    pub lines: HashMap<String, usize>,
}

impl Document {
    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

#[derive(Debug)]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

pub fn parse(source: &str) -> Result<Document, YamlError> {
    let mut builder = Builder::default();
    // Event by event up to the first document's end, as `Parser::load` reads
    // it, but without its recursion (a call per level of nesting), which a
    // deep enough document (`- - - ...`) turns into a stack overflow.
    let mut parser = Parser::new_from_str(source);
    loop {
        let (event, mark) =
            parser.next_token().map_err(|e| YamlError { line: e.marker().line(), message: e.info().to_string() })?;
        let end = matches!(event, Event::DocumentEnd | Event::StreamEnd);
        builder.on_event(event, mark);
        if end {
            break;
        }
    }
    if let Some(message) = builder.error {
        return Err(message);
    }
    Ok(Document { value: builder.root.unwrap_or(Value::Null), lines: builder.lines })
}

enum Frame {
    Seq { path: String, items: Vec<Value>, anchor: usize },
    Map { path: String, entries: Map<String, Value>, key: Option<String>, anchor: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    anchors: HashMap<usize, Value>,
    lines: HashMap<String, usize>,
    error: Option<YamlError>,
    /// Values built so far, aliases counted at their expanded size.
    nodes: usize,
}

/// Far beyond any bot, small enough that alias bombs cannot exhaust memory.
const MAX_NODES: usize = 200_000;
/// Far beyond any bot, shallow enough for what walks the values recursively
/// (deserializing, dropping) on any thread's stack.
const MAX_DEPTH: usize = 64;

fn size(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(size).sum::<usize>(),
        Value::Object(entries) => 1 + entries.values().map(size).sum::<usize>(),
        _ => 1,
    }
}

impl Builder {
    /// Path of the value about to be placed in the innermost container, or
    /// None when the next scalar is a mapping key.
    fn next_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { path, items, .. }) => Some(format!("{path}[{}]", items.len())),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key: Some(k), .. }) if path.is_empty() => Some(k.clone()),
            Some(Frame::Map { path, key: Some(k), .. }) => Some(format!("{path}.{k}")),
        }
    }

    /// `line`: where the value is, for an error about it.
    fn place(&mut self, value: Value, anchor: usize, line: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some(k) => {
                    entries.insert(k, value);
                }
                None => match value {
                    Value::String(k) => *key = Some(k),
                    Value::Number(n) => *key = Some(n.to_string()),
                    Value::Bool(b) => *key = Some(b.to_string()),
                    _ => {
                        // Complex keys cannot become JSON; report instead of guessing.
                        self.error
                            .get_or_insert(YamlError { line, message: "mapping keys must be plain scalars".into() });
                    }
                },
            },
        }
    }
}

fn scalar(text: String, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    match Yaml::from_str(&text) {
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => r.parse::<f64>().ok().and_then(Number::from_f64).map_or(Value::String(text), Value::Number),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Null => Value::Null,
        _ => Value::String(text),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        self.nodes += match &event {
            Event::Alias(id) => self.anchors.get(id).map_or(1, size),
            _ => 1,
        };
        if self.nodes > MAX_NODES {
            let message = format!("the document expands to more than {MAX_NODES} values");
            self.error = Some(YamlError { line: mark.line(), message });
            return;
        }
        if matches!(event, Event::SequenceStart(..) | Event::MappingStart(..)) && self.stack.len() >= MAX_DEPTH {
            let message = format!("values are nested more than {MAX_DEPTH} levels deep");
            self.error = Some(YamlError { line: mark.line(), message });
            return;
        }
        let path = self.next_path();
        if let (None, Event::Scalar(key, ..), Some(Frame::Map { path: parent, entries, .. })) =
            (&path, &event, self.stack.last())
        {
            if entries.contains_key(key) && self.error.is_none() {
                self.error = Some(YamlError { line: mark.line(), message: format!("duplicate key {key:?}") });
            }
            // A key: its line is where the entry is, even if the value starts below.
            let key_path = if parent.is_empty() { key.clone() } else { format!("{parent}.{key}") };
            self.lines.entry(key_path).or_insert(mark.line());
        }
        if let Some(p) = &path
            && !matches!(event, Event::SequenceEnd | Event::MappingEnd)
        {
            self.lines.entry(p.clone()).or_insert(mark.line());
        }
        match event {
            Event::Scalar(text, style, anchor, _) => self.place(scalar(text, style), anchor, mark.line()),
            Event::Alias(id) => {
                let value = self.anchors.get(&id).cloned().unwrap_or(Value::Null);
                self.place(value, 0, mark.line());
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq { path: path.unwrap_or_default(), items: Vec::new(), anchor })
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map { path: path.unwrap_or_default(), entries: Map::new(), key: None, anchor })
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, anchor, .. }) = self.stack.pop() {
                    self.place(Value::Array(items), anchor, mark.line());
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { entries, anchor, .. }) = self.stack.pop() {
                    self.place(Value::Object(entries), anchor, mark.line());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_lines() {
        let doc = parse("a: 1\nb:\n  - x\n  - 'yes'\n  - true\nc: &k {d: 2.5}\ne: *k\n").unwrap();
        assert_eq!(doc.value, serde_json::json!({"a": 1, "b": ["x", "yes", true], "c": {"d": 2.5}, "e": {"d": 2.5}}));
        assert_eq!(doc.lines["a"], 1);
        assert_eq!(doc.lines["b[1]"], 4);
        assert_eq!(doc.line_of("c.d.missing"), Some(6));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut source = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            source.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = parse(&source).err().unwrap();
        assert!(err.message.contains("expands to more than"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let block_sequences = "- ".repeat(5000);
        let block_mappings: String = (0..200).map(|depth| format!("{}a:\n", "  ".repeat(depth))).collect();
        for source in [block_sequences, block_mappings] {
            let err = parse(&source).err().unwrap();
            assert!(err.message.contains(&format!("more than {MAX_DEPTH} levels")), "{err:?}");
        }
        let nested = (0..MAX_DEPTH).fold("x".to_string(), |inner, _| format!("[{inner}]"));
        assert!(parse(&nested).is_ok());
        assert!(parse(&format!("[{nested}]")).is_err());
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("nodes:\n  a: 1\n  b: 2\n  a: 3\n").err().unwrap();
        assert_eq!((err.line, err.message.as_str()), (4, "duplicate key \"a\""));
    }

    #[test]
    fn keys_that_are_not_plain_scalars_are_errors_with_their_line() {
        for (source, line) in [(": x\n", 1), ("a: 1\n~: 2\n", 2), ("a: 1\n\n[b]: 2\n", 3), ("a: 1\n? {b: 1}\n: 2\n", 2)]
        {
            let err = parse(source).err().unwrap();
            assert_eq!((err.line, err.message.as_str()), (line, "mapping keys must be plain scalars"), "{source:?}");
        }
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse("a: 1\nb: [unclosed\n").err().unwrap();
        assert!(err.line >= 2, "{err:?}");
    }
}
