//! Credit notes: queued with each refund, numbered gap-free in their own
//! series by the numbering job once the order's invoice exists.

use crate::{Db, StoreError, WriteTx, unit};
use coffer_domain::{Millis, OrderId};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A credit note as numbered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditNote {
    pub number: i64,
    /// The invoice it corrects.
    pub invoice_number: i64,
    pub order_id: OrderId,
    /// The line refunded; `None` for the rest of the order.
    pub line_no: Option<i64>,
    pub issued_at: Millis,
    pub currency: String,
    pub net: i64,
    pub tax: i64,
    pub total: i64,
}

const COLUMNS: &str = "number, invoice_number, order_id, line_no, issued_at, currency, net, tax, total";

fn credit_note_from_row(r: &AnyRow) -> Result<CreditNote, StoreError> {
    Ok(CreditNote {
        number: r.try_get("number")?,
        invoice_number: r.try_get("invoice_number")?,
        order_id: OrderId::parse(&r.try_get::<String, _>("order_id")?).map_err(StoreError::corrupt)?,
        line_no: r.try_get("line_no")?,
        issued_at: Millis(r.try_get("issued_at")?),
        currency: r.try_get("currency")?,
        net: r.try_get("net")?,
        tax: r.try_get("tax")?,
        total: r.try_get("total")?,
    })
}

/// Reading and numbering credit notes; each call is a unit of its own.
pub trait CreditNoteStore: Send + Sync {
    /// Numbers queued refunds whose order has its invoice, oldest first (at
    /// most `limit`), continuing the series; returns the numbers issued.
    fn number_credit_notes(&self, at: Millis, limit: i64) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    fn credit_note(&self, number: i64) -> impl Future<Output = Result<Option<CreditNote>, StoreError>> + Send;

    /// An order's credit notes, by number.
    fn credit_notes_of(&self, order: &OrderId) -> impl Future<Output = Result<Vec<CreditNote>, StoreError>> + Send;

    /// Credit notes whose PDF is not emailed yet, lowest number first.
    fn credit_notes_to_email(&self, limit: i64) -> impl Future<Output = Result<Vec<CreditNote>, StoreError>> + Send;
}

/// Queueing and marking credit notes, inside a unit of work.
pub trait CreditNoteWriter {
    /// Queues the credit note of a refund: `line_no` for one line, `None`
    /// for the rest of the order; net and tax in minor units.
    fn queue_credit_note(
        &mut self,
        order: &OrderId,
        line_no: Option<i64>,
        net: i64,
        tax: i64,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks a credit note emailed; `false` when it was already.
    fn mark_credit_note_emailed(
        &mut self,
        number: i64,
        at: Millis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl CreditNoteWriter for WriteTx {
    async fn queue_credit_note(
        &mut self,
        order: &OrderId,
        line_no: Option<i64>,
        net: i64,
        tax: i64,
        at: Millis,
    ) -> Result<(), StoreError> {
        // One per line and one for the rest: a refund made twice queues once.
        let id = format!("{order}:{}", line_no.map_or_else(|| "rest".to_owned(), |n| n.to_string()));
        sqlx::query(
            "INSERT INTO credit_note_queue (id, order_id, line_no, net, tax, queued_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(order.as_str())
        .bind(line_no)
        .bind(net)
        .bind(tax)
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn mark_credit_note_emailed(&mut self, number: i64, at: Millis) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE credit_notes SET emailed_at = $2 WHERE number = $1 AND emailed_at IS NULL")
            .bind(number)
            .bind(at.0)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl CreditNoteStore for Db {
    async fn number_credit_notes(&self, at: Millis, limit: i64) -> Result<Vec<i64>, StoreError> {
        let lock = match self.backend() {
            crate::Backend::Postgres => "SELECT last_number FROM credit_note_numbering WHERE id = 1 FOR UPDATE",
            crate::Backend::Sqlite => "SELECT last_number FROM credit_note_numbering WHERE id = 1",
        };
        self.write(unit!(|tx| {
            let last: i64 = sqlx::query(lock).fetch_one(tx.conn()).await?.try_get("last_number")?;
            let due = sqlx::query(
                "SELECT q.id, q.order_id, q.line_no, q.net, q.tax, i.number AS invoice_number, i.currency \
                 FROM credit_note_queue q JOIN invoices i ON i.order_id = q.order_id \
                 ORDER BY q.queued_at, q.id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(tx.conn())
            .await?;
            let mut issued = Vec::with_capacity(due.len());
            for (n, row) in due.iter().enumerate() {
                let number = last + i64::try_from(n).unwrap_or(i64::MAX) + 1;
                let (net, tax): (i64, i64) = (row.try_get("net")?, row.try_get("tax")?);
                sqlx::query(
                    "INSERT INTO credit_notes (number, invoice_number, order_id, line_no, issued_at, currency, net, \
                     tax, total) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(number)
                .bind(row.try_get::<i64, _>("invoice_number")?)
                .bind(row.try_get::<String, _>("order_id")?)
                .bind(row.try_get::<Option<i64>, _>("line_no")?)
                .bind(at.0)
                .bind(row.try_get::<String, _>("currency")?)
                .bind(net)
                .bind(tax)
                .bind(net + tax)
                .execute(tx.conn())
                .await?;
                sqlx::query("DELETE FROM credit_note_queue WHERE id = $1")
                    .bind(row.try_get::<String, _>("id")?)
                    .execute(tx.conn())
                    .await?;
                issued.push(number);
            }
            if let Some(&highest) = issued.last() {
                sqlx::query("UPDATE credit_note_numbering SET last_number = $1 WHERE id = 1")
                    .bind(highest)
                    .execute(tx.conn())
                    .await?;
            }
            Ok::<_, StoreError>(issued)
        }))
        .await
    }

    async fn credit_note(&self, number: i64) -> Result<Option<CreditNote>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM credit_notes WHERE number = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(number).fetch_optional(self.readers()).await?;
        row.as_ref().map(credit_note_from_row).transpose()
    }

    async fn credit_notes_of(&self, order: &OrderId) -> Result<Vec<CreditNote>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM credit_notes WHERE order_id = $1 ORDER BY number");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(order.as_str()).fetch_all(self.readers()).await?;
        rows.iter().map(credit_note_from_row).collect()
    }

    async fn credit_notes_to_email(&self, limit: i64) -> Result<Vec<CreditNote>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM credit_notes WHERE emailed_at IS NULL ORDER BY number LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(self.readers()).await?;
        rows.iter().map(credit_note_from_row).collect()
    }
}
