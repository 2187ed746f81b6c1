//! What follows the order events for vendors (migration 0024): the relay
//! that reads each event once, the vendors' ledger, and webhook endpoints,
//! deliveries and their attempts. Every read of something a vendor owns
//! names the vendor.

use crate::batch::{Statements, Val};
use crate::{Db, NewEmail, NewJob, OrderLine, StoreError, WriteCommands, WriteTx};
use coffer_domain::{Millis, OrderId, OrderStatus, VendorId, WebhookDeliveryId, WebhookEndpointId};
use sqlx::Row;
use sqlx::any::AnyRow;

/// An order event not yet relayed, with its order as it is now (`None`
/// only if the order is gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayEvent {
    pub order_id: OrderId,
    pub seq: i64,
    pub at: Millis,
    pub from_status: Option<String>,
    pub to_status: String,
    pub order: Option<RelayOrder>,
}

/// An order as the relay reads it: its status now, its currency and every
/// line (no buyer: the relay never needs one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayOrder {
    pub id: OrderId,
    pub status: OrderStatus,
    pub currency: String,
    pub lines: Vec<OrderLine>,
}

/// A ledger entry to add (ignored when its order, line and kind exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLedgerEntry {
    pub id: String,
    pub vendor_id: VendorId,
    pub order_id: OrderId,
    pub line_no: i64,
    pub kind: &'static str,
    pub currency: String,
    pub amount: i64,
    pub at: Millis,
}

/// A ledger entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub order_id: String,
    pub line_no: i64,
    pub kind: String,
    pub currency: String,
    pub amount: i64,
    pub at: Millis,
}

/// An endpoint as stored (its secret lives in the key store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub vendor_id: VendorId,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: Millis,
}

/// A delivery to add, with the job that sends it.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    pub vendor_id: VendorId,
    pub event_key: String,
    pub event_type: &'static str,
    pub order_id: OrderId,
    pub at: Millis,
    pub job: NewJob,
}

/// A delivery as the log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    pub vendor_id: VendorId,
    pub event_key: String,
    pub event_type: String,
    pub order_id: String,
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub created_at: Millis,
}

/// One attempt's outcome, for the log and the delivery's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub delivery: WebhookDeliveryId,
    pub at: Millis,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub elapsed_ms: i64,
    /// `delivered`, `pending` (to retry) or `failed` (given up).
    pub state: &'static str,
}

macro_rules! select_delivery {
    ($tail:literal) => {
        concat!(
            "SELECT id, endpoint_id, vendor_id, event_key, event_type, order_id, status, attempts, last_status_code, \
             last_error, last_attempt_at, delivered_at, created_at FROM webhook_deliveries ",
            $tail
        )
    };
}

fn delivery_row(r: &AnyRow) -> Result<WebhookDelivery, StoreError> {
    let millis = |c: &str| -> Result<Option<Millis>, StoreError> { Ok(r.try_get::<Option<i64>, _>(c)?.map(Millis)) };
    Ok(WebhookDelivery {
        id: WebhookDeliveryId::parse(r.try_get("id")?).map_err(StoreError::corrupt)?,
        endpoint_id: WebhookEndpointId::parse(r.try_get("endpoint_id")?).map_err(StoreError::corrupt)?,
        vendor_id: VendorId::parse(r.try_get("vendor_id")?).map_err(StoreError::corrupt)?,
        event_key: r.try_get("event_key")?,
        event_type: r.try_get("event_type")?,
        order_id: r.try_get("order_id")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        last_status_code: r.try_get("last_status_code")?,
        last_error: r.try_get("last_error")?,
        last_attempt_at: millis("last_attempt_at")?,
        delivered_at: millis("delivered_at")?,
        created_at: Millis(r.try_get("created_at")?),
    })
}

fn endpoint_row(r: &AnyRow) -> Result<WebhookEndpoint, StoreError> {
    let events: String = r.try_get("events")?;
    Ok(WebhookEndpoint {
        id: WebhookEndpointId::parse(r.try_get("id")?).map_err(StoreError::corrupt)?,
        vendor_id: VendorId::parse(r.try_get("vendor_id")?).map_err(StoreError::corrupt)?,
        url: r.try_get("url")?,
        events: events.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        created_at: Millis(r.try_get("created_at")?),
    })
}

