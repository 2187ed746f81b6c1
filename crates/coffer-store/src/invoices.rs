//! Invoices and their numbering: paid orders wait in `invoice_queue` until
//! the numbering job gives them consecutive numbers.

use crate::{Db, StoreError, WriteTx, unit};
use coffer_domain::{Millis, OrderId};
use sqlx::Row;
use sqlx::any::AnyRow;

/// An invoice as numbered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invoice {
    pub number: i64,
    pub order_id: OrderId,
    pub issued_at: Millis,
    pub currency: String,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub tax_country: String,
    pub tax_rate: i64,
}

fn invoice_from_row(r: &AnyRow) -> Result<Invoice, StoreError> {
    Ok(Invoice {
        number: r.try_get("number")?,
        order_id: OrderId::parse(&r.try_get::<String, _>("order_id")?).map_err(StoreError::corrupt)?,
        issued_at: Millis(r.try_get("issued_at")?),
        currency: r.try_get("currency")?,
        subtotal: r.try_get("subtotal")?,
        tax: r.try_get("tax")?,
        total: r.try_get("total")?,
        tax_country: r.try_get("tax_country")?,
        tax_rate: r.try_get("tax_rate")?,
    })
}

const INVOICES_DUE_POSTGRES: &str = "SELECT COALESCE(json_agg(json_build_array(id, currency, subtotal, tax, total, \
                                     tax_country, tax_rate) ORDER BY queued_at, id), '[]')::text FROM (SELECT o.id, o.currency, o.subtotal, o.tax, \
                                     o.total, o.tax_country, o.tax_rate, q.queued_at FROM invoice_queue q JOIN orders o ON o.id = q.order_id \
                                     ORDER BY q.queued_at, q.order_id LIMIT $1) AS due";

const INVOICES_DUE_SQLITE: &str = "SELECT json_group_array(json_array(id, currency, subtotal, tax, total, tax_country, \
                                   tax_rate) ORDER BY queued_at, id) FROM (SELECT o.id, o.currency, o.subtotal, o.tax, o.total, o.tax_country, \
                                   o.tax_rate, q.queued_at FROM invoice_queue q JOIN orders o ON o.id = q.order_id \
                                   ORDER BY q.queued_at, q.order_id LIMIT $1)";

/// Puts a paid order in the queue for its invoice number.
pub(crate) const QUEUE_FOR_INVOICE: &str =
    "INSERT INTO invoice_queue (order_id, queued_at) VALUES ($1, $2) ON CONFLICT (order_id) DO NOTHING";

/// An order due for its invoice, as the numbering job reads it: id,
/// currency, subtotal, tax, total, tax country, tax rate.
type Due = (String, String, i64, i64, i64, String, i64);

/// The invoices one numbering run issues, numbered from `last + 1` in the
/// order read, each with its audit entry.
struct NumberingPlan {
    invoices: Vec<(i64, Due, coffer_domain::AuditEntry)>,
    numbered: Vec<(i64, OrderId)>,
}

impl NumberingPlan {
    fn new(last: i64, packed: Option<String>, at: Millis) -> Result<NumberingPlan, StoreError> {
        let due: Vec<Due> = serde_json::from_str(packed.as_deref().unwrap_or("[]"))
            .map_err(|_| StoreError::corrupt("orders (packed invoices due)"))?;
        let mut invoices = Vec::with_capacity(due.len());
        let mut numbered = Vec::with_capacity(due.len());
        for (n, order) in due.into_iter().enumerate() {
            let id = OrderId::parse(&order.0).map_err(StoreError::corrupt)?;
            let number = last + i64::try_from(n).unwrap_or(i64::MAX) + 1;
            let entry = coffer_domain::AuditEntry::new(
                at,
                &coffer_domain::Actor::System,
                coffer_domain::AuditAction::InvoiceIssued,
                Some(format!("{number} {}", order.0)),
            );
            invoices.push((number, order, entry));
            numbered.push((number, id));
        }
        Ok(NumberingPlan { invoices, numbered })
    }

    /// SQLite: prepared inserts and updates per invoice, then the counter.
    fn statements(&self, at: Millis) -> crate::batch::Statements {
        use crate::batch::Val;
        let mut inserts = crate::batch::Statements::default();
        for (number, (order, currency, subtotal, tax, total, tax_country, tax_rate), entry) in &self.invoices {
            inserts.push(
                "INSERT INTO invoices (number, order_id, issued_at, currency, subtotal, tax, total, tax_country, \
                 tax_rate) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    Val::Int(*number),
                    Val::Text(order.clone()),
                    Val::Int(at.0),
                    Val::Text(currency.clone()),
                    Val::Int(*subtotal),
                    Val::Int(*tax),
                    Val::Int(*total),
                    Val::Text(tax_country.clone()),
                    Val::Int(*tax_rate),
                ],
            );
            inserts.push("DELETE FROM invoice_queue WHERE order_id = $1", vec![Val::Text(order.clone())]);
            let (sql, values) = crate::audit::append_statement(entry);
            inserts.push(sql, values);
        }
        if let Some((number, _, _)) = self.invoices.last() {
            inserts.push("UPDATE invoice_numbering SET last_number = $1 WHERE id = 1", vec![Val::Int(*number)]);
        }
        inserts
    }

    /// PostgreSQL: the whole run as one statement of constant text (so it
    /// is prepared once), the invoices passed as one JSON parameter.
    async fn run_on_postgres(&self, tx: &mut WriteTx, at: Millis) -> Result<(), StoreError> {
        let Some((last, _, _)) = self.invoices.last() else { return Ok(()) };
        let rows: Vec<serde_json::Value> = self
            .invoices
            .iter()
            .map(|(number, (order, currency, subtotal, tax, total, tax_country, tax_rate), entry)| {
                serde_json::json!({
                    "number": number, "order_id": order, "currency": currency, "subtotal": subtotal, "tax": tax,
                    "total": total, "tax_country": tax_country, "tax_rate": tax_rate,
                    "audit_id": entry.id.as_str(), "actor": entry.actor, "action": entry.action, "subject": entry.subject,
                })
            })
            .collect();
        sqlx::query(
            "WITH due AS (SELECT * FROM json_to_recordset($1::json) AS v(number bigint, order_id text, currency text, \
             subtotal bigint, tax bigint, total bigint, tax_country text, tax_rate bigint, audit_id text, actor text, \
             action text, subject text)), \
             i AS (INSERT INTO invoices (number, order_id, issued_at, currency, subtotal, tax, total, tax_country, \
             tax_rate) SELECT number, order_id, $2, currency, subtotal, tax, total, tax_country, tax_rate FROM due), \
             q AS (DELETE FROM invoice_queue USING due WHERE invoice_queue.order_id = due.order_id), \
             a AS (INSERT INTO audit_log (id, at, actor, action, subject) SELECT audit_id, $2, actor, action, subject \
             FROM due) \
             UPDATE invoice_numbering SET last_number = $3 WHERE id = 1",
        )
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(at.0)
        .bind(*last)
        .execute(tx.conn())
        .await?;
        Ok(())
    }
}

