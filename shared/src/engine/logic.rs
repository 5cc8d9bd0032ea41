//! Logic nodes: set variables, then choose the next node by conditions.

use serde_json::{Map, Value};

use crate::definition::{Condition, LogicNode, Operator};
use crate::text::matcher::{compile_pattern, fold};
use crate::text::template;

/// The context values to set, and the node to go to.
pub fn evaluate(node: &LogicNode, scope: &Value) -> (Map<String, Value>, Option<String>) {
    let mut scope = scope.clone();
    let mut values = Map::new();
    for (field, value) in &node.set {
        let value = template::render_value(value, &scope);
        // Later steps and the conditions see what was set.
        scope["context"][field] = value.clone();
        values.insert(field.clone(), value);
    }
    let next = node
        .conditions
        .iter()
        .find(|c| holds(c, &scope))
        .map(|c| c.next.clone())
        .or_else(|| node.otherwise.clone())
        .or_else(|| node.next.clone());
    (values, next)
}

fn holds(condition: &Condition, scope: &Value) -> bool {
    let left = template::value_at(scope, &condition.value_of).unwrap_or(&Value::Null);
    let right = condition.value.as_ref().map(|v| template::render_value(v, scope)).unwrap_or(Value::Null);
    match condition.op {
        Operator::Equals => equals(left, &right),
        Operator::NotEquals => !equals(left, &right),
        Operator::Contains => match left {
            Value::Array(items) => items.iter().any(|item| equals(item, &right)),
            other => fold(&text(other)).contains(&fold(&text(&right))),
        },
        Operator::Greater => matches!((number(left), number(&right)), (Some(l), Some(r)) if l > r),
        Operator::Less => matches!((number(left), number(&right)), (Some(l), Some(r)) if l < r),
        Operator::Exists => exists(left),
        Operator::NotExists => !exists(left),
        Operator::Matches => compile_pattern(&text(&right)).is_ok_and(|r| r.is_match(&fold(&text(left)))),
    }
}

/// Numbers by value ("4" equals 4.0), everything else by text, case- and
/// accent-insensitively.
fn equals(left: &Value, right: &Value) -> bool {
    match (number(left), number(right)) {
        (Some(l), Some(r)) => l == r,
        _ => fold(text(left).trim()) == fold(text(right).trim()),
    }
}

fn exists(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => true,
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn logic(yaml_conditions: Value, set: Value) -> LogicNode {
        serde_json::from_value(json!({"set": set, "conditions": yaml_conditions, "else": "other"})).unwrap()
    }

    fn next(conditions: Value, scope: Value) -> Option<String> {
        evaluate(&logic(conditions, json!({})), &scope).1
    }

    #[test]
    fn operators() {
        let scope = json!({"context": {"total": "120", "name": "Zoë", "tags": ["a", "b"], "empty": ""}});
        let case = |op: &str, of: &str, value: Value| {
            next(json!([{"valueOf": of, "op": op, "value": value, "next": "yes"}]), scope.clone())
        };
        let yes = Some("yes".to_string());
        let other = Some("other".to_string());
        assert_eq!(case("greater", "context.total", json!(100)), yes);
        assert_eq!(case("less", "context.total", json!(100)), other);
        assert_eq!(case("equals", "context.name", json!("zoe")), yes);
        assert_eq!(case("notEquals", "context.name", json!("zoe")), other);
        assert_eq!(case("contains", "context.tags", json!("b")), yes);
        assert_eq!(case("contains", "context.name", json!("O")), yes);
        assert_eq!(case("exists", "context.empty", Value::Null), other);
        assert_eq!(case("notExists", "context.missing", Value::Null), yes);
        assert_eq!(case("matches", "context.total", json!("^1[0-9]{2}$")), yes);
        assert_eq!(case("greater", "context.name", json!(1)), other);
    }

    #[test]
    fn set_runs_first_and_keeps_types() {
        let node = logic(
            json!([{"valueOf": "context.big", "op": "equals", "value": true, "next": "big"}]),
            json!({"copy": "{{context.total}}", "big": true, "label": "total={{context.total}}"}),
        );
        let (values, next) = evaluate(&node, &json!({"context": {"total": 7}}));
        assert_eq!(Value::Object(values), json!({"big": true, "copy": 7, "label": "total=7"}));
        assert_eq!(next.as_deref(), Some("big"));
    }
}
