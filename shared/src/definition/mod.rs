//! Bot definitions: loaded from YAML, validated once, compiled for serving.

mod kore_templates;
mod model;
mod nodes;
mod validate;
mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::DecodingKey;

use crate::error::Error;
use crate::signing::SigningKey;

pub use model::*;
pub use validate::{ALLOW_PRIVATE_NETWORKS, MAX_LAMBDA_DEADLINE_MS};

use crate::text::matcher::{Matcher, Strength, Utterance};

/// The demo bot, built in so `hookline serve` works from anywhere.
pub const DEMO_BOT: &str = include_str!("../../../examples/demo-bot.yaml");
pub const DEMO_BOT_FILE: &str = "examples/demo-bot.yaml";

/// JSON Schema of the bot definition format (published as docs/bot-definition.schema.json).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(BotDefinition)).unwrap_or_default()
}

/// What the definitions are loaded for; decides how strict secrets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `hookline validate`: literal secrets and unset variables are warnings.
    Validate,
    /// `hookline serve`: literal secrets allowed, variables must be set.
    Local,
    /// The Lambda functions: secrets only from the environment.
    Deployed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a definition file, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: String,
    pub line: Option<usize>,
    pub path: String,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {severity}")?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Diagnostics of a failed load; Display lists them one per line.
#[derive(Debug)]
pub struct LoadError(pub Vec<Diagnostic>);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// A client app ready to verify tokens.
pub struct AppKey {
    pub client_id: String,
    pub algorithm: jsonwebtoken::Algorithm,
    pub key: DecodingKey,
    pub trust: Trust,
    pub audience: Option<String>,
    /// `exp` is required (always so for single-use tokens).
    pub require_exp: bool,
    pub max_token_age_secs: Option<u64>,
    pub single_use: bool,
}

/// A validated bot, compiled for serving.
pub struct Bot {
    pub def: BotDefinition,
    apps: HashMap<String, AppKey>,
    matchers: Vec<Matcher>,
    /// Header secrets of service and webhook nodes, by variable name.
    secrets: HashMap<String, String>,
    signing_keys: Vec<SigningKey>,
    instance_keys: HashMap<String, Vec<SigningKey>>,
    verify_tokens: HashMap<String, String>,
    /// Some node sends the transcript (a webhook node): without one, the
    /// session keeps none, and its item stays small.
    keeps_transcript: bool,
}

impl Bot {
    pub fn id(&self) -> &str {
        &self.def.id
    }

    /// Whether sessions keep a transcript: only a webhook node reads it.
    pub fn keeps_transcript(&self) -> bool {
        self.keeps_transcript
    }

    /// The instance named in the URL, or the first instance of that version.
    pub fn instance(&self, version: WebhookVersion, id: Option<&str>) -> Option<&Instance> {
        self.def.instances.iter().filter(|i| i.version == version).find(|i| id.is_none_or(|id| i.id == id))
    }

    /// The keys outbound calls are signed with (several during a rotation).
    pub fn signing_keys(&self) -> &[SigningKey] {
        &self.signing_keys
    }

    /// The keys that sign an instance's POST_URL deliveries: its own, or the bot's.
    pub fn post_url_keys(&self, instance_id: &str) -> &[SigningKey] {
        self.instance_keys.get(instance_id).map_or(&self.signing_keys, Vec::as_slice)
    }

    /// The Chatlayer verifyToken an instance's POST_URL bodies carry.
    pub fn verify_token(&self, instance_id: &str) -> Option<&str> {
        self.verify_tokens.get(instance_id).map(String::as_str)
    }

    /// The message rate limits of an instance: its own, or the bot's.
    pub fn rate_limits(&self, instance_id: &str) -> RateLimits {
        self.instance_by_id(instance_id).and_then(|i| i.rate_limits).unwrap_or(self.def.rate_limits)
    }

    /// The instance with this hookInstance id, of any version.
    pub fn instance_by_id(&self, id: &str) -> Option<&Instance> {
        self.def.instances.iter().find(|i| i.id == id)
    }

