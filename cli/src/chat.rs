//! `hookline chat`: a terminal client for a bot's v2 webhook, local or
//! deployed. Each line typed is a message; the bot's answers are shown as
//! text (buttons, quick replies and carousels numbered: typing a number picks
//! one; forms listed with their fields, answered with `/form name=value ...`).
//! `/upload PATH [text]` uploads a file and sends it. It follows pollIds,
//! reads an asynchronous instance's replies from an inbox URL, and prints
//! each exchange's JSON with `--raw`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// The longest it waits for a polled or asynchronous answer.
const ANSWER_WAIT: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(500);

pub struct Options {
    /// The v2 webhook URL of the bot (and instance).
    pub webhook: reqwest::Url,
    /// The bot's single-request file upload URL.
    pub upload: reqwest::Url,
    pub token: String,
    pub user: String,
    /// Where an asynchronous instance's POST_URL deliveries can be read (a
    /// JSON array, as `hookline serve`'s demo inbox).
    pub inbox: Option<reqwest::Url>,
    pub raw: bool,
}

struct Chat {
    client: reqwest::Client,
    options: Options,
    /// What a number typed picks: the last answer's buttons, as (title, payload).
    choices: Vec<(String, String)>,
    /// The last form's id and its fields' names.
    form: Option<(String, Vec<String>)>,
    /// The inbox as last read: an inbox keeps only its latest entries, so
    /// once it is full the new ones are found by where the old ones went.
    seen: Vec<Value>,
}

pub async fn run(options: Options) -> Result<(), String> {
    let client = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let mut chat = Chat { client, options, choices: Vec::new(), form: None, seen: Vec::new() };
    if let Some(inbox) = chat.options.inbox.clone() {
        chat.seen = chat.inbox(&inbox).await?;
    }
    println!(
        "Talking to {} as {} (a number picks a button; /form name=value ...; /upload PATH [text]; /quit)",
        chat.options.webhook, chat.options.user
    );
    let mut lines = std::io::stdin().lock().lines();
    let prompt = std::io::stdin().is_terminal();
    loop {
        if prompt {
            print!("> ");
            let _ = std::io::stdout().flush();
        }
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim();
        let message = match line {
            "" => continue,
            "/quit" => break,
            _ if line == "/upload" || line.starts_with("/upload ") => chat.upload(line["/upload".len()..].trim()).await,
            _ => chat.message(line),
        };
        let message = match message {
            Ok(message) => message,
            Err(problem) => {
                println!("! {problem}");
                continue;
            }
        };
        if let Err(problem) = chat.send(message).await {
            println!("! {problem}");
        }
    }
    Ok(())
}

impl Chat {
    /// The v2 `message` for what the user typed.
    fn message(&self, line: &str) -> Result<Value, String> {
        if let Some(fields) = line.strip_prefix("/form").filter(|rest| rest.is_empty() || rest.starts_with(' ')) {
            let (form_id, names) = self.form.as_ref().ok_or("no form to answer")?;
            let mut data = Vec::new();
            for field in fields.split_whitespace() {
                let (name, value) = field.split_once('=').ok_or(format!("{field}: give name=value"))?;
                if !names.iter().any(|n| n == name) {
                    return Err(format!("the form has no field {name} (it has {})", names.join(", ")));
                }
                data.push(json!({"componentId": name, "input": value}));
            }
            return Ok(json!({"type": "formData", "val": {"formId": form_id, "data": data, "meta": {}}}));
        }
        if let Ok(n) = line.parse::<usize>()
            && let Some((_, payload)) = n.checked_sub(1).and_then(|i| self.choices.get(i))
        {
            return Ok(json!({"type": "text", "val": payload}));
        }
        Ok(json!({"type": "text", "val": line}))
    }

