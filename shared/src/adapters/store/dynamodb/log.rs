//! A conversation's log in the table: its latest entries held in the
//! conversation's own item, the others in log items, `MSG#{first seq}`.
//!
//! DynamoDB bills a write by the kilobyte, and each turn writes the
//! conversation anyway. So a turn's entries are held in the conversation's
//! item, deflated with it, while the item stays within the write units it
//! would take without the entries held before. When it would not, those
//! move to a log item of their own, put *before* the conversation's put
//! that drops them: whenever they leave the conversation's item they are
//! already in a log item, and the log's read takes the conversation's item
//! first.
//!
//! Held entries were committed by an earlier write: every writer that moves
//! them writes the same entries, or fewer from an older read. Their put only
//! ever grows an item (its `lastSeq`), so a late writer cannot shrink it, and
//! a writer that loses the conversation's put leaves a copy the next move
//! grows; reads take each seq once. A turn's entries too large to hold are
//! log items of the turn's own transaction, each put only where no live item
//! is (they are not committed before it).

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;

use super::{DynamoStore, Item, ItemFormat, json_attr, n, partition_key, s};
use crate::app::records::LogEntry;
use crate::error::{Error, Result};
use crate::ids::ConversationKey;
use crate::text::json_len;

/// A log item's attribute: its entries' JSON array, deflated.
pub(super) const LOG: &str = "log";
/// A legacy log item's attribute: its one entry's JSON text.
const LEGACY_ENTRY: &str = "entry";
/// The highest seq a log item's key can name.
pub(super) const MAX_SEQ: u64 = 999_999_999_999;
/// A log item's entries take at most this much JSON, before deflating; so
/// do the entries a conversation's item holds.
pub(super) const LOG_PAGE_BYTES: usize = 300 * 1024;
/// What DynamoDB bills a write by.
const WRITE_UNIT: usize = 1024;
/// A conversation's item holds entries only while it stays this small
/// (DynamoDB's limit: 400 KB).
const MAX_HOLDING_ITEM_BYTES: usize = 350 * 1024;
/// A put of held entries: only where no live item holds as many.
pub(super) const GROWS_ONLY: &str = "attribute_not_exists(pk) OR expiresAt < :now OR lastSeq < :last";
/// A put of a turn's own entries: only where no live item is (a leftover
/// past its expiry may be replaced: TTL deletes late).
pub(super) const NEW_ONLY: &str = "attribute_not_exists(pk) OR expiresAt < :now";

pub(super) fn log_sk(seq: u64) -> String {
    format!("MSG#{seq:012}")
}

/// Where a conversation write's log entries go.
#[derive(Debug)]
pub(super) struct LogPlan<'a> {
    /// Entries held so far, moved to log items before the write: in pages
    /// whatever the form (held entries are met only by functions that read
    /// every form), so a move only ever grows an item.
    pub moved: Vec<&'a [LogEntry]>,
    /// The turn's own entries, as log items of the write.
    pub items: Vec<&'a [LogEntry]>,
    /// The conversation's `state`, deflated with the entries it holds
    /// (none in the legacy form, its JSON text).
    pub state: Option<Vec<u8>>,
}

