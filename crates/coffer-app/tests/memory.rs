//! The allocator's free memory goes back to the system
//! (`coffer_app::memory`). Alone in its own test binary: it reads the
//! process's resident memory, which tests running beside it would move.

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Memory freed on another thread in pieces below glibc's mmap
/// threshold, each between two small pieces still in use (so glibc
/// can neither merge it into the top of the heap nor return it by
/// itself), becomes resident no more once released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn free_memory_kept_by_the_allocator_goes_back_to_the_system() {
    let (before, kept) = std::thread::spawn(|| {
        let mut freed = Vec::with_capacity(4096);
        let mut kept = Vec::with_capacity(4096);
        for i in 0..4096u32 {
            freed.push(vec![u8::try_from(i % 251).unwrap_or(1); 16 * 1024]);
            kept.push(vec![7u8; 64]);
        }
        drop(freed);
        (resident_kib(), kept)
    })
    .join()
    .unwrap_or_default();
    assert!(before > 64 * 1024, "the 64 MiB freed is still resident before: {before} KiB");
    assert!(coffer_app::memory::release_free_memory(), "glibc reports that it returned memory");
    let after = resident_kib();
    assert!(
        after + 32 * 1024 < before,
        "at least 32 MiB of the 64 freed is returned: {before} KiB resident before, {after} KiB after"
    );
    drop(kept);
}
