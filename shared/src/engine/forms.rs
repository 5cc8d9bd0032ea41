//! Form nodes: the formDef sent in the synchronous answer, and validation of
//! the formData that comes back.

use serde_json::{Map, Value, json};

use super::answer::{self, AnswerContext};
use crate::definition::{Bot, ComponentType, Entity, FormNode};
use crate::text::template;

/// Longest text a form field keeps.
const MAX_FIELD_CHARS: usize = 4096;

/// One thing wrong with a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub component: String,
    pub label: String,
    pub message: String,
}

fn kind_name(kind: ComponentType) -> &'static str {
    match kind {
        ComponentType::TextField => "textField",
        ComponentType::TextArea => "textArea",
        ComponentType::Email => "email",
        ComponentType::Phone => "phoneNumber",
        ComponentType::Number => "number",
        ComponentType::Date => "date",
        ComponentType::Dropdown => "dropdown",
        ComponentType::Checkbox => "checkbox",
    }
}

/// `{formDef, formInitialization}` as the Webhook channel's form answer has
/// it; after a failed submission, the values sent and the problems found.
pub fn definition(
    bot: &Bot,
    form: &FormNode,
    language: &str,
    instance: Option<&str>,
    scope: &Value,
    retry: Option<(&Value, &[Problem])>,
) -> Value {
    let text = |t: &crate::definition::Text| template::render(bot.localize(t, language, instance), scope);
    let mut components: Vec<Value> = form
        .components
        .iter()
        .map(|c| {
            let kind = kind_name(c.kind);
            let mut meta = json!({
                "type": kind,
                "key": kind,
                "displayName": text(&c.label),
                "name": c.name,
                "placeholder": c.placeholder.as_ref().map(text).unwrap_or_default(),
                "toolTip": "",
                "isVisible": true,
                "required": c.required,
                "validations": {"validationType": "simple"},
                "validateOn": "onBlur",
            });
            if !c.options.is_empty() {
                meta["values"] = c
                    .options
                    .iter()
                    .map(|o| json!({"label": o.label.as_ref().map(text).unwrap_or_else(|| o.value.clone()), "value": o.value}))
                    .collect();
            }
            json!({"_id": c.name, "name": c.name, "type": kind, "metaData": meta})
        })
        .collect();
    let submit = form.submit_label.as_ref().map(text).unwrap_or_else(|| "Submit".into());
    components.push(json!({
        "_id": "Submit",
        "name": "Submit",
        "type": "button",
        "metaData": {
            "key": "button", "type": "button", "displayName": submit, "name": "Submit",
            "buttonAction": "submit", "isVisible": true, "buttonStyle": "primary", "sourceUrl": ""
        }
    }));
    let value_map: Map<String, Value> = match retry {
        Some((submitted, _)) => inputs(submitted),
        None => form
            .prefill
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(template::render(value, scope))))
            .collect(),
    };
    let mut answer = json!({
        "formDef": {
            "_id": form.id,
            "streamId": bot.id(),
            "name": form.id,
            "displayName": text(&form.title),
            "type": "regular",
            "description": "regular",
            "components": components,
        },
        "formInitialization": {"valueMap": value_map},
    });
    if let Some((_, problems)) = retry {
        answer["errors"] = problems.iter().map(|p| json!({"componentId": p.component, "msg": p.message})).collect();
    }
    answer
}

/// componentId to input, from formData's `data`.
fn inputs(submitted: &Value) -> Map<String, Value> {
    submitted["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| Some((item["componentId"].as_str()?.to_string(), item["input"].clone())))
        .collect()
}

/// The submitted values by component name, or everything wrong with them.
pub fn submission(
    bot: &Bot,
    form: &FormNode,
    language: &str,
    instance: Option<&str>,
    submitted: &Value,
    ctx: &AnswerContext,
) -> Result<Map<String, Value>, Vec<Problem>> {
    if submitted["formId"].as_str() != Some(form.id.as_str()) {
        let message = format!("expected formId {}", form.id);
        return Err(vec![Problem { component: String::new(), label: "form".into(), message }]);
    }
    let inputs = inputs(submitted);
    let mut values = Map::new();
    let mut problems = Vec::new();
    for component in &form.components {
        let label = bot.localize(&component.label, language, instance).to_string();
        let mut problem = |message: String| {
            problems.push(Problem { component: component.name.clone(), label: label.clone(), message });
        };
        let input = match inputs.get(&component.name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(other) => other.to_string(),
        };
        if input.is_empty() && component.kind != ComponentType::Checkbox {
            if component.required {
                problem("is required".into());
            }
            continue;
        }
        let entity = match component.kind {
            ComponentType::TextField | ComponentType::TextArea if input.chars().count() > MAX_FIELD_CHARS => {
                problem(format!("is longer than {MAX_FIELD_CHARS} characters"));
                continue;
            }
            ComponentType::TextField | ComponentType::TextArea => Entity::Text,
            ComponentType::Email => Entity::Email,
            ComponentType::Phone => Entity::Phone,
            ComponentType::Number => Entity::Number,
            ComponentType::Date => Entity::Date,
            ComponentType::Dropdown => Entity::Choice,
            ComponentType::Checkbox => {
                let checked = matches!(input.to_lowercase().as_str(), "true" | "on" | "yes" | "1" | "checked");
                if component.required && !checked {
                    problem("must be checked".into());
                }
                values.insert(component.name.clone(), Value::Bool(checked));
                continue;
            }
        };
        match answer::parse(entity, &component.options, &input, ctx) {
            Ok(value) => {
                values.insert(component.name.clone(), value);
            }
            Err(kind) => problem(format!("is not a valid {kind}")),
        }
    }
    if problems.is_empty() { Ok(values) } else { Err(problems) }
}
