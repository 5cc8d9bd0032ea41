//! One process serving everything: the local server (`hookline serve`) and
//! the integration tests wire every endpoint family and the worker over the
//! adapters they choose.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use super::settings::{ConfigError, Settings};
use crate::adapters::outbound::HttpOutbound;
use crate::api::{self, FilesState, PollState, WebhookState};
use crate::app::files::{Blobs, Files};
use crate::app::queue::Queue;
use crate::app::relay;
use crate::app::store::{Conversations, Stores};
use crate::app::turn::Turns;
use crate::app::worker::Worker;
use crate::definition::Registry;
use crate::error::Result;

/// How often the embedded server sweeps idle sessions: an asynchronous
/// instance hears of a session's closure at most this long after it is due.
pub const IDLE_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Every endpoint family's state and the worker, sharing one set of adapters.
pub struct Embedded {
    pub webhook: WebhookState,
    pub poll: PollState,
    pub files: FilesState,
    /// Runs the queue's jobs; a queue that runs them itself (the in-process
    /// one) must be started with it.
    pub worker: Arc<Worker>,
    conversations: Arc<dyn Conversations>,
}

impl Embedded {
    pub fn new(
        registry: Registry,
        stores: Stores,
        queue: Arc<dyn Queue>,
        blobs: Arc<dyn Blobs>,
        settings: Settings,
    ) -> Result<Self, ConfigError> {
        let bots = Arc::new(registry);
        let http = Arc::new(settings.http);
        let outbound = Arc::new(HttpOutbound::new());
        let conversations = stores.conversations.clone();
        let turns = Arc::new(Turns::new(conversations.clone(), outbound.clone()));
        let webhook = WebhookState {
            bots: bots.clone(),
            turns: turns.clone(),
            queue: queue.clone(),
            files: stores.files.clone(),
            seen_tokens: stores.seen_tokens.clone(),
            counters: stores.counters.clone(),
            keys: stores.keys.clone(),
            http: http.clone(),
        };
        let poll = PollState {
            bots: bots.clone(),
            polls: stores.polls.clone(),
            conversations: stores.conversations.clone(),
            queue: queue.clone(),
            seen_tokens: stores.seen_tokens.clone(),
            http: http.clone(),
        };
        let files = Files::new(stores.files, blobs, stores.counters.clone(), settings.files);
        let (seen_tokens, keys) = (stores.seen_tokens, stores.keys.clone());
        let files = FilesState { bots: bots.clone(), files, seen_tokens, keys, http };
        let worker = Worker::new(bots, turns, stores.polls, queue, outbound, settings.worker);
        Ok(Self { webhook, poll, files, worker, conversations })
    }

    /// Relays what saved turns owe (`app::relay`) from the store's changes,
    /// as the worker function's stream event source does on AWS: `false`
    /// when the store gives none (a DynamoDB store not reading its stream).
    pub async fn start_relay(&self) -> Result<bool> {
        let Some(changes) = self.conversations.changes().await? else {
            return Ok(false);
        };
        tokio::spawn(relay::relay_changes(self.worker.clone(), changes));
        Ok(true)
    }

    /// Every endpoint.
    pub fn router(&self) -> Router {
        api::app(self.webhook.clone(), self.poll.clone(), self.files.clone())
    }

    /// What [`Embedded::router`] serves, route by route.
    pub fn routes(&self) -> Vec<api::Route> {
        api::app_routes(self.webhook.clone(), self.poll.clone(), self.files.clone()).listed().to_vec()
    }
}

/// Queues the closure of idle sessions every `every` until the task is
/// dropped: what the worker function's schedule does on AWS.
pub async fn sweep_idle_sessions(worker: Arc<Worker>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = worker.sweep_idle(chrono::Utc::now().timestamp()).await {
            tracing::warn!(error = %e, "sweeping idle sessions failed; the next sweep tries again");
        }
    }
}
