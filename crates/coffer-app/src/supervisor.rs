//! The background work of a serving process under one supervisor: each
//! job is a loop of *units* (deliver due mail, seal the audit log, number
//! invoices, re-wrap keys, run retention). A stop lets the unit under way
//! finish and starts no new one, so a shutdown leaves nothing half-done;
//! work not started yet stays queued for the next start.

use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
pub use tokio_util::sync::CancellationToken;

/// Runs named loops until [`Supervisor::shutdown`].
pub struct Supervisor {
    stop: CancellationToken,
    loops: JoinSet<&'static str>,
    names: Vec<&'static str>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor { stop: CancellationToken::new(), loops: JoinSet::new(), names: Vec::new() }
    }

    /// Runs `unit` now and then every `period` until the stop. A unit that
    /// works through a backlog in steps is handed the stop token and ends
    /// at a step boundary once it fires.
    pub fn every<F, Fut>(&mut self, name: &'static str, period: Duration, mut unit: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.names.push(name);
        self.loops.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                // Not raced against the stop: a unit under way finishes. A
                // unit that panics is logged and the loop goes on.
                let run = std::panic::AssertUnwindSafe(unit(stop.clone()));
                if futures::FutureExt::catch_unwind(run).await.is_err() {
                    tracing::error!(job = name, "a background unit panicked; the next one runs as planned");
                }
            }
            name
        });
    }

    /// The token that fires when the supervisor stops.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops every loop and waits up to `grace` for their units under way.
    /// Returns the names of loops still running when the grace ran out (they
    /// are aborted; their work is claimed again after a lease, or redone).
    pub async fn shutdown(mut self, grace: Duration) -> Vec<&'static str> {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        let mut running = self.names.clone();
        loop {
            match tokio::time::timeout_at(deadline, self.loops.join_next()).await {
                Ok(Some(Ok(name))) => {
                    if let Some(at) = running.iter().position(|n| *n == name) {
                        running.remove(at);
                    }
                }
                Ok(Some(Err(e))) => tracing::error!(error = %e, "a background loop panicked"),
                Ok(None) => break,
                Err(_) => {
                    self.loops.shutdown().await;
                    break;
                }
            }
        }
        running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_unit_under_way_finishes_and_no_new_one_starts() {
        let started = Arc::new(AtomicU32::new(0));
        let finished = Arc::new(AtomicU32::new(0));
        let mut supervisor = Supervisor::new();
        let (s, f) = (started.clone(), finished.clone());
        supervisor.every("slow", Duration::from_millis(10), move |_| {
            let (s, f) = (s.clone(), f.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                f.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(started.load(Ordering::SeqCst), 1, "the first unit is under way");
        let late = supervisor.shutdown(Duration::from_secs(5)).await;
        assert!(late.is_empty());
        assert_eq!(started.load(Ordering::SeqCst), 1, "no unit starts after the stop");
        assert_eq!(finished.load(Ordering::SeqCst), 1, "the unit under way finished");
    }

    #[tokio::test]
    async fn a_panicking_unit_does_not_end_its_loop() {
        let runs = Arc::new(AtomicU32::new(0));
        let mut supervisor = Supervisor::new();
        let r = runs.clone();
        supervisor.every("flaky", Duration::from_millis(5), move |_| {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first unit fails");
                }
            }
        });
        // Waits for the second run (printing the panic can take a while).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(supervisor.shutdown(Duration::from_secs(1)).await.is_empty());
        assert!(runs.load(Ordering::SeqCst) >= 2, "the loop went on after the panic");
    }

    #[tokio::test]
    async fn a_unit_that_outlives_the_grace_is_named() {
        let mut supervisor = Supervisor::new();
        supervisor.every("stuck", Duration::from_millis(10), |_| std::future::pending::<()>());
        tokio::time::sleep(Duration::from_millis(30)).await;
        let late = supervisor.shutdown(Duration::from_millis(100)).await;
        assert_eq!(late, ["stuck"]);
    }
}
