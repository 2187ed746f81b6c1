//! Money back through the gateway as jobs. A refund, a rejection or an
//! expired hold commits its state change together with a `give_back` job
//! (one unit of work), so the money is never given back for a move that was
//! not recorded, nor forgotten for one that was. The `payments` loop then
//! calls the gateway, retrying with backoff; the job's id is the gateway's
//! idempotency key, so a job run again after a crash gives back once.

use super::*;
use coffer_store::{ClaimedJob, JobOutcome, NewJob};

/// The job kind: give money back (void or refund) for a card order.
pub const GIVE_BACK_JOB: &str = "give_back";
/// How long a claimed give-back is reserved for its worker.
const LEASE_MS: i64 = 60_000;
/// How long one give-back may take (reading the order, the gateway call).
/// The jobs of a claim run side by side, so a claim ends well inside its
/// lease and no other worker takes a job over while its call is under way.
const RUN_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);
/// Jobs claimed at once.
const CLAIM_BATCH: i64 = 20;
/// Attempts before a give-back is left to a person (about a day of retries).
const MAX_ATTEMPTS: i64 = 30;

/// What a give-back job says: which order, how much (its currency is the order's).
#[derive(serde::Serialize, serde::Deserialize)]
struct GiveBack {
    order: String,
    amount_minor: i64,
}

/// The job that gives `amount` of a card order back; `None` for orders not
/// paid by card (a bank transfer is paid back by the operator).
pub(super) fn give_back_job(order: &coffer_store::StoredOrder, amount: i64, at: Millis) -> Option<NewJob> {
    if order.payment_method != "card" || amount <= 0 {
        return None;
    }
    let payload = serde_json::to_string(&GiveBack { order: order.id.to_string(), amount_minor: amount }).ok()?;
    Some(NewJob { id: coffer_domain::JobId::generate().to_string(), kind: GIVE_BACK_JOB, payload, at })
}

impl StaffOrders {
    /// Refuses a money move on a card order whose gateway token is gone
    /// (erased with the customer, from before tokens were kept apart): the
    /// job could never run, so the move is not made.
    pub(super) async fn check_money_can_go_back(
        &self,
        order: &coffer_store::StoredOrder,
        customer_key: Option<&coffer_crypto::DataKey>,
    ) -> Result<(), AppError> {
        if order.payment_method == "card" && self.payment_token(order, customer_key).await?.is_none() {
            return Err(bad(
                "payment_token_gone",
                "status",
                "this order's payment token was erased with the customer; give the money back in the processor's \
                 dashboard",
            ));
        }
        Ok(())
    }

    /// Runs the due give-back jobs, ending after the claim under way once
    /// `stop` fires; returns how many gave money back. The jobs of a claim
    /// run side by side, each within [`RUN_WITHIN`]; their outcomes are
    /// recorded under the claim (see `coffer_store::jobs`).
    pub async fn run_give_backs(&self, stop: &crate::supervisor::CancellationToken) -> Result<usize, AppError> {
        let mut given = 0;
        while !stop.is_cancelled() {
            let claimed = self.db.claim_jobs(GIVE_BACK_JOB, self.clock.now(), LEASE_MS, CLAIM_BATCH).await?;
            if claimed.is_empty() {
                break;
            }
            let runs = claimed.iter().map(|job| async move {
                let outcome = match tokio::time::timeout(RUN_WITHIN, self.give_back_once(job)).await {
                    Ok(outcome) => outcome,
                    // The gateway may still act: the retry carries the same
                    // idempotency key, so the money goes back once.
                    Err(_) => self.retry_or_fail(job, "timed_out"),
                };
                (job.claim(), outcome)
            });
            let outcomes = futures::future::join_all(runs).await;
            given += outcomes.iter().filter(|(_, outcome)| *outcome == JobOutcome::Done).count();
            self.db.finish_jobs(outcomes, self.clock.now()).await?;
        }
        Ok(given)
    }

    /// A retry with backoff, or, after [`MAX_ATTEMPTS`], a failure for a person.
    fn retry_or_fail(&self, job: &ClaimedJob, error: &str) -> JobOutcome {
        if job.attempts >= MAX_ATTEMPTS {
            return give_up(job, error);
        }
        // The payload names the order and the amount: nobody's data.
        tracing::warn!(job = %job.id, payload = %job.payload, attempts = job.attempts, error, "giving money back \
            failed; will retry");
        let at = Millis(self.clock.now().0.saturating_add(crate::mail::backoff_ms(job.attempts)));
        JobOutcome::Retry { at, error: error.to_owned() }
    }

    async fn give_back_once(&self, job: &ClaimedJob) -> JobOutcome {
        let Ok(GiveBack { order, amount_minor }) = serde_json::from_str(&job.payload) else {
            return JobOutcome::Failed { error: "bad_payload".into() };
        };
        let failed = |error: &str| give_up(job, error);
        let retry = |error: &str| self.retry_or_fail(job, error);
        let Ok(id) = OrderId::parse(&order) else { return failed("bad_payload") };
        let stored = match self.db.order(&id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return failed("order_gone"),
            Err(_) => return retry("database_unavailable"),
        };
        let key = match self.vault.data_key(&stored.data_key_id).await {
            Ok(key) => key,
            Err(_) => return retry("key_unavailable"),
        };
        let token = match self.payment_token(&stored, key.as_ref()).await {
            Ok(Some(token)) => token,
            Ok(None) => return failed("payment_token_gone"),
            Err(_) => return retry("key_unavailable"),
        };
        match self.gateway.give_back(&token, amount_minor, &stored.currency, &job.id).await {
            Ok(()) => JobOutcome::Done,
            Err(_) => retry("gateway_refused"),
        }
    }
}

/// Gives a job up for a person to reconcile with the processor. The payload
/// names the order and the amount: nobody's data.
fn give_up(job: &ClaimedJob, error: &str) -> JobOutcome {
    tracing::error!(job = %job.id, payload = %job.payload, error, "money could not be given back; a person must \
        reconcile the order with the processor");
    JobOutcome::Failed { error: error.to_owned() }
}
