//! The limit on failed payments (card testing): declined, invalid and
//! expired cards are counted per client address (an IPv6 /64), per email
//! address and per card number over a sliding window; once any of them
//! reaches the limit, further orders from it are refused with
//! `too_many_attempts` until the oldest failure leaves the window.
//!
//! Counts live in memory, per server, like the per-address sign-in limit;
//! keys are keyed hashes under a secret made at start, so neither an
//! address nor a card number is held in the clear.

use coffer_domain::Millis;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// More keys than this and the oldest windows are swept.
const SWEEP_AT: usize = 100_000;

pub struct FailedPaymentLimit {
    max: usize,
    window_ms: i64,
    secret: [u8; 32],
    failures: Mutex<HashMap<[u8; 32], VecDeque<i64>>>,
}

/// The address a per-address limit counts: IPv4 as it is, IPv6 by its /64
/// (one subscriber usually holds a whole /64).
pub fn limit_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

impl FailedPaymentLimit {
    /// `max` failures per key within `window_ms`; 0 turns the limit off.
    pub fn new(max: u32, window_ms: i64) -> Result<Self, crate::AppError> {
        let secret = coffer_crypto::random_bytes::<32>()?;
        Ok(FailedPaymentLimit {
            max: usize::try_from(max).unwrap_or(usize::MAX),
            window_ms,
            secret,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The keys of one attempt: its address, email and card, as present.
    pub fn keys(&self, ip: Option<IpAddr>, email: &str, card_digits: Option<&str>) -> Vec<[u8; 32]> {
        let hash = |label: &str, value: &[u8]| coffer_crypto::keyed_hash(&self.secret, label, value);
        let mut keys = vec![hash("email", coffer_crypto::normalise_email(email).as_bytes())];
        if let Some(ip) = ip {
            keys.push(hash("ip", limit_address(ip).to_string().as_bytes()));
        }
        if let Some(digits) = card_digits.filter(|d| !d.is_empty()) {
            keys.push(hash("card", digits.as_bytes()));
        }
        keys
    }

    /// `Err(retry_after_ms)` when any key has used up its failures.
    pub fn check(&self, keys: &[[u8; 32]], now: Millis) -> Result<(), i64> {
        if self.max == 0 {
            return Ok(());
        }
        let Ok(mut failures) = self.failures.lock() else { return Ok(()) };
        let mut wait = 0;
        for key in keys {
            if let Some(times) = failures.get_mut(key) {
                while times.front().is_some_and(|t| *t <= now.0 - self.window_ms) {
                    times.pop_front();
                }
                if times.len() >= self.max {
                    let oldest = times.front().copied().unwrap_or(now.0);
                    wait = wait.max(oldest + self.window_ms - now.0);
                }
            }
        }
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    /// Counts a failed payment against each key.
    pub fn record(&self, keys: &[[u8; 32]], now: Millis) {
        if self.max == 0 {
            return;
        }
        let Ok(mut failures) = self.failures.lock() else { return };
        if failures.len() > SWEEP_AT {
            let cutoff = now.0 - self.window_ms;
            failures.retain(|_, times| times.back().is_some_and(|t| *t > cutoff));
        }
        for key in keys {
            let times = failures.entry(*key).or_default();
            times.push_back(now.0);
            // Only the newest `max` matter for the answer.
            while times.len() > self.max {
                times.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_each_key_until_the_oldest_leaves_the_window() {
        let limit = FailedPaymentLimit::new(3, 10_000).unwrap();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let keys = limit.keys(Some(ip), "a@example.org", Some("4000000000000002"));
        for t in [0, 1_000, 2_000] {
            assert_eq!(limit.check(&keys, Millis(t)), Ok(()));
            limit.record(&keys, Millis(t));
        }
        assert_eq!(limit.check(&keys, Millis(2_500)), Err(7_500));
        // Another card and email from the same address: the address is spent.
        let same_ip = limit.keys(Some(ip), "b@example.org", Some("5555555555554444"));
        assert!(limit.check(&same_ip, Millis(2_500)).is_err());
        // The same card from elsewhere: the card is spent.
        let same_card = limit.keys(Some("198.51.100.1".parse().unwrap()), "c@example.org", Some("4000000000000002"));
        assert!(limit.check(&same_card, Millis(2_500)).is_err());
        // Nothing shared: free.
        let other = limit.keys(Some("198.51.100.1".parse().unwrap()), "c@example.org", Some("4242424242424242"));
        assert_eq!(limit.check(&other, Millis(2_500)), Ok(()));
        // Once the first failure is 10 s old, one more is allowed.
        assert_eq!(limit.check(&keys, Millis(10_000)), Ok(()));
    }

    #[test]
    fn ipv6_counts_by_its_slash_64_and_zero_turns_the_limit_off() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit_address(a), limit_address(b));
        assert_ne!(limit_address(a), limit_address(c));
        assert_eq!(limit_address("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1".parse::<IpAddr>().unwrap());
        let off = FailedPaymentLimit::new(0, 10_000).unwrap();
        let keys = off.keys(Some(a), "a@example.org", None);
        for t in 0..20 {
            off.record(&keys, Millis(t));
        }
        assert_eq!(off.check(&keys, Millis(20)), Ok(()));
    }
}
