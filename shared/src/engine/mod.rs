//! The dialog engine. Pure: given the bot, the session and the user's input it
//! returns the bot's outputs, the task completion, the new session and the
//! effects to run. The clock and fresh ids come in through [`TurnContext`];
//! no I/O happens here. A call the flow waits for (service node, sync
//! webhook) is returned as `pending`; the driver makes it and hands the
//! outcome to [`resume`], so sync, polling and async are three drivers of one
//! engine.

mod answer;
mod calls;
mod effects;
mod forms;
mod logic;
mod state;

use serde_json::{Map, Value, json};

use crate::definition::{Bot, EndReason, FormNode, MessageNode, Node, Task, Text, WebhookMode};
use crate::protocol::{Tag, TaskCompletion};
use crate::text::matcher::Utterance;
use crate::text::template;

pub use effects::{CallError, CallOutcome, HttpCall, HttpReply};
pub use state::{ActiveTask, Session, Transcript};

/// The longest a message waits for a webhook's Joonbot `delay`: an answer or
/// a delivery is not held up longer.
pub const MAX_DELAY_MS: u64 = 10_000;
/// Guards against flows that loop without waiting for the user.
const MAX_STEPS_PER_TURN: usize = 100;
/// Invalid answers to a question before it gives up, unless it says otherwise.
const DEFAULT_MAX_RETRIES: u32 = 3;
/// Transcript kept for webhook nodes (`conversation`): the latest lines, within
/// a line count and a size, so it cannot grow the session without bound.
const MAX_TRANSCRIPT_LINES: usize = 200;
const MAX_TRANSCRIPT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub enum UserEvent {
    Text(String),
    /// v2 `template` message: a postback object (its `payload` or `text` is the utterance).
    Template(Value),
    FormData(Value),
    OnConnect,
    SessionClosure,
}

#[derive(Debug, Clone)]
pub struct Input {
    pub event: UserEvent,
    /// The full request body, kept as context.session.BotUserSession.lastMessage.
    pub message: Value,
    /// interactiveLanguage, already checked against the bot's languages.
    pub language: Option<String>,
    pub session_tags: Vec<Tag>,
}

/// What the caller supplies so the engine stays deterministic.
#[derive(Debug, Clone)]
pub struct TurnContext {
    pub now_ms: i64,
    /// Used if this turn starts a session.
    pub new_session_id: String,
    /// `user.*` in templates: id plus userInfo.
    pub user: Value,
    /// The hookInstance the turn came in on: texts may differ per instance.
    pub instance: Option<String>,
    pub user_tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Text(String),
    /// A rich message (buttons, quick replies, carousel): the object goes out as is.
    Template(Value),
    Attachment {
        url: String,
        mime: String,
    },
    /// `{formDef, formInitialization}` for the answer's `form`.
    Form(Value),
    Event {
        val: &'static str,
        event_type: &'static str,
        description: &'static str,
    },
    /// Wait this long (milliseconds) before the next message: a webhook's
    /// Joonbot `delay`.
    Pause(u64),
}

#[derive(Debug, Clone)]
pub struct Turn {
    pub outputs: Vec<Output>,
    /// The last task that ended in this turn.
    pub completion: Option<TaskCompletion>,
    /// None when the turn closed the session.
    pub session: Option<Session>,
    /// A call the flow waits for; its outcome goes to [`resume`].
    pub pending: Option<HttpCall>,
    /// Fire-and-forget calls (async webhook nodes), made once the turn is saved.
    pub effects: Vec<HttpCall>,
}

pub const FULFILLED: &str = "Fulfilled";
pub const CANCELLED: &str = "Cancelled";
pub const INTERRUPTED: &str = "Interrupted";

pub fn run_turn(bot: &Bot, session: Option<Session>, input: Input, ctx: &TurnContext) -> Turn {
    let had_session = session.is_some();
    let mut session = session.unwrap_or_else(|| Session {
        id: ctx.new_session_id.clone(),
        started_at: ctx.now_ms,
        language: bot.def.languages.default.clone(),
        ..Session::default()
    });
    session.last_active_at = ctx.now_ms;
    if let Some(language) = input.language {
        session.language = language;
    }
    merge_tags(&mut session.tags, input.session_tags);
    session.last_message = input.message;

    let mut run = Run::new(bot, ctx, session);
    match input.event {
        UserEvent::SessionClosure => return close(had_session),
        UserEvent::OnConnect => {
            if let Some(task) = bot.def.welcome.as_deref().and_then(|id| bot.task(id)) {
                run.start(task);
            }
        }
        UserEvent::Text(text) => run.on_text(&text),
        UserEvent::Template(val) => match postback_text(&val) {
            Some(text) => run.on_text(&text),
            None => run.fallback(),
        },
        UserEvent::FormData(val) => run.on_form_data(&val),
    }
    run.finish()
}

