//! In-process queue for the embedded local mode: the same order per group,
//! deduplication, retries with backoff and a dead-letter list as the SQS
//! FIFO queue, served by the same worker.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;

use super::{Queue, QueueMessage};
use crate::error::{Error, Result};
use crate::worker::{Worker, backoff};

/// Deduplication ids remembered, like SQS's five-minute window but by count.
const DEDUP_MEMORY: usize = 10_000;

#[derive(Default)]
struct Inner {
    /// Messages waiting per group; a group is present while its runner runs.
    groups: HashMap<String, VecDeque<QueueMessage>>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    dead_letters: Vec<QueueMessage>,
}

#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Mutex<Inner>>,
    worker: Arc<OnceLock<Weak<Worker>>>,
    max_receives: u32,
}

impl MemoryQueue {
    /// A message is tried `max_receives` times before it is dead-lettered.
    pub fn new(max_receives: u32) -> Self {
        Self { inner: Arc::default(), worker: Arc::default(), max_receives: max_receives.max(1) }
    }

    /// Starts serving queued jobs with `worker`, including those sent before.
    pub fn start(&self, worker: &Arc<Worker>) {
        let _ = self.worker.set(Arc::downgrade(worker));
        let groups: Vec<String> = self.lock().map(|i| i.groups.keys().cloned().collect()).unwrap_or_default();
        for group in groups {
            self.spawn_runner(group);
        }
    }

    /// Messages that failed every attempt, oldest first.
    pub fn dead_letters(&self) -> Vec<QueueMessage> {
        self.lock().map(|i| i.dead_letters.clone()).unwrap_or_default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner.lock().map_err(|_| Error::Internal("memory queue lock poisoned".into()))
    }

    fn spawn_runner(&self, group: String) {
        let queue = self.clone();
        tokio::spawn(async move { queue.run_group(group).await });
    }

    /// Runs a group's messages one at a time until none is left.
    async fn run_group(self, group: String) {
        loop {
            let Some(worker) = self.worker.get().and_then(Weak::upgrade) else { return };
            let Some(message) = self.lock().ok().and_then(|i| i.groups.get(&group).and_then(|q| q.front().cloned()))
            else {
                return;
            };
            let mut receive = 1;
            loop {
                match worker.handle(&message.job).await {
                    Ok(()) => break,
                    Err(retry) if receive >= self.max_receives => {
                        tracing::error!(
                            reason = %retry.reason,
                            job = %serde_json::to_string(&message.job).unwrap_or_default(),
                            "job failed every attempt: dead-lettered"
                        );
                        if let Ok(mut inner) = self.lock() {
                            inner.dead_letters.push(message.clone());
                        }
                        break;
                    }
                    Err(retry) => {
                        tokio::time::sleep(retry.after.unwrap_or_else(|| backoff(worker.retry_base(), receive))).await;
                        receive += 1;
                    }
                }
            }
            let Ok(mut inner) = self.lock() else { return };
            let queue = inner.groups.entry(group.clone()).or_default();
            queue.pop_front();
            if queue.is_empty() {
                inner.groups.remove(&group);
                return;
            }
        }
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, messages: &[QueueMessage]) -> Result<()> {
        let mut start = Vec::new();
        {
            let mut inner = self.lock()?;
            for message in messages {
                if !inner.seen.insert(message.dedup_id.clone()) {
                    continue;
                }
                inner.seen_order.push_back(message.dedup_id.clone());
                if inner.seen_order.len() > DEDUP_MEMORY
                    && let Some(old) = inner.seen_order.pop_front()
                {
                    inner.seen.remove(&old);
                }
                let queue = inner.groups.entry(message.group.clone()).or_default();
                if queue.is_empty() {
                    start.push(message.group.clone());
                }
                queue.push_back(message.clone());
            }
        }
        if self.worker.get().is_some() {
            for group in start {
                self.spawn_runner(group);
            }
        }
        Ok(())
    }
}
