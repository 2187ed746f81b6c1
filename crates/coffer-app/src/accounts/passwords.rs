//! Password hashing on a bounded pool: at most `threads` argon2id hashes run
//! at once (each takes 19 MiB and tens of milliseconds), the rest wait their
//! turn, and none runs on the async workers, so sign-ins never stall other
//! requests.

use crate::AppError;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct PasswordPool {
    permits: Arc<Semaphore>,
}

impl PasswordPool {
    pub fn new(threads: usize) -> Self {
        PasswordPool { permits: Arc::new(Semaphore::new(threads.max(1))) }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, AppError> {
        let _permit = self.permits.acquire().await.map_err(|_| AppError::Refused("shutting down".into()))?;
        tokio::task::spawn_blocking(work).await.map_err(|_| AppError::Refused("password hashing stopped".into()))
    }

    /// The PHC string of a new password.
    pub async fn hash(&self, password: SecretString) -> Result<String, AppError> {
        Ok(self.run(move || coffer_crypto::hash_password(password.expose_secret().as_bytes())).await??)
    }

    /// Checks a password against a stored hash; with no hash (no such
    /// account) the same work runs against a dummy and the answer is false.
    pub async fn verify(&self, password: SecretString, stored: Option<String>) -> Result<bool, AppError> {
        self.run(move || {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_verify_and_unknown_accounts_do_the_same_work() {
        let pool = PasswordPool::new(2);
        let phc = pool.hash(SecretString::from("orbit velvet canyon 42")).await.unwrap();
        assert!(pool.verify(SecretString::from("orbit velvet canyon 42"), Some(phc.clone())).await.unwrap());
        assert!(!pool.verify(SecretString::from("orbit velvet canyon 43"), Some(phc)).await.unwrap());
        // Unknown account: false, after a real argon2id verification.
        let started = std::time::Instant::now();
        assert!(!pool.verify(SecretString::from("whatever it is"), None).await.unwrap());
        assert!(started.elapsed() > std::time::Duration::from_millis(1), "the dummy hash was computed");
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
