//! A raw reqwest loop: the ceiling for POSTing an asynchronous instance's
//! deliveries. USERS tasks share one client; each POSTs its user's
//! deliveries one after another, in order, as the product's worker does
//! within a conversation: for each of its messages (MESSAGES in all, dealt
//! round-robin to users `delivery-0`, `delivery-1`, ...), the message and its
//! end of turn, in the shapes and sizes of the product's v2 bodies (the
//! `delivery` row's bot: a text echoing "hello N", a task that completes),
//! with Standard Webhooks headers of the same sizes (not real signatures).
//! Nothing else: no queue, no state, no turn.
//!
//!     delivery-loop URL USERS MESSAGES

use std::time::Instant;

use serde_json::json;

const BOT: &str = "st-bench";
/// A signature's size: `v1,` and a base64 HMAC-SHA256.
const SIGNATURE: &str = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// A user's deliveries in order: each message's body, then its end of turn,
/// with their webhook-ids.
fn deliveries(user: usize, numbers: impl Iterator<Item = usize>) -> Vec<(String, Vec<u8>)> {
    let to = format!("delivery-{user}");
    numbers
        .flat_map(|n| {
            // The sizes of a uuid v4 and of a trace id.
            let message_id = format!("ms-{user:08x}-0000-4000-8000-{n:012x}");
            let message = json!({
                "to": to, "from": BOT,
                "data": [{"type": "text", "val": format!("hello {n}"), "createdOn": "2026-01-01T00:00:00.000Z",
                          "messageId": message_id}],
                "partialMessage": true, "_v": "v2",
            });
            let end = json!({
                "to": to, "from": BOT, "endOfTask": true, "endReason": "Fulfilled", "completedTaskId": "echo",
                "completedTaskName": "echo", "endOfMessage": true, "data": [], "_v": "v2",
            });
            [
                (format!("msg_{message_id}"), serde_json::to_vec(&message).expect("json")),
                (format!("end_tr-{user:016x}{n:016x}"), serde_json::to_vec(&end).expect("json")),
            ]
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("URL");
    let users: usize = args.next().expect("USERS").parse().expect("USERS: a number");
    let messages: usize = args.next().expect("MESSAGES").parse().expect("MESSAGES: a number");
    let client = reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("Hookbench/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("client");
    let started = Instant::now();
    let tasks: Vec<_> = (0..users)
        .map(|user| {
            let (client, url) = (client.clone(), url.clone());
            // Message i goes to user i % users, numbered from 1 within its user.
            let numbers = 1..=(messages / users + usize::from(user < messages % users));
            let deliveries = deliveries(user, numbers);
            tokio::spawn(async move {
                for (webhook_id, body) in deliveries {
                    let response = client
                        .post(&url)
                        .header("webhook-id", webhook_id)
                        .header("webhook-timestamp", timestamp())
                        .header("webhook-signature", SIGNATURE)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("POST");
                    let status = response.status();
                    response.bytes().await.expect("answer");
                    assert!(status.is_success(), "the sink answered {status}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a user's task");
    }
    println!("{:.3}", started.elapsed().as_secs_f64());
}

/// Seconds since the epoch, as the webhook-timestamp header carries them.
fn timestamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_secs().to_string()
}