    /// A secret named by `{ env: NAME }` in a node's headers.
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets.get(name).map(String::as_str)
    }

    pub fn app(&self, client_id: &str) -> Option<&AppKey> {
        self.apps.get(client_id)
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        self.def.tasks.iter().find(|t| t.id == id)
    }

    pub fn supports_language(&self, language: &str) -> bool {
        language == self.def.languages.default || self.def.languages.supported.iter().any(|l| l == language)
    }

    /// The task whose triggers match best; ties go to the task listed first.
    pub fn best_task(&self, utterance: &Utterance) -> Option<&Task> {
        let mut best: Option<(Strength, usize)> = None;
        for (i, matcher) in self.matchers.iter().enumerate() {
            if let Some(strength) = matcher.strength(utterance)
                && best.is_none_or(|(b, _)| strength > b)
            {
                best = Some((strength, i));
            }
        }
        best.map(|(_, i)| &self.def.tasks[i])
    }

    pub fn is_cancel(&self, utterance: &Utterance) -> bool {
        self.def.cancel.phrases.iter().any(|p| utterance.is(p))
    }

    /// The text for `instance` (its variant, else the default), in
    /// `language`, else in the bot's default language, else any.
    pub fn localize<'t>(&self, text: &'t Text, language: &str, instance: Option<&str>) -> &'t str {
        match text {
            Text::Plain(s) => s,
            Text::PerInstance(variants) => {
                let text = instance.and_then(|i| variants.instances.get(i)).unwrap_or(&variants.default);
                self.localize(text, language, None)
            }
            Text::PerLanguage(map) => map
                .get(language)
                .or_else(|| map.get(&self.def.languages.default))
                .or_else(|| map.values().next())
                .map_or("", String::as_str),
        }
    }
}

/// Every bot being served, by id.
#[derive(Default)]
pub struct Registry {
    bots: HashMap<String, Arc<Bot>>,
}

impl Registry {
    pub fn get(&self, bot_id: &str) -> Option<&Arc<Bot>> {
        self.bots.get(bot_id)
    }

    /// The bot a URL or a job names.
    pub fn require(&self, bot_id: &str) -> Result<Arc<Bot>, Error> {
        self.get(bot_id).cloned().ok_or_else(|| Error::NotFound(format!("no bot {bot_id}")))
    }

    pub fn bots(&self) -> impl Iterator<Item = &Arc<Bot>> {
        self.bots.values()
    }

    /// Loads every `.yaml`/`.yml` file at `path` (a file or a directory).
    pub fn load(path: &Path, purpose: Purpose) -> Result<Self, LoadError> {
        Self::or_errors(Loaded::from_paths(&[path.to_path_buf()], purpose))
    }

    /// Builds a registry from (file name, YAML) pairs; fails on any error.
    pub fn from_sources(sources: &[(String, String)], purpose: Purpose) -> Result<Self, LoadError> {
        Self::or_errors(Loaded::from_sources(sources, purpose))
    }

    fn or_errors(loaded: Loaded) -> Result<Self, LoadError> {
        let errors: Vec<Diagnostic> =
            loaded.diagnostics.into_iter().filter(|d| d.severity == Severity::Error).collect();
        if errors.is_empty() { Ok(loaded.registry) } else { Err(LoadError(errors)) }
    }
}

/// The outcome of reading a set of definitions: the bots that are valid, the
/// files read, and every diagnostic (errors and warnings) in file order.
pub struct Loaded {
    pub registry: Registry,
    pub files: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// Reads files and directories (their `.yaml`/`.yml` files).
    pub fn from_paths(paths: &[PathBuf], purpose: Purpose) -> Self {
        let mut sources = Vec::new();
        let mut diagnostics = Vec::new();
        for path in paths {
            let name = path.display().to_string();
            match definition_files(path) {
                Ok(files) if files.is_empty() => {
                    diagnostics.push(diagnostic(&name, "no bot definition files (.yaml, .yml) here".into()));
                }
                Ok(files) => {
                    for file in files {
                        let name = file.display().to_string();
                        match std::fs::read_to_string(&file) {
                            Ok(source) => sources.push((name, source)),
                            Err(e) => diagnostics.push(diagnostic(&name, e.to_string())),
                        }
                    }
                }
                Err(e) => diagnostics.push(diagnostic(&name, e.to_string())),
            }
        }
        let mut loaded = Self::from_sources(&sources, purpose);
        diagnostics.append(&mut loaded.diagnostics);
        loaded.diagnostics = diagnostics;
        loaded
    }

