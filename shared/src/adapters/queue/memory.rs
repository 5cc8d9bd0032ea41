//! In-process queue for the embedded local mode: the same order per group,
//! deduplication, retries with backoff and a dead-letter list as the SQS
//! FIFO queue, its jobs run by the same handler (the worker).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::app::queue::{JobHandler, Queue, QueueMessage, backoff};
use crate::error::{Error, Result};

/// Deduplication ids are remembered for SQS's five minutes.
const DEDUP_WINDOW: Duration = Duration::from_secs(300);
/// The longest wait before an attempt, as SQS's longest visibility timeout would allow.
const MAX_WAIT: Duration = Duration::from_secs(12 * 3600);
/// Jobs waiting at most: beyond, a send is refused (the client is told,
/// nothing accepted is dropped).
pub const MAX_BACKLOG: usize = 10_000;
/// Dead letters kept, the latest: older ones are dropped with a log line.
const MAX_DEAD_LETTERS: usize = 1000;

#[derive(Default)]
struct Inner {
    /// Messages waiting per group; a group is present while its runner runs.
    groups: HashMap<String, VecDeque<QueueMessage>>,
    seen: HashSet<String>,
    seen_order: VecDeque<(Instant, String)>,
    dead_letters: Vec<QueueMessage>,
    /// Set once by `start`; runners are spawned only after that.
    handler: Option<Runner>,
}

/// Who runs the jobs, and the first wait before a failed one runs again.
#[derive(Clone)]
struct Runner {
    handler: Weak<dyn JobHandler>,
    retry_base: Duration,
}

#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Mutex<Inner>>,
    max_receives: u32,
}

impl MemoryQueue {
    /// A message is tried `max_receives` times before it is dead-lettered.
    pub fn new(max_receives: u32) -> Self {
        Self { inner: Arc::default(), max_receives: max_receives.max(1) }
    }

    /// Starts running queued jobs with `handler`, including those sent
    /// before; a failed job waits `retry_base`, doubled each time.
    pub fn start<H: JobHandler + 'static>(&self, handler: &Arc<H>, retry_base: Duration) {
        let handler: Weak<dyn JobHandler> = Arc::downgrade(handler) as Weak<dyn JobHandler>;
        // Under the lock that `send` takes: each group gets exactly one runner.
        let groups: Vec<String> = match self.lock() {
            Ok(mut inner) if inner.handler.is_none() => {
                inner.handler = Some(Runner { handler, retry_base });
                inner.groups.keys().cloned().collect()
            }
            _ => Vec::new(),
        };
        for group in groups {
            self.spawn_runner(group);
        }
    }

    /// Messages queued or running, not yet done (nor dead-lettered).
    pub fn backlog(&self) -> usize {
        self.lock().map(|i| i.groups.values().map(VecDeque::len).sum()).unwrap_or_default()
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
            let Some((handler, retry_base, message)) = self.lock().ok().and_then(|inner| {
                let runner = inner.handler.as_ref()?;
                let handler = runner.handler.upgrade()?;
                Some((handler, runner.retry_base, inner.groups.get(&group)?.front()?.clone()))
            }) else {
                return;
            };
            let mut receive = 1;
            loop {
                match handler.handle(&message.job).await {
                    Ok(()) => break,
                    Err(retry) if receive >= self.max_receives => {
                        tracing::error!(
                            reason = %retry.reason,
                            job = %serde_json::to_string(&message.job).unwrap_or_default(),
                            "job failed every attempt: dead-lettered"
                        );
                        if let Ok(mut inner) = self.lock() {
                            if inner.dead_letters.len() >= MAX_DEAD_LETTERS {
                                let dropped = inner.dead_letters.remove(0);
                                tracing::warn!(
                                    job = %serde_json::to_string(&dropped.job).unwrap_or_default(),
                                    "{MAX_DEAD_LETTERS} dead letters kept: the oldest was dropped"
                                );
                            }
                            inner.dead_letters.push(message.clone());
                        }
                        break;
                    }
                    Err(retry) => {
                        let wait = retry.after.unwrap_or_else(|| backoff(retry_base, receive));
                        tokio::time::sleep(wait.min(MAX_WAIT)).await;
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
            let now = Instant::now();
            while let Some((at, id)) = inner.seen_order.front().cloned() {
                if now.duration_since(at) < DEDUP_WINDOW {
                    break;
                }
                inner.seen_order.pop_front();
                inner.seen.remove(&id);
            }
            let waiting: usize = inner.groups.values().map(VecDeque::len).sum();
            if waiting + messages.len() > MAX_BACKLOG {
                tracing::warn!(waiting, "the in-process queue is full: jobs refused");
                return Err(Error::Storage(format!("the in-process queue holds {MAX_BACKLOG} jobs at most")));
            }
            for message in messages {
                if !inner.seen.insert(message.dedup_id.clone()) {
                    continue;
                }
                inner.seen_order.push_back((now, message.dedup_id.clone()));
                let queue = inner.groups.entry(message.group.clone()).or_default();
                if queue.is_empty() {
                    start.push(message.group.clone());
                }
                queue.push_back(message.clone());
            }
            if inner.handler.is_none() {
                // `start` spawns the runners.
                start.clear();
            }
        }
        for group in start {
            self.spawn_runner(group);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::queue::Job;
    use crate::ids::ConversationKey;

    fn job(n: usize) -> QueueMessage {
        let key = ConversationKey::new("st-b", format!("u{}", n % 50));
        let job =
            Job::Resume { bot_id: "st-b".into(), user_id: key.user_id.clone(), app: None, poll_id: n.to_string() };
        QueueMessage::in_conversation(&key, format!("d{n}"), job)
    }

    #[tokio::test]
    async fn the_backlog_is_bounded_and_a_send_beyond_it_refused_whole() {
        let queue = MemoryQueue::new(3);
        let all: Vec<QueueMessage> = (0..MAX_BACKLOG).map(job).collect();
        queue.send(&all).await.unwrap();
        assert_eq!(queue.backlog(), MAX_BACKLOG);
        assert!(matches!(queue.send(&[job(MAX_BACKLOG)]).await, Err(Error::Storage(_))));
        assert_eq!(queue.backlog(), MAX_BACKLOG, "nothing of a refused send is queued");
    }
}
