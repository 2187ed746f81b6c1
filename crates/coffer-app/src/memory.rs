//! Gives the system back the memory the allocator keeps after a burst.
//!
//! glibc keeps what a thread freed in that thread's arena, for the next
//! allocation, and returns pages only from the top of a heap. After a
//! checkout load the server stayed at 53–60 MiB resident, of which about
//! 19 MiB was free memory held this way (`malloc_trim` from a debugger
//! brought it to 42 MiB). So once requests stop for [`QUIET`], the server
//! asks glibc to return every whole free page (`malloc_trim(0)`), and again
//! every [`AGAIN_AFTER`] while it stays quiet (the mail of a burst is still
//! being sent after it). Not while requests come: glibc locks each arena in
//! turn to do it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long without a request before the memory is given back.
pub const QUIET: Duration = Duration::from_secs(2);

/// While quiet, how often the memory is given back again.
pub const AGAIN_AFTER: Duration = Duration::from_secs(5);

/// Milliseconds from [`START`] to the last time memory was given back.
static LAST_RELEASE_MS: AtomicU64 = AtomicU64::new(0);
/// When the process first asked (the zero of [`LAST_REQUEST_MS`]).
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// Milliseconds from [`START`] to the start of the latest request.
static LAST_REQUEST_MS: AtomicU64 = AtomicU64::new(0);
/// Whether a request came since the memory was last given back.
static SERVED_SINCE_RELEASE: AtomicBool = AtomicBool::new(false);

fn elapsed_ms() -> u64 {
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Notes a request starting (see [`crate::request::serving`]).
pub fn note_request() {
    LAST_REQUEST_MS.store(elapsed_ms(), Ordering::Relaxed);
    SERVED_SINCE_RELEASE.store(true, Ordering::Relaxed);
}

/// Whether to give memory back now: no request for [`QUIET`], and either
/// requests came since the last time or that was [`AGAIN_AFTER`] ago.
pub fn time_to_release() -> bool {
    time_to_release_at(elapsed_ms())
}

fn time_to_release_at(now_ms: u64) -> bool {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let quiet_for = now_ms.saturating_sub(LAST_REQUEST_MS.load(Ordering::Relaxed));
    let since_release = now_ms.saturating_sub(LAST_RELEASE_MS.load(Ordering::Relaxed));
    if quiet_for < ms(QUIET) || !(SERVED_SINCE_RELEASE.load(Ordering::Relaxed) || since_release >= ms(AGAIN_AFTER)) {
        return false;
    }
    SERVED_SINCE_RELEASE.store(false, Ordering::Relaxed);
    LAST_RELEASE_MS.store(now_ms, Ordering::Relaxed);
    true
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

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Memory freed on another thread in small pieces (below glibc's mmap
    /// threshold, so kept in that thread's arena) becomes resident no more
    /// once released, while a piece still in use keeps the heap's top.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn free_memory_kept_by_the_allocator_goes_back_to_the_system() {
        let before = std::thread::spawn(|| {
            // 64 MiB in 16 KiB pieces, each touched, with a small piece
            // allocated after them that stays: the freed pages are below
            // the top of the heap, where glibc does not return them itself.
            let pieces: Vec<Vec<u8>> = (0..4096).map(|i| vec![u8::try_from(i % 251).unwrap_or(1); 16 * 1024]).collect();
            let kept = vec![7u8; 64];
            drop(pieces);
            let before = resident_kib();
            (before, kept)
        })
        .join()
        .unwrap_or_default();
        assert!(release_free_memory(), "glibc reports that it returned memory");
        let after = resident_kib();
        assert!(
            after + 32 * 1024 < before.0,
            "at least 32 MiB of the 64 freed is returned: {} KiB resident before, {after} KiB after",
            before.0
        );
    }

    #[test]
    fn the_memory_is_given_back_after_quiet_and_again_while_quiet() {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(0);
        note_request();
        assert!(!time_to_release(), "a request just started");
        let later = elapsed_ms() + ms(QUIET);
        assert!(time_to_release_at(later), "quiet after a burst");
        assert!(!time_to_release_at(later + 1_000), "not again at once");
        assert!(time_to_release_at(later + ms(AGAIN_AFTER)), "again while quiet");
    }
}
