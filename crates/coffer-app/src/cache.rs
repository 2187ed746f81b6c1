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

pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Millis, V)>>,
    ttl_ms: i64,
    max_entries: usize,
    clock: Arc<dyn Clock>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// `ttl_ms` 0 turns the cache off.
    pub(crate) fn new(ttl_ms: u64, max_entries: usize, clock: Arc<dyn Clock>) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
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
        let (stored_at, value) = entries.get(key)?;
        (now.saturating_sub(stored_at.0) < self.ttl_ms).then(|| value.clone())
    }

    pub(crate) fn put(&self, key: K, value: V) {
        if self.ttl_ms == 0 {
            return;
        }
        let now = self.clock.now();
        if let Ok(mut entries) = self.entries.lock() {
            // Bounded: when full, start over rather than track recency.
            if entries.len() >= self.max_entries {
                entries.clear();
            }
            entries.insert(key, (now, value));
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
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
    fn size_is_bounded_and_zero_ttl_disables() {
        let clock = Arc::new(ManualClock::at(0));
        let cache = TtlCache::new(1_000, 2, clock.clone());
        cache.put(1, 1);
        cache.put(2, 2);
        cache.put(3, 3);
        assert_eq!(cache.entries.lock().unwrap().len(), 1);
        let off = TtlCache::new(0, 2, clock);
        off.put(1, 1);
        assert_eq!(off.get(&1), None);
    }
}