impl<'a> LogPlan<'a> {
    /// `held`: the entries the conversation's item held when read; `new`:
    /// the turn's. `base`: the conversation item's size without its state;
    /// `state`: the state holding given entries.
    pub fn of(
        format: ItemFormat,
        held: &'a [LogEntry],
        new: &'a [LogEntry],
        base: usize,
        state: impl Fn(&[&LogEntry]) -> Result<Vec<u8>>,
    ) -> Result<Self> {
        let items = |entries: &'a [LogEntry]| match format {
            ItemFormat::Legacy => entries.chunks(1).collect(),
            _ => log_pages(entries),
        };
        let units = |state: &[u8]| (base + state.len()).div_ceil(WRITE_UNIT);
        let fits = |state: &Vec<u8>| base + state.len() <= MAX_HOLDING_ITEM_BYTES;
        if format == ItemFormat::Compact && json_len(new) <= LOG_PAGE_BYTES {
            let all: Vec<&LogEntry> = held.iter().chain(new).collect();
            let holding_all = if json_len(&all) <= LOG_PAGE_BYTES { Some(state(&all)?).filter(fits) } else { None };
            let hold_all = |state| Ok(Self { moved: Vec::new(), items: Vec::new(), state: Some(state) });
            match holding_all {
                Some(holding_all) if held.is_empty() || units(&holding_all) <= 1 => return hold_all(holding_all),
                holding_all => {
                    let holding_new = state(&all[held.len()..])?;
                    match holding_all {
                        Some(holding_all) if units(&holding_all) <= units(&holding_new) => {
                            return hold_all(holding_all);
                        }
                        _ if fits(&holding_new) => {
                            return Ok(Self { moved: log_pages(held), items: Vec::new(), state: Some(holding_new) });
                        }
                        _ => {}
                    }
                }
            }
        }
        let state = if format == ItemFormat::Legacy { None } else { Some(state(&[])?) };
        Ok(Self { moved: log_pages(held), items: items(new), state })
    }
}

/// The item of `entries`, contiguous: deflated, or (legacy) one entry as
/// JSON text.
pub(super) fn log_item(pk: &str, entries: &[LogEntry], expires_at: i64, format: ItemFormat) -> Result<Item> {
    let (first, last) = match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => (first.seq, last.seq),
        _ => return Err(Error::Internal("a log item without entries".into())),
    };
    let log = match format {
        ItemFormat::Legacy => {
            let json = serde_json::to_string(&entries[0]).map_err(|e| Error::Internal(e.to_string()))?;
            (LEGACY_ENTRY, s(json))
        }
        _ => {
            let json = serde_json::to_vec(entries).map_err(|e| Error::Internal(e.to_string()))?;
            (LOG, AttributeValue::B(Blob::new(miniz_oxide::deflate::compress_to_vec(&json, 6))))
        }
    };
    Ok(Item::from([
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s(log_sk(first))),
        ("seq".to_string(), n(first)),
        ("lastSeq".to_string(), n(last)),
        ("expiresAt".to_string(), n(expires_at)),
        (log.0.to_string(), log.1),
    ]))
}

/// An item's size as DynamoDB bills it: its attributes' names and values
/// (a number counted at its text's length, never less than it bills).
pub(super) fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) => text.len(),
                    AttributeValue::N(number) => number.len() + 1,
                    AttributeValue::B(bytes) => bytes.as_ref().len(),
                    _ => 1,
                }
        })
        .sum()
}

/// The entries held in a `state` attribute's JSON.
#[derive(Deserialize)]
struct Held {
    #[serde(default)]
    log: Vec<LogEntry>,
}

pub(super) fn held_in(state_json: &[u8]) -> Result<Vec<LogEntry>> {
    let held: Held =
        serde_json::from_slice(state_json).map_err(|e| Error::Storage(format!("unreadable held log: {e}")))?;
    Ok(held.log)
}

/// Whether an item has not yet expired (TTL deletes late).
pub(super) fn live(item: &Item, now: i64) -> bool {
    let expires = item.get("expiresAt").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
    expires.is_none_or(|at| at >= now)
}

