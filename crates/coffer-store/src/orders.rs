//! Orders, their lines and events, and the published privacy policies.

use crate::{Db, StoreError, WriteTx};
use coffer_crypto::Sealed;
use coffer_domain::{CustomerId, DataKeyId, Millis, OrderId, OrderStatus, ProductId, VendorId};
use sqlx::Row;
use sqlx::any::AnyRow;

/// One line as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLine {
    pub line_no: i64,
    pub product_id: ProductId,
    pub vendor_id: VendorId,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
    /// Minor units given back for this line (its price and tax share).
    pub refunded_amount: i64,
}

/// The sealed copy of what the customer typed, under their data key.
#[derive(Clone, Debug)]
pub struct SealedOrderFields {
    pub name: Sealed,
    pub email: Sealed,
    pub phone: Option<Sealed>,
    pub address: Sealed,
    pub card: Option<Sealed>,
    pub guardian_name: Option<Sealed>,
    /// The gateway's token of a card payment, sealed under the operator's
    /// payments key (it outlives an erasure, for refunds and voids).
    pub payment_token: Option<Sealed>,
}

/// An order to store, with its first status and why.
#[derive(Clone, Debug)]
pub struct NewOrder {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub data_key_id: DataKeyId,
    pub status: OrderStatus,
    pub currency: String,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub tax_country: String,
    /// Basis points charged (1900 = 19%).
    pub tax_rate: i64,
    pub payment_method: &'static str,
    pub payment_reference: Option<String>,
    pub fields: SealedOrderFields,
    pub adult: bool,
    pub policy_version: String,
    pub consent_channel: &'static str,
    pub fraud_score: i64,
    pub fraud_reasons: String,
    pub lines: Vec<OrderLine>,
    /// Sealed license keys by line number.
    pub license_keys: Vec<(i64, Sealed)>,
    pub at: Millis,
    /// Who placed it, for the first event (`customer:<id>`).
    pub actor: String,
    pub reason: String,
}

/// An order as stored (sealed fields stay sealed).
#[derive(Clone, Debug)]
pub struct StoredOrder {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub data_key_id: DataKeyId,
    pub status: OrderStatus,
    pub currency: String,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub tax_country: String,
    pub payment_method: String,
    pub payment_reference: Option<String>,
    pub name: Option<Sealed>,
    pub email: Option<Sealed>,
    pub phone: Option<Sealed>,
    pub address: Option<Sealed>,
    pub card: Option<Sealed>,
    pub guardian_name: Option<Sealed>,
    /// Under the operator's payments key, not the customer's.
    pub payment_token: Option<Sealed>,
    pub policy_version: String,
    pub consent_at: Millis,
    pub consent_channel: String,
    pub created_at: Millis,
    pub lines: Vec<OrderLine>,
    pub fraud_score: i64,
    pub fraud_reasons: String,
}

fn bytes(s: &Sealed) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// A sign-in link stored only as the hash of its token.
pub struct NewLink {
    pub token_hash: [u8; 32],
    pub customer: CustomerId,
    pub purpose: crate::LinkPurpose,
    pub at: Millis,
    pub expires_at: Millis,
}

/// The writes that place an order: the order, its audit entry, its
/// confirmation email and, for a customer without a password, the
/// invitation link; one unit for [`crate::Db::write_commands`].
pub fn order_placement(
    o: &NewOrder,
    audit: &coffer_domain::AuditEntry,
    email: &crate::NewEmail,
    invitation: Option<&NewLink>,
) -> Result<crate::WriteCommands, StoreError> {
    use crate::batch::Val;
    let mut statements = order_statements(o)?;
    let (sql, values) = crate::audit::append_statement(audit);
    statements.push(sql, values);
    let (sql, values) = crate::outbox::enqueue_statement(email);
    statements.push(sql, values);
    if let Some(link) = invitation {
        statements.push(
            crate::accounts::INSERT_LINK,
            vec![
                Val::Bytes(link.token_hash.to_vec()),
                Val::Text(link.customer.to_string()),
                Val::Text(link.purpose.as_str().to_owned()),
                Val::Int(link.at.0),
                Val::Int(link.expires_at.0),
            ],
        );
    }
    Ok(crate::WriteCommands { statements })
}

