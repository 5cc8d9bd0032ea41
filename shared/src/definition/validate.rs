//! Semantic checks of a parsed bot definition, and compilation of the parts
//! that can fail (keys, patterns).

use std::collections::{BTreeMap, HashMap, HashSet};

use jsonwebtoken::DecodingKey;
use regex::Regex;

use super::model::*;
use super::nodes;
use super::{AppKey, Purpose, Severity};
use crate::signing::SigningKey;
use crate::text::matcher::{Matcher, words};
use crate::text::template;

/// Consecutive messages a flow may send; with the cancel, re-prompt and
/// question messages of a turn it keeps a turn's log within one store write.
const MAX_MESSAGES_IN_A_ROW: usize = 80;
/// The longest synchronous deadline the webhook function's timeout (29 s)
/// holds with a call's overrun and a store request after it (the template's
/// SyncDeadlineMs allows no more).
pub const MAX_LAMBDA_DEADLINE_MS: u64 = 16_000;

pub struct Problem {
    pub path: String,
    pub severity: Severity,
    pub message: String,
}

pub struct Outcome {
    pub problems: Vec<Problem>,
    pub apps: Vec<AppKey>,
    pub matchers: Vec<Matcher>,
    pub secrets: HashMap<String, String>,
    pub signing_keys: Vec<SigningKey>,
    /// POST_URL signing keys of the instances that have their own.
    pub instance_keys: HashMap<String, Vec<SigningKey>>,
    /// Chatlayer verifyTokens by instance.
    pub verify_tokens: HashMap<String, String>,
}

#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(path, Severity::Error, message);
    }
    pub(super) fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(path, Severity::Warning, message);
    }
    fn push(&mut self, path: impl Into<String>, severity: Severity, message: impl Into<String>) {
        self.0.push(Problem { path: path.into(), severity, message: message.into() });
    }
}

fn id_pattern(prefix: &str) -> Regex {
    Regex::new(&format!("^{prefix}[A-Za-z0-9_-]{{1,96}}$")).expect("static pattern")
}