    pub fn from_sources(sources: &[(String, String)], purpose: Purpose) -> Self {
        let mut registry = Registry::default();
        let mut diagnostics = Vec::new();
        for (file, source) in sources {
            let (bot, found) = check(file, source, purpose, &|name| std::env::var(name).ok());
            diagnostics.extend(found);
            let Some(bot) = bot else { continue };
            if registry.bots.contains_key(bot.id()) {
                diagnostics.push(diagnostic(file, format!("bot id {} is defined twice", bot.id())));
            } else {
                registry.bots.insert(bot.id().to_string(), Arc::new(bot));
            }
        }
        let files = sources.iter().map(|(file, _)| file.clone()).collect();
        Self { registry, files, diagnostics }
    }
}

fn diagnostic(file: &str, message: String) -> Diagnostic {
    Diagnostic { file: file.to_string(), line: None, path: String::new(), severity: Severity::Error, message }
}

fn definition_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses and validates one definition. Returns the compiled bot when there is
/// no error, and every diagnostic found (errors and warnings) with its line.
/// For [`Purpose::Validate`], apps whose keys are not available here are left out.
pub fn check(
    file: &str,
    source: &str,
    purpose: Purpose,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<Bot>, Vec<Diagnostic>) {
    let at = |path: String, line: Option<usize>, severity, message| Diagnostic {
        file: file.to_string(),
        line,
        path,
        severity,
        message,
    };
    let document = match yaml::parse(source) {
        Ok(document) => document,
        Err(e) => {
            let d = at(String::new(), Some(e.line), Severity::Error, e.message);
            return (None, vec![d]);
        }
    };
    let def: BotDefinition = match serde_path_to_error::deserialize(&document.value) {
        Ok(def) => def,
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let line = document.line_of(&path).or(Some(1));
            return (None, vec![at(path, line, Severity::Error, e.into_inner().to_string())]);
        }
    };
    let outcome = validate::validate(&def, purpose, env);
    let mut diagnostics: Vec<Diagnostic> = outcome
        .problems
        .into_iter()
        .map(|p| at(p.path.clone(), document.line_of(&p.path), p.severity, p.message))
        .collect();
    diagnostics.sort_by_key(|d| d.line);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return (None, diagnostics);
    }
    let bot = Bot {
        apps: outcome.apps.into_iter().map(|a| (a.client_id.clone(), a)).collect(),
        matchers: outcome.matchers,
        secrets: outcome.secrets,
        signing_keys: outcome.signing_keys,
        instance_keys: outcome.instance_keys,
        verify_tokens: outcome.verify_tokens,
        keeps_transcript: def.tasks.iter().flat_map(|t| t.nodes.values()).any(|n| matches!(n, Node::Webhook(_))),
        def,
    };
    (Some(bot), diagnostics)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: &str = r#"
id: st-unit
name: Unit
apps:
  - clientId: cs-1
    algorithm: HS256
    secret: SECRET
instances:
  - id: main
    version: v2
    apps: [cs-1]
tasks:
  - id: loop
    name: loop
    start: a
    nodes:
      a: { type: message, text: "a", next: b }
      b: { type: message, text: "b", next: a }
