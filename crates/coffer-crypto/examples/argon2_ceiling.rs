//! The ceiling for sign-ins (`scripts/bench --only sign-in`): argon2id
//! verifications at Coffer's parameters, as fast as `threads` threads (the
//! machine's cores) run them with nothing else to do, through the same
//! `coffer_crypto::verify_password` the server calls.
//!
//! `cargo run --release -p coffer-crypto --example argon2_ceiling -- SECONDS [THREADS]`
//! prints `verifications/s N`.

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).ok_or("usage: argon2_ceiling SECONDS [THREADS]")?;
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let hash = coffer_crypto::hash_password(b"a password of a demo customer")?;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let hash = hash.clone();
            std::thread::spawn(move || {
                let mut done = 0u64;
                while started.elapsed() < Duration::from_secs_f64(seconds) {
                    assert!(coffer_crypto::verify_password(b"a password of a demo customer", &hash));
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.join().map_err(|_| "a worker panicked")?;
    }
    println!("verifications/s {:.1}", total as f64 / started.elapsed().as_secs_f64());
    Ok(())
}