fn order_statements(o: &NewOrder) -> Result<crate::batch::Statements, StoreError> {
    use crate::batch::{Statements, Val};
    let mut statements = Statements::default();
    statements.push(
        "INSERT INTO orders (id, customer_id, data_key_id, status, currency, subtotal, tax, total, tax_country, \
         payment_method, payment_reference, name, email, phone, address, card, guardian_name, adult, policy_version, \
         consent_at, consent_channel, fraud_score, fraud_reasons, created_at, updated_at, tax_rate, payment_token) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
         $23, $20, $20, $24, $25)",
        vec![
            Val::Text(o.id.to_string()),
            Val::Text(o.customer_id.to_string()),
            Val::Text(o.data_key_id.to_string()),
            Val::Text(o.status.as_str().to_owned()),
            Val::Text(o.currency.clone()),
            Val::Int(o.subtotal),
            Val::Int(o.tax),
            Val::Int(o.total),
            Val::Text(o.tax_country.clone()),
            Val::Text(o.payment_method.to_owned()),
            Val::OptText(o.payment_reference.clone()),
            Val::Bytes(bytes(&o.fields.name)),
            Val::Bytes(bytes(&o.fields.email)),
            Val::OptBytes(o.fields.phone.as_ref().map(bytes)),
            Val::Bytes(bytes(&o.fields.address)),
            Val::OptBytes(o.fields.card.as_ref().map(bytes)),
            Val::OptBytes(o.fields.guardian_name.as_ref().map(bytes)),
            Val::Int(i64::from(o.adult)),
            Val::Text(o.policy_version.clone()),
            Val::Int(o.at.0),
            Val::Text(o.consent_channel.to_owned()),
            Val::Int(o.fraud_score),
            Val::Text(o.fraud_reasons.clone()),
            Val::Int(o.tax_rate),
            Val::OptBytes(o.fields.payment_token.as_ref().map(bytes)),
        ],
    );
    for line in &o.lines {
        statements.push(
            "INSERT INTO order_lines (order_id, line_no, product_id, vendor_id, quantity, unit_price, line_total) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                Val::Text(o.id.to_string()),
                Val::Int(line.line_no),
                Val::Text(line.product_id.to_string()),
                Val::Text(line.vendor_id.to_string()),
                Val::Int(line.quantity),
                Val::Int(line.unit_price),
                Val::Int(line.line_total),
            ],
        );
    }
    for (line_no, key) in &o.license_keys {
        let line = line_of(&o.lines, *line_no)?;
        statements.push(
            INSERT_LICENSE_KEY,
            vec![
                Val::Text(o.id.to_string()),
                Val::Int(*line_no),
                Val::Text(line.product_id.to_string()),
                Val::Text(line.vendor_id.to_string()),
                Val::Bytes(bytes(key)),
                Val::Int(o.at.0),
            ],
        );
    }
    if matches!(o.status, OrderStatus::Paid | OrderStatus::Fulfilled) {
        statements.push(QUEUE_FOR_INVOICE, vec![Val::Text(o.id.to_string()), Val::Int(o.at.0)]);
    }
    statements.push(
        "INSERT INTO order_events (order_id, seq, at, from_status, to_status, actor, reason) \
         VALUES ($1, 1, $2, NULL, $3, $4, $5)",
        vec![
            Val::Text(o.id.to_string()),
            Val::Int(o.at.0),
            Val::Text(o.status.as_str().to_owned()),
            Val::Text(o.actor.clone()),
            Val::Text(o.reason.clone()),
        ],
    );
    Ok(statements)
}