"#;

    fn run(secret: &str, purpose: Purpose, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let source = BOT.replace("SECRET", secret);
        let (_, diagnostics) = check("unit.yaml", &source, purpose, env);
        diagnostics.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn deployed_functions_take_secrets_only_from_the_environment() {
        let literal = r#"{ value: "0123456789abcdef0123456789abcdef" }"#;
        let env = |_: &str| None;
        let deployed = run(literal, Purpose::Deployed, &env);
        assert!(
            deployed
                .iter()
                .any(|d| d.contains("error: apps[0].secret: literal secrets are for local development only")),
            "{deployed:?}"
        );
        let local = run(literal, Purpose::Local, &env);
        assert!(!local.iter().any(|d| d.contains("secret")), "{local:?}");

        let from_env = "{ env: UNIT_SECRET }";
        let missing = run(from_env, Purpose::Deployed, &env);
        assert!(
            missing.iter().any(|d| d.contains("error: apps[0].secret: environment variable UNIT_SECRET is not set")),
            "{missing:?}"
        );
        let set = |_: &str| Some("0123456789abcdef0123456789abcdef".to_string());
        assert!(!run(from_env, Purpose::Deployed, &set).iter().any(|d| d.contains("secret")));
    }

    #[test]
    fn deployed_deliveries_must_be_signed() {
        let source = r#"
id: st-unit
name: Unit
apps: [{ clientId: cs-1, algorithm: HS256, secret: { env: APP_SECRET } }]
instances:
  - { id: out, version: v2, mode: async, postUrl: "https://example.com/in", apps: [cs-1] }
events: { url: "https://example.com/events" }
"#;
        let env = |name: &str| match name {
            "APP_SECRET" => Some("0123456789abcdef0123456789abcdef".to_string()),
            _ => Some("whsec_aW5zdGFuY2Utc2lnbmluZy1zZWNyZXQtMzJieXRlcyE=".to_string()),
        };
        let messages = |source: &str, purpose| -> Vec<String> {
            check("unit.yaml", source, purpose, &env).1.iter().map(ToString::to_string).collect()
        };
        let deployed = messages(source, Purpose::Deployed);
        assert!(
            deployed.iter().any(|d| d.contains("error: instances[0].signingSecrets: deliveries would go unsigned"))
        );
        assert!(deployed.iter().any(|d| d.contains("error: outbound.signingSecrets: deliveries would go unsigned")));
        assert!(messages(source, Purpose::Local).is_empty());
        let signed = source.replace("events:", "outbound: { signingSecrets: [{ env: SIGNING }] }\nevents:");
        assert_eq!(messages(&signed, Purpose::Deployed), Vec::<String>::new());
    }

    #[test]
    fn private_networks_are_for_local_development_unless_the_deployment_says_so() {
        let source = BOT.replace("SECRET", r#"{ env: UNIT_SECRET }"#) + "outbound: { allowPrivateNetworks: true }\n";
        let messages = |purpose, allow: Option<&str>| -> Vec<String> {
            let env = |name: &str| match name {
                "UNIT_SECRET" => Some("0123456789abcdef0123456789abcdef".to_string()),
                "HOOKLINE_ALLOW_PRIVATE_NETWORKS" => allow.map(String::from),
                _ => None,
            };
            let (_, diagnostics) = check("unit.yaml", &source, purpose, &env);
            diagnostics.iter().filter(|d| d.path == "outbound.allowPrivateNetworks").map(ToString::to_string).collect()
        };
        assert!(messages(Purpose::Local, None).is_empty());
        let validate = messages(Purpose::Validate, None);
        assert!(validate.len() == 1 && validate[0].contains("warning:"), "{validate:?}");
        let deployed = messages(Purpose::Deployed, None);
        assert!(deployed.len() == 1 && deployed[0].contains("error:"), "{deployed:?}");
        assert!(deployed[0].contains("HOOKLINE_ALLOW_PRIVATE_NETWORKS=true"), "{deployed:?}");
        assert_eq!(messages(Purpose::Deployed, Some("false")).len(), 1);
        assert!(messages(Purpose::Deployed, Some("true")).is_empty());
    }

    #[test]
    fn allow_anonymous_is_read_as_trust_with_a_warning() {
        let source = BOT
            .replace(
                "secret: SECRET",
                "allowAnonymous: true\n    secret: { value: \"0123456789abcdef0123456789abcdef\" }",
            )
            .replace(r#"b: { type: message, text: "b", next: a }"#, r#"b: { type: message, text: "b" }"#);
        let (bot, diagnostics) = check("unit.yaml", &source, Purpose::Local, &|_| None);
        assert_eq!(bot.unwrap().app("cs-1").unwrap().trust, Trust::Anonymous);
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|d| d.contains("warning: apps[0].allowAnonymous: replaced by trust: read as trust: anonymous")),
            "{text:?}"
        );
        let both = source.replace("allowAnonymous: true", "allowAnonymous: true\n    trust: server");
        let (bot, diagnostics) = check("unit.yaml", &both, Purpose::Local, &|_| None);
        assert!(bot.is_none(), "{diagnostics:?}");
    }

    #[test]
    fn per_instance_texts_name_the_bots_instances() {
        let text = |text: &str| {
            let source =
                BOT.replace("secret: SECRET", "secret: { value: \"0123456789abcdef0123456789abcdef\" }").replace(
                    r#"b: { type: message, text: "b", next: a }"#,
                    &format!("b: {{ type: message, text: {text} }}"),
                );
            let (_, diagnostics) = check("unit.yaml", &source, Purpose::Local, &|_| None);
            diagnostics.iter().filter(|d| d.severity == Severity::Error).map(ToString::to_string).collect::<Vec<_>>()
        };
        assert_eq!(text(r#"{ default: "b", instances: { main: "b on main" } }"#), Vec::<String>::new());
        let unknown = text(r#"{ default: "b", instances: { phone: "b" } }"#);
        assert!(
            unknown.iter().any(|d| d.contains("nodes.b.text.instances.phone: phone is not one of the bot's instances")),
            "{unknown:?}"
        );
        let nested = text(r#"{ default: "b", instances: { main: { default: "x", instances: { main: "y" } } } }"#);
        assert!(nested.iter().any(|d| d.contains("not another per-instance one")), "{nested:?}");
        let broken = text(r#"{ default: "{{oops", instances: { main: "b" } }"#);
        assert!(broken.iter().any(|d| d.contains("nodes.b.text.default: unclosed")), "{broken:?}");
    }

    /// Each shape Kore's web SDK renders: a minimal one that renders passes,
    /// and what the SDK cannot render is reported at its field.
    #[test]
    fn kore_templates_are_checked_for_what_the_web_sdk_renders() {
        let diagnostics = |template: &str| {
            let source =
                BOT.replace("secret: SECRET", "secret: { value: \"0123456789abcdef0123456789abcdef\" }").replace(
                    r#"b: { type: message, text: "b", next: a }"#,
                    &format!("b: {{ type: message, template: {template} }}"),
                );
            let (_, found) = check("unit.yaml", &source, Purpose::Local, &|_| None);
            found.iter().filter(|d| d.path.contains(".template")).map(ToString::to_string).collect::<Vec<_>>()
        };
        let renders = [
            r#"{ type: template, payload: { template_type: button, text: Pick, buttons: [{ type: postback, title: Yes, payload: "yes" }, { type: web_url, title: Docs, url: "https://example.com" }] } }"#,
            r#"{ type: template, payload: { template_type: quick_replies, text: Colour, quick_replies: [{ content_type: text, title: Red, payload: red }] } }"#,
            r#"{ type: template, payload: { template_type: carousel, elements: [{ title: Shoe, buttons: [{ type: postback, title: Buy, payload: buy }, { type: web_url, title: More, url: "https://example.com/1" }] }] } }"#,
            r#"{ type: template, payload: { template_type: list, elements: [{ title: One, buttons: [{ type: postback, title: one, payload: one }] }, { title: Two, default_action: { url: "https://example.com" } }] } }"#,
            r#"{ type: template, payload: { template_type: table, table_design: regular, columns: [[Item]], elements: [{ Values: [Shoe] }] } }"#,
            r#"{ type: template, payload: { template_type: dropdown_template, elements: [{ title: One, value: "1" }] } }"#,
            r#"{ type: template, payload: { template_type: dateTemplate } }"#,
            // Filled from the context when the message is sent: checked then by the client only.
            r#"{ type: template, payload: { template_type: button, text: Pick, buttons: "{{context.buttons}}" } }"#,
            r#"{ type: template, payload: "{{context.card}}" }"#,
            r#"{ type: template, payload: { template_type: button, buttons: ["{{context.first}}", { type: postback, title: 2024, payload: "y" }] } }"#,
        ];
        for template in renders {
            assert_eq!(diagnostics(template), Vec::<String>::new(), "{template}");
        }
        let broken = [
            (
                r#"{ type: template, payload: { text: Pick } }"#,
                "error: tasks[0].nodes.b.template.payload.template_type: name the template's type",
            ),
            (
                r#"{ type: template, payload: { template_type: button, text: Pick } }"#,
                "error: tasks[0].nodes.b.template.payload.buttons: a button template needs a non-empty list here",
            ),
            (
                r#"{ type: template, payload: { template_type: button, buttons: [{ title: Yes, payload: "yes" }] } }"#,
                "error: tasks[0].nodes.b.template.payload.buttons[0].type: postback, text, url or web_url",
            ),
            (
                r#"{ type: template, payload: { template_type: button, buttons: [{ type: postback, title: Yes }] } }"#,
                "error: tasks[0].nodes.b.template.payload.buttons[0].payload: a postback sends its payload",
            ),
            (
                r#"{ type: template, payload: { template_type: button, buttons: [{ type: url, title: Docs, url: "example.com" }] } }"#,
                "error: tasks[0].nodes.b.template.payload.buttons[0].url: an absolute http(s) URL",
            ),
            (
                r#"{ type: template, payload: { template_type: quick_replies, quick_replies: [{ title: Red, payload: red }] } }"#,
                "error: tasks[0].nodes.b.template.payload.quick_replies[0].content_type",
            ),
            (
                r#"{ type: template, payload: { template_type: carousel, elements: [{ title: Shoe, buttons: [{ type: postback, title: Buy, payload: buy }] }] } }"#,
                "warning: tasks[0].nodes.b.template.payload.elements[0].buttons: the SDK's v3 carousel draws two buttons",
            ),
            (
                r#"{ type: template, payload: { template_type: list, elements: [{ title: One }] } }"#,
                "error: tasks[0].nodes.b.template.payload.elements[0]: a list element needs buttons or default_action.url",
            ),
            (
                r#"{ type: template, payload: { template_type: table, columns: [[Item]], elements: [{ Values: [Shoe] }] } }"#,
                "error: tasks[0].nodes.b.template.payload.table_design: regular or responsive",
            ),
            (
                r#"{ type: template, payload: { template_type: dropdown_template, elements: [{ title: One }] } }"#,
                "error: tasks[0].nodes.b.template.payload.elements[0]: each option needs a title and a value",
            ),
            (
                r#"{ type: template, payload: { template_type: Carousel, elements: [] } }"#,
                "warning: tasks[0].nodes.b.template.payload.template_type: not a type Kore's web SDK renders",
            ),
        ];
        for (template, expected) in broken {
            let found = diagnostics(template);
            assert!(found.iter().any(|d| d.contains(expected)), "{template}: missing {expected:?} in {found:#?}");
        }
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        let source = BOT.replace(
            "algorithm: HS256\n    secret: SECRET",
            &format!("algorithm: RS256\n    publicKey:\n      value: |\n{RSA_1024}"),
        );
        let (bot, diagnostics) = check("unit.yaml", &source, Purpose::Local, &|_| None);
        assert!(bot.is_none());
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|d| d.contains("apps[0].publicKey: RSA keys must be at least 2048 bits")), "{text:?}");
    }

    const RSA_1024: &str = "        -----BEGIN PUBLIC KEY-----\n        MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCzGG5PkSYLXka4QjsVng5hlann\n        eDfkCn3KM7ERZPCiViv5ZIqYQBK2GvQvgjbviSc47Zb9E7A1uDlfXS9egMY+E0tG\n        Fdj8m/dTg6BlD47Mf+oYp7IIW3+9MRqBFahMeA7MTwwGLCvEm98RyaeefCK2ks5u\n        gqt79omeCUccP2HU5wIDAQAB\n        -----END PUBLIC KEY-----";

    #[test]
    fn message_loops_are_reported() {
        let diagnostics = run(r#"{ value: "0123456789abcdef0123456789abcdef" }"#, Purpose::Local, &|_| None);
        assert!(
            diagnostics
                .iter()
                .any(|d| d.starts_with("unit.yaml:17: error: tasks[0].nodes.a: these nodes loop back here")),
            "{diagnostics:?}"
        );
    }

    #[test]
    fn loops_through_logic_nodes_are_reported() {
        let source = BOT
            .replace("SECRET", r#"{ value: "0123456789abcdef0123456789abcdef" }"#)
            .replace(r#"b: { type: message, text: "b", next: a }"#, "b: { type: logic, next: a }");
        let (_, diagnostics) = check("unit.yaml", &source, Purpose::Local, &|_| None);
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|d| d.contains("nodes.a: these nodes loop back here")), "{text:?}");
    }

    #[test]
    fn long_runs_of_messages_are_reported() {
        let many = format!("[{}]", vec!["\"m\""; 50].join(", "));
        let source = BOT
            .replace("SECRET", r#"{ value: "0123456789abcdef0123456789abcdef" }"#)
            .replace(r#"text: "a", next: b"#, &format!("messages: {many}, next: b"))
            .replace(r#"text: "b", next: a"#, &format!("messages: {many}"));
        let (_, diagnostics) = check("unit.yaml", &source, Purpose::Local, &|_| None);
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|d| d.contains("tasks[0].nodes.a: 100 messages in a row from here; at most 80")),
            "{text:?}"
        );
        assert!(!text.iter().any(|d| d.contains("nodes.b:")), "{text:?}");
    }

    const CALLS: &str = r#"
id: st-calls
name: Calls
apps:
  - { clientId: cs-1, algorithm: HS256, secret: { env: UNIT_APP_SECRET } }
instances:
  - { id: main, version: v2, apps: [cs-1] }
tasks:
  - id: t
    name: t
    triggers: { phrases: [go] }
    start: call
    nodes:
      call:
        type: service
        url: https://api.example.com/x
        headers: { X-Api-Key: { env: UNIT_API_KEY }, X-Trace: "{{user.id}}" }
        next: file
      file: { type: message, attachment: { url: "https://x.example.com/a.exe", mime: application/x-msdownload } }
      lost: { type: message, text: "never reached" }
      bad_url: { type: webhook, url: "ftp://x.example.com/{{user.id", next: ghost }
"#;

    #[test]
    fn node_settings_are_checked() {
        let (_, diagnostics) = check("calls.yaml", CALLS, Purpose::Validate, &|_| None);
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        for expected in [
            "calls.yaml:17: warning: tasks[0].nodes.call.headers.X-Api-Key: environment variable UNIT_API_KEY is not set here",
            "calls.yaml:19: error: tasks[0].nodes.file.attachment.mime: application/x-msdownload is not supported",
            "calls.yaml:20: error: tasks[0].nodes.lost: unreachable",
            "calls.yaml:21: error: tasks[0].nodes.bad_url.url: unclosed '{{'",
            "calls.yaml:21: error: tasks[0].nodes.bad_url.next: no node \"ghost\" in this task",
        ] {
            assert!(text.iter().any(|d| d.starts_with(expected)), "missing {expected:?} in {text:#?}");
        }
    }

    #[test]
    fn header_secrets_come_from_the_environment() {
        let fixed = CALLS
            .replace("application/x-msdownload", "application/pdf")
            .replace("      lost: { type: message, text: \"never reached\" }\n", "")
            .replace("      bad_url: { type: webhook, url: \"ftp://x.example.com/{{user.id\", next: ghost }\n", "");
        let env = |name: &str| match name {
            "UNIT_API_KEY" => Some("k-123".to_string()),
            "UNIT_APP_SECRET" => Some("0123456789abcdef0123456789abcdef".to_string()),
            _ => None,
        };
        let (bot, diagnostics) = check("calls.yaml", &fixed, Purpose::Deployed, &env);
        assert!(diagnostics.iter().all(|d| d.severity != Severity::Error), "{diagnostics:?}");
        assert_eq!(bot.unwrap().secret("UNIT_API_KEY"), Some("k-123"));
        let without_key = |name: &str| env(name).filter(|_| name != "UNIT_API_KEY");
        let (bot, diagnostics) = check("calls.yaml", &fixed, Purpose::Deployed, &without_key);
        assert!(bot.is_none());
        assert!(diagnostics.iter().any(|d| d.to_string().contains("environment variable UNIT_API_KEY is not set")));
    }

    #[test]
    fn the_demo_bot_loads_for_local_serving() {
        let registry = Registry::from_sources(&[(DEMO_BOT_FILE.into(), DEMO_BOT.into())], Purpose::Local).unwrap();
        let bot = registry.get("st-hookline-demo").unwrap();
        assert_eq!(bot.instance(WebhookVersion::V2, None).unwrap().id, "webchat");
        assert_eq!(bot.instance(WebhookVersion::V1, None).unwrap().id, "ivr");
        assert!(bot.instance(WebhookVersion::V1, Some("webchat")).is_none());
        // Twice the same bot id is an error.
        let twice = [(DEMO_BOT_FILE.to_string(), DEMO_BOT.to_string()), ("copy.yaml".into(), DEMO_BOT.into())];
        let error = Registry::from_sources(&twice, Purpose::Local).err().unwrap();
        assert!(error.to_string().contains("bot id st-hookline-demo is defined twice"));
    }
}
