//! Orders: the order with its lines, license keys and events, as placed and
//! as moved by staff.

use crate::invoices::QUEUE_FOR_INVOICE;
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

/// A license key to store: sealed under its customer's data key, with what
/// finds it again without opening it.
#[derive(Clone, Debug)]
pub struct IssuedKey {
    pub line_no: i64,
    pub sealed: Sealed,
    /// SHA-256 of the key as issued (`coffer_crypto::license_key_hash`).
    pub key_hash: [u8; 32],
    /// The pseudonym in the key's signed payload.
    pub licensee: String,
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
    /// Sealed license keys with their line numbers.
    pub license_keys: Vec<IssuedKey>,
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

fn queued_order(r: &sqlx::any::AnyRow) -> Result<QueuedOrder, StoreError> {
    Ok(QueuedOrder {
        id: OrderId::parse(&r.try_get::<String, _>("id")?).map_err(StoreError::corrupt)?,
        created_at: Millis(r.try_get("created_at")?),
        currency: r.try_get("currency")?,
        total: r.try_get("total")?,
        fraud_score: r.try_get("fraud_score")?,
        fraud_reasons: r.try_get("fraud_reasons")?,
        status: r.try_get("status")?,
        payment_reference: r.try_get("payment_reference")?,
    })
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
    pub status: String,
    /// A bank transfer's reference.
    pub payment_reference: Option<String>,
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

/// A sign-in link stored only as the hash of its token.
pub struct NewLink {
    pub token_hash: [u8; 32],
    pub customer: CustomerId,
    pub purpose: crate::LinkPurpose,
    pub at: Millis,
    pub expires_at: Millis,
}

pub(crate) fn bytes(s: &Sealed) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The writes that place an order: a first order's new customer (with its
/// audit entry), the order, its audit entry, its confirmation email and,
/// for a customer without a password, the invitation link; one unit for
/// [`crate::Db::write_commands`].
pub fn order_placement(
    new_customer: Option<(&crate::NewSealedCustomer, &coffer_domain::AuditEntry)>,
    o: &NewOrder,
    audit: &coffer_domain::AuditEntry,
    email: &crate::NewEmail,
    invitation: Option<&NewLink>,
) -> Result<crate::WriteCommands, StoreError> {
    use crate::batch::{Statements, Val};
    let mut statements = Statements::default();
    // The customer before the order that refers to it.
    if let Some((customer, created)) = new_customer {
        for (sql, values) in crate::customers::insert_statements(customer, created) {
            statements.push(sql, values);
        }
    }
    statements.append(order_statements(o)?);
    let (sql, values) = crate::audit::append_statement(audit);
    statements.push(sql, values);
    for (sql, values) in crate::outbox::enqueue_statements(email) {
        statements.push(sql, values);
    }
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

/// The `orders` row of a new order.
fn order_row(o: &NewOrder) -> (&'static str, Vec<crate::batch::Val>) {
    use crate::batch::Val;
    (
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
    )
}

/// Every row a new order adds: the order, its lines, license keys, its
/// place in the invoice queue when it is paid already, and its first event.
fn order_statements(o: &NewOrder) -> Result<crate::batch::Statements, StoreError> {
    use crate::batch::{Statements, Val};
    let mut statements = Statements::default();
    let (sql, values) = order_row(o);
    statements.push(sql, values);
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
    for key in &o.license_keys {
        let line = line_of(&o.lines, key.line_no)?;
        statements.push(
            INSERT_LICENSE_KEY,
            vec![
                Val::Text(o.id.to_string()),
                Val::Int(key.line_no),
                Val::Text(line.product_id.to_string()),
                Val::Text(line.vendor_id.to_string()),
                Val::Bytes(bytes(&key.sealed)),
                Val::Int(o.at.0),
                Val::Bytes(key.key_hash.to_vec()),
                Val::Text(key.licensee.clone()),
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

pub(crate) fn sealed(row: &AnyRow, column: &str) -> Result<Option<Sealed>, StoreError> {
    Ok(row.try_get::<Option<Vec<u8>>, _>(column)?.map(Sealed::from_stored))
}

pub(crate) fn line_from_row(r: &AnyRow) -> Result<OrderLine, StoreError> {
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

const INSERT_LICENSE_KEY: &str = "INSERT INTO license_keys (order_id, line_no, product_id, vendor_id, license_key, \
                                  issued_at, key_hash, licensee) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

fn line_of(lines: &[OrderLine], line_no: i64) -> Result<&OrderLine, StoreError> {
    lines.iter().find(|l| l.line_no == line_no).ok_or_else(|| StoreError::corrupt("license_keys.line_no"))
}

/// Reading orders.
pub trait OrderReader: Send + Sync {
    /// One order with its lines.
    fn order(&self, id: &OrderId) -> impl Future<Output = Result<Option<StoredOrder>, StoreError>> + Send;

    /// A customer's orders with their lines, newest first: two queries
    /// however many orders there are.
    fn orders_of(&self, customer: &CustomerId) -> impl Future<Output = Result<Vec<StoredOrder>, StoreError>> + Send;

    /// The sealed license keys of all of a customer's orders, in one query:
    /// (order, line number, product, key). Keys cleared by an erasure are not
    /// among them.
    fn license_keys_of_customer(
        &self,
        customer: &CustomerId,
    ) -> impl Future<Output = Result<Vec<(OrderId, i64, ProductId, Sealed)>, StoreError>> + Send;

    /// Orders in one status, oldest first (a staff queue).
    fn orders_in(
        &self,
        status: OrderStatus,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<QueuedOrder>, StoreError>> + Send;

    /// Orders whose bank transfer quotes `reference` (at most 20).
    fn orders_with_payment_reference(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Vec<QueuedOrder>, StoreError>> + Send;

    /// An order's recorded moves, in order.
    fn order_events(&self, order: &OrderId) -> impl Future<Output = Result<Vec<OrderEvent>, StoreError>> + Send;

    /// Orders in `status` placed before `before`, oldest first (at most `limit`).
    fn orders_in_status_before(
        &self,
        status: OrderStatus,
        before: Millis,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<OrderId>, StoreError>> + Send;

    /// Orders with at least one line of this vendor, newest first.
    /// A page of the vendor's orders, each with only the vendor's lines.
    fn vendor_order_page(
        &self,
        vendor: &VendorId,
        page: &VendorOrderQuery,
    ) -> impl Future<Output = Result<Vec<VendorOrderRow>, StoreError>> + Send;
}

impl OrderReader for Db {
    async fn order(&self, id: &OrderId) -> Result<Option<StoredOrder>, StoreError> {
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

    async fn orders_of(&self, customer: &CustomerId) -> Result<Vec<StoredOrder>, StoreError> {
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

    async fn license_keys_of_customer(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<(OrderId, i64, ProductId, Sealed)>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.order_id, k.line_no, k.product_id, k.license_key FROM license_keys k \
             JOIN orders o ON o.id = k.order_id WHERE o.customer_id = $1 AND k.license_key IS NOT NULL \
             ORDER BY k.order_id, k.line_no",
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

    async fn orders_in(&self, status: OrderStatus, limit: i64) -> Result<Vec<QueuedOrder>, StoreError> {
        let sql = "SELECT id, created_at, currency, total, fraud_score, fraud_reasons, status, payment_reference \
                   FROM orders WHERE status = $1 ORDER BY created_at, id LIMIT $2";
        let rows = sqlx::query(sql).bind(status.as_str()).bind(limit).fetch_all(self.readers()).await?;
        rows.iter().map(queued_order).collect()
    }

    async fn orders_with_payment_reference(&self, reference: &str) -> Result<Vec<QueuedOrder>, StoreError> {
        let sql = "SELECT id, created_at, currency, total, fraud_score, fraud_reasons, status, payment_reference \
                   FROM orders WHERE payment_reference = $1 ORDER BY created_at, id LIMIT 20";
        let rows = sqlx::query(sql).bind(reference).fetch_all(self.readers()).await?;
        rows.iter().map(queued_order).collect()
    }

    async fn order_events(&self, order: &OrderId) -> Result<Vec<OrderEvent>, StoreError> {
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

    async fn orders_in_status_before(
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

    async fn vendor_order_page(
        &self,
        vendor: &VendorId,
        page: &VendorOrderQuery,
    ) -> Result<Vec<VendorOrderRow>, StoreError> {
        // Newest first; the page after an order starts strictly before it.
        // Empty strings and 0/MAX bounds mean "no filter". One query: the
        // page's orders with only this vendor's lines.
        let rows = sqlx::query(
            "SELECT o.id, o.status, o.currency, o.created_at, l.line_no, l.product_id, l.vendor_id, l.quantity, \
             l.unit_price, l.line_total, l.refunded_amount \
             FROM orders o JOIN order_lines l ON l.order_id = o.id AND l.vendor_id = $1 \
             WHERE o.id IN (SELECT p.id FROM orders p WHERE EXISTS (SELECT 1 FROM order_lines pl \
                 WHERE pl.order_id = p.id AND pl.vendor_id = $1) AND ($2 = '' OR p.status = $2) \
                 AND p.created_at >= $3 AND p.created_at < $4 \
                 AND ($5 = '' OR p.created_at < (SELECT a.created_at FROM orders a WHERE a.id = $5) \
                      OR (p.created_at = (SELECT a.created_at FROM orders a WHERE a.id = $5) AND p.id < $5)) \
                 ORDER BY p.created_at DESC, p.id DESC LIMIT $6) \
             ORDER BY o.created_at DESC, o.id DESC, l.line_no",
        )
        .bind(vendor.as_str())
        .bind(page.status.map_or("", OrderStatus::as_str).to_owned())
        .bind(page.from.0)
        .bind(page.to.0)
        .bind(page.after.as_ref().map_or("", OrderId::as_str).to_owned())
        .bind(page.limit)
        .fetch_all(self.readers())
        .await?;
        let mut out: Vec<VendorOrderRow> = Vec::new();
        for r in &rows {
            let id: String = r.try_get("id")?;
            let line = line_from_row(r)?;
            match out.last_mut() {
                Some(last) if last.id.as_str() == id => last.lines.push(line),
                _ => out.push(VendorOrderRow {
                    id: OrderId::parse(&id).map_err(StoreError::corrupt)?,
                    status: OrderStatus::parse(&r.try_get::<String, _>("status")?)
                        .ok_or_else(|| StoreError::corrupt("orders.status"))?,
                    currency: r.try_get("currency")?,
                    created_at: Millis(r.try_get("created_at")?),
                    lines: vec![line],
                }),
            }
        }
        Ok(out)
    }
}

/// One order of a vendor's list: what the list shows, and only the
/// vendor's own lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorOrderRow {
    pub id: OrderId,
    pub status: OrderStatus,
    pub currency: String,
    pub created_at: Millis,
    pub lines: Vec<OrderLine>,
}

/// Which of a vendor's orders to list: newest first, after an order (the
/// cursor), of one status, placed within `[from, to)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorOrderQuery {
    pub after: Option<OrderId>,
    pub status: Option<OrderStatus>,
    pub from: Millis,
    pub to: Millis,
    pub limit: i64,
}

impl Default for VendorOrderQuery {
    fn default() -> Self {
        VendorOrderQuery { after: None, status: None, from: Millis(0), to: Millis(i64::MAX), limit: 50 }
    }
}

/// Moving orders, inside a unit of work.
pub trait OrderWriter {
    /// Moves an order from `from` to `to` and records the event, if it is
    /// still in `from` (so two staff members cannot both act on it). False if
    /// it was not.
    fn transition_order(
        &mut self,
        order: &OrderId,
        from: OrderStatus,
        to: OrderStatus,
        at: Millis,
        actor: &str,
        reason: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds license keys to an order being delivered after the fact.
    fn insert_license_keys(
        &mut self,
        order: &OrderId,
        lines: &[OrderLine],
        keys: &[IssuedKey],
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks one line refunded and records the event. False if the line was
    /// refunded already.
    fn refund_line(&mut self, refund: &LineRefund) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl OrderWriter for WriteTx {
    async fn transition_order(
        &mut self,
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
            .execute(self.conn())
            .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        append_event(self, order, at, from, to, actor, reason.to_owned()).await?;
        // Paid is the one way in: from there an order only moves to fulfilled
        // or refunded, and it may have its invoice by then.
        if to == OrderStatus::Paid {
            sqlx::query(QUEUE_FOR_INVOICE).bind(order.as_str()).bind(at.0).execute(self.conn()).await?;
        }
        Ok(true)
    }

    async fn insert_license_keys(
        &mut self,
        order: &OrderId,
        lines: &[OrderLine],
        keys: &[IssuedKey],
        at: Millis,
    ) -> Result<(), StoreError> {
        for key in keys {
            let line = line_of(lines, key.line_no)?;
            sqlx::query(INSERT_LICENSE_KEY)
                .bind(order.as_str())
                .bind(key.line_no)
                .bind(line.product_id.as_str())
                .bind(line.vendor_id.as_str())
                .bind(bytes(&key.sealed))
                .bind(at.0)
                .bind(key.key_hash.to_vec())
                .bind(key.licensee.clone())
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }

    async fn refund_line(&mut self, refund: &LineRefund) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE order_lines SET refunded_at = $3, refunded_amount = $4 WHERE order_id = $1 AND line_no = $2 \
             AND refunded_at IS NULL",
        )
        .bind(refund.order.as_str())
        .bind(refund.line_no)
        .bind(refund.at.0)
        .bind(refund.amount)
        .execute(self.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let reason = format!("line {} refunded: {}", refund.line_no, refund.reason);
        append_event(self, &refund.order, refund.at, refund.status, refund.status, &refund.actor, reason).await?;
        Ok(true)
    }
}

/// Records a move of an order (`from` and `to` the same when its status
/// stays), numbered after its last event.
async fn append_event(
    tx: &mut WriteTx,
    order: &OrderId,
    at: Millis,
    from: OrderStatus,
    to: OrderStatus,
    actor: &str,
    reason: String,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO order_events (order_id, seq, at, from_status, to_status, actor, reason) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 FROM order_events WHERE order_id = $1",
    )
    .bind(order.as_str())
    .bind(at.0)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(actor.to_owned())
    .bind(reason)
    .execute(tx.conn())
    .await?;
    Ok(())
}
