//! In-process store for the embedded local mode.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Store, TurnWrite};
use crate::error::{Error, Result};
use crate::session::{Conversation, ConversationKey, LogEntry};

#[derive(Default)]
struct Entry {
    conversation: Conversation,
    log: BTreeMap<u64, LogEntry>,
}

#[derive(Default)]
pub struct MemoryStore {
    conversations: Mutex<HashMap<ConversationKey, Entry>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<ConversationKey, Entry>>> {
        self.conversations
            .lock()
            .map_err(|_| Error::Internal("memory store lock poisoned".into()))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self, key: &ConversationKey) -> Result<Option<Conversation>> {
        Ok(self.lock()?.get(key).map(|e| e.conversation.clone()))
    }

    async fn save_turn(&self, key: &ConversationKey, write: TurnWrite<'_>) -> Result<()> {
        let mut conversations = self.lock()?;
        let entry = conversations.entry(key.clone()).or_default();
        if entry.conversation.version != write.expected_version
            || write.log.iter().any(|e| entry.log.contains_key(&e.seq))
        {
            return Err(Error::Conflict);
        }
        entry.conversation = Conversation {
            version: write.expected_version + 1,
            ..write.conversation.clone()
        };
        entry
            .log
            .extend(write.log.iter().map(|e| (e.seq, e.clone())));
        Ok(())
    }

    async fn read_log(
        &self,
        key: &ConversationKey,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>> {
        let conversations = self.lock()?;
        let Some(entry) = conversations.get(key) else {
            return Ok(Vec::new());
        };
        let from = after_seq.map_or(0, |s| s + 1);
        Ok(entry
            .log
            .range(from..)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }
}