pub fn validate(def: &BotDefinition, purpose: Purpose, env: &dyn Fn(&str) -> Option<String>) -> Outcome {
    let mut p = Problems::default();
    if !id_pattern("st-").is_match(&def.id) {
        p.error("id", "must look like st-NAME (letters, digits, '-' and '_', at most 99 characters)");
    }
    if def.name.trim().is_empty() {
        p.error("name", "must not be empty");
    }
    if def.session.idle_timeout_minutes == 0 {
        p.error("session.idleTimeoutMinutes", "must be at least 1");
    }
    if def.session.retention_days == 0 {
        p.error("session.retentionDays", "must be at least 1");
    }
    nodes::positive("outbound.timeoutMs", Some(def.outbound.timeout_ms), &mut p);
    nodes::positive("outbound.maxResponseBytes", Some(def.outbound.max_response_bytes as u64), &mut p);
    private_networks(def, purpose, env, &mut p);
    for (i, instance) in def.instances.iter().enumerate() {
        nodes::positive(&format!("instances[{i}].syncDeadlineMs"), instance.sync_deadline_ms, &mut p);
        if instance.sync_deadline_ms.is_some_and(|ms| ms > MAX_LAMBDA_DEADLINE_MS) {
            p.warn(
                format!("instances[{i}].syncDeadlineMs"),
                format!("above {MAX_LAMBDA_DEADLINE_MS} ms, the webhook function on AWS (29 s) may stop before a write started at the deadline ends"),
            );
        }
    }
    for (i, phrase) in def.cancel.phrases.iter().enumerate() {
        if words(phrase).is_empty() {
            p.error(format!("cancel.phrases[{i}]"), "has no words, so it can never match");
        }
    }
    let names =
        Names { languages: languages(def, &mut p), instances: def.instances.iter().map(|i| i.id.clone()).collect() };
    let apps = apps(def, purpose, env, &mut p);
    instances(def, &mut p);

    let task_ids: HashSet<&str> = def.tasks.iter().map(|t| t.id.as_str()).collect();
    if task_ids.len() != def.tasks.len() {
        p.error("tasks", "task ids must be unique");
    }
    if let Some(welcome) = &def.welcome
        && !task_ids.contains(welcome.as_str())
    {
        p.error("welcome", format!("no task has id {welcome:?}"));
    }
    if let Some(text) = &def.fallback {
        check_text("fallback", text, &names, &mut p);
    }
    if let Some(text) = &def.cancel.message {
        check_text("cancel.message", text, &names, &mut p);
    }
    let matchers = def
        .tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            let welcome = def.welcome.as_deref();
            task_checks(&format!("tasks[{i}]"), task, welcome, &names, &mut p)
        })
        .collect();
    for (field, url) in [("url", &def.events.url), ("sessionDataUrl", &def.events.session_data_url)] {
        if let Some(url) = url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            p.error(format!("events.{field}"), "must be an http(s) URL");
        }
    }
    for (i, task) in def.events.tasks.iter().flatten().enumerate() {
        if !def.tasks.iter().any(|t| &t.id == task) {
            p.error(format!("events.tasks[{i}]"), format!("no task {task}"));
        }
    }
    for (i, instance) in def.events.instances.iter().flatten().enumerate() {
        if !def.instances.iter().any(|t| &t.id == instance) {
            p.error(format!("events.instances[{i}]"), format!("no instance {instance}"));
        }
    }
    let filters = [
        def.events.directions.as_ref().map(Vec::is_empty),
        def.events.tasks.as_ref().map(Vec::is_empty),
        def.events.instances.as_ref().map(Vec::is_empty),
    ];
    if filters.contains(&Some(true)) {
        p.warn("events", "an empty filter lets no message through: leave it out to let every one through");
    }
    let secrets = header_secrets(def, purpose, env, &mut p);
    let bot_keys = signing_keys("outbound.signingSecrets", &def.outbound.signing_secrets, purpose, env, &mut p);
    let mut instance_keys = HashMap::new();
    let mut verify_tokens = HashMap::new();
    for (i, instance) in def.instances.iter().enumerate() {
        let path = format!("instances[{i}].signingSecrets");
        if !instance.signing_secrets.is_empty() {
            let keys = signing_keys(&path, &instance.signing_secrets, purpose, env, &mut p);
            instance_keys.insert(instance.id.clone(), keys);
        }
        if let Some(source) = &instance.verify_token {
            let path = format!("instances[{i}].verifyToken");
            if let Some(token) = resolve(source, "secret", &path, purpose, env, &mut p) {
                verify_tokens.insert(instance.id.clone(), token);
            }
        }
    }
    unsigned_deliveries(def, purpose, &bot_keys, &instance_keys, &mut p);
    Outcome { problems: p.0, apps, matchers, secrets, signing_keys: bot_keys, instance_keys, verify_tokens }
}

/// POST_URL deliveries and event webhooks of a deployed bot are signed, so
/// receivers can tell them from forgeries.
fn unsigned_deliveries(
    def: &BotDefinition,
    purpose: Purpose,
    bot_keys: &[SigningKey],
    instance_keys: &HashMap<String, Vec<SigningKey>>,
    p: &mut Problems,
) {
    let unsigned = |instance: Option<&Instance>| {
        bot_keys.is_empty() && instance.is_none_or(|i| instance_keys.get(&i.id).is_none_or(Vec::is_empty))
    };
    let mut paths = Vec::new();
    for (i, instance) in def.instances.iter().enumerate() {
        if instance.mode == Mode::Async && unsigned(Some(instance)) {
            paths.push(format!("instances[{i}].signingSecrets"));
        }
    }
    if (def.events.url.is_some() || def.events.session_data_url.is_some()) && unsigned(None) {
        paths.push("outbound.signingSecrets".to_string());
    }
    let message = "deliveries would go unsigned: set signing secrets (whsec_...)";
    for path in paths {
        match purpose {
            Purpose::Deployed => p.error(path, message),
            Purpose::Validate => p.warn(path, message),
            Purpose::Local => {}
        }
    }
}

fn signing_keys(
    path: &str,
    sources: &[SecretSource],
    purpose: Purpose,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Vec<SigningKey> {
    let mut keys = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let Some(secret) = resolve(source, "secret", &path, purpose, env, p) else { continue };
        match SigningKey::parse(&secret) {
            Ok(key) => keys.push(key),
            Err(e) => p.error(path, e),
        }
    }
    keys
}

