//! In-process queue for the embedded local mode: the same order per group,
//! deduplication, retries with backoff and a dead-letter list as the SQS
//! FIFO queue, its jobs run by the same handler (the worker).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::app::queue::{Job, JobHandler, Queue, QueueMessage, backoff};
use crate::error::{Error, Result};

/// Deduplication ids are remembered for SQS's five minutes, the latest
/// 10,000 at most (a repeat older than those is run again, at least once).
const DEDUP_WINDOW: Duration = Duration::from_secs(300);
const MAX_DEDUP_IDS: usize = 10_000;
/// The longest wait before an attempt, as SQS's longest visibility timeout would allow.
const MAX_WAIT: Duration = Duration::from_secs(12 * 3600);
/// Jobs waiting at most before a new message is refused (its client is
/// told). What follows a message already accepted (its deliveries, a call's
/// continuation) is always taken: refusing it would lose it.
pub const MAX_BACKLOG: usize = 10_000;
/// Dead letters kept, the latest: older ones are dropped with a log line.
const MAX_DEAD_LETTERS: usize = 1000;

#[derive(Default)]
struct Inner {
    /// Messages waiting per group; a group is present while its runner
    /// runs. Shared with the runner running the first, not copied.
    groups: HashMap<String, VecDeque<Arc<QueueMessage>>>,
    /// Messages in `groups`, counted as they come and go.
    waiting: usize,
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
        self.lock().map(|i| i.waiting).unwrap_or_default()
    }

    /// Messages that failed every attempt, oldest first.
    pub fn dead_letters(&self) -> Vec<QueueMessage> {
        self.lock().map(|i| i.dead_letters.clone()).unwrap_or_default()
    }

    /// Sends every dead letter back for another try, each in its group and
    /// under a fresh deduplication id (the original may still be remembered);
    /// returns how many. Refused (the queue full), they stay dead letters.
    pub async fn replay_dead_letters(&self) -> Result<usize> {
        let letters = std::mem::take(&mut self.lock()?.dead_letters);
        let again: Vec<QueueMessage> = letters
            .iter()
            .map(|m| QueueMessage { dedup_id: format!("replay-{}", crate::ids::random_uuid().simple()), ..m.clone() })
            .collect();
        if let Err(e) = self.send(&again).await {
            let mut inner = self.lock()?;
            let newer = std::mem::replace(&mut inner.dead_letters, letters);
            inner.dead_letters.extend(newer);
            return Err(e);
        }
        Ok(again.len())
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
                        crate::metrics::retried();
                        crate::metrics::dead_lettered();
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
                            inner.dead_letters.push(QueueMessage::clone(&message));
                        }
                        break;
                    }
                    Err(retry) => {
                        crate::metrics::retried();
                        let wait = retry.after.unwrap_or_else(|| backoff(retry_base, receive));
                        tokio::time::sleep(wait.min(MAX_WAIT)).await;
                        receive += 1;
                    }
                }
            }
            let Ok(mut inner) = self.lock() else { return };
            let queue = inner.groups.entry(group.clone()).or_default();
            let done = queue.pop_front().is_some();
            let empty = queue.is_empty();
            inner.waiting -= usize::from(done);
            if empty {
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
                if now.duration_since(at) < DEDUP_WINDOW && inner.seen_order.len() < MAX_DEDUP_IDS {
                    break;
                }
                inner.seen_order.pop_front();
                inner.seen.remove(&id);
            }
            let new_message = messages.iter().any(|m| matches!(m.job, Job::Turn(_)));
            if new_message && inner.waiting + messages.len() > MAX_BACKLOG {
                tracing::warn!(waiting = inner.waiting, "the in-process queue is full: jobs refused");
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
                queue.push_back(Arc::new(message.clone()));
                inner.waiting += 1;
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
    use crate::app::queue::{QueuedAnswer, QueuedTurn};
    use crate::ids::ConversationKey;

    fn job(n: usize) -> QueueMessage {
        let key = ConversationKey::new("st-b", format!("u{}", n % 50));
        let job =
            Job::Resume { bot_id: "st-b".into(), user_id: key.user_id.clone(), app: None, poll_id: n.to_string() };
        QueueMessage::in_conversation(&key, format!("d{n}"), job)
    }

    fn new_message(n: usize) -> QueueMessage {
        let key = ConversationKey::new("st-b", "u0");
        let turn = QueuedTurn {
            bot_id: "st-b".into(),
            instance_id: "async".into(),
            user_id: "u0".into(),
            app: None,
            body: serde_json::json!({}),
            trace_id: format!("t{n}"),
            client_ip: None,
            answer: QueuedAnswer::PostUrl,
            merge_from: None,
        };
        QueueMessage::in_conversation(&key, format!("m{n}"), Job::Turn(turn))
    }

    #[tokio::test]
    async fn a_full_backlog_refuses_new_messages_whole_and_takes_what_follows_accepted_ones() {
        let queue = MemoryQueue::new(3);
        let all: Vec<QueueMessage> = (0..MAX_BACKLOG).map(job).collect();
        queue.send(&all).await.unwrap();
        assert_eq!(queue.backlog(), MAX_BACKLOG);
        let refused = queue.send(&[job(MAX_BACKLOG), new_message(0)]).await;
        assert!(matches!(refused, Err(Error::Storage(_))));
        assert_eq!(queue.backlog(), MAX_BACKLOG, "nothing of a refused send is queued");
        queue.send(&[job(MAX_BACKLOG), job(MAX_BACKLOG + 1)]).await.unwrap();
        assert_eq!(queue.backlog(), MAX_BACKLOG + 2, "a saved turn's jobs are taken");
    }

    /// Counts the jobs it runs.
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl JobHandler for Count {
        async fn handle(&self, _job: &Job) -> std::result::Result<(), crate::app::queue::Retry> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    async fn run(queue: &MemoryQueue, messages: &[QueueMessage]) {
        queue.send(messages).await.unwrap();
        while queue.backlog() > 0 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn deduplication_remembers_the_latest_ids_only() {
        let queue = MemoryQueue::new(1);
        let count = Arc::new(Count::default());
        queue.start(&count, Duration::from_millis(1));
        let all: Vec<QueueMessage> = (0..=MAX_DEDUP_IDS).map(job).collect();
        for batch in all.chunks(MAX_BACKLOG) {
            run(&queue, batch).await;
        }
        run(&queue, &all[MAX_DEDUP_IDS..]).await;
        assert_eq!(
            count.0.load(std::sync::atomic::Ordering::SeqCst),
            MAX_DEDUP_IDS + 1,
            "a recent id is not run twice"
        );
        assert!(queue.lock().unwrap().seen.len() <= MAX_DEDUP_IDS);
        run(&queue, &all[..1]).await;
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), MAX_DEDUP_IDS + 2, "the oldest was forgotten");
    }

    /// Fails every job while `failing` is set; counts those it runs.
    #[derive(Default)]
    struct Flaky {
        failing: std::sync::atomic::AtomicBool,
        ran: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl JobHandler for Flaky {
        async fn handle(&self, _job: &Job) -> std::result::Result<(), crate::app::queue::Retry> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(crate::app::queue::Retry { reason: "failing".into(), after: None });
            }
            self.ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn dead_letters_replayed_run_again_and_stay_when_refused() {
        let queue = MemoryQueue::new(2);
        let flaky = Arc::new(Flaky { failing: true.into(), ..Flaky::default() });
        queue.start(&flaky, Duration::from_millis(1));
        run(&queue, &[job(1), job(2), new_message(3)]).await;
        assert_eq!(queue.dead_letters().len(), 3);

        // As full as the queue gets: a new message is refused.
        queue.lock().unwrap().waiting = MAX_BACKLOG;
        let refused = queue.replay_dead_letters().await;
        assert!(matches!(refused, Err(Error::Storage(_))), "{refused:?}");
        assert_eq!(queue.dead_letters().len(), 3, "refused, they stay dead letters");
        queue.lock().unwrap().waiting = 0;

        flaky.failing.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(queue.replay_dead_letters().await.unwrap(), 3);
        assert!(queue.dead_letters().is_empty());
        while queue.backlog() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(flaky.ran.load(std::sync::atomic::Ordering::SeqCst), 3, "each ran again, under a new id");
    }
}
