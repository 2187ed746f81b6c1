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
    /// `stop` fires; returns how many gave money back.
    pub async fn run_give_backs(&self, stop: &crate::supervisor::CancellationToken) -> Result<usize, AppError> {
        let mut given = 0;
        while !stop.is_cancelled() {
            let claimed = self.db.claim_jobs(GIVE_BACK_JOB, self.clock.now(), LEASE_MS, 20).await?;
            if claimed.is_empty() {
                break;
            }
            let mut outcomes = Vec::with_capacity(claimed.len());
            for job in claimed {
                let outcome = self.give_back_once(&job).await;
                if outcome == JobOutcome::Done {
                    given += 1;
                }
                outcomes.push((job.id, outcome));
            }
            self.db.finish_jobs(outcomes, self.clock.now()).await?;
        }
        Ok(given)
    }

    async fn give_back_once(&self, job: &ClaimedJob) -> JobOutcome {
        let Ok(GiveBack { order, amount_minor }) = serde_json::from_str(&job.payload) else {
            return JobOutcome::Failed { error: "bad_payload".into() };
        };
        let failed = |error: &str| {
            // Order ids and job ids only: nobody's data.
            tracing::error!(job = %job.id, order = %order, error, "money could not be given back; a person must \
                reconcile the order with the processor");
            JobOutcome::Failed { error: error.to_owned() }
        };
        let retry = |error: &str| {
            if job.attempts >= MAX_ATTEMPTS {
                return failed(error);
            }
            tracing::warn!(job = %job.id, order = %order, attempts = job.attempts, error, "giving money back failed; \
                will retry");
            let at = Millis(self.clock.now().0.saturating_add(crate::mail::backoff_ms(job.attempts)));
            JobOutcome::Retry { at, error: error.to_owned() }
        };
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