/// The values of `{ env: NAME }` headers of service and webhook nodes.
fn header_secrets(
    def: &BotDefinition,
    purpose: Purpose,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> HashMap<String, String> {
    let mut secrets = HashMap::new();
    for (i, task) in def.tasks.iter().enumerate() {
        for (name, node) in &task.nodes {
            let headers = match node {
                Node::Service(s) => &s.headers,
                Node::Webhook(w) => &w.headers,
                _ => continue,
            };
            for (header, value) in headers {
                let HeaderValue::Secret { env: variable } = value else {
                    continue;
                };
                let path = format!("tasks[{i}].nodes.{name}.headers.{header}");
                let source = SecretSource::Env { env: variable.clone() };
                if let Some(secret) = resolve(&source, "secret", &path, purpose, env, p) {
                    secrets.insert(variable.clone(), secret);
                }
            }
        }
    }
    secrets
}

fn languages(def: &BotDefinition, p: &mut Problems) -> Vec<String> {
    let mut all = vec![def.languages.default.clone()];
    all.extend(def.languages.supported.iter().cloned());
    for (i, language) in all.iter().enumerate() {
        let valid = !language.is_empty()
            && language.len() <= 16
            && language.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            let path = if i == 0 { "languages.default".into() } else { format!("languages.supported[{}]", i - 1) };
            p.error(path, format!("{language:?} is not a language code"));
        }
    }
    all.sort();
    all.dedup();
    all
}

/// Setting that lets a deployed bot's calls reach the deployment's own
/// network: off unless set to `true` beside the definition.
pub const ALLOW_PRIVATE_NETWORKS: &str = "HOOKLINE_ALLOW_PRIVATE_NETWORKS";

/// `outbound.allowPrivateNetworks` lifts the guard against server-side request
/// forgery: for local development. Deployed, it takes a second, explicit yes.
fn private_networks(def: &BotDefinition, purpose: Purpose, env: &dyn Fn(&str) -> Option<String>, p: &mut Problems) {
    if !def.outbound.allow_private_networks {
        return;
    }
    let path = "outbound.allowPrivateNetworks";
    let allowed = env(ALLOW_PRIVATE_NETWORKS).is_some_and(|v| v.trim() == "true");
    match purpose {
        Purpose::Local => {}
        Purpose::Validate => p.warn(
            path,
            format!(
                "calls may reach loopback, private and link-local addresses: for local development; \
                 deployed functions refuse it unless {ALLOW_PRIVATE_NETWORKS}=true"
            ),
        ),
        Purpose::Deployed if allowed => {}
        Purpose::Deployed => p.error(
            path,
            format!(
                "calls could reach the deployment's own network; set {ALLOW_PRIVATE_NETWORKS}=true to allow it anyway"
            ),
        ),
    }
}

