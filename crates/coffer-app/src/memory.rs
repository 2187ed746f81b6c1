//! Gives the system back the memory the allocator keeps after a burst.
//!
//! glibc keeps what a thread freed in that thread's arena, for the next
//! allocation, and returns pages only from the top of a heap. After a
//! checkout load the server stayed at 53–60 MiB resident, of which about
//! 19 MiB was free memory held this way (`malloc_trim` from a debugger
//! brought it to 42 MiB). So once requests, and the mail sent after them,
//! stop for [`QUIET`], the server asks glibc to return every whole free
//! page (`malloc_trim(0)`), and again every [`AGAIN_AFTER`] while it stays
//! quiet (for other background work). Not while requests come: glibc
//! locks each arena in turn to do it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long without work (a request, mail sent) before the memory is given back.
pub const QUIET: Duration = Duration::from_secs(2);

/// While quiet, how often the memory is given back again.
pub const AGAIN_AFTER: Duration = Duration::from_secs(1);

/// When work was last done and memory last given back, in milliseconds
/// from the process's first look at the clock.
struct Quiet {
    last_work_ms: AtomicU64,
    worked_since_release: AtomicBool,
    last_release_ms: AtomicU64,
}

impl Quiet {
    const fn new() -> Self {
        Quiet {
            last_work_ms: AtomicU64::new(0),
            worked_since_release: AtomicBool::new(false),
            last_release_ms: AtomicU64::new(0),
        }
    }

    fn note_work_at(&self, now_ms: u64) {
        self.last_work_ms.store(now_ms, Ordering::Relaxed);
        self.worked_since_release.store(true, Ordering::Relaxed);
    }

    fn time_to_release_at(&self, now_ms: u64) -> bool {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let quiet_for = now_ms.saturating_sub(self.last_work_ms.load(Ordering::Relaxed));
        let since_release = now_ms.saturating_sub(self.last_release_ms.load(Ordering::Relaxed));
        let due = self.worked_since_release.load(Ordering::Relaxed) || since_release >= ms(AGAIN_AFTER);
        if quiet_for < ms(QUIET) || !due {
            return false;
        }
        self.worked_since_release.store(false, Ordering::Relaxed);
        self.last_release_ms.store(now_ms, Ordering::Relaxed);
        true
    }
}

static QUIET_STATE: Quiet = Quiet::new();
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn elapsed_ms() -> u64 {
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Notes work done: a request starting (see [`crate::request::serving`]),
/// mail sent.
pub fn note_work() {
    QUIET_STATE.note_work_at(elapsed_ms());
}

/// Whether to give memory back now: no work for [`QUIET`], and either
/// work was done since the last time or that was [`AGAIN_AFTER`] ago.
pub fn time_to_release() -> bool {
    QUIET_STATE.time_to_release_at(elapsed_ms())
}

/// Asks the allocator to return its whole free pages to the system; true
/// when it returned any. Elsewhere than glibc it does nothing: other
/// allocators return memory themselves or have no such call.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes no pointers and glibc serialises it with
    // every other allocator call (it is MT-safe).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_is_given_back_after_quiet_and_again_while_quiet() {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(0);
        let quiet = Quiet::new();
        quiet.note_work_at(10_000);
        assert!(!quiet.time_to_release_at(10_000 + ms(QUIET) - 1), "work was just done");
        let later = 10_000 + ms(QUIET);
        assert!(quiet.time_to_release_at(later), "quiet after a burst");
        assert!(!quiet.time_to_release_at(later + ms(AGAIN_AFTER) - 1), "not again at once");
        assert!(quiet.time_to_release_at(later + ms(AGAIN_AFTER)), "again while quiet");
        quiet.note_work_at(later + ms(AGAIN_AFTER) + 1);
        assert!(!quiet.time_to_release_at(later + ms(AGAIN_AFTER) + 2), "work again: not now");
    }
}
