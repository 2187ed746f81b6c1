//! Per-client request limits kept in memory, per server: sign-in attempts,
//! order attempts and license checks per client address (IPv6 by its /64),
//! vendor API requests per key. The per-account lock-out and the failed-payment limit
//! live in the services.

use coffer_app::checkout::limits::limit_address;
use governor::clock::{Clock, DefaultClock};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

/// A keyed rate limiter.
pub struct KeyedLimit<K: Hash + Eq + Clone> {
    limiter: governor::RateLimiter<K, governor::state::keyed::HashMapStateStore<K>, DefaultClock>,
}

impl<K: Hash + Eq + Clone> KeyedLimit<K> {
    /// `per_minute` attempts per key; `None` when it is 0 (no limit).
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        NonZeroU32::new(per_minute).map(Self::new)
    }

    pub fn new(per_minute: NonZeroU32) -> Self {
        KeyedLimit { limiter: governor::RateLimiter::hashmap(governor::Quota::per_minute(per_minute)) }
    }

    /// Spends one attempt of `key`; `Err` holds the whole seconds to wait.
    pub fn spend(&self, key: &K) -> Result<(), u64> {
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()).as_secs().max(1))
    }
}

/// Spends an attempt of a client address (IPv6 counted by its /64).
pub fn spend_address(limit: &KeyedLimit<IpAddr>, ip: IpAddr) -> Result<(), u64> {
    limit.spend(&limit_address(ip))
}