fn apps(def: &BotDefinition, purpose: Purpose, env: &dyn Fn(&str) -> Option<String>, p: &mut Problems) -> Vec<AppKey> {
    if def.apps.is_empty() {
        p.error("apps", "at least one app is needed to call the bot");
    }
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    for (i, app) in def.apps.iter().enumerate() {
        let path = format!("apps[{i}]");
        if app.client_id.trim().is_empty() {
            p.error(format!("{path}.clientId"), "must not be empty");
        } else if app.client_id.chars().any(|c| c == '#' || c.is_whitespace() || c.is_control()) {
            // Storage keys are joined with '#'.
            p.error(format!("{path}.clientId"), "must not contain '#', spaces or control characters");
        }
        if !seen.insert(app.client_id.as_str()) {
            p.error(format!("{path}.clientId"), format!("clientId {} is used twice", app.client_id));
        }
        let trust = match (app.trust, app.allow_anonymous) {
            (Some(trust), None) => trust,
            (None, None) => Trust::Server,
            (Some(trust), Some(_)) => {
                p.error(format!("{path}.allowAnonymous"), "replaced by trust: remove it");
                trust
            }
            (None, Some(anonymous)) => {
                let (trust, name) =
                    if anonymous { (Trust::Anonymous, "anonymous") } else { (Trust::PerUser, "perUser") };
                p.warn(
                    format!("{path}.allowAnonymous"),
                    format!(
                        "replaced by trust: read as trust: {name}; write that instead (without either, an app \
                         follows the spec: trust: server, a token without userIdentity names its user in from.id)"
                    ),
                );
                trust
            }
        };
        if app.max_token_age_seconds == Some(0) {
            p.error(format!("{path}.maxTokenAgeSeconds"), "must be at least 1");
        }
        let hmac_bytes = match app.algorithm {
            Algorithm::HS256 => Some(32),
            Algorithm::HS512 => Some(64),
            Algorithm::RS256 | Algorithm::RS512 => None,
        };
        let (field, source, other) = match hmac_bytes {
            Some(_) => ("secret", &app.secret, ("publicKey", &app.public_key)),
            None => ("publicKey", &app.public_key, ("secret", &app.secret)),
        };
        if other.1.is_some() {
            p.error(format!("{path}.{}", other.0), format!("not used with {:?}", app.algorithm));
        }
        let Some(source) = source else {
            p.error(format!("{path}.{field}"), format!("{:?} needs a {field}", app.algorithm));
            continue;
        };
        let field_path = format!("{path}.{field}");
        let Some(material) = resolve(source, field, &field_path, purpose, env, p) else {
            continue;
        };
        let key = match hmac_bytes {
            Some(min) if material.len() < min => {
                p.error(
                    field_path,
                    format!(
                        "{:?} secrets must be at least {min} bytes (RFC 7518); this one has {}",
                        app.algorithm,
                        material.len()
                    ),
                );
                continue;
            }
            Some(_) => DecodingKey::from_secret(material.as_bytes()),
            None if !rsa_key_is_large_enough(&material) => {
                p.error(
                    field_path,
                    "RSA keys must be at least 2048 bits (tokens signed with smaller keys are refused)",
                );
                continue;
            }
            None => match DecodingKey::from_rsa_pem(material.as_bytes()) {
                Ok(key) => key,
                Err(e) => {
                    p.error(field_path, format!("not an RSA public key in PEM form: {e}"));
                    continue;
                }
            },
        };
        keys.push(AppKey {
            client_id: app.client_id.clone(),
            algorithm: app.algorithm.into(),
            key,
            trust,
            audience: app.audience.clone(),
            require_exp: app.require_exp || app.single_use_tokens,
            max_token_age_secs: app.max_token_age_seconds,
            single_use: app.single_use_tokens,
        });
    }
    keys
}

/// The DER of a 2048-bit RSA public key is about 294 bytes (SPKI) or 270
/// (PKCS#1); 1024-bit ones are about 162 and 140. What does not decode is left
/// to the PEM parser to report.
fn rsa_key_is_large_enough(pem: &str) -> bool {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    base64::engine::general_purpose::STANDARD.decode(body).map_or(true, |der| der.len() >= 256)
}