/// A log item's entries: deflated, or (legacy) one entry as JSON text.
fn log_entries(item: &Item) -> Result<Vec<LogEntry>> {
    let Some(log) = item.get(LOG).and_then(|v| v.as_b().ok()) else {
        return Ok(vec![json_attr(item, LEGACY_ENTRY)?]);
    };
    let json = miniz_oxide::inflate::decompress_to_vec_with_limit(log.as_ref(), 4 << 20)
        .map_err(|e| Error::Storage(format!("unreadable {LOG}: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| Error::Storage(format!("unreadable {LOG}: {e}")))
}

/// Entries in pages of at most [`LOG_PAGE_BYTES`] of JSON (a single larger
/// entry alone), each an item well within DynamoDB's 400 KB.
pub(super) fn log_pages(log: &[LogEntry]) -> Vec<&[LogEntry]> {
    let mut pages = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, entry) in log.iter().enumerate() {
        let size = json_len(entry);
        if i > start && bytes + size > LOG_PAGE_BYTES {
            pages.push(&log[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < log.len() {
        pages.push(&log[start..]);
    }
    pages
}

impl DynamoStore {
    /// Entries `from` to `to`: those the conversation's item holds, read
    /// first, and (when they start later) the log items before them.
    pub(super) async fn log_between(&self, key: &ConversationKey, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        let now = chrono::Utc::now().timestamp();
        let held = self.held_log(key, now).await?;
        let mut entries = Vec::new();
        if held.first().is_none_or(|e| e.seq > from) {
            entries = self.log_items(key, from, to, now).await?;
        }
        entries.extend(held);
        // Within the range, each seq once, in order: a copy of held entries,
        // or a stale item (TTL deletes late), never interleaves.
        let mut last = None;
        entries.retain(|e| {
            let keep = e.seq >= from && e.seq <= to && last.is_none_or(|l| e.seq > l);
            if keep {
                last = Some(e.seq);
            }
            keep
        });
        Ok(entries)
    }

    /// The entries the conversation's item holds, while they live.
    async fn held_log(&self, key: &ConversationKey, now: i64) -> Result<Vec<LogEntry>> {
        let Some(item) = self.get_item(partition_key(key), super::SESSION_SK).await? else {
            return Ok(Vec::new());
        };
        let Some(state) = item.get(super::STATE).and_then(|v| v.as_b().ok()) else {
            return Ok(Vec::new());
        };
        let expires = item.get("expiresAt").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
        if expires.is_some_and(|at| at - super::CONVERSATION_GRACE_SECS < now) {
            return Ok(Vec::new());
        }
        held_in(&super::inflate_json(state.as_ref())?)
    }

    /// The live log items' entries from seq `from` to `to`, in order.
    async fn log_items(&self, key: &ConversationKey, from: u64, to: u64, now: i64) -> Result<Vec<LogEntry>> {
        let mut items = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .log_query(key, from, to)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| super::storage("Query", e))?;
            items.extend(page.items().iter().filter(|item| live(item, now)).cloned());
            start_key = page.last_evaluated_key;
            if start_key.is_none() {
                break;
            }
        }
        // Seqs are contiguous: the items that start within the range hold
        // all it asks for, but the one before may hold its start.
        let starts_at = |item: &Item| item.get("seq").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
        let mut entries = Vec::new();
        if from > 0 && items.first().and_then(starts_at) != Some(from) {
            entries.extend(self.log_item_before(key, from, now).await?);
        }
        for item in &items {
            entries.extend(log_entries(item)?);
        }
        Ok(entries)
    }

    /// A consistent query of the conversation's log items that start from seq `from` to `to`.
    fn log_query(
        &self,
        key: &ConversationKey,
        from: u64,
        to: u64,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(partition_key(key)))
            .expression_attribute_values(":from", s(log_sk(from)))
            .expression_attribute_values(":to", s(log_sk(to)))
            .consistent_read(true)
    }

    /// The entries of the live log item that starts last before seq `before`:
    /// expired items of an earlier conversation (TTL deletes late) may lie
    /// between, and are passed over.
    async fn log_item_before(&self, key: &ConversationKey, before: u64, now: i64) -> Result<Vec<LogEntry>> {
        let mut start_key = None;
        loop {
            let page = self
                .log_query(key, 0, before.saturating_sub(1))
                .scan_index_forward(false)
                // The item before, unless expired ones lie between.
                .limit(if start_key.is_none() { 1 } else { 8 })
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| super::storage("Query", e))?;
            if let Some(item) = page.items().iter().find(|item| live(item, now)) {
                return log_entries(item);
            }
            start_key = page.last_evaluated_key;
            if start_key.is_none() {
                return Ok(Vec::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, bytes: usize) -> LogEntry {
        LogEntry {
            seq,
            direction: crate::app::records::Direction::Out,
            message_id: format!("ms-{seq}"),
            trace_id: "tr-1".into(),
            created_on: String::new(),
            session_id: None,
            body: serde_json::Value::String("x".repeat(bytes)),
        }
    }

    #[test]
    fn a_turns_entries_are_paged_within_an_item() {
        let small: Vec<LogEntry> = (0..3).map(|seq| entry(seq, 100)).collect();
        assert_eq!(log_pages(&small), [&small[..]]);
        // 120 KiB each: two fit in a page; one larger than a page goes alone.
        let large = [entry(0, 120 << 10), entry(1, 120 << 10), entry(2, 120 << 10), entry(3, 350 << 10), entry(4, 10)];
        let seqs: Vec<Vec<u64>> = log_pages(&large).iter().map(|p| p.iter().map(|e| e.seq).collect()).collect();
        assert_eq!(seqs, [vec![0, 1], vec![2], vec![3], vec![4]]);
        assert!(log_pages(&[]).is_empty());
    }

    /// A state as long as its entries' JSON, beside a conversation of
    /// `base` bytes: what is held and what moves, by write units.
    #[test]
    fn entries_are_held_while_they_take_no_more_write_units() {
        let state = |held: &[&LogEntry]| Ok(vec![0; held.iter().map(|e| json_len(*e)).sum::<usize>()]);
        let held: Vec<LogEntry> = (0..2).map(|seq| entry(seq, 100)).collect();
        let new: Vec<LogEntry> = (2..4).map(|seq| entry(seq, 100)).collect();
        let json = |entries: &[LogEntry]| entries.iter().map(json_len).sum::<usize>();
        let plan = |format, base| LogPlan::of(format, &held, &new, base, state).unwrap();

        // All four fit in one unit beside a small conversation.
        let small = plan(ItemFormat::Compact, 200);
        assert_eq!((small.moved.len(), small.items.len()), (0, 0));
        assert_eq!(small.state.map(|s| s.len()), Some(json(&held) + json(&new)));
        // Past a unit, with the new ones alone in fewer: the held ones move.
        let over = plan(ItemFormat::Compact, 500);
        assert_eq!((over.moved, over.items.len(), over.state.map(|s| s.len())), (vec![&held[..]], 0, Some(json(&new))));
        // A large conversation whose last unit has room for all: all held.
        let roomy = plan(ItemFormat::Compact, 2 * WRITE_UNIT + 100);
        assert_eq!((roomy.moved.len(), roomy.state.map(|s| s.len())), (0, Some(json(&held) + json(&new))));
        // The older formats hold nothing: the held move, the new are items.
        let turns = plan(ItemFormat::Turns, 200);
        assert_eq!((turns.moved, turns.items, turns.state), (vec![&held[..]], vec![&new[..]], Some(Vec::new())));
        let legacy = plan(ItemFormat::Legacy, 200);
        assert_eq!((legacy.moved, legacy.items.len(), legacy.state), (vec![&held[..]], 2, None));
        // A turn too large to hold is items of its own write.
        let large = [entry(2, LOG_PAGE_BYTES)];
        let plan = LogPlan::of(ItemFormat::Compact, &held, &large, 200, state).unwrap();
        assert_eq!((plan.moved, plan.items), (vec![&held[..]], vec![&large[..]]));
        // So is one that would take the item past its limit.
        let plan = LogPlan::of(ItemFormat::Compact, &held, &new, MAX_HOLDING_ITEM_BYTES - 300, state).unwrap();
        assert_eq!((plan.moved, plan.items), (vec![&held[..]], vec![&new[..]]));
    }

    #[test]
    fn an_item_is_sized_as_dynamodb_bills_it() {
        let item = log_item("BOT#b#USER#u", &[entry(7, 10)], 1_800_000_000, ItemFormat::Legacy).unwrap();
        let json = serde_json::to_string(&entry(7, 10)).unwrap();
        let expected = "pk".len() + 12 + "sk".len() + 16 + "seq".len() + 2 + "lastSeq".len() + 2;
        assert_eq!(item_size(&item), expected + "expiresAt".len() + 11 + "entry".len() + json.len());
    }
}
