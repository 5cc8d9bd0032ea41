//! In-process store for the embedded local mode.

mod expiring;
mod files;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use tokio::sync::mpsc::UnboundedSender;

use self::expiring::Expiring;
use crate::app::idempotency::{IdempotencyKeys, KeyRecord};
use crate::app::queue::QueueMessage;
use crate::app::records::{Conversation, LogEntry, PollRecord};
use crate::app::relay::{Changes, Owed};
use crate::app::store::{Conversations, Counters, Polls, SeenTokens, TurnWrite};
use crate::error::{Error, Result};
use crate::ids::ConversationKey;
use crate::text::json_len;

/// What the store may take by default, all its tables together (an
/// estimate, see `estimated_size`).
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;
/// A conversation keeps its latest log entries, as many as any client reads back.
const MAX_LOG_ENTRIES_KEPT: usize = 1000;
/// Jobs kept apart of a conversation's latest turns: the relay reads them
/// as soon as the turn is written.
const MAX_OUTBOX_KEPT: usize = 10;
/// Writes between two sweeps of expired conversations.
const WRITES_PER_SWEEP: u64 = 1000;

/// About what a record takes in memory: parsed JSON takes about twice its
/// text (the values, maps and their allocations), plus the table's own entry.
fn estimated_size<T: Serialize>(value: &T) -> usize {
    estimate(json_len(value))
}

/// The estimate for a value of `json_bytes` bytes of JSON.
fn estimate(json_bytes: usize) -> usize {
    2 * json_bytes.min(usize::MAX / 4) + 64
}

#[derive(Default)]
struct Entry {
    /// As written: shared with the readers and the relay, never changed in place.
    conversation: Arc<Conversation>,
    /// By seq, each with its estimated size.
    log: BTreeMap<u64, (LogEntry, usize)>,
    /// Jobs turns kept apart, by the version of their write: the latest few.
    outbox: BTreeMap<u64, Vec<QueueMessage>>,
    /// Its estimated size: the conversation's, its log entries' and its outbox's.
    bytes: usize,
    log_bytes: usize,
    outbox_bytes: usize,
    /// Unix seconds after which it goes, as the DynamoDB items' TTL.
    expires_at: i64,
    /// When it was last written, in `Table::lru`.
    stamp: u64,
}

/// Conversations, bounded: each goes when it expires, and beyond the byte
/// budget the least recently written go first (a log line says so).
#[derive(Default)]
struct Table {
    entries: HashMap<ConversationKey, Entry>,
    lru: BTreeMap<u64, ConversationKey>,
    stamp: u64,
    bytes: usize,
    writes: u64,
}

impl Table {
    /// Stores a checked write (prepared before the lock was taken) into
    /// `key`'s entry; returns what it replaced or dropped, to be freed once
    /// the locks are released.
    fn apply(&mut self, key: &ConversationKey, write: &TurnWrite<'_>, prepared: Prepared) -> Replaced {
        self.stamp += 1;
        let entry = self.entries.entry(key.clone()).or_default();
        let before = entry.bytes;
        let conversation = std::mem::replace(&mut entry.conversation, prepared.conversation);
        let mut log = Vec::new();
        for (log_entry, size) in prepared.log {
            entry.log_bytes += size;
            entry.log.insert(log_entry.seq, (log_entry, size));
        }
        while entry.log.len() > MAX_LOG_ENTRIES_KEPT {
            if let Some((_, (dropped, size))) = entry.log.pop_first() {
                entry.log_bytes -= size;
                log.push(dropped);
            }
        }
        if let Some(jobs) = write.owes.filter(|jobs| !jobs.is_empty()) {
            entry.outbox_bytes += estimated_size(&jobs);
            entry.outbox.insert(write.expected_version + 1, jobs.to_vec());
        }
        while entry.outbox.len() > MAX_OUTBOX_KEPT {
            if let Some((_, dropped)) = entry.outbox.pop_first() {
                entry.outbox_bytes -= estimated_size(&dropped);
            }
        }
        entry.bytes = estimate(prepared.conversation_bytes) + entry.log_bytes + entry.outbox_bytes;
        entry.expires_at = write.expires_at;
        self.lru.remove(&entry.stamp);
        entry.stamp = self.stamp;
        self.lru.insert(self.stamp, key.clone());
        self.bytes = self.bytes + entry.bytes - before;
        self.writes += 1;
        Replaced { _conversation: conversation, _log: log }
    }