/// Publishes a policy version once; republishing the same text is a no-op.
pub async fn publish_policy(tx: &mut WriteTx, version: &str, html: &str, at: Millis) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO privacy_policy_versions (version, html, published_at) VALUES ($1, $2, $3) \
         ON CONFLICT (version) DO NOTHING",
    )
    .bind(version.to_owned())
    .bind(html.to_owned())
    .bind(at.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

fn sealed(row: &AnyRow, column: &str) -> Result<Option<Sealed>, StoreError> {
    Ok(row.try_get::<Option<Vec<u8>>, _>(column)?.map(Sealed::from_stored))
}

fn line_from_row(r: &AnyRow) -> Result<OrderLine, StoreError> {
    Ok(OrderLine {
        line_no: r.try_get("line_no")?,
        product_id: ProductId::parse(&r.try_get::<String, _>("product_id")?).map_err(StoreError::corrupt)?,
        vendor_id: VendorId::parse(&r.try_get::<String, _>("vendor_id")?).map_err(StoreError::corrupt)?,
        quantity: r.try_get("quantity")?,
        unit_price: r.try_get("unit_price")?,
        line_total: r.try_get("line_total")?,
        refunded_amount: r.try_get("refunded_amount")?,
    })
}

/// The columns [`order_from_row`] reads.
const ORDER_COLUMNS: &str = "id, customer_id, data_key_id, status, currency, subtotal, tax, total, tax_country, \
     payment_method, payment_reference, name, email, phone, address, card, guardian_name, policy_version, consent_at, \
     consent_channel, created_at, fraud_score, fraud_reasons, payment_token";

fn order_from_row(r: &AnyRow, lines: Vec<OrderLine>) -> Result<StoredOrder, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(StoredOrder {
        id: OrderId::parse(&r.try_get::<String, _>("id")?).map_err(StoreError::corrupt)?,
        customer_id: CustomerId::parse(&r.try_get::<String, _>("customer_id")?).map_err(StoreError::corrupt)?,
        data_key_id: DataKeyId::parse(&r.try_get::<String, _>("data_key_id")?).map_err(StoreError::corrupt)?,
        status: OrderStatus::parse(&status).ok_or_else(|| StoreError::corrupt("orders.status"))?,
        currency: r.try_get("currency")?,
        subtotal: r.try_get("subtotal")?,
        tax: r.try_get("tax")?,
        total: r.try_get("total")?,
        tax_country: r.try_get("tax_country")?,
        payment_method: r.try_get("payment_method")?,
        payment_reference: r.try_get("payment_reference")?,
        name: sealed(r, "name")?,
        email: sealed(r, "email")?,
        phone: sealed(r, "phone")?,
        address: sealed(r, "address")?,
        card: sealed(r, "card")?,
        guardian_name: sealed(r, "guardian_name")?,
        payment_token: sealed(r, "payment_token")?,
        policy_version: r.try_get("policy_version")?,
        consent_at: Millis(r.try_get("consent_at")?),
        consent_channel: r.try_get("consent_channel")?,
        created_at: Millis(r.try_get("created_at")?),
        lines,
        fraud_score: r.try_get("fraud_score")?,
        fraud_reasons: r.try_get("fraud_reasons")?,
    })
}

impl Db {
    /// One order with its lines.
    pub async fn order(&self, id: &OrderId) -> Result<Option<StoredOrder>, StoreError> {
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1")))
            .bind(id.as_str())
            .fetch_optional(self.readers())
            .await?
        else {
            return Ok(None);
        };
        let lines = sqlx::query(
            "SELECT line_no, product_id, vendor_id, quantity, unit_price, line_total, refunded_amount FROM order_lines \
             WHERE order_id = $1 ORDER BY line_no",
        )
        .bind(id.as_str())
        .fetch_all(self.readers())
        .await?;
        Ok(Some(order_from_row(&r, lines.iter().map(line_from_row).collect::<Result<_, _>>()?)?))
    }

    /// A customer's orders with their lines, newest first: two queries
    /// however many orders there are.
    pub async fn orders_of(&self, customer: &CustomerId) -> Result<Vec<StoredOrder>, StoreError> {
        let orders = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE customer_id = $1 ORDER BY created_at DESC, id DESC"
        )))
        .bind(customer.as_str())
        .fetch_all(self.readers())
        .await?;
        let lines = sqlx::query(
            "SELECT l.order_id, l.line_no, l.product_id, l.vendor_id, l.quantity, l.unit_price, l.line_total, \
             l.refunded_amount FROM order_lines l JOIN orders o ON o.id = l.order_id WHERE o.customer_id = $1 \
             ORDER BY l.order_id, l.line_no",
        )
        .bind(customer.as_str())
        .fetch_all(self.readers())
        .await?;
        let mut lines_of: std::collections::HashMap<String, Vec<OrderLine>> = std::collections::HashMap::new();
        for r in &lines {
            lines_of.entry(r.try_get("order_id")?).or_default().push(line_from_row(r)?);
        }
        orders
            .iter()
            .map(|r| order_from_row(r, lines_of.remove(&r.try_get::<String, _>("id")?).unwrap_or_default()))
            .collect()
    }

    /// The sealed license keys of all of a customer's orders, in one query:
    /// (order, line number, product, key).
    pub async fn license_keys_of_customer(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<(OrderId, i64, ProductId, Sealed)>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.order_id, k.line_no, k.product_id, k.license_key FROM license_keys k \
             JOIN orders o ON o.id = k.order_id WHERE o.customer_id = $1 ORDER BY k.order_id, k.line_no",
        )
        .bind(customer.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                let order = OrderId::parse(&r.try_get::<String, _>("order_id")?).map_err(StoreError::corrupt)?;
                let product = ProductId::parse(&r.try_get::<String, _>("product_id")?).map_err(StoreError::corrupt)?;
                Ok((
                    order,
                    r.try_get("line_no")?,
                    product,
                    Sealed::from_stored(r.try_get::<Vec<u8>, _>("license_key")?),
                ))
            })
            .collect()
    }

    /// Whether a policy version was ever published.
    pub async fn policy_published(&self, version: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM privacy_policy_versions WHERE version = $1")
            .bind(version.to_owned())
            .fetch_optional(self.readers())
            .await?;
        Ok(row.is_some())
    }
}

