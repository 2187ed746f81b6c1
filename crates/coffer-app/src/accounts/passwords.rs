//! Password hashing on a bounded pool: `threads` OS threads of their own
//! run the argon2id hashes (each takes 19 MiB and tens of milliseconds), the
//! rest wait their turn, none runs on the async workers, and the threads run
//! at a lower scheduling priority, so a burst of sign-ins takes CPU only
//! that requests leave (docs/benchmarks.md: storefront p99 under sign-ins).

use crate::AppError;
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads' priority on the portable 0–99 scale: 0, nice 19 on
/// Linux. Requests always win the CPU; sign-ins use what is left, and still
/// get a small share when the server is saturated. Measured against nice 9
/// in docs/benchmarks.md.
const HASHING_PRIORITY: u8 = 0;

/// A hashing thread keeps its argon2 working memory between hashes (no
/// page faults per sign-in) and hands it back after this long without one.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct PasswordPool {
    jobs: mpsc::Sender<Job>,
    /// Verifications run so far, real or against the dummy: lets tests
    /// prove an unknown address costs a verification like a known one.
    verifications: Arc<AtomicU64>,
}

impl PasswordPool {
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("coffer-argon2-{n}")).spawn(move || {
                lower_priority();
                loop {
                    let job = match queue.lock() {
                        Ok(queue) => queue.recv_timeout(IDLE_RELEASE),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        // Idle: the 19 MiB of working memory go back to the system.
                        Err(mpsc::RecvTimeoutError::Timeout) => coffer_crypto::release_hashing_memory(),
                        // Every sender is gone: the pool was dropped.
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "a password hashing thread could not start");
            }
        }
        PasswordPool { jobs, verifications: Arc::new(AtomicU64::new(0)) }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, AppError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = reply.send(work());
            }))
            .map_err(|_| hashing_stopped())?;
        answer.await.map_err(|_| hashing_stopped())
    }

    /// The PHC string of a new password.
    pub async fn hash(&self, password: SecretString) -> Result<String, AppError> {
        Ok(self.run(move || coffer_crypto::hash_password(password.expose_secret().as_bytes())).await??)
    }

    /// Checks a password against a stored hash; with no hash (no such
    /// account) the same work runs against a dummy and the answer is false.
    pub async fn verify(&self, password: SecretString, stored: Option<String>) -> Result<bool, AppError> {
        let verifications = self.verifications.clone();
        self.run(move || {
            verifications.fetch_add(1, Ordering::Relaxed);
            let password = password.expose_secret().as_bytes();
            match stored {
                Some(phc) => coffer_crypto::verify_password(password, &phc),
                None => {
                    coffer_crypto::dummy_verify(password);
                    false
                }
            }
        })
        .await
    }
}

impl PasswordPool {
    /// How many verifications (real or dummy) have run.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

/// The pool's threads are gone: an internal failure (try again later),
/// never the person's mistake.
fn hashing_stopped() -> AppError {
    tracing::error!("password hashing stopped");
    AppError::Unavailable
}

/// Best effort: where lowering is not allowed the thread runs as it is.
fn lower_priority() {
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    if let Ok(value) = ThreadPriorityValue::try_from(HASHING_PRIORITY)
        && let Err(e) = thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(value))
    {
        tracing::debug!(error = ?e, "password hashing threads keep normal priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_verify_and_unknown_accounts_do_the_same_work() {
        let pool = PasswordPool::new(2);
        let phc = pool.hash(SecretString::from("orbit velvet canyon 42")).await.unwrap();
        assert!(pool.verify(SecretString::from("orbit velvet canyon 42"), Some(phc.clone())).await.unwrap());
        assert!(!pool.verify(SecretString::from("orbit velvet canyon 43"), Some(phc)).await.unwrap());
        // Unknown account: false, after a real argon2id verification.
        let before = pool.verifications();
        let started = std::time::Instant::now();
        assert!(!pool.verify(SecretString::from("whatever it is"), None).await.unwrap());
        assert!(started.elapsed() > std::time::Duration::from_millis(1), "the dummy hash was computed");
        assert_eq!(pool.verifications(), before + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_pool_size_run_at_once() {
        let pool = PasswordPool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