/// Invoices on the database: reads, and numbering (a unit of work of its
/// own, on SQLite on the writer's direct connection).
pub trait InvoiceStore: Send + Sync {
    /// Numbers paid orders that have no invoice yet, oldest first, with
    /// consecutive numbers: one transaction, so a number is never skipped
    /// or given twice. On PostgreSQL the numbering row is locked, so jobs
    /// of several servers take turns; checkouts never touch it. Returns the
    /// numbers given, with their orders.
    fn number_invoices(
        &self,
        at: Millis,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(i64, OrderId)>, StoreError>> + Send;

    /// The invoice of an order, once numbered.
    fn invoice_of(&self, order: &OrderId) -> impl Future<Output = Result<Option<Invoice>, StoreError>> + Send;

    /// The invoice with this number.
    fn invoice(&self, number: i64) -> impl Future<Output = Result<Option<Invoice>, StoreError>> + Send;

    /// Invoices whose PDF is not emailed yet, lowest number first.
    fn invoices_to_email(&self, limit: i64) -> impl Future<Output = Result<Vec<Invoice>, StoreError>> + Send;
}

/// Emailing invoices, inside a unit of work.
pub trait InvoiceMailWriter {
    /// Marks an invoice emailed (or skipped); `false` when it was marked
    /// already (another worker sent it), so the unit is rolled back.
    fn mark_invoice_emailed(
        &mut self,
        number: i64,
        at: Millis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl InvoiceMailWriter for WriteTx {
    async fn mark_invoice_emailed(&mut self, number: i64, at: Millis) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE invoices SET emailed_at = $2 WHERE number = $1 AND emailed_at IS NULL")
            .bind(number)
            .bind(at.0)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl InvoiceStore for Db {
    async fn number_invoices(&self, at: Millis, limit: i64) -> Result<Vec<(i64, OrderId)>, StoreError> {
        const LAST: &str = "SELECT last_number FROM invoice_numbering WHERE id = 1";
        if self.backend() == crate::Backend::Sqlite {
            // On the writer's own connection: no hand-off at all, and the
            // inserts are prepared once, not parsed again every time.
            return self
                .write_direct(move |conn| {
                    use crate::batch::Val;
                    let last = crate::direct::query_one(conn, LAST, &[], |r| r.get(0))?;
                    let packed = crate::direct::query_one(conn, INVOICES_DUE_SQLITE, &[Val::Int(limit)], |r| r.get(0))?;
                    let plan = NumberingPlan::new(last, packed, at)?;
                    plan.statements(at).run_on(conn)?;
                    Ok(plan.numbered)
                })
                .await;
        }
        self.write(unit!(|tx| {
            let last: i64 = sqlx::query("SELECT last_number FROM invoice_numbering WHERE id = 1 FOR UPDATE")
                .fetch_one(tx.conn())
                .await?
                .try_get("last_number")?;
            // One packed row: through sqlx every row is a hand-off.
            let packed: Option<String> =
                sqlx::query_scalar(INVOICES_DUE_POSTGRES).bind(limit).fetch_one(tx.conn()).await?;
            let plan = NumberingPlan::new(last, packed, at)?;
            plan.run_on_postgres(tx, at).await?;
            Ok::<_, StoreError>(plan.numbered)
        }))
        .await
    }

    async fn invoice_of(&self, order: &OrderId) -> Result<Option<Invoice>, StoreError> {
        let row = sqlx::query(
            "SELECT number, order_id, issued_at, currency, subtotal, tax, total, tax_country, tax_rate FROM invoices \
             WHERE order_id = $1",
        )
        .bind(order.as_str())
        .fetch_optional(self.readers())
        .await?;
        row.as_ref().map(invoice_from_row).transpose()
    }

    async fn invoices_to_email(&self, limit: i64) -> Result<Vec<Invoice>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, order_id, issued_at, currency, subtotal, tax, total, tax_country, tax_rate FROM invoices \
             WHERE emailed_at IS NULL ORDER BY number LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(invoice_from_row).collect()
    }

    async fn invoice(&self, number: i64) -> Result<Option<Invoice>, StoreError> {
        let row = sqlx::query(
            "SELECT number, order_id, issued_at, currency, subtotal, tax, total, tax_country, tax_rate FROM invoices \
             WHERE number = $1",
        )
        .bind(number)
        .fetch_optional(self.readers())
        .await?;
        row.as_ref().map(invoice_from_row).transpose()
    }
}