/// The file a download product delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductFile {
    pub product_id: ProductId,
    pub file_key: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
}

pub async fn set_product_file(tx: &mut WriteTx, file: &ProductFile, at: Millis) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO product_files (product_id, file_key, file_name, content_type, size_bytes, uploaded_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (product_id) DO UPDATE SET file_key = excluded.file_key, \
         file_name = excluded.file_name, content_type = excluded.content_type, size_bytes = excluded.size_bytes, \
         uploaded_at = excluded.uploaded_at",
    )
    .bind(file.product_id.as_str())
    .bind(file.file_key.clone())
    .bind(file.file_name.clone())
    .bind(file.content_type.clone())
    .bind(file.size_bytes)
    .bind(at.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

impl Db {
    pub async fn product_file(&self, product: &ProductId) -> Result<Option<ProductFile>, StoreError> {
        let row = sqlx::query(
            "SELECT file_key, file_name, content_type, size_bytes FROM product_files WHERE product_id = $1",
        )
        .bind(product.as_str())
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| {
            Ok(ProductFile {
                product_id: product.clone(),
                file_key: r.try_get("file_key")?,
                file_name: r.try_get("file_name")?,
                content_type: r.try_get("content_type")?,
                size_bytes: r.try_get("size_bytes")?,
            })
        })
        .transpose()
    }

    /// Counts one use of an order line's download if fewer than `max` were
    /// made; false once the limit is reached.
    pub async fn use_download(&self, order: &OrderId, line_no: i64, max: i64) -> Result<bool, StoreError> {
        let order = order.clone();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO download_uses (order_id, line_no, uses) VALUES ($1, $2, 0) \
                     ON CONFLICT (order_id, line_no) DO NOTHING",
                )
                .bind(order.as_str())
                .bind(line_no)
                .execute(tx.conn())
                .await?;
                let done = sqlx::query(
                    "UPDATE download_uses SET uses = uses + 1 WHERE order_id = $1 AND line_no = $2 AND uses < $3",
                )
                .bind(order.as_str())
                .bind(line_no)
                .bind(max)
                .execute(tx.conn())
                .await?;
                Ok::<_, StoreError>(done.rows_affected() == 1)
            })
        })
        .await
    }
}

/// What an idempotency key already holds.
#[derive(Clone, Debug)]
pub enum IdempotencyClaim {
    /// New: this request owns the key and must finish or release it.
    Claimed,
    /// Used before with another body.
    OtherBody,
    /// The same body, still being processed by another request.
    InProgress,
    /// The same body, answered: the sealed answer and its data key.
    Answered { data_key_id: DataKeyId, response: Sealed },
}

impl Db {
    /// Claims a key for a body fingerprint, or says what it already holds.
    pub async fn claim_idempotency_key(
        &self,
        key_hash: [u8; 32],
        fingerprint: [u8; 32],
        at: Millis,
    ) -> Result<IdempotencyClaim, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (key_hash, fingerprint, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key_hash) DO NOTHING",
                )
                .bind(key_hash.to_vec())
                .bind(fingerprint.to_vec())
                .bind(at.0)
                .execute(tx.conn())
                .await?;
                if inserted.rows_affected() == 1 {
                    return Ok(IdempotencyClaim::Claimed);
                }
                let row =
                    sqlx::query("SELECT fingerprint, data_key_id, response FROM idempotency_keys WHERE key_hash = $1")
                        .bind(key_hash.to_vec())
                        .fetch_one(tx.conn())
                        .await?;
                if row.try_get::<Vec<u8>, _>("fingerprint")? != fingerprint.to_vec() {
                    return Ok(IdempotencyClaim::OtherBody);
                }
                let key: Option<String> = row.try_get("data_key_id")?;
                match (key, sealed(&row, "response")?) {
                    (Some(key), Some(response)) => Ok(IdempotencyClaim::Answered {
                        data_key_id: DataKeyId::parse(&key).map_err(StoreError::corrupt)?,
                        response,
                    }),
                    _ => Ok(IdempotencyClaim::InProgress),
                }
            })
        })
        .await
    }

    /// Stores the answer of a claimed key.
    pub async fn answer_idempotency_key(
        &self,
        key_hash: [u8; 32],
        data_key_id: DataKeyId,
        response: Sealed,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE idempotency_keys SET data_key_id = $2, response = $3 WHERE key_hash = $1")
                    .bind(key_hash.to_vec())
                    .bind(data_key_id.as_str())
                    .bind(response.as_bytes().to_vec())
                    .execute(tx.conn())
                    .await?;
                Ok::<_, StoreError>(())
            })
        })
        .await
    }

    /// Frees a claimed key whose request failed, so it may be retried.
    pub async fn release_idempotency_key(&self, key_hash: [u8; 32]) -> Result<(), StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM idempotency_keys WHERE key_hash = $1 AND response IS NULL")
                    .bind(key_hash.to_vec())
                    .execute(tx.conn())
                    .await?;
                Ok::<_, StoreError>(())
            })
        })
        .await
    }
}

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
const QUEUE_FOR_INVOICE: &str =
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

