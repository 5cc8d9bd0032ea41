//! The bot definition format, as users write it in YAML. The JSON Schema in
//! docs/ is generated from these types (`hookline schema`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// Messages each user may send the bot (an instance may set its own).
    #[serde(default)]
    pub rate_limits: RateLimits,
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
    pub outbound: OutboundSettings,
    #[serde(default)]
    pub events: EventWebhooks,
    #[serde(default)]
    pub tasks: Vec<Task>,
}

/// Bot-wide event webhooks, delivered signed and retried like every
/// outbound POST.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventWebhooks {
    /// POSTed for every message the bot receives or sends: time, data (the
    /// message, JSON-encoded), ip, userId, botId, direction.
    #[serde(default)]
    pub url: Option<String>,
    /// POSTed when a task ends, with the fields the session collected.
    #[serde(default)]
    pub session_data_url: Option<String>,
    /// Only these directions (`received`, `sent`) reach `url` [default: both].
    #[serde(default)]
    pub directions: Option<Vec<EventDirection>>,
    /// Only the messages of turns that ran one of these tasks (started,
    /// continued or ended it) reach `url` [default: every turn's].
    #[serde(default)]
    pub tasks: Option<Vec<String>>,
    /// Only the messages that came through, or answered, these instances
    /// reach `url` [default: every instance's].
    #[serde(default)]
    pub instances: Option<Vec<String>>,
}

/// A message's direction, as the event webhook reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventDirection {
    Received,
    Sent,
}

/// How service and webhook nodes call out.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundSettings {
    /// Allow calls to loopback, private and link-local addresses. Only for
    /// local development: deployed bots call public endpoints.
    #[serde(default)]
    pub allow_private_networks: bool,
    /// Timeout of a call when its node sets none.
    #[serde(default = "default_call_timeout_ms")]
    #[schemars(range(min = 1))]
    pub timeout_ms: u64,
    /// Larger responses fail the call.
    #[serde(default = "default_max_response_bytes")]
    #[schemars(range(min = 1))]
    pub max_response_bytes: usize,
    /// Standard Webhooks secrets (`whsec_...`) that sign every call with a
    /// body; list two while rotating.
    #[serde(default)]
    pub signing_secrets: Vec<SecretSource>,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            timeout_ms: default_call_timeout_ms(),
            max_response_bytes: default_max_response_bytes(),
            signing_secrets: Vec::new(),
        }
    }
}

fn default_call_timeout_ms() -> u64 {
    5_000
}

fn default_max_response_bytes() -> usize {
    256 * 1024
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
        Self { default: default_language(), supported: Vec::new() }
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
        Self { idle_timeout_minutes: default_idle_minutes(), retention_days: default_retention_days() }
    }
}

/// Messages a user may send, counted per bot and user over fixed windows
/// (Kore's published limits by default); 0 turns a window's limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimits {
    /// Messages per minute.
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    /// Messages per hour.
    #[serde(default = "default_per_hour")]
    pub per_hour: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { per_minute: default_per_minute(), per_hour: default_per_hour() }
    }
}

impl RateLimits {
    pub fn off(&self) -> bool {
        self.per_minute == 0 && self.per_hour == 0
    }
}

fn default_per_minute() -> u32 {
    60
}

fn default_per_hour() -> u32 {
    18_000
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
#[serde(untagged, deny_unknown_fields, expecting = "{ env: VARIABLE_NAME } or { value: \"...\" }")]
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
    /// Who holds the app's key, and so what its tokens prove about the user.
    #[serde(default)]
    pub trust: Option<Trust>,
    /// Replaced by `trust`: `true` is `trust: anonymous`, `false` is `trust: perUser`.
    #[serde(default)]
    pub allow_anonymous: Option<bool>,
    /// The `aud` tokens must carry (one of, when it is a list); without it,
    /// `aud` is not checked.
    #[serde(default)]
    pub audience: Option<String>,
    /// Tokens must carry `exp`.
    #[serde(default)]
    pub require_exp: bool,
    /// Tokens must carry `iat`, at most this many seconds ago.
    #[serde(default)]
    pub max_token_age_seconds: Option<u64>,
    /// Each token is used once: it must carry `jti` and `exp`, and a `jti`
    /// seen before (within its token's lifetime) is refused. For callers that
    /// sign a token per request; not for browser SDKs, which reuse theirs.
    #[serde(default)]
    pub single_use_tokens: bool,
}