    fn remove(&mut self, key: &ConversationKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.lru.remove(&entry.stamp);
            self.bytes -= entry.bytes;
        }
    }

    /// Drops expired conversations (every so many writes), then the least
    /// recently written beyond `max_bytes`, never those of the write just made.
    fn bound(&mut self, max_bytes: usize, keep: usize, now: i64) {
        if self.writes.is_multiple_of(WRITES_PER_SWEEP) {
            let expired: Vec<ConversationKey> =
                self.entries.iter().filter(|(_, e)| e.expires_at < now).map(|(k, _)| k.clone()).collect();
            for key in &expired {
                self.remove(key);
            }
        }
        // The least recently written first, never one of this write's (the
        // newest `keep`), nor one that waits for a call or has messages
        // queued: its poll would never be answered.
        let mut over = self.bytes.saturating_sub(max_bytes);
        let mut going = Vec::new();
        for key in self.lru.values().take(self.lru.len().saturating_sub(keep)) {
            if over == 0 {
                break;
            }
            let Some(entry) = self.entries.get(key) else { continue };
            if entry.conversation.pending.is_none() && entry.conversation.queued.is_empty() {
                over = over.saturating_sub(entry.bytes);
                going.push(key.clone());
            }
        }
        let evicted = going.len();
        for key in &going {
            self.remove(key);
        }
        if evicted > 0 {
            tracing::warn!(
                evicted,
                max_bytes,
                "the in-memory store is full: the least recently written conversations were dropped"
            );
        }
    }
}

#[derive(Serialize)]
struct Counter {
    value: Value,
    version: u64,
    expires_at: i64,
}

/// Conversations with their logs take at most half of the budget; each
/// table of records beside them a share of the rest.
pub struct MemoryStore {
    conversations: Mutex<Table>,
    /// The budget of `conversations`.
    max_bytes: usize,
    polls: Mutex<Expiring<String, PollRecord>>,
    files: Mutex<files::FileTables>,
    /// Single-use token ids.
    seen_tokens: Mutex<Expiring<String, ()>>,
    /// Per-user counters by name.
    counters: Mutex<Expiring<(ConversationKey, String), Counter>>,
    /// Idempotency-Key records by id.
    keys: Mutex<Expiring<String, KeyRecord>>,
    /// Where writes that owe deliveries go, once someone relays them.
    feed: Mutex<Option<UnboundedSender<Owed>>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_max_bytes(DEFAULT_MAX_BYTES)
    }
}