impl Db {
    /// Numbers paid orders that have no invoice yet, oldest first, with
    /// consecutive numbers: one transaction, so a number is never skipped
    /// or given twice. On PostgreSQL the numbering row is locked, so jobs
    /// of several servers take turns; checkouts never touch it. Returns the
    /// numbers given, with their orders.
    pub async fn number_invoices(&self, at: Millis, limit: i64) -> Result<Vec<(i64, OrderId)>, StoreError> {
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
        self.write(move |tx| {
            Box::pin(async move {
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
            })
        })
        .await
    }

    pub async fn invoice_of(&self, order: &OrderId) -> Result<Option<Invoice>, StoreError> {
        let row = sqlx::query(
            "SELECT number, order_id, issued_at, currency, subtotal, tax, total, tax_country, tax_rate FROM invoices \
             WHERE order_id = $1",
        )
        .bind(order.as_str())
        .fetch_optional(self.readers())
        .await?;
        row.as_ref().map(invoice_from_row).transpose()
    }

    pub async fn invoice(&self, number: i64) -> Result<Option<Invoice>, StoreError> {
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

impl Db {
    /// Counts each key's attempts since `since`, then records this attempt.
    /// Returns the counts in the order of `keys`.
    pub async fn count_and_record_attempts(
        &self,
        keys: Vec<(&'static str, [u8; 32])>,
        since: Millis,
        at: Millis,
    ) -> Result<Vec<u32>, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let mut counts = Vec::new();
                for (kind, hash) in &keys {
                    let row = sqlx::query(
                        "SELECT COUNT(*) AS n FROM fraud_attempts WHERE kind = $1 AND key_hash = $2 AND at >= $3",
                    )
                    .bind(*kind)
                    .bind(hash.to_vec())
                    .bind(since.0)
                    .fetch_one(tx.conn())
                    .await?;
                    counts.push(u32::try_from(row.try_get::<i64, _>("n")?).unwrap_or(u32::MAX));
                    sqlx::query("INSERT INTO fraud_attempts (kind, key_hash, at) VALUES ($1, $2, $3)")
                        .bind(*kind)
                        .bind(hash.to_vec())
                        .bind(at.0)
                        .execute(tx.conn())
                        .await?;
                }
                Ok::<_, StoreError>(counts)
            })
        })
        .await
    }

    /// Deletes velocity records older than `before`.
    pub async fn forget_attempts(&self, before: Millis) -> Result<u64, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let done =
                    sqlx::query("DELETE FROM fraud_attempts WHERE at < $1").bind(before.0).execute(tx.conn()).await?;
                Ok::<_, StoreError>(done.rows_affected())
            })
        })
        .await
    }
}

/// One recorded move of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderEvent {
    pub seq: i64,
    pub at: Millis,
    pub from: Option<String>,
    pub to: String,
    pub actor: String,
    pub reason: String,
}

/// An order in a staff queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedOrder {
    pub id: OrderId,
    pub created_at: Millis,
    pub currency: String,
    pub total: i64,
    pub fraud_score: i64,
    pub fraud_reasons: String,
}

