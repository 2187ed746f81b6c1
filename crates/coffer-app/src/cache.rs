//! A small time-bounded cache for public catalog reads.
//!
//! The storefront and `GET /api/v1/products` answer the same few queries
//! many times a second; each answer may be up to `ttl` old. Writes made
//! through this process clear it at once; writes by another server show
//! after at most `ttl`. It never holds personal data: only the catalog uses it.

use coffer_domain::{Clock, Millis};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Each key's value and when it was stored, and the cache's generation.
type Entries<K, V> = (HashMap<K, (Millis, V)>, u64);

pub(crate) struct TtlCache<K, V> {
    /// The entries, and how many times the cache was cleared: a value read
    /// before a clear is not put back after it (see `put_if_current`).
    entries: Mutex<Entries<K, V>>,
    ttl_ms: i64,
    max_entries: usize,
    clock: Arc<dyn Clock>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// `ttl_ms` 0 turns the cache off.
    pub(crate) fn new(ttl_ms: u64, max_entries: usize, clock: Arc<dyn Clock>) -> Self {
        TtlCache {
            entries: Mutex::new((HashMap::new(), 0)),
            ttl_ms: i64::try_from(ttl_ms).unwrap_or(i64::MAX),
            max_entries,
            clock,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        if self.ttl_ms == 0 {
            return None;
        }
        let now = self.clock.now().0;
        let entries = self.entries.lock().ok()?;
        let (stored_at, value) = entries.0.get(key)?;
        (now.saturating_sub(stored_at.0) < self.ttl_ms).then(|| value.clone())
    }

    #[cfg(test)]
    pub(crate) fn put(&self, key: K, value: V) {
        self.put_if_current(self.generation(), key, value);
    }

    /// Which clearing the cache is at; take it before reading what is to
    /// be put.
    pub(crate) fn generation(&self) -> u64 {
        self.entries.lock().map(|entries| entries.1).unwrap_or(u64::MAX)
    }

    /// Puts a value read at `generation`, unless the cache was cleared
    /// since: a read that raced a write must not bring the old answer back
    /// for a whole period.
    pub(crate) fn put_if_current(&self, generation: u64, key: K, value: V) {
        if self.ttl_ms == 0 {
            return;
        }
        let now = self.clock.now();
        if let Ok(mut entries) = self.entries.lock() {
            if entries.1 != generation {
                return;
            }
            // Bounded: when full, start over rather than track recency.
            if entries.0.len() >= self.max_entries {
                entries.0.clear();
            }
            entries.0.insert(key, (now, value));
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.0.clear();
            entries.1 = entries.1.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_domain::ManualClock;

    #[test]
    fn entries_expire_after_ttl_and_clear_empties() {
        let clock = Arc::new(ManualClock::at(1_000));
        let cache = TtlCache::new(500, 2, clock.clone());
        cache.put("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        clock.advance(499);
        assert_eq!(cache.get(&"a"), Some(1));
        clock.advance(1);
        assert_eq!(cache.get(&"a"), None, "expired at ttl");
        cache.put("a", 2);
        cache.clear();
        assert_eq!(cache.get(&"a"), None);
    }

    #[test]
    fn a_value_read_before_a_clear_is_not_put_back() {
        let cache = TtlCache::new(1_000, 8, Arc::new(ManualClock::at(0)));
        let before = cache.generation();
        cache.clear();
        cache.put_if_current(before, "a", 1);
        assert_eq!(cache.get(&"a"), None, "read before the clear: stale");
        cache.put_if_current(cache.generation(), "a", 2);
        assert_eq!(cache.get(&"a"), Some(2));
    }

    #[test]
    fn size_is_bounded_and_zero_ttl_disables() {
        let clock = Arc::new(ManualClock::at(0));
        let cache = TtlCache::new(1_000, 2, clock.clone());
        cache.put(1, 1);
        cache.put(2, 2);
        cache.put(3, 3);
        assert_eq!(cache.entries.lock().unwrap().0.len(), 1);
        let off = TtlCache::new(0, 2, clock);
        off.put(1, 1);
        assert_eq!(off.get(&1), None);
    }
}