/// Continues a turn that waited for a call, with the call's outcome.
pub fn resume(bot: &Bot, session: Session, outcome: CallOutcome, ctx: &TurnContext) -> Turn {
    let mut run = Run::new(bot, ctx, session);
    let Some((task, node)) = run.active_node() else {
        return run.finish();
    };
    match node {
        Node::Service(service) => match calls::service_values(service, outcome) {
            Ok(values) => {
                run.session.context.extend(values);
                run.go_on(task, service.next.as_deref());
            }
            Err(_) => run.call_failed(task, service.on_error.as_deref()),
        },
        Node::Webhook(webhook) => match calls::webhook_instructions(outcome) {
            Ok(instructions) => {
                let stop = run.follow(instructions);
                if stop {
                    run.complete(task, FULFILLED);
                } else {
                    run.go_on(task, webhook.next.as_deref());
                }
            }
            Err(_) => run.call_failed(task, webhook.on_error.as_deref()),
        },
        _ => {}
    }
    run.finish()
}

/// Ends the waiting task (Cancelled) with an apology: for a turn that may not
/// make the call its flow waits for.
pub fn abandon(bot: &Bot, session: Session, ctx: &TurnContext) -> Turn {
    let mut run = Run::new(bot, ctx, session);
    if let Some((task, _)) = run.active_node() {
        run.say_plain("Sorry, something went wrong. Please try again later.");
        run.complete(task, CANCELLED);
    }
    run.finish()
}

/// SESSION_CLOSURE: ends the session, saying whether there was one.
fn close(had_session: bool) -> Turn {
    let (event_type, description) = if had_session {
        ("SESSION_CLOSURE_SUCCESS", "session closed successfully")
    } else {
        ("SESSION_CLOSURE_IGNORED", "Active session doesn't exist")
    };
    Turn {
        outputs: vec![Output::Event { val: "SESSION_CLOSURE", event_type, description }],
        completion: None,
        session: None,
        pending: None,
        effects: Vec::new(),
    }
}

/// The session ended for inactivity (asynchronous mode's proactive closure):
/// the SESSION_CLOSURE event its POST_URL is sent.
pub fn close_for_inactivity() -> Turn {
    let event = Output::Event {
        val: "SESSION_CLOSURE",
        event_type: "SESSION_CLOSURE_SUCCESS",
        description: "session closed for inactivity",
    };
    Turn { outputs: vec![event], completion: None, session: None, pending: None, effects: Vec::new() }
}

/// Later tags replace earlier ones of the same name; empty names are ignored.
pub fn merge_tags(tags: &mut Vec<Tag>, new: Vec<Tag>) {
    for tag in new.into_iter().filter(|t| !t.name.is_empty()) {
        match tags.iter_mut().find(|t| t.name == tag.name) {
            Some(existing) => existing.value = tag.value,
            None => tags.push(tag),
        }
    }
}

fn postback_text(val: &Value) -> Option<String> {
    ["payload", "text", "title"].iter().find_map(|k| val.get(k).and_then(Value::as_str)).map(String::from)
}

/// What a webhook's answer asks the bot to do.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Instructions {
    outputs: Vec<Output>,
    context: Map<String, Value>,
    stop: bool,
}

struct Run<'a> {
    bot: &'a Bot,
    ctx: &'a TurnContext,
    session: Session,
    outputs: Vec<Output>,
    completion: Option<TaskCompletion>,
    pending: Option<HttpCall>,
    effects: Vec<HttpCall>,
}

impl<'a> Run<'a> {
    fn new(bot: &'a Bot, ctx: &'a TurnContext, session: Session) -> Self {
        Self { bot, ctx, session, outputs: Vec::new(), completion: None, pending: None, effects: Vec::new() }
    }

    fn finish(self) -> Turn {
        Turn {
            outputs: self.outputs,
            completion: self.completion,
            session: Some(self.session),
            pending: self.pending,
            effects: self.effects,
        }
    }

    /// The task and node the session waits at.
    fn active_node(&self) -> Option<(&'a Task, &'a Node)> {
        let active = self.session.task.as_ref()?;
        let task = self.bot.task(&active.task_id)?;
        Some((task, task.nodes.get(&active.node_id)?))
    }