/// Moves an order from `from` to `to` and records the event, if it is
/// still in `from` (so two staff members cannot both act on it). False if
/// it was not.
pub async fn transition_order(
    tx: &mut WriteTx,
    order: &OrderId,
    from: OrderStatus,
    to: OrderStatus,
    at: Millis,
    actor: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    let moved = sqlx::query("UPDATE orders SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2")
        .bind(order.as_str())
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(at.0)
        .execute(tx.conn())
        .await?;
    if moved.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO order_events (order_id, seq, at, from_status, to_status, actor, reason) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 FROM order_events WHERE order_id = $1",
    )
    .bind(order.as_str())
    .bind(at.0)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(actor.to_owned())
    .bind(reason.to_owned())
    .execute(tx.conn())
    .await?;
    // Paid is the one way in: from there an order only moves to fulfilled
    // or refunded, and it may have its invoice by then.
    if to == OrderStatus::Paid {
        sqlx::query(QUEUE_FOR_INVOICE).bind(order.as_str()).bind(at.0).execute(tx.conn()).await?;
    }
    Ok(true)
}

const INSERT_LICENSE_KEY: &str = "INSERT INTO license_keys (order_id, line_no, product_id, vendor_id, license_key, \
     issued_at) VALUES ($1, $2, $3, $4, $5, $6)";

fn line_of(lines: &[OrderLine], line_no: i64) -> Result<&OrderLine, StoreError> {
    lines.iter().find(|l| l.line_no == line_no).ok_or_else(|| StoreError::corrupt("license_keys.line_no"))
}

/// Adds license keys to an order being delivered after the fact.
pub async fn insert_license_keys(
    tx: &mut WriteTx,
    order: &OrderId,
    lines: &[OrderLine],
    keys: &[(i64, Sealed)],
    at: Millis,
) -> Result<(), StoreError> {
    for (line_no, key) in keys {
        let line = line_of(lines, *line_no)?;
        sqlx::query(INSERT_LICENSE_KEY)
            .bind(order.as_str())
            .bind(*line_no)
            .bind(line.product_id.as_str())
            .bind(line.vendor_id.as_str())
            .bind(bytes(key))
            .bind(at.0)
            .execute(tx.conn())
            .await?;
    }
    Ok(())
}

impl Db {
    /// Orders in one status, oldest first (a staff queue).
    pub async fn orders_in(&self, status: OrderStatus, limit: i64) -> Result<Vec<QueuedOrder>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, created_at, currency, total, fraud_score, fraud_reasons FROM orders WHERE status = $1 \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(status.as_str())
        .bind(limit)
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedOrder {
                    id: OrderId::parse(&r.try_get::<String, _>("id")?).map_err(StoreError::corrupt)?,
                    created_at: Millis(r.try_get("created_at")?),
                    currency: r.try_get("currency")?,
                    total: r.try_get("total")?,
                    fraud_score: r.try_get("fraud_score")?,
                    fraud_reasons: r.try_get("fraud_reasons")?,
                })
            })
            .collect()
    }

    pub async fn order_events(&self, order: &OrderId) -> Result<Vec<OrderEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, from_status, to_status, actor, reason FROM order_events WHERE order_id = $1 ORDER BY seq",
        )
        .bind(order.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OrderEvent {
                    seq: r.try_get("seq")?,
                    at: Millis(r.try_get("at")?),
                    from: r.try_get("from_status")?,
                    to: r.try_get("to_status")?,
                    actor: r.try_get("actor")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }
}

/// A stored proof-of-identity document (the file is in the file store).
#[derive(Clone, Debug)]
pub struct IdDocumentRow {
    pub file_key: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sealed_digest: Sealed,
    pub uploaded_at: Millis,
}