/// What an app's tokens prove about the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Trust {
    /// The key lives on a server the bot's owner trusts (an IVR, a contact
    /// centre, a messaging middleware), as the spec assumes: a token without
    /// userIdentity authenticates the app and `from.id` names the user; with
    /// userIdentity, it must equal `from.id`.
    #[default]
    Server,
    /// Tokens are minted per end user: userIdentity is required and equals `from.id`.
    PerUser,
    /// Tokens go to browsers without a user identity: the app's users are its
    /// own, kept apart from those of every other app of the bot.
    Anonymous,
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
    /// Polling: seconds during which an answered pollId may be read once more,
    /// for a client whose answer was lost in transit. 0 (the spec): once only.
    #[serde(default)]
    #[schemars(range(max = 300))]
    pub poll_reread_seconds: u32,
    /// Asynchronous mode: where bot messages are delivered (POST_URL).
    #[serde(default)]
    pub post_url: Option<String>,
    /// Asynchronous mode: Standard Webhooks secrets (`whsec_...`) that sign
    /// POST_URL deliveries; list two while rotating [default: outbound.signingSecrets].
    #[serde(default)]
    pub signing_secrets: Vec<SecretSource>,
    /// Asynchronous mode, Chatlayer form: every POST_URL body also carries
    /// `recipient.id` (the user) and this `verifyToken`.
    #[serde(default)]
    pub verify_token: Option<SecretSource>,
    /// Asynchronous mode: the POST_URL bodies' format.
    #[serde(default)]
    pub delivery_format: DeliveryFormat,
    /// Send templates as readable text (their text, elements and numbered
    /// buttons), for clients that show text only (SMS, voice).
    #[serde(default)]
    pub plain_text: bool,
    /// clientIds of the apps allowed to call this instance.
    pub apps: Vec<String>,
    /// This instance's message rate limits [default: the bot's `rateLimits`].
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
    /// Synchronous answer deadline for this instance [default: HOOKLINE_SYNC_DEADLINE_MS].
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub sync_deadline_ms: Option<u64>,
}

/// How an asynchronous instance's POST_URL bodies look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryFormat {
    /// The Webhook channel's: v2 `{to, from, data, _v}` or v1 `{to, from, text}`
    /// per message, then the end-of-task fields.
    #[default]
    Kore,
    /// Chatlayer's: `{recipient: {id}, verifyToken, message}` per bot message,
    /// the message as a Chatlayer message object.
    Chatlayer,
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
        Self { phrases: default_cancel_phrases(), message: None }
    }
}

fn default_cancel_phrases() -> Vec<String> {
    ["cancel", "cancel that", "never mind", "nevermind", "forget it"].map(String::from).to_vec()
}

/// User-visible text: one string, or one string per language code, or
/// either of those with variants for some instances (channels). Each may
/// hold `{{...}}` templates (context.FIELD, user.firstName, tags.session.NAME,
/// context.session.BotUserSession.lastMessage.customData.KEY, ...).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged, expecting = "a text, a map from language code to text, or {default, instances}")]
pub enum Text {
    Plain(String),
    PerInstance(PerInstanceText),
    PerLanguage(BTreeMap<String, String>),
}

/// A text whose wording differs on some instances (an IVR's prompt, a
/// chat widget's): `default` elsewhere.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PerInstanceText {
    /// The text on every instance not listed (a string or per language).
    pub default: Box<Text>,
    /// By hookInstance id: the text there (a string or per language).
    pub instances: BTreeMap<String, Text>,
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
    Form(FormNode),
    Service(ServiceNode),
    Webhook(WebhookNode),
    Logic(LogicNode),
    End(EndNode),
}

impl Node {
    /// Every node this one can lead to, with the field that names it.
    pub fn successors(&self) -> Vec<(String, &str)> {
        fn named<'a>(field: &str, next: &'a Option<String>) -> Option<(String, &'a str)> {
            next.as_deref().map(|n| (field.to_string(), n))
        }
        let mut next: Vec<(String, &str)> = match self {
            Node::Message(n) => named("next", &n.next).into_iter().collect(),
            Node::Question(n) => {
                [named("next", &n.next), named("onGiveUp", &n.on_give_up)].into_iter().flatten().collect()
            }
            Node::Form(n) => named("next", &n.next).into_iter().collect(),
            Node::Service(n) => [named("next", &n.next), named("onError", &n.on_error)].into_iter().flatten().collect(),
            Node::Webhook(n) => [named("next", &n.next), named("onError", &n.on_error)].into_iter().flatten().collect(),
            Node::Logic(n) => [named("next", &n.next), named("else", &n.otherwise)].into_iter().flatten().collect(),
            Node::End(_) => Vec::new(),
        };
        if let Node::Logic(n) = self {
            next.extend(
                n.conditions.iter().enumerate().map(|(i, c)| (format!("conditions[{i}].next"), c.next.as_str())),
            );
        }
        next
    }
}

/// Sends one message: `text`, several consecutive texts (`messages`), a rich
/// `template` (buttons, quick replies, carousel: the JSON object goes out as
/// is, its strings templated) or an `attachment`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageNode {
    #[serde(default)]
    pub text: Option<Text>,
    #[serde(default)]
    pub messages: Vec<Text>,
    #[serde(default)]
    pub template: Option<serde_json::Value>,
    #[serde(default)]
    pub attachment: Option<AttachmentMessage>,
    /// The node after this one; without it the task ends (Fulfilled).
    #[serde(default)]
    pub next: Option<String>,
}

