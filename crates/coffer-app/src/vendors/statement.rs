//! What the operator owes a vendor for a period: the ledger's entries of
//! those days and, per currency, sales, refunds, fees and the net due.

use super::{VendorError, VendorService};
use crate::AppError;
use crate::accounts::vendor_users::own_vendor;
use crate::request::RequestContext;
use coffer_domain::{Permission, StatementPeriod};
use coffer_store::LedgerEntry;
use serde::Serialize;
use std::collections::BTreeMap;

/// One currency's sums, in minor units: sales and refunds of net prices,
/// the fees kept (net of fees given back with refunds), and what is due.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CurrencyTotals {
    pub currency: String,
    pub sales: i64,
    pub refunds: i64,
    pub fees: i64,
    pub net: i64,
}

/// One entry as a statement lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatementEntry {
    /// RFC 3339, UTC.
    pub at: String,
    pub order_id: String,
    pub line_no: i64,
    /// `sale`, `fee`, `refund` or `fee_refund`.
    pub kind: String,
    pub currency: String,
    /// Signed: owed to the vendor positive, taken off negative.
    pub amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub from: String,
    pub to: String,
    pub currencies: Vec<CurrencyTotals>,
    pub entries: Vec<StatementEntry>,
}

/// Sums entries per currency.
pub fn totals(entries: &[LedgerEntry]) -> Vec<CurrencyTotals> {
    let mut by: BTreeMap<&str, CurrencyTotals> = BTreeMap::new();
    for e in entries {
        let t = by
            .entry(&e.currency)
            .or_insert_with(|| CurrencyTotals { currency: e.currency.clone(), ..Default::default() });
        match e.kind.as_str() {
            "sale" => t.sales += e.amount,
            "refund" => t.refunds -= e.amount,
            "fee" | "fee_refund" => t.fees -= e.amount,
            _ => {}
        }
        t.net += e.amount;
    }
    by.into_values().collect()
}

impl Statement {
    /// The statement as CSV: one line per entry, then one per currency's
    /// totals. Amounts in minor units, as the API gives them.
    pub fn csv(&self) -> String {
        let mut out = String::from("date,order_id,line,kind,currency,amount\n");
        for e in &self.entries {
            out.push_str(&format!("{},{},{},{},{},{}\n", e.at, e.order_id, e.line_no, e.kind, e.currency, e.amount));
        }
        out.push_str("\ncurrency,sales,refunds,fees,net\n");
        for t in &self.currencies {
            out.push_str(&format!("{},{},{},{},{}\n", t.currency, t.sales, t.refunds, t.fees, t.net));
        }
        out
    }
}

impl VendorService {
    /// The vendor's statement for whole UTC days `from` to `to` (both
    /// included; `YYYY-MM-DD`).
    pub async fn statement(&self, ctx: &RequestContext, from: &str, to: &str) -> Result<Statement, AppError> {
        let vendor = own_vendor(ctx, Permission::ReadOwnStatement)?;
        let period = StatementPeriod::parse(from, to).ok_or(VendorError::InvalidPeriod)?;
        let (start, end) = period.bounds();
        let entries = self.db.ledger_entries(&vendor, start, end).await?;
        Ok(Statement {
            from: period.from.to_string(),
            to: period.to.to_string(),
            currencies: totals(&entries),
            entries: entries
                .into_iter()
                .map(|e| StatementEntry {
                    at: coffer_domain::order::rfc3339_utc(e.at),
                    order_id: e.order_id,
                    line_no: e.line_no,
                    kind: e.kind,
                    currency: e.currency,
                    amount: e.amount,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, currency: &str, amount: i64) -> LedgerEntry {
        LedgerEntry {
            order_id: "ord_1".into(),
            line_no: 1,
            kind: kind.into(),
            currency: currency.into(),
            amount,
            at: coffer_domain::Millis(0),
        }
    }

    #[test]
    fn totals_add_up_per_currency() {
        let entries = [
            entry("sale", "USD", 1999),
            entry("fee", "USD", -200),
            entry("sale", "USD", 900),
            entry("fee", "USD", -90),
            entry("refund", "USD", -900),
            entry("fee_refund", "USD", 90),
            entry("sale", "EUR", 1899),
            entry("fee", "EUR", -190),
        ];
        let t = totals(&entries);
        assert_eq!(t.len(), 2);
        let eur = &t[0];
        assert_eq!((eur.currency.as_str(), eur.sales, eur.refunds, eur.fees, eur.net), ("EUR", 1899, 0, 190, 1709));
        let usd = &t[1];
        assert_eq!((usd.sales, usd.refunds, usd.fees, usd.net), (2899, 900, 200, 1799));
        assert_eq!(usd.sales - usd.refunds - usd.fees, usd.net);
    }
}