/// Records an uploaded document; a new upload replaces the old one.
pub async fn put_id_document(tx: &mut WriteTx, order: &OrderId, row: &IdDocumentRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO id_documents (order_id, file_key, content_type, size_bytes, sealed_digest, uploaded_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id) DO UPDATE SET file_key = excluded.file_key, \
         content_type = excluded.content_type, size_bytes = excluded.size_bytes, \
         sealed_digest = excluded.sealed_digest, uploaded_at = excluded.uploaded_at",
    )
    .bind(order.as_str())
    .bind(row.file_key.clone())
    .bind(row.content_type.clone())
    .bind(row.size_bytes)
    .bind(bytes(&row.sealed_digest))
    .bind(row.uploaded_at.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// At the review decision: the document goes after `delete_after`.
pub async fn schedule_id_document_deletion(
    tx: &mut WriteTx,
    order: &OrderId,
    delete_after: Millis,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE id_documents SET delete_after = $2 WHERE order_id = $1")
        .bind(order.as_str())
        .bind(delete_after.0)
        .execute(tx.conn())
        .await?;
    Ok(())
}

impl Db {
    pub async fn id_document(&self, order: &OrderId) -> Result<Option<IdDocumentRow>, StoreError> {
        let row = sqlx::query(
            "SELECT file_key, content_type, size_bytes, sealed_digest, uploaded_at FROM id_documents WHERE order_id = $1",
        )
        .bind(order.as_str())
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| {
            Ok(IdDocumentRow {
                file_key: r.try_get("file_key")?,
                content_type: r.try_get("content_type")?,
                size_bytes: r.try_get("size_bytes")?,
                sealed_digest: Sealed::from_stored(r.try_get::<Vec<u8>, _>("sealed_digest")?),
                uploaded_at: Millis(r.try_get("uploaded_at")?),
            })
        })
        .transpose()
    }

    /// Documents whose time is up: (order, file key).
    /// Orders in `status` placed before `before`, oldest first (at most `limit`).
    pub async fn orders_in_status_before(
        &self,
        status: OrderStatus,
        before: Millis,
        limit: i64,
    ) -> Result<Vec<OrderId>, StoreError> {
        let rows =
            sqlx::query("SELECT id FROM orders WHERE status = $1 AND created_at < $2 ORDER BY created_at, id LIMIT $3")
                .bind(status.as_str())
                .bind(before.0)
                .bind(limit)
                .fetch_all(self.readers())
                .await?;
        rows.iter().map(|r| OrderId::parse(&r.try_get::<String, _>("id")?).map_err(StoreError::corrupt)).collect()
    }

    /// The file keys of every identity document of a customer's orders.
    pub async fn id_document_files_of(&self, customer: &CustomerId) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT file_key FROM id_documents WHERE order_id IN (SELECT id FROM orders WHERE customer_id = $1)",
        )
        .bind(customer.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("file_key")?)).collect()
    }

    /// Identity documents due for deletion: `delete_after` passed (set at the
    /// decision), or never decided and uploaded `undecided_ms` ago.
    pub async fn expired_id_documents(
        &self,
        now: Millis,
        undecided_ms: i64,
    ) -> Result<Vec<(OrderId, String)>, StoreError> {
        // Decided orders: from the decision; undecided ones: from the upload.
        let rows = sqlx::query(
            "SELECT order_id, file_key FROM id_documents WHERE delete_after <= $1 \
             OR (delete_after IS NULL AND uploaded_at <= $2)",
        )
        .bind(now.0)
        .bind(now.0 - undecided_ms)
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    OrderId::parse(&r.try_get::<String, _>("order_id")?).map_err(StoreError::corrupt)?,
                    r.try_get("file_key")?,
                ))
            })
            .collect()
    }

    pub async fn delete_id_document(&self, order: &OrderId) -> Result<(), StoreError> {
        let order = order.clone();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM id_documents WHERE order_id = $1")
                    .bind(order.as_str())
                    .execute(tx.conn())
                    .await?;
                Ok::<_, StoreError>(())
            })
        })
        .await
    }
}

/// A refund of one order line, as recorded.
#[derive(Clone, Debug)]
pub struct LineRefund {
    pub order: OrderId,
    pub line_no: i64,
    /// Minor units given back.
    pub amount: i64,
    /// The order's status, which a partial refund leaves as it is.
    pub status: OrderStatus,
    pub at: Millis,
    pub actor: String,
    pub reason: String,
}

/// Marks one line refunded and records the event. False if the line was
/// refunded already.
pub async fn refund_line(tx: &mut WriteTx, refund: &LineRefund) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE order_lines SET refunded_at = $3, refunded_amount = $4 WHERE order_id = $1 AND line_no = $2 \
         AND refunded_at IS NULL",
    )
    .bind(refund.order.as_str())
    .bind(refund.line_no)
    .bind(refund.at.0)
    .bind(refund.amount)
    .execute(tx.conn())
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO order_events (order_id, seq, at, from_status, to_status, actor, reason) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $3, $4, $5 FROM order_events WHERE order_id = $1",
    )
    .bind(refund.order.as_str())
    .bind(refund.at.0)
    .bind(refund.status.as_str())
    .bind(refund.actor.clone())
    .bind(format!("line {} refunded: {}", refund.line_no, refund.reason))
    .execute(tx.conn())
    .await?;
    Ok(true)
}