/// The key material, or None (with a problem recorded when that is an error).
fn resolve(
    source: &SecretSource,
    field: &str,
    path: &str,
    purpose: Purpose,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Option<String> {
    match source {
        SecretSource::Env { env: name } => match env(name) {
            Some(value) => Some(value),
            None if purpose == Purpose::Validate => {
                p.warn(path, format!("environment variable {name} is not set here; it must be where the bot runs"));
                None
            }
            None => {
                p.error(path, format!("environment variable {name} is not set"));
                None
            }
        },
        // A public key is not a secret: a literal one is fine anywhere.
        SecretSource::Literal { value } if field == "publicKey" => Some(value.clone()),
        SecretSource::Literal { value } => match purpose {
            Purpose::Deployed => {
                p.error(path, "literal secrets are for local development only: use {env: VARIABLE}");
                None
            }
            Purpose::Validate => {
                p.warn(path, "literal secret: for local development only; deployments must use {env: VARIABLE}");
                Some(value.clone())
            }
            Purpose::Local => Some(value.clone()),
        },
    }
}

fn instances(def: &BotDefinition, p: &mut Problems) {
    if def.instances.is_empty() {
        p.error("instances", "at least one Webhook channel instance is needed");
    }
    let instance_id = id_pattern("");
    let app_ids: HashSet<&str> = def.apps.iter().map(|a| a.client_id.as_str()).collect();
    let mut seen = HashSet::new();
    for (i, instance) in def.instances.iter().enumerate() {
        let path = format!("instances[{i}]");
        if !instance_id.is_match(&instance.id) {
            p.error(format!("{path}.id"), "letters, digits, '-' and '_' only, at most 96");
        }
        if !seen.insert(instance.id.as_str()) {
            p.error(format!("{path}.id"), format!("instance id {} is used twice", instance.id));
        }
        if instance.apps.is_empty() {
            p.error(format!("{path}.apps"), "name at least one app that may call this instance");
        }
        for (j, app) in instance.apps.iter().enumerate() {
            if !app_ids.contains(app.as_str()) {
                p.error(format!("{path}.apps[{j}]"), format!("no app has clientId {app:?}"));
            }
        }
        if let Some(url) = &instance.post_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            p.error(format!("{path}.postUrl"), "must be an http(s) URL");
        }
        let is_async = instance.mode == Mode::Async;
        if is_async && instance.post_url.is_none() {
            p.error(format!("{path}.postUrl"), "asynchronous mode delivers to a POST_URL: set postUrl");
        }
        let async_only = [
            ("postUrl", instance.post_url.is_some()),
            ("signingSecrets", !instance.signing_secrets.is_empty()),
            ("verifyToken", instance.verify_token.is_some()),
        ];
        for (field, set) in async_only {
            if set && !is_async {
                p.warn(format!("{path}.{field}"), "only used in asynchronous mode (mode: async)");
            }
        }
        if instance.poll_reread_seconds > 300 {
            p.error(format!("{path}.pollRereadSeconds"), "at most 300");
        }
    }
}

fn task_checks(path: &str, task: &Task, welcome: Option<&str>, names: &Names, p: &mut Problems) -> Matcher {
    if !id_pattern("").is_match(&task.id) {
        p.error(format!("{path}.id"), "letters, digits, '-' and '_' only, at most 96");
    }
    if !task.nodes.contains_key(&task.start) {
        p.error(format!("{path}.start"), format!("no node {:?} in this task", task.start));
    }
    for (name, node) in &task.nodes {
        let node_path = format!("{path}.nodes.{name}");
        nodes::check(&node_path, node, names, p);
        for (field, next) in node.successors() {
            if !task.nodes.contains_key(next) {
                p.error(format!("{node_path}.{field}"), format!("no node {next:?} in this task"));
            }
        }
    }
    check_reachable(path, task, p);
    check_cycles(path, task, p);
    check_runs(path, task, p);
    let triggers = &task.triggers;
    for (kind, list) in [("phrases", &triggers.phrases), ("keywords", &triggers.keywords)] {
        for (i, trigger) in list.iter().enumerate() {
            if words(trigger).is_empty() {
                p.error(format!("{path}.triggers.{kind}[{i}]"), "has no words, so it can never match");
            }
        }
    }
    let untriggered = triggers.phrases.is_empty() && triggers.keywords.is_empty() && triggers.patterns.is_empty();
    if untriggered && welcome != Some(task.id.as_str()) {
        p.warn(format!("{path}.triggers"), "no triggers and not the welcome task: this task never runs");
    }
    match Matcher::compile(&task.triggers.phrases, &task.triggers.keywords, &task.triggers.patterns) {
        Ok(matcher) => matcher,
        Err((i, message)) => {
            p.error(format!("{path}.triggers.patterns[{i}]"), format!("invalid regular expression: {message}"));
            Matcher::default()
        }
    }
}

/// Nodes that go on to the next without waiting for the user or a call.
fn goes_straight_on(node: &Node) -> bool {
    matches!(node, Node::Message(_) | Node::Logic(_))
        || matches!(node, Node::Webhook(w) if w.mode == WebhookMode::Async)
}

