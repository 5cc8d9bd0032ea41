//! `hookline dead-letters`: the jobs that failed every attempt, listed or
//! moved back for another try, from an SQS dead-letter queue or from the
//! in-process queue of a running `hookline serve` (its `/dev/dead-letters`
//! routes, for this machine only: `this_machine`).

use std::io::{IsTerminal, Write};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hookline_core::adapters::queue::{MemoryQueue, SqsQueue};
use hookline_core::process::aws;
use serde_json::{Value, json};

use crate::CliError;
use crate::this_machine::{self, DEV_HEADER};

/// Jobs listed (the oldest first).
const SHOWN: usize = 10;

pub enum Source {
    Sqs { dlq_url: String, replay_to: Option<String>, endpoint: Option<String> },
    Serve { url: reqwest::Url, replay: bool },
}

pub async fn run(source: Source) -> Result<(), CliError> {
    match source {
        Source::Sqs { dlq_url, replay_to, endpoint } => {
            from_sqs(&dlq_url, replay_to.as_deref(), endpoint.as_deref()).await
        }
        Source::Serve { url, replay } => from_serve(&url, replay).await.map_err(CliError::DeadLetters),
    }
}

async fn from_sqs(dlq_url: &str, replay_to: Option<&str>, endpoint: Option<&str>) -> Result<(), CliError> {
    let client = aws::sqs_client(endpoint).await;
    let dlq = SqsQueue::new(client.clone(), dlq_url);
    if let Some(target) = replay_to {
        let progress = Progress::new(dlq.approximate_count().await?);
        println!("Moving about {} message(s) back to {target}", progress.total);
        let moved = dlq.move_messages(&SqsQueue::new(client, target), usize::MAX, |n| progress.show(n)).await;
        progress.end();
        println!("{} message(s) moved back to {target}", moved?);
        return Ok(());
    }
    let messages = dlq.peek(SHOWN as i32).await?;
    for message in &messages {
        println!("{} (received {} times)\n{}\n", message.message_id, message.receive_count, message.body);
    }
    println!("{} message(s) shown", messages.len());
    Ok(())
}

async fn from_serve(url: &reqwest::Url, replay: bool) -> Result<(), String> {
    let client = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let at = |path: &str| url.join(path).map_err(|e| format!("{url}: {e}"));
    let request = match replay {
        true => client.post(at("/dev/dead-letters/replay")?),
        false => client.get(at("/dev/dead-letters")?),
    };
    let request = request.header(DEV_HEADER, "1");
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or_default();
    if status == StatusCode::NOT_FOUND {
        return Err(format!(
            "{url} serves no in-process dead letters: `hookline serve` offers them on a loopback address, \
             with its in-process queue (for an SQS queue, give --dlq-url)"
        ));
    }
    if !status.is_success() {
        return Err(format!("{url} answered {status}: {}", answer["error"].as_str().unwrap_or_default()));
    }
    if replay {
        println!("{} message(s) moved back to the in-process queue of {url}", answer["replayed"]);
        return Ok(());
    }
    let letters = answer["deadLetters"].as_array().cloned().unwrap_or_default();
    for letter in letters.iter().take(SHOWN) {
        let text = |key: &str| letter[key].as_str().unwrap_or("?").to_string();
        println!("{} (group {})\n{}\n", text("dedupId"), text("group"), letter["job"]);
    }
    println!("{} message(s) shown of {}", letters.len().min(SHOWN), letters.len());
    Ok(())
}

/// A replay's progress: one line rewritten on a terminal, otherwise a line
/// at every tenth of the way.
struct Progress {
    total: usize,
    terminal: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self { total, terminal: std::io::stdout().is_terminal() }
    }

    fn show(&self, moved: usize) {
        // The count is approximate: never "11 of about 10".
        let total = self.total.max(moved);
        if self.terminal {
            print!("\rmoved {moved} of about {total}");
            let _ = std::io::stdout().flush();
        } else if moved.is_multiple_of((total / 10).max(1)) {
            println!("moved {moved} of about {total}");
        }
    }

    fn end(&self) {
        if self.terminal {
            println!();
        }
    }
}

/// `hookline serve`'s routes for its in-process queue's dead letters.
pub fn router(queue: MemoryQueue) -> Router {
    let api = Router::new()
        .route("/dev/dead-letters", get(list))
        .route("/dev/dead-letters/replay", post(replay))
        .with_state(queue);
    this_machine::only_here(Router::new(), api)
}

async fn list(State(queue): State<MemoryQueue>) -> Json<Value> {
    let letters: Vec<Value> =
        queue.dead_letters().iter().map(|m| json!({"dedupId": m.dedup_id, "group": m.group, "job": m.job})).collect();
    Json(json!({"count": letters.len(), "deadLetters": letters}))
}

async fn replay(State(queue): State<MemoryQueue>) -> Response {
    match queue.replay_dead_letters().await {
        Ok(replayed) => Json(json!({"replayed": replayed})).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e.to_string()}))).into_response(),
    }
}
