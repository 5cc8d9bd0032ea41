//! The bot definition format, as users write it in YAML. The JSON Schema in
//! docs/ is generated from these types (`hookline schema`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// One bot: its identity, the apps that may call it, its Webhook channel
/// instances and its dialog tasks.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Hookline bot definition")]
pub struct BotDefinition {
    /// The bot id (streamId) used in the webhook URLs, e.g. `st-acme-support`.
    #[schemars(regex(pattern = r"^st-[A-Za-z0-9_-]{1,96}$"))]
    pub id: String,
    /// Display name, returned by /api/botmeta.
    pub name: String,
    /// Display icon URL, returned by /api/botmeta.
    #[serde(default)]
    pub icon: Option<String>,
    #[serde(default)]
    pub languages: Languages,
    #[serde(default)]
    pub session: SessionSettings,
    /// Client apps with their JWT verification keys.
    pub apps: Vec<App>,
    /// Webhook channel instances. The first instance of each version answers on
    /// the URL without `/hookInstance/{id}`.
    pub instances: Vec<Instance>,
    /// Task run for the ON_CONNECT event.
    #[serde(default)]
    pub welcome: Option<String>,
    /// Answer when no task matches the user's message.
    #[serde(default)]
    pub fallback: Option<Text>,
    #[serde(default)]
    pub cancel: CancelSettings,
    #[serde(default)]
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Languages {
    /// Language of new sessions, e.g. `en`.
    #[serde(default = "default_language")]
    pub default: String,
    /// Every language a session may switch to with interactiveLanguage.
    #[serde(default)]
    pub supported: Vec<String>,
}

impl Default for Languages {
    fn default() -> Self {
        Self {
            default: default_language(),
            supported: Vec::new(),
        }
    }
}

fn default_language() -> String {
    "en".into()
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionSettings {
    /// A session with no message for this long ends; the next message starts a new one.
    #[serde(default = "default_idle_minutes")]
    #[schemars(range(min = 1))]
    pub idle_timeout_minutes: u32,
    /// How long the conversation log and user data are kept after the last message.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1))]
    pub retention_days: u32,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout_minutes: default_idle_minutes(),
            retention_days: default_retention_days(),
        }
    }
}

fn default_idle_minutes() -> u32 {
    15
}

fn default_retention_days() -> u32 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum Algorithm {
    HS256,
    HS512,
    RS256,
    RS512,
}

impl From<Algorithm> for jsonwebtoken::Algorithm {
    fn from(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::HS256 => Self::HS256,
            Algorithm::HS512 => Self::HS512,
            Algorithm::RS256 => Self::RS256,
            Algorithm::RS512 => Self::RS512,
        }
    }
}

/// Where a secret comes from: an environment variable (deployments) or a
/// literal value (local development only; `hookline validate` warns).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(
    untagged,
    deny_unknown_fields,
    expecting = "{ env: VARIABLE_NAME } or { value: \"...\" }"
)]
pub enum SecretSource {
    Env {
        /// Name of the environment variable holding the value.
        env: String,
    },
    Literal {
        /// The value itself. Local development only.
        value: String,
    },
}

/// A client app: the JWT issuer that messaging systems sign with.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct App {
    /// The app's clientId; tokens name it in the `appId` claim (or `iss`).
    pub client_id: String,
    /// The one algorithm accepted from this app; the token header cannot change it.
    pub algorithm: Algorithm,
    /// Shared secret for HS256 (at least 32 bytes) and HS512 (at least 64 bytes).
    #[serde(default)]
    pub secret: Option<SecretSource>,
    /// The client's RSA public key (PEM) for RS256 and RS512.
    #[serde(default)]
    pub public_key: Option<SecretSource>,
    /// Accept tokens without a userIdentity and requests without from.id.
    #[serde(default)]
    pub allow_anonymous: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookVersion {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Sync,
    Async,
}

/// A Webhook channel instance: one URL with its own version, mode and apps.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    /// The hookInstance id in the URL.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,96}$"))]
    pub id: String,
    pub version: WebhookVersion,
    #[serde(default)]
    pub mode: Mode,
    /// v2 synchronous mode: answer with a pollId while service nodes run.
    #[serde(default = "default_true")]
    pub polling: bool,
    /// Asynchronous mode: where bot messages are delivered.
    #[serde(default)]
    pub post_url: Option<String>,
    /// clientIds of the apps allowed to call this instance.
    pub apps: Vec<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelSettings {
    /// Utterances that cancel the running task (endReason Cancelled).
    #[serde(default = "default_cancel_phrases")]
    pub phrases: Vec<String>,
    /// Said when a task is cancelled.
    #[serde(default)]
    pub message: Option<Text>,
}

impl Default for CancelSettings {
    fn default() -> Self {
        Self {
            phrases: default_cancel_phrases(),
            message: None,
        }
    }
}

fn default_cancel_phrases() -> Vec<String> {
    [
        "cancel",
        "cancel that",
        "never mind",
        "nevermind",
        "forget it",
    ]
    .map(String::from)
    .to_vec()
}

/// User-visible text: one string, or one string per language code. Either may
/// hold `{{...}}` templates (context.FIELD, user.firstName, tags.session.NAME,
/// context.session.BotUserSession.lastMessage.customData.KEY, ...).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged, expecting = "a text, or a map from language code to text")]
pub enum Text {
    Plain(String),
    PerLanguage(BTreeMap<String, String>),
}

/// A dialog task: triggers that start it and the nodes it runs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Task {
    /// Reported as completedTaskId.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,96}$"))]
    pub id: String,
    /// Reported as completedTaskName.
    pub name: String,
    #[serde(default)]
    pub triggers: Triggers,
    /// The first node.
    pub start: String,
    pub nodes: BTreeMap<String, Node>,
}

/// Matched case- and accent-insensitively. Precedence: phrase, pattern, keyword;
/// among equals, the task listed first.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Triggers {
    /// The whole utterance equals one of these.
    #[serde(default)]
    pub phrases: Vec<String>,
    /// One of these words (or word sequences) appears in the utterance.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Regular expressions searched in the utterance.
    #[serde(default)]
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Node {
    Message(MessageNode),
    Question(QuestionNode),
}

/// Sends one message (`text`) or several consecutive ones (`messages`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageNode {
    #[serde(default)]
    pub text: Option<Text>,
    #[serde(default)]
    pub messages: Vec<Text>,
    /// The node after this one; without it the task ends (Fulfilled).
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Entity {
    #[default]
    Text,
    Email,
    Phone,
    Number,
    Choice,
}

/// Asks for a value and saves the answer as `context.FIELD`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuestionNode {
    pub prompt: Text,
    /// Context field the answer is saved to.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"))]
    pub field: String,
    #[serde(default)]
    pub entity: Entity,
    /// Options for `entity: choice`; the user may answer a value, a label, a
    /// synonym or the option's number.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Said before the prompt again when the answer is not valid.
    #[serde(default)]
    pub retry_prompt: Option<Text>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Choice {
    /// Saved to the field when chosen.
    pub value: String,
    #[serde(default)]
    pub label: Option<Text>,
    #[serde(default)]
    pub synonyms: Vec<String>,
}