impl Db {
    /// The oldest order events not yet relayed (at most `limit`), each with
    /// its order and lines: one query for a whole batch.
    pub async fn events_to_relay(&self, limit: i64) -> Result<Vec<RelayEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.order_id, e.seq, e.at, e.from_status, e.to_status, o.status, o.currency, l.line_no, \
             l.product_id, l.vendor_id, l.quantity, l.unit_price, l.line_total, l.refunded_amount \
             FROM (SELECT order_id, seq, at, from_status, to_status FROM order_events WHERE relayed_at IS NULL \
                   ORDER BY at, order_id, seq LIMIT $1) e \
             LEFT JOIN orders o ON o.id = e.order_id LEFT JOIN order_lines l ON l.order_id = o.id \
             ORDER BY e.at, e.order_id, e.seq, l.line_no",
        )
        .bind(limit)
        .fetch_all(self.readers())
        .await?;
        let mut out: Vec<RelayEvent> = Vec::new();
        for r in &rows {
            let order_id = OrderId::parse(r.try_get("order_id")?).map_err(StoreError::corrupt)?;
            let seq: i64 = r.try_get("seq")?;
            let same = out.last().is_some_and(|last| last.order_id == order_id && last.seq == seq);
            if !same {
                let status: Option<String> = r.try_get("status")?;
                let order = match status {
                    Some(status) => Some(RelayOrder {
                        id: order_id.clone(),
                        status: OrderStatus::parse(&status).ok_or_else(|| StoreError::corrupt("orders.status"))?,
                        currency: r.try_get("currency")?,
                        lines: Vec::new(),
                    }),
                    None => None,
                };
                out.push(RelayEvent {
                    order_id,
                    seq,
                    at: Millis(r.try_get("at")?),
                    from_status: r.try_get("from_status")?,
                    to_status: r.try_get("to_status")?,
                    order,
                });
            }
            let has_line = r.try_get::<Option<i64>, _>("line_no")?.is_some();
            if let (true, Some(order)) = (has_line, out.last_mut().and_then(|e| e.order.as_mut())) {
                order.lines.push(crate::orders::line_from_row(r)?);
            }
        }
        Ok(out)
    }

    /// A vendor's live endpoints, oldest first.
    pub async fn webhook_endpoints(&self, vendor: &VendorId) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, vendor_id, url, events, created_at FROM webhook_endpoints \
             WHERE vendor_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
        )
        .bind(vendor.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(endpoint_row).collect()
    }

    /// A live endpoint by id (any vendor: callers compare the vendor).
    pub async fn webhook_endpoint(&self, id: &WebhookEndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        let row = sqlx::query(
            "SELECT id, vendor_id, url, events, created_at FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.as_str())
        .fetch_optional(self.readers())
        .await?;
        row.as_ref().map(endpoint_row).transpose()
    }

    pub async fn webhook_delivery(&self, id: &WebhookDeliveryId) -> Result<Option<WebhookDelivery>, StoreError> {
        let row =
            sqlx::query(select_delivery!("WHERE id = $1")).bind(id.as_str()).fetch_optional(self.readers()).await?;
        row.as_ref().map(delivery_row).transpose()
    }

    /// An endpoint's deliveries, newest first, before a delivery id when
    /// paging (ids are time-ordered).
    pub async fn webhook_deliveries(
        &self,
        endpoint: &WebhookEndpointId,
        before: Option<&WebhookDeliveryId>,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let rows =
            sqlx::query(select_delivery!("WHERE endpoint_id = $1 AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3"))
                .bind(endpoint.as_str())
                .bind(before.map_or("", WebhookDeliveryId::as_str).to_owned())
                .bind(limit)
                .fetch_all(self.readers())
                .await?;
        rows.iter().map(delivery_row).collect()
    }

    /// A delivery's attempts, first first: (attempt, at, status code,
    /// error, elapsed ms).
    pub async fn webhook_attempts(
        &self,
        delivery: &WebhookDeliveryId,
    ) -> Result<Vec<(i64, Millis, Option<i64>, Option<String>, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT attempt, at, status_code, error, elapsed_ms FROM webhook_attempts WHERE delivery_id = $1 \
             ORDER BY attempt",
        )
        .bind(delivery.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("attempt")?,
                    Millis(r.try_get("at")?),
                    r.try_get("status_code")?,
                    r.try_get("error")?,
                    r.try_get("elapsed_ms")?,
                ))
            })
            .collect()
    }

    /// The (line, kind) of an order's ledger entries.
    pub async fn ledger_of_order(&self, order: &OrderId) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT line_no, kind FROM ledger_entries WHERE order_id = $1")
            .bind(order.as_str())
            .fetch_all(self.readers())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("line_no")?, r.try_get("kind")?))).collect()
    }

    /// A vendor's ledger entries from `from` up to, not including, `to`,
    /// in time order.
    pub async fn ledger_entries(
        &self,
        vendor: &VendorId,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT order_id, line_no, kind, currency, amount, at FROM ledger_entries \
             WHERE vendor_id = $1 AND at >= $2 AND at < $3 ORDER BY at, order_id, line_no, kind",
        )
        .bind(vendor.as_str())
        .bind(from.0)
        .bind(to.0)
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerEntry {
                    order_id: r.try_get("order_id")?,
                    line_no: r.try_get("line_no")?,
                    kind: r.try_get("kind")?,
                    currency: r.try_get("currency")?,
                    amount: r.try_get("amount")?,
                    at: Millis(r.try_get("at")?),
                })
            })
            .collect()
    }
}

