//! What a vendor's program sees through its API key: its own orders, only
//! its own lines of them, and, on one order's detail only, the buyer's
//! name, email, address and phone (the fields the policy lets a vendor
//! have) when the vendor must fill the order (paid, fulfilled) or support
//! it (refunded after it was fulfilled). Every such read is audited and
//! recorded as a disclosure the customer sees in "download my data". Lists
//! never carry a buyer, so they write no audit or disclosure rows.

use super::VendorService;
use crate::AppError;
use crate::request::RequestContext;
use coffer_domain::{AuditAction, DisclosureId, OrderId, Permission, VendorId};
use coffer_store::prelude::*;
use serde::Serialize;

/// The fields a vendor receives for its own orders.
const SHARED_FIELDS: [&str; 4] = ["orders.name", "orders.email", "orders.phone", "orders.address"];

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VendorLine {
    pub product_id: String,
    pub quantity: i64,
    pub unit_price: i64,
    pub line_total: i64,
    pub refunded: i64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VendorBuyer {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub address: serde_json::Value,
}

/// One order in a vendor's list: ids, date, its own lines, amounts and
/// status; never the buyer.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VendorOrderSummary {
    pub id: String,
    pub status: &'static str,
    pub placed_at: String,
    pub currency: String,
    pub lines: Vec<VendorLine>,
    /// The sum of this vendor's lines, net of tax.
    pub vendor_subtotal: i64,
}

/// One order as its vendor sees it: never another vendor's lines or the
/// order's total, only this vendor's part of it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VendorOrder {
    #[serde(flatten)]
    pub summary: VendorOrderSummary,
    /// Only while the vendor fills or supports the order (paid, fulfilled,
    /// or refunded after it was fulfilled); `None` otherwise and once the
    /// customer was erased.
    pub buyer: Option<VendorBuyer>,
}

/// Whether the vendor of an order in this state gets its buyer: to fill it
/// (paid, fulfilled) or to support the customer with what was delivered
/// (refunded after fulfilment). Held, rejected, pending, cancelled and
/// refunded-before-delivery orders are none of the vendor's business.
pub fn vendor_may_see_buyer(status: coffer_domain::OrderStatus, was_fulfilled: bool) -> bool {
    use coffer_domain::OrderStatus;
    match status {
        OrderStatus::Paid | OrderStatus::Fulfilled => true,
        OrderStatus::Refunded => was_fulfilled,
        _ => false,
    }
}

/// The vendor a principal reads orders for: its own only.
fn vendor_of(ctx: &RequestContext) -> Result<VendorId, AppError> {
    crate::accounts::vendor_users::own_vendor(ctx, Permission::ReadOwnVendorOrders)
}

impl VendorService {
    /// A page of the vendor's orders, newest first, without buyers; the
    /// cursor of the next page when this one is full. Only a vendor
    /// principal, and only its own.
    pub async fn orders(
        &self,
        ctx: &RequestContext,
        query: &coffer_store::VendorOrderQuery,
    ) -> Result<(Vec<VendorOrderSummary>, Option<String>), AppError> {
        let vendor = &vendor_of(ctx)?;
        let query = coffer_store::VendorOrderQuery { limit: query.limit.clamp(1, 200), ..query.clone() };
        let rows = self.db.vendor_order_page(vendor, &query).await?;
        let next = (i64::try_from(rows.len()).unwrap_or(i64::MAX) == query.limit)
            .then(|| rows.last().map(|r| r.id.to_string()))
            .flatten();
        let out =
            rows.iter().map(|r| summary_of(r.id.as_str(), r.status, r.created_at, &r.currency, &r.lines)).collect();
        Ok((out, next))
    }

