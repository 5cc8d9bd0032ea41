//! The dialog engine. Pure: given the bot, the session and the user's input it
//! returns the bot's outputs, the task completion and the new session. The
//! clock and fresh ids come in through [`TurnContext`]; no I/O happens here.

pub mod answer;
pub mod matcher;
pub mod template;

use serde_json::{Map, Value, json};

use crate::config::{Bot, Node, Task, Text};
use crate::protocol::{Tag, TaskCompletion};
use crate::session::{ActiveTask, Session};
use matcher::Utterance;

/// Guards against flows that loop without waiting for the user.
const MAX_STEPS_PER_TURN: usize = 100;
/// Validation's bound on consecutive messages; with the cancel, re-prompt and
/// question messages of a turn it keeps a turn's log within one store write.
pub const MAX_MESSAGES_IN_A_ROW: usize = 80;

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
    /// The full request message, kept as context.session.BotUserSession.lastMessage.
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
    pub user_tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Text(String),
    Event {
        val: &'static str,
        event_type: &'static str,
        description: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct Turn {
    pub outputs: Vec<Output>,
    /// The last task that ended in this turn.
    pub completion: Option<TaskCompletion>,
    /// None when the turn closed the session.
    pub session: Option<Session>,
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

    let mut run = Run {
        bot,
        ctx,
        session,
        outputs: Vec::new(),
        completion: None,
    };
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
        UserEvent::FormData(_) => run.fallback(),
    }
    Turn {
        outputs: run.outputs,
        completion: run.completion,
        session: Some(run.session),
    }
}

/// SESSION_CLOSURE: ends the session, saying whether there was one.
fn close(had_session: bool) -> Turn {
    let (event_type, description) = if had_session {
        ("SESSION_CLOSURE_SUCCESS", "session closed successfully")
    } else {
        ("SESSION_CLOSURE_IGNORED", "Active session doesn't exist")
    };
    Turn {
        outputs: vec![Output::Event {
            val: "SESSION_CLOSURE",
            event_type,
            description,
        }],
        completion: None,
        session: None,
    }
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
    ["payload", "text", "title"]
        .iter()
        .find_map(|k| val.get(k).and_then(Value::as_str))
        .map(String::from)
}

struct Run<'a> {
    bot: &'a Bot,
    ctx: &'a TurnContext,
    session: Session,
    outputs: Vec<Output>,
    completion: Option<TaskCompletion>,
}

impl Run<'_> {
    fn on_text(&mut self, text: &str) {
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

    fn fallback(&mut self) {
        let fallback = self.bot.def.fallback.clone();
        self.say_or(fallback.as_ref(), "Sorry, I didn't understand that.");
    }

    /// Starts a task; a task still running is ended as Interrupted.
    fn start(&mut self, task: &Task) {
        if self.session.task.is_some() {
            self.end_active(INTERRUPTED);
        }
        self.run_from(task, &task.start);
    }

    fn answer(&mut self, active: ActiveTask, text: &str) {
        let Some((task, Node::Question(question))) = self
            .bot
            .task(&active.task_id)
            .and_then(|t| t.nodes.get(&active.node_id).map(|n| (t, n)))
        else {
            // The definition changed under a running session: start afresh.
            self.session.task = None;
            return self.fallback();
        };
        match answer::parse(question, text) {
            Ok(value) => {
                self.session.context.insert(question.field.clone(), value);
                self.session.task = None;
                match &question.next {
                    Some(next) => self.run_from(task, next),
                    None => self.complete(task, FULFILLED),
                }
            }
            Err(kind) => {
                self.session.task = Some(active);
                let default = format!("Sorry, that doesn't look like a valid {kind}.");
                self.say_or(question.retry_prompt.as_ref(), &default);
                self.say(&question.prompt);
            }
        }
    }

    fn run_from(&mut self, task: &Task, start: &str) {
        let mut node_id = start.to_string();
        for _ in 0..MAX_STEPS_PER_TURN {
            let next = match task.nodes.get(&node_id) {
                Some(Node::Message(message)) => {
                    for text in message.text.iter().chain(&message.messages) {
                        self.say(text);
                    }
                    message.next.clone()
                }
                Some(Node::Question(question)) => {
                    self.say(&question.prompt);
                    self.session.task = Some(ActiveTask {
                        task_id: task.id.clone(),
                        node_id,
                    });
                    return;
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

    fn end_active(&mut self, reason: &str) {
        if let Some(task) = self
            .session
            .task
            .take()
            .and_then(|a| self.bot.task(&a.task_id))
        {
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
        let template = self.bot.localize(text, &self.session.language);
        let rendered = template::render(template, &self.scope());
        self.outputs.push(Output::Text(rendered));
    }

    fn say_or(&mut self, text: Option<&Text>, default: &str) {
        match text {
            Some(text) => self.say(text),
            None => self.outputs.push(Output::Text(default.to_string())),
        }
    }

    /// What templates can read.
    fn scope(&self) -> Value {
        let mut context = self.session.context.clone();
        context.insert(
            "session".into(),
            json!({"BotUserSession": {"lastMessage": self.session.last_message}}),
        );
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
    tags.iter()
        .map(|t| (t.name.clone(), t.value.clone()))
        .collect()
}