impl WriteTx {
    pub async fn insert_webhook_endpoint(&mut self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, vendor_id, url, events, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(endpoint.id.as_str())
        .bind(endpoint.vendor_id.as_str())
        .bind(endpoint.url.clone())
        .bind(endpoint.events.join(","))
        .bind(endpoint.created_at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Deletes a live endpoint of this vendor; whether one was deleted.
    pub async fn delete_webhook_endpoint(
        &mut self,
        vendor: &VendorId,
        id: &WebhookEndpointId,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET deleted_at = $3 WHERE id = $1 AND vendor_id = $2 AND deleted_at IS NULL",
        )
        .bind(id.as_str())
        .bind(vendor.as_str())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sends a delivery again (a person asked): pending, with a new job.
    pub async fn replay_delivery(&mut self, id: &WebhookDeliveryId, job: &NewJob) -> Result<(), StoreError> {
        sqlx::query("UPDATE webhook_deliveries SET status = 'pending' WHERE id = $1")
            .bind(id.as_str())
            .execute(self.conn())
            .await?;
        crate::JobWriter::enqueue_job(self, job).await
    }
}

/// What one relay batch writes, as one unit for [`Db::write_commands`]:
/// the ledger entries (none where its order, line and kind have one), the
/// deliveries with their jobs (a job only for a delivery this unit adds),
/// the vendors' emails, and each event's mark. Decided in full before it
/// runs, so on SQLite the writer runs it without a hand-off per statement
/// and a checkout behind it waits little.
pub fn relay_batch(
    ledger: &[NewLedgerEntry],
    deliveries: &[NewDelivery],
    letters: &[NewEmail],
    relayed: &[(OrderId, i64)],
    at: Millis,
) -> WriteCommands {
    let mut statements = Statements::default();
    for entry in ledger {
        statements.push(
            "INSERT INTO ledger_entries (id, vendor_id, order_id, line_no, kind, currency, amount, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id, line_no, kind) DO NOTHING",
            vec![
                Val::Text(entry.id.clone()),
                Val::Text(entry.vendor_id.to_string()),
                Val::Text(entry.order_id.to_string()),
                Val::Int(entry.line_no),
                Val::Text(entry.kind.to_owned()),
                Val::Text(entry.currency.clone()),
                Val::Int(entry.amount),
                Val::Int(entry.at.0),
            ],
        );
    }
    for delivery in deliveries {
        statements.push(
            "INSERT INTO webhook_deliveries (id, endpoint_id, vendor_id, event_key, event_type, order_id, status, \
             attempts, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7) \
             ON CONFLICT (event_key, endpoint_id) DO NOTHING",
            vec![
                Val::Text(delivery.id.to_string()),
                Val::Text(delivery.endpoint_id.to_string()),
                Val::Text(delivery.vendor_id.to_string()),
                Val::Text(delivery.event_key.clone()),
                Val::Text(delivery.event_type.to_owned()),
                Val::Text(delivery.order_id.to_string()),
                Val::Int(delivery.at.0),
            ],
        );
        // No job when the event already had a delivery to this endpoint.
        // (On PostgreSQL the unit is one statement that sees only what was
        // there before it: two relays racing on one event may leave a job
        // whose delivery is not there, which the sender ends at once.)
        statements.push(
            "INSERT INTO jobs (id, kind, payload, status, attempts, next_attempt_at, created_at) \
             SELECT $1, $2, $3, 'pending', 0, $4, $4 WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries \
             WHERE event_key = $5 AND endpoint_id = $6 AND id <> $7)",
            vec![
                Val::Text(delivery.job.id.clone()),
                Val::Text(delivery.job.kind.to_owned()),
                Val::Text(delivery.job.payload.clone()),
                Val::Int(delivery.job.at.0),
                Val::Text(delivery.event_key.clone()),
                Val::Text(delivery.endpoint_id.to_string()),
                Val::Text(delivery.id.to_string()),
            ],
        );
    }
    for letter in letters {
        for (sql, values) in crate::outbox::enqueue_statements(letter) {
            statements.push(sql, values);
        }
    }
    for (order, seq) in relayed {
        statements.push(
            "UPDATE order_events SET relayed_at = $3 WHERE order_id = $1 AND seq = $2",
            vec![Val::Text(order.to_string()), Val::Int(*seq), Val::Int(at.0)],
        );
    }
    WriteCommands { statements }
}

/// How a batch of deliveries went, as one unit for [`Db::write_commands`]:
/// each attempt logged and its delivery moved to the attempt's state, then
/// each job's outcome (recorded only while its claim holds the job).
///
/// The attempt's number is read from its delivery before the delivery is
/// counted, on both backends alike (on PostgreSQL the unit is one statement
/// that sees only what was there before it). Should one delivery have two
/// attempts in one batch there (a replay while it was being sent), the
/// second one's log row is the one left out; its delivery still counts both.
pub fn delivery_outcomes(
    attempts: &[DeliveryAttempt],
    outcomes: Vec<(crate::JobClaim, crate::JobOutcome)>,
    now: Millis,
) -> WriteCommands {
    let mut statements = Statements::default();
    for attempt in attempts {
        statements.push(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, elapsed_ms) \
             SELECT $1, attempts + 1, $2, $3, $4, $5 FROM webhook_deliveries WHERE id = $1 \
             ON CONFLICT (delivery_id, attempt) DO NOTHING",
            vec![
                Val::Text(attempt.delivery.to_string()),
                Val::Int(attempt.at.0),
                Val::OptInt(attempt.status_code),
                Val::OptText(attempt.error.clone()),
                Val::Int(attempt.elapsed_ms),
            ],
        );
        statements.push(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = $2, last_status_code = $3, \
             last_error = $4, last_attempt_at = $5, \
             delivered_at = CASE WHEN $2 = 'delivered' THEN $5 ELSE delivered_at END WHERE id = $1",
            vec![
                Val::Text(attempt.delivery.to_string()),
                Val::Text(attempt.state.to_owned()),
                Val::OptInt(attempt.status_code),
                Val::OptText(attempt.error.clone()),
                Val::Int(attempt.at.0),
            ],
        );
    }
    for (claim, outcome) in outcomes {
        let (sql, values) = crate::jobs::outcome_statement(claim, outcome, now);
        statements.push(sql, values);
    }
    WriteCommands { statements }
}