    /// One order, if it has a line of this vendor; `None` otherwise, exactly
    /// as for an order that does not exist. The buyer only as
    /// [`vendor_may_see_buyer`] allows.
    pub async fn order(&self, ctx: &RequestContext, id: &OrderId) -> Result<Option<VendorOrder>, AppError> {
        let vendor = &vendor_of(ctx)?;
        let Some(order) = self.db.order(id).await? else { return Ok(None) };
        let Some(summary) = summary_for(vendor, &order) else { return Ok(None) };
        let was_fulfilled = order.status == coffer_domain::OrderStatus::Refunded
            && self.db.order_events(&order.id).await?.iter().any(|e| e.to == "fulfilled");
        // No buyer before the owner accepted the data-processing terms.
        let terms = self.db.vendor_record(vendor).await?.and_then(|v| v.terms_accepted_at);
        let buyer = if vendor_may_see_buyer(order.status, was_fulfilled) && terms.is_some() {
            self.buyer(ctx, vendor, &order).await?
        } else {
            None
        };
        Ok(Some(VendorOrder { summary, buyer }))
    }

    /// The buyer's shared fields, audited and recorded as a disclosure
    /// before they are handed out; `None` once the customer was erased.
    async fn buyer(
        &self,
        ctx: &RequestContext,
        vendor: &VendorId,
        order: &coffer_store::StoredOrder,
    ) -> Result<Option<VendorBuyer>, AppError> {
        let key = self.vault.data_key(&order.data_key_id).await?;
        let open = |column: &'static str, sealed: &Option<coffer_crypto::Sealed>| {
            crate::checkout::open_order_field(key.as_ref(), order, column, sealed.as_ref())
        };
        let buyer = match (open("name", &order.name)?, open("email", &order.email)?) {
            (Some(name), Some(email)) => Some(VendorBuyer {
                name,
                email,
                phone: open("phone", &order.phone)?,
                address: open("address", &order.address)?
                    .and_then(|a| serde_json::from_str(&a).ok())
                    .unwrap_or_default(),
            }),
            _ => None,
        };
        if buyer.is_some() {
            // Audited and recorded before the data is handed out.
            // The entry names who read: the key's vendor or the portal user.
            let now = self.clock.now();
            let entry = ctx.audit_entry(now, AuditAction::CustomerRead, Some(order.customer_id.to_string()));
            let disclosure = coffer_store::Disclosure {
                id: DisclosureId::generate().to_string(),
                customer_id: order.customer_id.clone(),
                recipient_kind: "vendor".into(),
                recipient: vendor.to_string(),
                fields: SHARED_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
                purpose: format!("filling order {} and supporting the customer", order.id),
                legal_basis: "contract".into(),
                disclosed_at: now,
            };
            self.db
                .write(unit!(|tx| {
                    tx.append_audit(&entry).await?;
                    coffer_store::insert_disclosure(tx, &disclosure).await?;
                    Ok::<_, AppError>(())
                }))
                .await?;
        }
        Ok(buyer)
    }
}

/// The vendor's part of an order; `None` when it has no line of the vendor.
fn summary_for(vendor: &VendorId, order: &coffer_store::StoredOrder) -> Option<VendorOrderSummary> {
    let lines: Vec<coffer_store::OrderLine> = order.lines.iter().filter(|l| &l.vendor_id == vendor).cloned().collect();
    if lines.is_empty() {
        return None;
    }
    Some(summary_of(order.id.as_str(), order.status, order.created_at, &order.currency, &lines))
}

/// An order's summary from the vendor's own lines.
fn summary_of(
    id: &str,
    status: coffer_domain::OrderStatus,
    created_at: coffer_domain::Millis,
    currency: &str,
    lines: &[coffer_store::OrderLine],
) -> VendorOrderSummary {
    let lines: Vec<VendorLine> = lines
        .iter()
        .map(|l| VendorLine {
            product_id: l.product_id.to_string(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            line_total: l.line_total,
            refunded: l.refunded_amount,
        })
        .collect();
    VendorOrderSummary {
        id: id.to_owned(),
        status: status.as_str(),
        placed_at: coffer_domain::order::rfc3339_utc(created_at),
        currency: currency.to_owned(),
        vendor_subtotal: lines.iter().map(|l| l.line_total).sum(),
        lines,
    }
}
