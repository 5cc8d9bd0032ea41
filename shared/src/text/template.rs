//! `{{ path }}` templates in user-visible text. Paths are dotted, with `[n]`
//! for array items; a missing value renders as nothing.

use serde_json::Value;

/// Checks that every `{{` is closed and holds a path.
pub fn check(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("unclosed '{{{{' in {template:?}"))?;
        let path = after[..end].trim();
        if path.is_empty() || path.contains("{{") {
            return Err(format!("empty or nested placeholder in {template:?}"));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

pub fn render(template: &str, scope: &Value) -> String {
    render_with(template, scope, |s| s.to_string())
}

/// For URLs: inserted values are percent-encoded, so a value cannot change
/// the URL's path, query or host. A value that is `.` or `..` would still move
/// up the path (URLs treat `%2e` as a dot), so it makes the URL empty, which
/// fails the call.
pub fn render_url(template: &str, scope: &Value) -> String {
    let mut dot_segment = false;
    let url = render_with(template, scope, |s| {
        dot_segment |= matches!(s, "." | "..");
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    });
    if dot_segment { String::new() } else { url }
}

/// A JSON value with every string rendered; a string that is one lone
/// placeholder (`"{{context.total}}"`) takes the value itself, keeping its type.
pub fn render_value(value: &Value, scope: &Value) -> Value {
    match value {
        Value::String(s) => match lone_placeholder(s) {
            Some(path) => lookup(scope, path).cloned().unwrap_or(Value::Null),
            None => Value::String(render(s, scope)),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| render_value(v, scope)).collect()),
        Value::Object(entries) => {
            Value::Object(entries.iter().map(|(k, v)| (k.clone(), render_value(v, scope))).collect())
        }
        other => other.clone(),
    }
}

/// The value at a template path (`context.total`), if any.
pub fn value_at<'a>(scope: &'a Value, path: &str) -> Option<&'a Value> {
    lookup(scope, path.trim())
}

/// The path of a string that is one `{{path}}` and nothing else (rendered,
/// it keeps its value's type).
pub fn lone_placeholder(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

fn render_with(template: &str, scope: &Value, mut encode: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push_str(&rest[..start]);
        match lookup(scope, after[..end].trim()) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => out.push_str(&encode(s)),
            Some(other) => out.push_str(&encode(&other.to_string())),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn lookup<'a>(scope: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = scope;
    for part in path.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            current = current.get(name)?;
        }
        for index in indexes.split('[').skip(1) {
            let index: usize = index.strip_suffix(']')?.trim().parse().ok()?;
            current = current.get(index)?;
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_paths_and_missing_values() {
        let scope = json!({"user": {"firstName": "Ada"}, "context": {"n": 3, "list": [{"x": "a"}]}});
        assert_eq!(
            render("Hi {{ user.firstName }}, {{context.n}} {{context.list[0].x}}{{nope.x}}!", &scope),
            "Hi Ada, 3 a!"
        );
        assert_eq!(render("unclosed {{ user", &scope), "unclosed {{ user");
    }

    #[test]
    fn urls_encode_inserted_values_and_values_keep_types() {
        let scope = json!({"context": {"id": "a/../b c?x=1", "n": 5, "list": [1, 2]}});
        assert_eq!(
            render_url("https://api.example.com/orders/{{context.id}}?n={{context.n}}", &scope),
            "https://api.example.com/orders/a%2F..%2Fb%20c%3Fx%3D1?n=5"
        );
        assert_eq!(
            render_url("https://api.example.com/orders/{{context.up}}/cancel", &json!({"context": {"up": ".."}})),
            ""
        );
        let value = json!({"total": "{{context.n}}", "items": ["{{ context.list }}", "n={{context.n}}"], "x": 1});
        assert_eq!(render_value(&value, &scope), json!({"total": 5, "items": [[1, 2], "n=5"], "x": 1}));
    }

    #[test]
    fn check_reports_bad_placeholders() {
        assert!(check("ok {{a.b}} and {{ c }}").is_ok());
        assert!(check("bad {{a.b").is_err());
        assert!(check("bad {{ }}").is_err());
    }
}
