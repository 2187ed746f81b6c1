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
    counts: Mutex<HashMap<[u8; 32], KeyCount>>,
}

/// One key's failed payments in the window, and its attempts in flight.
#[derive(Default)]
struct KeyCount {
    failures: VecDeque<i64>,
    in_flight: usize,
}

/// One attempt in flight, taken by [`FailedPaymentLimit::reserve`].
pub struct Reservation<'a> {
    limit: &'a FailedPaymentLimit,
    keys: Vec<[u8; 32]>,
    ended: bool,
}

impl Reservation<'_> {
    /// Ends the attempt; `failed` when its payment failed (declined,
    /// invalid or expired card), which then counts against every key.
    pub fn finish(mut self, failed: bool, now: Millis) {
        self.ended = true;
        self.limit.end(&self.keys, failed.then_some(now));
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.limit.end(&self.keys, None);
        }
    }
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
            counts: Mutex::new(HashMap::new()),
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

    /// Takes one attempt for every key at once, under one lock. A key with
    /// failures in the window counts its attempts in flight as failures
    /// until they end, so parallel attempts cannot slip under the limit; a
    /// key with a clean record (a burst of honest orders, a load test) is
    /// not held up. `Err(retry_after_ms)` when any key is spent (nothing is
    /// taken then). The attempt ends with [`Reservation::finish`], or as a
    /// success when dropped (a request whose client went away).
    pub fn reserve(&self, keys: Vec<[u8; 32]>, now: Millis) -> Result<Reservation<'_>, i64> {
        let reservation = Reservation { limit: self, keys, ended: self.max == 0 };
        if self.max == 0 {
            return Ok(reservation);
        }
        let keys = &reservation.keys;
        let Ok(mut counts) = self.counts.lock() else { return Ok(reservation) };
        if counts.len() > SWEEP_AT {
            let cutoff = now.0 - self.window_ms;
            counts.retain(|_, c| c.in_flight > 0 || c.failures.back().is_some_and(|t| *t > cutoff));
        }
        let mut wait = 0;
        for key in keys {
            if let Some(count) = counts.get_mut(key) {
                while count.failures.front().is_some_and(|t| *t <= now.0 - self.window_ms) {
                    count.failures.pop_front();
                }
                let failed = count.failures.len();
                if failed >= self.max || (failed > 0 && failed + count.in_flight >= self.max) {
                    let oldest = count.failures.front().copied().unwrap_or(now.0);
                    wait = wait.max((oldest + self.window_ms - now.0).max(1_000));
                }
            }
        }
        if wait > 0 {
            let mut reservation = reservation;
            reservation.ended = true;
            return Err(wait);
        }
        for key in keys {
            counts.entry(*key).or_default().in_flight += 1;
        }
        drop(counts);
        Ok(reservation)
    }

    fn end(&self, keys: &[[u8; 32]], failed: Option<Millis>) {
        let Ok(mut counts) = self.counts.lock() else { return };
        for key in keys {
            let count = counts.entry(*key).or_default();
            count.in_flight = count.in_flight.saturating_sub(1);
            if let Some(now) = failed {
                count.failures.push_back(now.0);
                // Only the newest `max` matter for the answer.
                while count.failures.len() > self.max {
                    count.failures.pop_front();
                }
            }
            // A key with nothing in flight and no failure says nothing:
            // forgotten at once, so honest buyers (every new email is a
            // key) do not fill the map.
            if count.in_flight == 0 && count.failures.is_empty() {
                counts.remove(key);
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
            limit.reserve(keys.clone(), Millis(t)).unwrap().finish(true, Millis(t));
        }
        assert_eq!(limit.reserve(keys.clone(), Millis(2_500)).err(), Some(7_500));
        // Another card and email from the same address: the address is spent.
        let same_ip = limit.keys(Some(ip), "b@example.org", Some("5555555555554444"));
        assert!(limit.reserve(same_ip, Millis(2_500)).is_err());
        // The same card from elsewhere: the card is spent.
        let same_card = limit.keys(Some("198.51.100.1".parse().unwrap()), "c@example.org", Some("4000000000000002"));
        assert!(limit.reserve(same_card, Millis(2_500)).is_err());
        // Nothing shared: free; and a success gives its attempt back.
        let other = limit.keys(Some("198.51.100.1".parse().unwrap()), "c@example.org", Some("4242424242424242"));
        for _ in 0..5 {
            limit.reserve(other.clone(), Millis(2_500)).unwrap().finish(false, Millis(2_500));
        }
        // Once the first failure is 10 s old, one more is allowed.
        assert!(limit.reserve(keys, Millis(10_000)).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_once_a_key_has_failed() {
        let limit = FailedPaymentLimit::new(3, 10_000).unwrap();
        let keys = limit.keys(None, "a@example.org", Some("4000000000000002"));
        // A clean record: a burst in flight is not held up.
        let mut burst: Vec<_> = (0..10).map(|_| limit.reserve(keys.clone(), Millis(0)).unwrap()).collect();
        let failing = burst.pop().unwrap();
        drop(burst);
        // One failure: from now on attempts in flight count too.
        failing.finish(true, Millis(0));
        let first = limit.reserve(keys.clone(), Millis(1)).unwrap();
        let _second = limit.reserve(keys.clone(), Millis(1)).unwrap();
        assert!(limit.reserve(keys.clone(), Millis(1)).is_err(), "one failed and two in flight make three");
        // One ended well (a dropped reservation too): room again.
        first.finish(false, Millis(2));
        assert!(limit.reserve(keys, Millis(2)).is_ok());
    }

    #[test]
    fn honest_attempts_leave_nothing_behind() {
        let limit = FailedPaymentLimit::new(3, 10_000).unwrap();
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for n in 0..1_000 {
            let keys = limit.keys(Some(ip), &format!("buyer-{n}@example.org"), Some("4242424242424242"));
            limit.reserve(keys, Millis(n)).unwrap().finish(false, Millis(n));
        }
        assert_eq!(limit.counts.lock().unwrap().len(), 0, "a thousand new buyers are not remembered");
        let declined = limit.keys(None, "d@example.org", Some("4000000000000002"));
        limit.reserve(declined, Millis(5)).unwrap().finish(true, Millis(5));
        assert_eq!(limit.counts.lock().unwrap().len(), 2, "a failure is remembered for its email and card");
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
            off.reserve(keys.clone(), Millis(t)).unwrap().finish(true, Millis(t));
        }
    }
}
