//! `{{ path }}` templates in user-visible text. Paths are dotted, with `[n]`
//! for array items; a missing value renders as nothing.

use serde_json::Value;

/// Checks that every `{{` is closed and holds a path.
pub fn check(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed '{{{{' in {template:?}"))?;
        let path = after[..end].trim();
        if path.is_empty() || path.contains("{{") {
            return Err(format!("empty or nested placeholder in {template:?}"));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

pub fn render(template: &str, scope: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push_str(&rest[..start]);
        if let Some(value) = lookup(scope, after[..end].trim()) {
            match value {
                Value::Null => {}
                Value::String(s) => out.push_str(s),
                other => out.push_str(&other.to_string()),
            }
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
        let scope =
            json!({"user": {"firstName": "Ada"}, "context": {"n": 3, "list": [{"x": "a"}]}});
        assert_eq!(
            render(
                "Hi {{ user.firstName }}, {{context.n}} {{context.list[0].x}}{{nope.x}}!",
                &scope
            ),
            "Hi Ada, 3 a!"
        );
        assert_eq!(render("unclosed {{ user", &scope), "unclosed {{ user");
    }

    #[test]
    fn check_reports_bad_placeholders() {
        assert!(check("ok {{a.b}} and {{ c }}").is_ok());
        assert!(check("bad {{a.b").is_err());
        assert!(check("bad {{ }}").is_err());
    }
}