impl MessageNode {
    /// How many messages the node sends.
    pub fn count(&self) -> usize {
        self.text.iter().count() + self.messages.len() + self.template.iter().count() + self.attachment.iter().count()
    }
}

/// A file the bot sends: its URL and MIME type (audio/aac, audio/mp4,
/// audio/amr, audio/mpeg, application/pdf, image/jpeg, image/png, image/webp,
/// video/mp4, video/3gpp).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachmentMessage {
    pub url: String,
    pub mime: String,
}

/// MIME types an attachment message may have (as messaging channels accept them).
pub const ATTACHMENT_MIME_TYPES: &[&str] = &[
    "audio/aac",
    "audio/mp4",
    "audio/amr",
    "audio/mpeg",
    "application/pdf",
    "image/jpeg",
    "image/png",
    "image/webp",
    "video/mp4",
    "video/3gpp",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Entity {
    #[default]
    Text,
    Email,
    Phone,
    Number,
    /// Saved as YYYY-MM-DD; accepts 2026-11-22, 2026/11/22, 22/11/2026,
    /// 22.11.2026, today, tomorrow and yesterday.
    Date,
    Choice,
    /// Saved as true or false.
    YesNo,
    /// The message's attachments (at least one), saved as their list.
    Attachment,
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
    /// Invalid answers accepted before giving up [default: 3].
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Where to go after too many invalid answers; without it the task ends (Cancelled).
    #[serde(default)]
    pub on_give_up: Option<String>,
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

/// Sends a form (the synchronous answer carries its formDef) and waits for
/// the user's formData; the values are saved as `context.FIELD.COMPONENT`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FormNode {
    /// The formId clients send back with formData.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,96}$"))]
    pub id: String,
    pub title: Text,
    /// Context field the submitted values are saved under [default: the form id].
    #[serde(default)]
    pub field: Option<String>,
    pub components: Vec<FormComponent>,
    /// Label of the submit button [default: Submit].
    #[serde(default)]
    pub submit_label: Option<Text>,
    /// Pre-filled values by component name (templates).
    #[serde(default)]
    pub prefill: BTreeMap<String, String>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ComponentType {
    TextField,
    TextArea,
    Email,
    Phone,
    Number,
    Date,
    Dropdown,
    Checkbox,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FormComponent {
    /// The componentId clients send back.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"))]
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ComponentType,
    pub label: Text,
    #[serde(default)]
    pub placeholder: Option<Text>,
    #[serde(default)]
    pub required: bool,
    /// Options of a dropdown.
    #[serde(default)]
    pub options: Vec<Choice>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
    Put,
    Delete,
}

/// A header value: a template, or a secret from the environment.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged, expecting = "a text, or { env: VARIABLE_NAME }")]
pub enum HeaderValue {
    Text(String),
    Secret {
        /// Name of the environment variable holding the value.
        env: String,
    },
}

/// A generic HTTP call whose JSON answer is mapped into the context.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceNode {
    #[serde(default)]
    pub method: HttpMethod,
    /// The URL, templated.
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// A JSON body; its strings are templated.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// [default: outbound.timeoutMs]
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// Context field to JSON pointer into the answer, e.g. `city: /location/city`.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    #[serde(default)]
    pub next: Option<String>,
    /// Where to go when the call fails (error status, timeout, unusable
    /// answer); without it the bot apologises and the task ends (Cancelled).
    #[serde(default)]
    pub on_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookMode {
    /// The answer drives the flow.
    #[default]
    Sync,
    /// Fire and forget: the flow goes on at once.
    Async,
}

/// POSTs every collected field and the transcript (`conversation`) to the
/// customer's endpoint. A sync answer may hold `responses` to show, plain
/// keys to set in the context, or Konverse instructions.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookNode {
    /// The URL, templated.
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    #[serde(default)]
    pub mode: WebhookMode,
    /// [default: outbound.timeoutMs]
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub next: Option<String>,
    /// Where to go when a sync call fails; without it the bot apologises and
    /// the task ends (Cancelled).
    #[serde(default)]
    pub on_error: Option<String>,
}

/// Sets variables, then picks the next node by the first condition that holds.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogicNode {
    /// Context fields to set first, in name order; string values are
    /// templates (a lone `{{path}}` keeps the value's type).
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Where to go when no condition holds; without it, `next`.
    #[serde(default, rename = "else")]
    pub otherwise: Option<String>,
    /// Where to go when no condition holds and there is no `else`; without
    /// it the task ends.
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Operator {
    Equals,
    NotEquals,
    Contains,
    Greater,
    Less,
    Exists,
    NotExists,
    /// The value is a regular expression.
    Matches,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// What to test: a template path such as `context.total` or `user.email`.
    pub value_of: String,
    pub op: Operator,
    /// What to compare with (not used by exists / notExists); strings are templates.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    pub next: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
pub enum EndReason {
    #[default]
    Fulfilled,
    Cancelled,
}

/// Ends the task, optionally saying something first.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndNode {
    #[serde(default)]
    pub reason: EndReason,
    #[serde(default)]
    pub text: Option<Text>,
}