impl Db {
    /// Deletes messages of the outbox older than `before` that are done
    /// with (sent, failed or shredded); pending ones stay.
    pub async fn delete_old_messages(&self, before: Millis) -> Result<u64, StoreError> {
        // By age first (`outbox_emails_by_age`): SQLite, without statistics,
        // would take the status index and read every sent message; `+status`
        // keeps it off that index. PostgreSQL plans from its statistics.
        let sql = match self.backend() {
            crate::Backend::Sqlite => {
                "DELETE FROM outbox_emails WHERE +status IN ('sent', 'failed', 'shredded') AND created_at < $1"
            }
            crate::Backend::Postgres => {
                "DELETE FROM outbox_emails WHERE status IN ('sent', 'failed', 'shredded') AND created_at < $1"
            }
        };
        self.delete_where(sql, before).await
    }

    /// Deletes sessions that ended (signed out, or past any possible
    /// expiry) before `before`.
    pub async fn delete_ended_sessions(&self, before: Millis) -> Result<u64, StoreError> {
        self.delete_where("DELETE FROM sessions WHERE revoked_at < $1 OR last_seen_at < $1", before).await
    }

    /// Deletes one-time links used or expired before `before`.
    pub async fn delete_spent_links(&self, before: Millis) -> Result<u64, StoreError> {
        // Every realm's links are in one table.
        self.delete_where("DELETE FROM sign_in_links WHERE used_at < $1 OR expires_at < $1", before).await
    }

    /// Deletes idempotency keys (and their sealed answers) made before `before`.
    pub async fn forget_idempotency_keys(&self, before: Millis) -> Result<u64, StoreError> {
        self.delete_where("DELETE FROM idempotency_keys WHERE created_at < $1", before).await
    }

    /// Clears the gateway tokens of orders placed before `before`.
    pub async fn forget_payment_tokens(&self, before: Millis) -> Result<u64, StoreError> {
        self.delete_where(
            "UPDATE orders SET payment_token = NULL WHERE payment_token IS NOT NULL AND created_at < $1",
            before,
        )
        .await
    }

    async fn delete_where(&self, sql: &'static str, before: Millis) -> Result<u64, StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(sql).bind(before.0).execute(tx.conn()).await?;
                Ok::<_, StoreError>(done.rows_affected())
            })
        })
        .await
    }
}

pub async fn insert_vendor_api_key(
    tx: &mut WriteTx,
    key_hash: &[u8; 32],
    vendor: &VendorId,
    at: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO vendor_api_keys (key_hash, vendor_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (key_hash) DO NOTHING",
    )
    .bind(key_hash.to_vec())
    .bind(vendor.as_str())
    .bind(at.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

impl Db {
    /// The vendor a live API key belongs to.
    pub async fn vendor_of_api_key(&self, key_hash: &[u8; 32]) -> Result<Option<VendorId>, StoreError> {
        let row = sqlx::query("SELECT vendor_id FROM vendor_api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash.to_vec())
            .fetch_optional(self.readers())
            .await?;
        row.map(|r| VendorId::parse(&r.try_get::<String, _>("vendor_id")?).map_err(StoreError::corrupt)).transpose()
    }

    /// Orders with at least one line of this vendor, newest first.
    pub async fn order_ids_for_vendor(&self, vendor: &VendorId, limit: i64) -> Result<Vec<OrderId>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id \
             AND l.vendor_id = $1) ORDER BY o.created_at DESC, o.id DESC LIMIT $2",
        )
        .bind(vendor.as_str())
        .bind(limit)
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(|r| OrderId::parse(&r.try_get::<String, _>("id")?).map_err(StoreError::corrupt)).collect()
    }
}

/// How long a claimed move may stand before another may take it over (the
/// process that claimed it died between the gateway and the record).
pub const PAYMENT_MOVE_STALE_MS: i64 = 10 * 60 * 1000;

/// Claims the order for one staff move (a refund, a void, an approval),
/// before the gateway is called. False when another move holds it and is
/// not stale.
pub async fn claim_payment_move(
    tx: &mut WriteTx,
    order: &OrderId,
    kind: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let claimed = sqlx::query(
        "INSERT INTO payment_moves (order_id, kind, claimed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (order_id) DO UPDATE SET kind = excluded.kind, claimed_at = excluded.claimed_at \
         WHERE payment_moves.claimed_at < $4",
    )
    .bind(order.as_str())
    .bind(kind.to_owned())
    .bind(now.0)
    .bind(now.0 - PAYMENT_MOVE_STALE_MS)
    .execute(tx.conn())
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// Ends a claim: in the unit that records the move, or when the gateway
/// refused it.
pub async fn release_payment_move(tx: &mut WriteTx, order: &OrderId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM payment_moves WHERE order_id = $1").bind(order.as_str()).execute(tx.conn()).await?;
    Ok(())
}