/// A loop made only of nodes that go straight on would never wait for the
/// user: report it instead of cutting it short at run time.
fn check_cycles(path: &str, task: &Task, p: &mut Problems) {
    fn visit<'t>(
        task: &'t Task,
        id: &'t str,
        stack: &mut Vec<&'t str>,
        done: &mut HashSet<&'t str>,
    ) -> Option<&'t str> {
        if stack.contains(&id) {
            return Some(id);
        }
        let node = task.nodes.get(id).filter(|n| goes_straight_on(n))?;
        if done.contains(id) {
            return None;
        }
        stack.push(id);
        let found = node.successors().into_iter().find_map(|(_, next)| visit(task, next, stack, done));
        stack.pop();
        done.insert(id);
        found
    }
    let mut done = HashSet::new();
    for id in task.nodes.keys() {
        if let Some(start) = visit(task, id, &mut Vec::new(), &mut done) {
            let message = "these nodes loop back here without a question, form or call in between";
            p.error(format!("{path}.nodes.{start}"), message);
            return;
        }
    }
}

/// Every node can be reached from `start`.
fn check_reachable(path: &str, task: &Task, p: &mut Problems) {
    let mut seen = HashSet::from([task.start.as_str()]);
    let mut queue = vec![task.start.as_str()];
    while let Some(id) = queue.pop() {
        for (_, next) in task.nodes.get(id).map(Node::successors).unwrap_or_default() {
            if seen.insert(next) {
                queue.push(next);
            }
        }
    }
    for name in task.nodes.keys().filter(|n| !seen.contains(n.as_str())) {
        p.error(format!("{path}.nodes.{name}"), "unreachable: no node leads here from start");
    }
}

/// A run of consecutive message nodes sends at most [`MAX_MESSAGES_IN_A_ROW`]
/// messages, so that a turn fits one store write.
fn check_runs(path: &str, task: &Task, p: &mut Problems) {
    for (start, node) in &task.nodes {
        let Node::Message(first) = node else { continue };
        let mut messages = first.count();
        let mut seen = HashSet::from([start.as_str()]);
        let mut next = first.next.as_deref();
        while let Some(Node::Message(m)) = next.and_then(|id| task.nodes.get(id)) {
            let id = next.unwrap_or_default();
            // A loop is reported by check_cycles.
            if !seen.insert(id) {
                break;
            }
            messages += m.count();
            next = m.next.as_deref();
        }
        if messages > MAX_MESSAGES_IN_A_ROW {
            let message =
                format!("{messages} messages in a row from here; at most {MAX_MESSAGES_IN_A_ROW} before a question");
            p.error(format!("{path}.nodes.{start}"), message);
        }
    }
}

/// What texts may name: the bot's languages and instances.
pub(super) struct Names {
    pub languages: Vec<String>,
    pub instances: Vec<String>,
}

pub(super) fn check_text(path: &str, text: &Text, names: &Names, p: &mut Problems) {
    match text {
        Text::Plain(s) => check_template(path, s, p),
        Text::PerLanguage(map) => {
            check_per_language(path, map, &names.languages, p);
            for (language, s) in map {
                check_template(&format!("{path}.{language}"), s, p);
            }
        }
        Text::PerInstance(variants) => {
            let variants = std::iter::once((format!("{path}.default"), None, &*variants.default))
                .chain(variants.instances.iter().map(|(id, text)| (format!("{path}.instances.{id}"), Some(id), text)));
            for (at, id, text) in variants {
                if matches!(text, Text::PerInstance(_)) {
                    p.error(at, "a per-instance text holds a text or per-language texts, not another per-instance one");
                    continue;
                }
                if let Some(id) = id.filter(|id| !names.instances.contains(id)) {
                    p.error(&at, format!("{id} is not one of the bot's instances"));
                }
                check_text(&at, text, names, p);
            }
        }
    }
}

fn check_template(path: &str, s: &str, p: &mut Problems) {
    if let Err(e) = template::check(s) {
        p.error(path, e);
    }
}

fn check_per_language(path: &str, map: &BTreeMap<String, String>, languages: &[String], p: &mut Problems) {
    for language in map.keys() {
        if !languages.contains(language) {
            p.error(format!("{path}.{language}"), format!("{language} is not one of the bot's languages"));
        }
    }
    if map.is_empty() {
        p.error(path, "give the text in at least one language");
    }
    for language in languages.iter().filter(|l| !map.contains_key(*l)) {
        p.warn(path, format!("no {language} translation: the default language's text is used"));
    }
}