    /// Uploads the file (one multipart request); the message that sends it.
    async fn upload(&self, command: &str) -> Result<Value, String> {
        let (path, text) = command.split_once(' ').unwrap_or((command, ""));
        if path.is_empty() {
            return Err("/upload PATH [text]".into());
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let filename = std::path::Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or("file");
        // Its name goes in a quoted header parameter.
        let filename: String = filename.chars().filter(|c| !matches!(c, '"' | '\\' | '\r' | '\n')).collect();
        let boundary = format!("hookline-chat-{}", hookline_core::ids::random_uuid().simple());
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"\r\n\r\n{filename}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = self
            .client
            .post(self.options.upload.clone())
            .bearer_auth(&self.options.token)
            .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(body);
        let uploaded = self.exchange(request).await?;
        let file_id = uploaded["fileId"].as_str().ok_or(format!("no fileId in {uploaded}"))?;
        println!("   (uploaded {filename}: {file_id})");
        let text = if text.is_empty() { filename.as_str() } else { text };
        Ok(json!({"type": "text", "val": text, "attachments": [{"fileId": file_id}]}))
    }

    async fn send(&mut self, message: Value) -> Result<(), String> {
        // A number picks from the next answer's buttons only.
        self.choices.clear();
        let body = json!({"message": message, "from": {"id": self.options.user}});
        self.show_raw(">", &body);
        let request = self.client.post(self.options.webhook.clone()).bearer_auth(&self.options.token).json(&body);
        let mut answer = self.exchange(request).await?;
        let started = Instant::now();
        loop {
            self.show(&answer);
            if answer["status"] == "ok" && answer.get("data").is_none() {
                return self.await_inbox().await;
            }
            let Some(poll_id) = answer["pollId"].as_str().map(String::from) else { return Ok(()) };
            // The answer's messages are shown; the rest comes through the poll.
            let url = format!("{}/poll/{poll_id}", self.options.webhook.as_str().trim_end_matches('/'));
            loop {
                if started.elapsed() > ANSWER_WAIT {
                    return Err(format!("no answer to poll {poll_id} within {ANSWER_WAIT:?}"));
                }
                tokio::time::sleep(POLL_EVERY).await;
                let polled = self.exchange(self.client.get(&url).bearer_auth(&self.options.token)).await?;
                if polled["status"] != "Inprogress" {
                    answer = polled;
                    break;
                }
            }
        }
    }

    /// One request; its JSON answer, or what went wrong in the envelope's words.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Value, String> {
        let response = request.send().await.map_err(|e| format!("no answer: {e}"))?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| format!("{status}, not JSON: {e}"))?;
        self.show_raw("<", &answer);
        match answer["errors"][0]["msg"].as_str() {
            Some(msg) if !status.is_success() => Err(format!("{status}: {msg}")),
            _ => Ok(answer),
        }
    }

    /// An asynchronous instance's replies, from the inbox, until the turn's end.
    async fn await_inbox(&mut self) -> Result<(), String> {
        let Some(inbox) = self.options.inbox.clone() else {
            println!("(acknowledged: the replies go to the instance's POST_URL; give --inbox to read them here)");
            return Ok(());
        };
        let started = Instant::now();
        while started.elapsed() < ANSWER_WAIT {
            let entries = self.inbox(&inbox).await?;
            // The fewest entries dropped from the front that leave the rest
            // of what was seen at the start of what is there now.
            let dropped = (0..=self.seen.len()).find(|&d| entries.starts_with(&self.seen[d..])).unwrap_or(0);
            let new: Vec<Value> = entries[self.seen.len() - dropped..].to_vec();
            self.seen = entries;
            let mut ended = false;
            let user = self.options.user.clone();
            for entry in new.iter().filter(|e| e["to"] == user.as_str()) {
                self.show_raw("<", entry);
                self.show(entry);
                ended |= entry["endOfMessage"] == true;
            }
            if ended {
                return Ok(());
            }
            tokio::time::sleep(POLL_EVERY / 5).await;
        }
        Err(format!("no end of turn in {inbox} within {ANSWER_WAIT:?}"))
    }

    async fn inbox(&self, inbox: &reqwest::Url) -> Result<Vec<Value>, String> {
        let response = self.client.get(inbox.clone()).send().await.map_err(|e| format!("{inbox}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{inbox} answered {}: give --inbox where the replies can be read", response.status()));
        }
        let entries: Value = response.json().await.map_err(|e| format!("{inbox}: not JSON: {e}"))?;
        Ok(entries.as_array().cloned().unwrap_or_default())
    }

    fn show_raw(&self, direction: &str, value: &Value) {
        if self.options.raw {
            println!("{direction} {value}");
        }
    }

    /// The bot's messages of an answer, as text.
    fn show(&mut self, answer: &Value) {
        let mut choices = Vec::new();
        for item in answer["data"].as_array().into_iter().flatten() {
            let val = &item["val"];
            match item["type"].as_str().unwrap_or_default() {
                "text" => println!("bot: {}", val.as_str().unwrap_or_default()),
                "template" => show_template(&val["payload"], &mut choices),
                "attachment" => println!(
                    "bot: [file {} {}]",
                    val["mime"].as_str().unwrap_or("?"),
                    val["url"].as_str().unwrap_or("?")
                ),
                "form" => self.form = Some(show_form(val)),
                "event" => println!("bot: [event {}]", val.as_str().unwrap_or_default()),
                other => println!("bot: [{other}]"),
            }
        }
        // A v2 answer carries its form beside the messages.
        if let Some(form) = answer.get("form").filter(|f| f.is_object()) {
            self.form = Some(show_form(form));
        }
        if !choices.is_empty() {
            self.choices = choices;
        }
        if answer["endOfTask"] == true
            && let Some(reason) = answer["endReason"].as_str()
        {
            println!("   (end of task: {reason})");
        }
    }
}