fn locked<T>(mutex: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    mutex.lock().map_err(|_| Error::Internal("memory store lock poisoned".into()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that takes at most about `max_bytes`.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        let share = max_bytes / 16;
        Self {
            conversations: Mutex::default(),
            max_bytes: max_bytes / 2,
            polls: Mutex::new(Expiring::new("poll records", 2 * share)),
            files: Mutex::new(files::FileTables::new(share)),
            seen_tokens: Mutex::new(Expiring::new("used token ids", share)),
            counters: Mutex::new(Expiring::new("counters", share)),
            keys: Mutex::new(Expiring::new("Idempotency-Key records", 2 * share)),
            feed: Mutex::default(),
        }
    }
}

/// A write's conversation and log entries as they will be stored, with
/// their sizes: made before the lock is taken.
struct Prepared {
    conversation: Arc<Conversation>,
    conversation_bytes: usize,
    log: Vec<(LogEntry, usize)>,
}

impl Prepared {
    fn of(write: &TurnWrite<'_>) -> Self {
        let conversation = Conversation { version: write.expected_version + 1, ..write.conversation.clone() };
        let conversation_bytes = write.conversation_bytes.unwrap_or_else(|| json_len(&conversation));
        let log = write.log.iter().map(|entry| (entry.clone(), estimated_size(entry))).collect();
        Self { conversation: Arc::new(conversation), conversation_bytes, log }
    }
}

/// What a write replaced or dropped, kept until the locks are released.
struct Replaced {
    _conversation: Arc<Conversation>,
    _log: Vec<LogEntry>,
}

fn insert_poll(polls: &mut Expiring<String, PollRecord>, record: &PollRecord) {
    polls.insert(record.poll_id.clone(), record.clone(), record.expires_at, now());
}

#[async_trait]
impl Conversations for MemoryStore {
    async fn load(&self, key: &ConversationKey) -> Result<Option<Conversation>> {
        let stored = locked(&self.conversations)?.entries.get(key).map(|e| e.conversation.clone());
        // Copied once the lock is released: other turns need not wait for it.
        Ok(stored.map(Arc::unwrap_or_clone))
    }

    async fn save_turns(&self, writes: &[(&ConversationKey, TurnWrite<'_>)]) -> Result<()> {
        // Copied and measured before the lock is taken, for the same reason.
        let prepared: Vec<Prepared> = writes.iter().map(|(_, write)| Prepared::of(write)).collect();
        // Declared before the locks: dropped (freed) after they are released.
        let mut replaced = Vec::with_capacity(writes.len());
        let mut conversations = locked(&self.conversations)?;
        for (key, write) in writes {
            let stored = conversations.entries.get(*key);
            if stored.map_or(0, |e| e.conversation.version) != write.expected_version {
                return Err(Error::Conflict);
            }
            if stored.is_some_and(|e| write.log.iter().any(|l| e.log.contains_key(&l.seq))) {
                return Err(Error::Storage("log entry already exists".into()));
            }
        }
        // Taken while the conversation lock is held: the write stays all-or-nothing.
        let mut polls = locked(&self.polls)?;
        let mut keys = locked(&self.keys)?;
        let now = now();
        let feed = locked(&self.feed)?;
        for ((key, write), prepared) in writes.iter().zip(prepared) {
            if let Some(record) = write.key {
                keys.insert(record.id.clone(), record.clone(), record.expires_at, now);
            }
            replaced.push(conversations.apply(key, write, prepared));
            for record in write.polls {
                insert_poll(&mut polls, record);
            }
            if let (Some(feed), Some(entry)) =
                (feed.as_ref().filter(|_| write.owes.is_some()), conversations.entries.get(*key))
            {
                // Under the lock: the feed has the writes in their order.
                let owed = Owed { key: (*key).clone(), conversation: Arc::clone(&entry.conversation) };
                if feed.send(owed).is_err() {
                    tracing::error!("the relay has stopped: what this turn owes is not queued");
                }
            }
        }
        conversations.bound(self.max_bytes, writes.len(), now);
        Ok(())
    }

    async fn read_log(&self, key: &ConversationKey, after_seq: Option<u64>, limit: usize) -> Result<Vec<LogEntry>> {
        let conversations = locked(&self.conversations)?;
        let Some(entry) = conversations.entries.get(key) else {
            return Ok(Vec::new());
        };
        let from = after_seq.map_or(0, |s| s + 1);
        Ok(entry.log.range(from..).take(limit).map(|(_, (e, _))| e.clone()).collect())
    }

    async fn read_outbox(&self, key: &ConversationKey, version: u64) -> Result<Vec<QueueMessage>> {
        let conversations = locked(&self.conversations)?;
        let jobs = conversations.entries.get(key).and_then(|e| e.outbox.get(&version));
        jobs.cloned().ok_or_else(|| Error::Storage(format!("no kept jobs of version {version}")))
    }

    async fn changes(&self) -> Result<Option<Box<dyn Changes>>> {
        let mut feed = locked(&self.feed)?;
        if feed.is_some() {
            return Ok(None);
        }
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        *feed = Some(sender);
        Ok(Some(Box::new(receiver)))
    }

    async fn idle_due(&self, now: i64, limit: usize) -> Result<Vec<(ConversationKey, i64)>> {
        let conversations = locked(&self.conversations)?;
        let mut due: Vec<(ConversationKey, i64)> = conversations
            .entries
            .iter()
            .filter_map(|(key, entry)| {
                let closure = entry.conversation.idle_closure.as_ref()?;
                (closure.due_at <= now).then(|| (key.clone(), closure.due_at))
            })
            .collect();
        due.sort_by_key(|(_, due_at)| *due_at);
        due.truncate(limit);
        Ok(due)
    }
}

#[async_trait]
impl Polls for MemoryStore {
    async fn put_poll(&self, record: &PollRecord) -> Result<()> {
        insert_poll(&mut *locked(&self.polls)?, record);
        Ok(())
    }

    async fn get_poll(&self, poll_id: &str) -> Result<Option<PollRecord>> {
        Ok(locked(&self.polls)?.get(&poll_id.to_string(), now()).cloned())
    }

    async fn record_poll_read(&self, poll_id: &str, reads: u32, now: i64) -> Result<bool> {
        let mut polls = locked(&self.polls)?;
        match polls.get_mut(&poll_id.to_string(), now) {
            Some(record) if record.reads == reads => {
                record.reads += 1;
                record.read_at.get_or_insert(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl SeenTokens for MemoryStore {
    async fn first_use(&self, id: &str, expires_at: i64) -> Result<bool> {
        let mut seen = locked(&self.seen_tokens)?;
        let now = now();
        if seen.get(&id.to_string(), now).is_some() {
            return Ok(false);
        }
        seen.insert(id.to_string(), (), expires_at, now);
        Ok(true)
    }
}

#[async_trait]
impl IdempotencyKeys for MemoryStore {
    async fn put_new_key(&self, record: &KeyRecord) -> Result<Option<KeyRecord>> {
        let mut keys = locked(&self.keys)?;
        let now = now();
        if let Some(existing) = keys.get(&record.id, now) {
            return Ok(Some(existing.clone()));
        }
        keys.insert(record.id.clone(), record.clone(), record.expires_at, now);
        Ok(None)
    }

    async fn take_over_key(&self, record: &KeyRecord, started_at: i64) -> Result<bool> {
        let mut keys = locked(&self.keys)?;
        let now = now();
        match keys.get(&record.id, now) {
            Some(existing) if existing.answer.is_none() && existing.started_at == started_at => {
                keys.insert(record.id.clone(), record.clone(), record.expires_at, now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn put_key(&self, record: &KeyRecord) -> Result<()> {
        locked(&self.keys)?.insert(record.id.clone(), record.clone(), record.expires_at, now());
        Ok(())
    }

    async fn forget_key(&self, record: &KeyRecord) -> Result<()> {
        let mut keys = locked(&self.keys)?;
        if keys.get(&record.id, now()).is_some_and(|k| k.answer.is_none() && k.started_at == record.started_at) {
            keys.remove(&record.id);
        }
        Ok(())
    }
}

#[async_trait]
impl Counters for MemoryStore {
    async fn load_counter(&self, key: &ConversationKey, name: &str) -> Result<(Option<Value>, u64)> {
        let counters = locked(&self.counters)?;
        Ok(match counters.get(&(key.clone(), name.to_string()), i64::MIN) {
            Some(counter) if counter.expires_at >= now() => (Some(counter.value.clone()), counter.version),
            Some(counter) => (None, counter.version),
            None => (None, 0),
        })
    }

    async fn save_counter(
        &self,
        key: &ConversationKey,
        name: &str,
        value: &Value,
        version: u64,
        expires_at: i64,
    ) -> Result<()> {
        let mut counters = locked(&self.counters)?;
        let id = (key.clone(), name.to_string());
        if counters.get(&id, i64::MIN).map_or(0, |c| c.version) != version {
            return Err(Error::Conflict);
        }
        counters.insert(id, Counter { value: value.clone(), version: version + 1, expires_at }, expires_at, now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::records::Direction;

    fn entry(seq: u64) -> LogEntry {
        LogEntry {
            seq,
            direction: Direction::In,
            message_id: format!("ms-{seq}"),
            trace_id: "tr".into(),
            created_on: String::new(),
            session_id: None,
            body: serde_json::Value::Null,
        }
    }

    fn user(n: usize) -> ConversationKey {
        ConversationKey::new("st-b", format!("u{n}"))
    }

    async fn write(store: &MemoryStore, key: &ConversationKey, version: u64, log: &[LogEntry], expires_at: i64) {
        let conversation = Conversation { next_seq: log.last().map_or(0, |e| e.seq + 1), ..Conversation::default() };
        let write = TurnWrite { log, ..TurnWrite::of(&conversation, version, expires_at) };
        store.save_turn(key, write).await.unwrap();
    }

    #[tokio::test]
    async fn beyond_its_budget_the_least_recently_written_conversations_go() {
        let entries: Vec<LogEntry> = (0..10).map(entry).collect();
        let one = estimated_size(&Conversation { next_seq: 10, version: 1, ..Conversation::default() })
            + entries.iter().map(estimated_size).sum::<usize>();
        // Three such conversations, one of them an entry longer.
        let budget = one * 3 + estimated_size(&entry(10)) + 64;
        // Conversations take half of the store's budget.
        let store = MemoryStore::with_max_bytes(2 * budget);
        let far = chrono::Utc::now().timestamp() + 3600;
        for n in 0..3 {
            write(&store, &user(n), 0, &entries, far).await;
        }
        // u0 written again: u1 is now the least recently written.
        write(&store, &user(0), 1, &[entry(10)], far).await;
        write(&store, &user(3), 0, &entries, far).await;
        assert!(store.load(&user(1)).await.unwrap().is_none(), "evicted");
        for n in [0, 2, 3] {
            assert!(store.load(&user(n)).await.unwrap().is_some(), "u{n} kept");
        }
        assert!(locked(&store.conversations).unwrap().bytes <= budget);
    }

    /// A conversation waiting for its call stays (its poll must be answered);
    /// the next least recently written goes instead.
    #[tokio::test]
    async fn a_conversation_waiting_for_a_call_is_never_dropped() {
        let entries: Vec<LogEntry> = (0..10).map(entry).collect();
        let one = estimated_size(&Conversation { next_seq: 10, version: 1, ..Conversation::default() })
            + entries.iter().map(estimated_size).sum::<usize>();
        let store = MemoryStore::with_max_bytes(2 * (one * 2 + 512));
        let far = chrono::Utc::now().timestamp() + 3600;
        let call = crate::engine::HttpCall {
            method: "GET".into(),
            url: "http://127.0.0.1/x".into(),
            headers: Vec::new(),
            body: None,
            timeout: std::time::Duration::from_secs(1),
            allow_private: true,
            max_response_bytes: 1024,
        };
        let pending = crate::app::records::PendingCall {
            poll_id: "p".into(),
            call,
            trace_id: "tr".into(),
            calls: 1,
            instance_id: None,
            texts_instance: None,
        };
        let waiting = Conversation { next_seq: 10, pending: Some(pending), ..Conversation::default() };
        let first = TurnWrite { log: &entries, ..TurnWrite::of(&waiting, 0, far) };
        store.save_turn(&user(0), first).await.unwrap();
        write(&store, &user(1), 0, &entries, far).await;
        write(&store, &user(2), 0, &entries, far).await;
        assert!(store.load(&user(0)).await.unwrap().is_some(), "waiting: kept");
        assert!(store.load(&user(1)).await.unwrap().is_none(), "dropped in its place");
    }

    #[tokio::test]
    async fn a_log_keeps_its_latest_entries_and_expired_conversations_go() {
        let store = MemoryStore::new();
        let far = chrono::Utc::now().timestamp() + 3600;
        let entries: Vec<LogEntry> = (0..1005).map(entry).collect();
        write(&store, &user(0), 0, &entries, far).await;
        let kept = store.read_log(&user(0), None, 2000).await.unwrap();
        assert_eq!((kept.len(), kept[0].seq), (MAX_LOG_ENTRIES_KEPT, 5));

        write(&store, &user(1), 0, &[entry(0)], chrono::Utc::now().timestamp() - 1).await;
        for n in 2..WRITES_PER_SWEEP as usize {
            write(&store, &user(n), 0, &[], far).await;
        }
        assert!(store.load(&user(1)).await.unwrap().is_none(), "expired and swept");
        assert!(store.load(&user(0)).await.unwrap().is_some());
    }

    /// Poll records, like every table beside the conversations, expire and
    /// keep within their share (an eighth) of the store's budget.
    #[tokio::test]
    async fn poll_records_expire_and_keep_within_their_share() {
        let now = chrono::Utc::now().timestamp();
        let record = |n: usize, expires_at: i64| PollRecord {
            expires_at,
            ..PollRecord::new(&format!("poll-{n:04}"), &user(0), None, None, now)
        };
        let one = 2 * estimated_size(&"poll-0000") + estimated_size(&record(0, now + 60)) + expiring::ENTRY_BYTES;
        let store = MemoryStore::with_max_bytes(8 * 100 * one);
        store.put_poll(&record(0, now - 1)).await.unwrap();
        assert!(store.get_poll("poll-0000").await.unwrap().is_none(), "expired");
        for n in 1..=1000 {
            store.put_poll(&record(n, now + 60 + n as i64)).await.unwrap();
        }
        assert_eq!(locked(&store.polls).unwrap().len(), 100);
        assert!(store.get_poll("poll-0900").await.unwrap().is_none(), "the soonest to expire went");
        assert!(store.get_poll("poll-0901").await.unwrap().is_some());
        assert!(store.get_poll("poll-1000").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn writes_are_conditional_on_the_version_read() {
        let store = MemoryStore::new();
        let key = ConversationKey::new("st-b", "u");
        let conversation = Conversation { next_seq: 1, ..Conversation::default() };
        let (first, second) = ([entry(0)], [entry(1)]);
        let write = |expected_version, log| TurnWrite { log, ..TurnWrite::of(&conversation, expected_version, 0) };
        store.save_turn(&key, write(0, &first)).await.unwrap();
        // A second writer that also read version 0 loses.
        assert!(matches!(store.save_turn(&key, write(0, &first)).await, Err(Error::Conflict)));
        assert_eq!(store.load(&key).await.unwrap().unwrap().version, 1);
        // A stale seq under the right version is a storage fault, not a retry.
        assert!(matches!(store.save_turn(&key, write(1, &first)).await, Err(Error::Storage(_))));
        store.save_turn(&key, write(1, &second)).await.unwrap();
        let seqs: Vec<u64> = store.read_log(&key, None, 10).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [0, 1]);
    }
}
