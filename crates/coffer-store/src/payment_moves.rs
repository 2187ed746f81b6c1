//! Claims on an order's money: one staff move (refund, void, approval) at
//! a time, from before the gateway call until it is recorded.

use crate::{StoreError, WriteTx};
use coffer_domain::{Millis, OrderId};

/// How long a claimed move may stand before another may take it over (the
/// process that claimed it died between the gateway and the record).
const PAYMENT_MOVE_STALE_MS: i64 = 10 * 60 * 1000;

/// Claiming and releasing an order for a money move, inside a unit of work.
pub trait PaymentMoveWriter {
    /// Claims the order for one staff move (a refund, a void, an approval).
    /// Returns the claim (its time, which names it: a takeover is always
    /// later); `None` when another move holds the order and is not stale.
    fn claim_payment_move(
        &mut self,
        order: &OrderId,
        kind: &str,
        now: Millis,
    ) -> impl Future<Output = Result<Option<Millis>, StoreError>> + Send;

    /// Ends `claim`: in the unit that records the move, or when the move was
    /// refused. False when the claim no longer holds the order (it went
    /// stale and another move took it over): that unit must not commit.
    fn release_payment_move(
        &mut self,
        order: &OrderId,
        claim: Millis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl PaymentMoveWriter for WriteTx {
    async fn claim_payment_move(
        &mut self,
        order: &OrderId,
        kind: &str,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let claimed = sqlx::query(
            "INSERT INTO payment_moves (order_id, kind, claimed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (order_id) DO UPDATE SET kind = excluded.kind, claimed_at = excluded.claimed_at \
             WHERE payment_moves.claimed_at < $4",
        )
        .bind(order.as_str())
        .bind(kind.to_owned())
        .bind(now.0)
        .bind(now.0 - PAYMENT_MOVE_STALE_MS)
        .execute(self.conn())
        .await?;
        Ok((claimed.rows_affected() == 1).then_some(now))
    }

    async fn release_payment_move(&mut self, order: &OrderId, claim: Millis) -> Result<bool, StoreError> {
        let released = sqlx::query("DELETE FROM payment_moves WHERE order_id = $1 AND claimed_at = $2")
            .bind(order.as_str())
            .bind(claim.0)
            .execute(self.conn())
            .await?;
        Ok(released.rows_affected() == 1)
    }
}