    fn on_text(&mut self, text: &str) {
        self.transcript("User", text);
        let utterance = Utterance::new(text);
        if self.bot.is_cancel(&utterance) && self.session.task.is_some() {
            self.end_active(CANCELLED);
            let message = self.bot.def.cancel.message.clone();
            self.say_or(message.as_ref(), "OK, I've cancelled that.");
            return;
        }
        let matched = self.bot.best_task(&utterance);
        match (self.session.task.clone(), matched) {
            (Some(active), Some(task)) if task.id != active.task_id => self.start(task),
            (Some(active), _) => self.answer(active, text),
            (None, Some(task)) => self.start(task),
            (None, None) => self.fallback(),
        }
    }

    fn on_form_data(&mut self, val: &Value) {
        match self.active_node() {
            Some((task, Node::Form(form))) => {
                match forms::submission(
                    self.bot,
                    form,
                    &self.session.language,
                    self.instance(),
                    val,
                    &self.answer_context(),
                ) {
                    Ok(values) => {
                        let field = form.field.clone().unwrap_or_else(|| form.id.clone());
                        self.session.context.insert(field, Value::Object(values));
                        self.go_on(task, form.next.as_deref());
                    }
                    Err(problems) => {
                        let listed: Vec<String> =
                            problems.iter().map(|p| format!("{}: {}", p.label, p.message)).collect();
                        self.say_plain(&format!("Please check the form. {}", listed.join("; ")));
                        self.send_form(form, Some((val, &problems)));
                    }
                }
            }
            _ => self.fallback(),
        }
    }

    fn fallback(&mut self) {
        let fallback = self.bot.def.fallback.clone();
        self.say_or(fallback.as_ref(), "Sorry, I didn't understand that.");
    }

    /// Starts a task; a task still running is ended as Interrupted.
    fn start(&mut self, task: &'a Task) {
        if self.session.task.is_some() {
            self.end_active(INTERRUPTED);
        }
        self.run_from(task, &task.start);
    }

    fn answer(&mut self, active: ActiveTask, text: &str) {
        let node = self.active_node();
        let Some((task, Node::Question(question))) = node else {
            if let Some((_, Node::Form(form))) = node {
                self.say_plain("Please fill in the form.");
                return self.send_form(form, None);
            }
            // Not waiting for an answer (or the definition changed): start afresh.
            self.session.task = None;
            return self.fallback();
        };
        match answer::parse(question.entity, &question.choices, text, &self.answer_context()) {
            Ok(value) => {
                self.session.context.insert(question.field.clone(), value);
                self.go_on(task, question.next.as_deref());
            }
            Err(_) if active.retries + 1 > question.max_retries.unwrap_or(DEFAULT_MAX_RETRIES) => {
                self.session.task = None;
                match &question.on_give_up {
                    Some(node) => self.run_from(task, node),
                    None => {
                        self.say_plain("Sorry, let's stop here.");
                        self.complete(task, CANCELLED);
                    }
                }
            }
            Err(kind) => {
                self.session.task = Some(ActiveTask { retries: active.retries + 1, ..active });
                let default = format!("Sorry, that doesn't look like a valid {kind}.");
                self.say_or(question.retry_prompt.as_ref(), &default);
                self.say(&question.prompt);
            }
        }
    }

    fn answer_context(&self) -> answer::AnswerContext {
        answer::AnswerContext {
            now_ms: self.ctx.now_ms,
            attachments: self.session.last_message["message"]["attachments"].clone(),
        }
    }

    /// Continues at `next`, or ends the task (Fulfilled) without one.
    fn go_on(&mut self, task: &'a Task, next: Option<&str>) {
        self.session.task = None;
        match next {
            Some(next) => self.run_from(task, next),
            None => self.complete(task, FULFILLED),
        }
    }

    fn call_failed(&mut self, task: &'a Task, on_error: Option<&str>) {
        self.session.task = None;
        match on_error {
            Some(node) => self.run_from(task, node),
            None => {
                self.say_plain("Sorry, something went wrong. Please try again later.");
                self.complete(task, CANCELLED);
            }
        }
    }

    fn wait_at(&mut self, task: &Task, node_id: String) {
        self.session.task = Some(ActiveTask { task_id: task.id.clone(), node_id, retries: 0 });
    }