/// A Kore template: its text, then its buttons, quick replies or elements
/// numbered in one list.
fn show_template(payload: &Value, choices: &mut Vec<(String, String)>) {
    let kind = payload["template_type"].as_str().unwrap_or("?");
    if let Some(text) = payload["text"].as_str() {
        println!("bot: {text}");
    }
    let mut offer = |button: &Value, indent: &str| {
        let title = button["title"].as_str().unwrap_or("?").to_string();
        let payload = button["payload"].as_str().or(button["value"].as_str()).unwrap_or(&title).to_string();
        println!("{indent}[{}] {title}", choices.len() + 1);
        choices.push((title, payload));
    };
    for button in payload["buttons"].as_array().into_iter().chain(payload["quick_replies"].as_array()).flatten() {
        offer(button, "  ");
    }
    for element in payload["elements"].as_array().into_iter().flatten() {
        let title = element["title"].as_str().unwrap_or_default();
        let subtitle = element["subtitle"].as_str().map(|s| format!(": {s}")).unwrap_or_default();
        println!("  - {title}{subtitle}");
        for button in element["buttons"].as_array().into_iter().flatten() {
            offer(button, "      ");
        }
    }
    if payload["buttons"].is_null() && payload["quick_replies"].is_null() && payload["elements"].is_null() {
        println!("bot: [{kind} template]");
    }
}

/// A form's title and fields; its id and the fields' names.
fn show_form(form: &Value) -> (String, Vec<String>) {
    let definition = &form["formDef"];
    println!("bot: form \"{}\"", definition["displayName"].as_str().unwrap_or_default());
    let prefilled: Map<String, Value> = form["formInitialization"]["valueMap"].as_object().cloned().unwrap_or_default();
    let mut names = Vec::new();
    for component in definition["components"].as_array().into_iter().flatten() {
        let meta = &component["metaData"];
        let Some(name) = component["name"].as_str().filter(|_| component["type"] != "button") else { continue };
        let required = if meta["required"] == true { ", required" } else { "" };
        let options: Vec<&str> =
            meta["values"].as_array().into_iter().flatten().filter_map(|o| o["value"].as_str()).collect();
        let options = if options.is_empty() { String::new() } else { format!(", one of {}", options.join("|")) };
        let value = prefilled.get(name).map(|v| format!(" = {v}")).unwrap_or_default();
        println!("  {name} ({}{required}{options}){value}", meta["type"].as_str().unwrap_or("?"));
        names.push(name.to_string());
    }
    for error in form["errors"].as_array().into_iter().flatten() {
        println!("  ! {}: {}", error["componentId"].as_str().unwrap_or("?"), error["msg"].as_str().unwrap_or("?"));
    }
    println!("   (answer with /form {}=...)", names.first().map(String::as_str).unwrap_or("name"));
    (definition["_id"].as_str().unwrap_or_default().to_string(), names)
}
