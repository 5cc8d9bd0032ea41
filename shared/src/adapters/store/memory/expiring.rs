//! Records kept until they expire, as DynamoDB's TTL removes items, within a
//! byte budget: beyond it the soonest to expire go first, with a log line.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use serde::Serialize;

use super::estimated_size;

/// What a record's places in the map and the expiry order take.
pub(super) const ENTRY_BYTES: usize = 128;

struct Item<V> {
    value: V,
    expires_at: i64,
    bytes: usize,
}

pub(super) struct Expiring<K, V> {
    items: HashMap<K, Item<V>>,
    by_expiry: BTreeSet<(i64, K)>,
    bytes: usize,
    max_bytes: usize,
    /// What the records are, for the log line.
    what: &'static str,
}

impl<K: Hash + Ord + Clone + Serialize, V: Serialize> Expiring<K, V> {
    pub fn new(what: &'static str, max_bytes: usize) -> Self {
        Self { items: HashMap::new(), by_expiry: BTreeSet::new(), bytes: 0, max_bytes, what }
    }

    /// The record, unless it has expired.
    pub fn get(&self, key: &K, now: i64) -> Option<&V> {
        self.items.get(key).filter(|item| item.expires_at >= now).map(|item| &item.value)
    }

    /// The record to change in place (its size and expiry stay as stored),
    /// unless it has expired.
    pub fn get_mut(&mut self, key: &K, now: i64) -> Option<&mut V> {
        self.items.get_mut(key).filter(|item| item.expires_at >= now).map(|item| &mut item.value)
    }

    /// Stores the record in place of any under its key, after dropping the
    /// expired ones; beyond the budget the soonest to expire go.
    pub fn insert(&mut self, key: K, value: V, expires_at: i64, now: i64) {
        self.remove(&key);
        while let Some((at, expired)) = self.by_expiry.first().cloned() {
            if at >= now {
                break;
            }
            self.remove(&expired);
        }
        // The key is held twice (by the map and in expiry order), and each
        // record has its place in both.
        let bytes = 2 * estimated_size(&key) + estimated_size(&value) + ENTRY_BYTES;
        self.bytes += bytes;
        self.by_expiry.insert((expires_at, key.clone()));
        self.items.insert(key.clone(), Item { value, expires_at, bytes });
        let mut dropped = 0;
        while self.bytes > self.max_bytes && self.items.len() > 1 {
            let Some((_, soonest)) = self.by_expiry.iter().find(|(_, k)| *k != key).cloned() else { break };
            self.remove(&soonest);
            dropped += 1;
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                max_bytes = self.max_bytes,
                "the in-memory {} are full: the soonest to expire were dropped",
                self.what
            );
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let item = self.items.remove(key)?;
        self.by_expiry.remove(&(item.expires_at, key.clone()));
        self.bytes -= item.bytes;
        Some(item.value)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_records_go_and_beyond_the_budget_the_soonest_to_expire() {
        let key = |n: i64| format!("k{n:02}");
        let mut table =
            Expiring::new("records", 10 * (2 * estimated_size(&key(0)) + estimated_size(&99) + ENTRY_BYTES));
        for n in 0..5 {
            table.insert(key(n), n, 100 + n, 0);
        }
        assert_eq!(table.get(&key(1), 101), Some(&1));
        assert_eq!(table.get(&key(1), 102), None, "an expired record is not read");
        table.insert(key(5), 5, 200, 102);
        assert_eq!(table.len(), 4, "k00 and k01 went when k05 came");
        for n in 6..20 {
            table.insert(key(n), n, 300 - n, 102);
        }
        // Each beyond ten took the place of the soonest to expire but itself.
        let kept: Vec<i64> = (0..20).filter(|n| table.get(&key(*n), 102).is_some()).collect();
        assert_eq!(kept, [6, 7, 8, 9, 10, 11, 12, 13, 14, 19]);
        assert_eq!(table.remove(&key(6)), Some(6));
        assert_eq!(table.len(), 9);
    }
}