    fn run_from(&mut self, task: &'a Task, start: &str) {
        let mut node_id = start.to_string();
        for _ in 0..MAX_STEPS_PER_TURN {
            let next = match task.nodes.get(&node_id) {
                Some(Node::Message(message)) => {
                    self.message(message);
                    message.next.clone()
                }
                Some(Node::Question(question)) => {
                    self.say(&question.prompt);
                    return self.wait_at(task, node_id);
                }
                Some(Node::Form(form)) => {
                    self.send_form(form, None);
                    return self.wait_at(task, node_id);
                }
                Some(Node::Service(service)) => {
                    self.pending = Some(calls::service_call(self.bot, service, &self.scope()));
                    return self.wait_at(task, node_id);
                }
                Some(Node::Webhook(webhook)) => {
                    let call = calls::webhook_call(self.bot, webhook, &self.session, &self.scope());
                    if webhook.mode == WebhookMode::Async {
                        self.effects.push(call);
                        webhook.next.clone()
                    } else {
                        self.pending = Some(call);
                        return self.wait_at(task, node_id);
                    }
                }
                Some(Node::Logic(node)) => {
                    let scope = self.scope();
                    let (values, next) = logic::evaluate(node, &scope);
                    self.session.context.extend(values);
                    next
                }
                Some(Node::End(end)) => {
                    if let Some(text) = &end.text {
                        self.say(text);
                    }
                    let reason = match end.reason {
                        EndReason::Fulfilled => FULFILLED,
                        EndReason::Cancelled => CANCELLED,
                    };
                    return self.complete(task, reason);
                }
                None => None,
            };
            match next {
                Some(next) => node_id = next,
                None => break,
            }
        }
        self.complete(task, FULFILLED);
    }

    fn message(&mut self, message: &MessageNode) {
        for text in message.text.iter().chain(&message.messages) {
            self.say(text);
        }
        if let Some(object) = &message.template {
            let rendered = template::render_value(object, &self.scope());
            self.outputs.push(Output::Template(rendered));
        }
        if let Some(attachment) = &message.attachment {
            let url = template::render(&attachment.url, &self.scope());
            self.outputs.push(Output::Attachment { url, mime: attachment.mime.clone() });
        }
    }

    fn send_form(&mut self, form: &FormNode, retry: Option<(&Value, &[forms::Problem])>) {
        let scope = self.scope();
        let form = forms::definition(self.bot, form, &self.session.language, self.instance(), &scope, retry);
        self.outputs.push(Output::Form(form));
    }

    /// Applies a webhook's instructions; true when the flow must stop here.
    fn follow(&mut self, instructions: Instructions) -> bool {
        for output in &instructions.outputs {
            if let Output::Text(text) = output {
                self.transcript("Bot", text);
            }
        }
        self.outputs.extend(instructions.outputs);
        self.session.context.extend(instructions.context);
        instructions.stop
    }

    fn end_active(&mut self, reason: &str) {
        if let Some(task) = self.session.task.take().and_then(|a| self.bot.task(&a.task_id)) {
            self.complete(task, reason);
        }
    }

    fn complete(&mut self, task: &Task, reason: &str) {
        self.session.task = None;
        self.completion = Some(TaskCompletion {
            end_reason: reason.to_string(),
            completed_task_id: task.id.clone(),
            completed_task_name: task.name.clone(),
        });
    }

    fn say(&mut self, text: &Text) {
        let template = self.bot.localize(text, &self.session.language, self.instance());
        // Most texts have no placeholder: they need no scope built.
        let rendered =
            if template.contains("{{") { template::render(template, &self.scope()) } else { template.to_string() };
        self.transcript("Bot", &rendered);
        self.outputs.push(Output::Text(rendered));
    }

    fn say_or(&mut self, text: Option<&Text>, default: &str) {
        match text {
            Some(text) => self.say(text),
            None => self.say_plain(default),
        }
    }

    /// A built-in or received text, said as it is (no templates).
    fn say_plain(&mut self, text: &str) {
        self.transcript("Bot", text);
        self.outputs.push(Output::Text(text.to_string()));
    }

    /// The `Bot:` / `User:` lines webhook nodes send as `conversation`
    /// (kept only for a bot that has one).
    fn transcript(&mut self, who: &str, text: &str) {
        if !self.bot.keeps_transcript() {
            return;
        }
        self.session.transcript.push(format!("{who}: {text}"), MAX_TRANSCRIPT_LINES, MAX_TRANSCRIPT_BYTES);
    }

    /// The instance whose text variants apply.
    fn instance(&self) -> Option<&'a str> {
        self.ctx.instance.as_deref()
    }

    /// What templates can read.
    fn scope(&self) -> Value {
        let mut context = self.session.context.clone();
        context.insert("session".into(), json!({"BotUserSession": {"lastMessage": self.session.last_message}}));
        json!({
            "context": context,
            "user": self.ctx.user,
            "tags": {
                "user": tag_map(&self.ctx.user_tags),
                "session": tag_map(&self.session.tags),
            },
        })
    }
}

fn tag_map(tags: &[Tag]) -> Map<String, Value> {
    tags.iter().map(|t| (t.name.clone(), t.value.clone())).collect()
}

#[cfg(test)]
mod tests;
