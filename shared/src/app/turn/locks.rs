//! One lock per conversation in use, so that one user's turns queue in this
//! process instead of spinning on the store's conditional write. Each
//! conversation has its own: no user id, however chosen, shares another's
//! (a fixed set of stripes would let one user hold up whoever hashed alike).
//! A lock lives while someone holds or waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::ids::ConversationKey;

#[derive(Default)]
pub(super) struct Locks {
    held: Mutex<HashMap<ConversationKey, Arc<AsyncMutex<()>>>>,
}

/// A conversation's lock, held until dropped.
pub(super) struct Held<'a> {
    locks: &'a Locks,
    key: ConversationKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Locks {
    fn map(&self) -> MutexGuard<'_, HashMap<ConversationKey, Arc<AsyncMutex<()>>>> {
        // The map is consistent between statements: a panic elsewhere leaves it usable.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the conversation's lock.
    pub async fn lock(&self, key: &ConversationKey) -> Held<'_> {
        let mutex = self.map().entry(key.clone()).or_default().clone();
        // Made before waiting: a wait given up (a deadline) still tidies up.
        let mut held = Held { locks: self, key: key.clone(), guard: None };
        held.guard = Some(mutex.lock_owned().await);
        held
    }

    /// Both conversations' locks, taken in one order so that two pairs
    /// never wait for each other.
    pub async fn lock_pair(&self, a: &ConversationKey, b: &ConversationKey) -> Vec<Held<'_>> {
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        let mut held = vec![self.lock(first).await];
        if second != first {
            held.push(self.lock(second).await);
        }
        held
    }

    /// Conversations whose lock is held or waited for.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        self.map().len()
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.locks.map();
        // Only the map's own reference left: no one holds or waits for it.
        if map.get(&self.key).is_some_and(|mutex| Arc::strong_count(mutex) == 1) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn each_conversation_has_its_own_lock_gone_when_unused() {
        let locks = Locks::default();
        let (ada, bo) = (ConversationKey::new("st-b", "ada"), ConversationKey::new("st-b", "bo"));
        let held = locks.lock(&ada).await;
        // Another conversation is never held up by this one.
        let other = tokio::time::timeout(Duration::from_millis(50), locks.lock(&bo)).await;
        assert!(other.is_ok());
        drop(other);
        // The same one waits; a wait given up leaves nothing behind.
        let same = tokio::time::timeout(Duration::from_millis(50), locks.lock(&ada)).await;
        assert!(same.is_err());
        assert_eq!(locks.in_use(), 1);
        drop(held);
        assert_eq!(locks.in_use(), 0);
        let pair = locks.lock_pair(&bo, &ada).await;
        assert_eq!((pair.len(), locks.in_use()), (2, 2));
        drop(pair);
        assert_eq!(locks.lock_pair(&ada, &ada).await.len(), 1);
        assert_eq!(locks.in_use(), 0);
    }
}
