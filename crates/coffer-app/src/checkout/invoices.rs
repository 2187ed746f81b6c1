//! Invoices as documents: the page in the account, its PDF, and the email
//! that carries the PDF once the numbering job has given the invoice its
//! number.

use super::*;
use crate::invoice_pdf::{DocumentLine, InvoiceDocument};
use crate::request::RequestContext;
use coffer_store::{CreditNote, Invoice};

/// The seller on every invoice: the operator, merchant of record.
#[derive(Clone, Debug, Default)]
pub struct Seller {
    pub name: String,
    pub postal_address: String,
    /// The operator's VAT identification number, printed on every invoice.
    pub vat_number: Option<String>,
}

impl CheckoutService {
    /// One of the signed-in customer's own invoices as a document; `None`
    /// for anyone else's, exactly as for one that does not exist.
    pub async fn own_invoice_document(
        &self,
        ctx: &RequestContext,
        number: i64,
    ) -> Result<Option<InvoiceDocument>, AppError> {
        let Some(invoice) = self.staff.ctx.db.invoice(number).await? else { return Ok(None) };
        let Some(order) = self.own_order(ctx, &invoice.order_id).await? else { return Ok(None) };
        self.invoice_document(&invoice, &order).await.map(Some)
    }

    /// The signed-in customer's own order; `None` for anyone else's.
    async fn own_order(
        &self,
        ctx: &RequestContext,
        order: &OrderId,
    ) -> Result<Option<coffer_store::StoredOrder>, AppError> {
        let customer = ctx.own_account()?;
        Ok(self.staff.ctx.db.order(order).await?.filter(|o| o.customer_id == customer))
    }

    /// An invoice as its document: seller, buyer (the order's own copy of
    /// the address, in its usual order), the payment, the lines by product
    /// name, net, the VAT of the country at the rate charged, and the total.
    pub async fn invoice_document(
        &self,
        invoice: &Invoice,
        order: &coffer_store::StoredOrder,
    ) -> Result<InvoiceDocument, AppError> {
        let ctx = &self.staff.ctx;
        let key = ctx.vault.data_key(&order.data_key_id).await?;
        let open = |column: &'static str, sealed: &Option<coffer_crypto::Sealed>| {
            open_order_field(key.as_ref(), order, column, sealed.as_ref()).map(Option::unwrap_or_default)
        };
        let buyer = if key.is_none() {
            vec!["(the buyer's details were erased at their request)".to_owned()]
        } else {
            let mut lines = vec![open("name", &order.name)?];
            if let Ok(address) =
                serde_json::from_str::<coffer_domain::MailingAddress>(&open("address", &order.address)?)
            {
                lines.extend(address.lines());
            }
            lines
        };
        let card: serde_json::Value = serde_json::from_str(&open("card", &order.card)?).unwrap_or_default();
        let currency = Currency::parse(&invoice.currency)?;
        let day = coffer_domain::order::long_day_utc(invoice.issued_at);
        let payment = match (order.payment_method.as_str(), card["brand"].as_str(), card["last4"].as_str()) {
            ("card", Some(brand), Some(last4)) => {
                format!("card ({} ending {last4})", coffer_domain::order::brand_name(brand))
            }
            ("card", _, _) => "card".to_owned(),
            _ => "bank transfer".to_owned(),
        };
        let mut lines = Vec::with_capacity(order.lines.len());
        for line in &order.lines {
            // Through the catalog's cache: a document per order reads no product row.
            let product = match self.placement.catalog.product(&line.product_id).await {
                Ok(product) => Some(product),
                Err(AppError::NotFound) => None,
                Err(e) => return Err(e),
            };
            lines.push(DocumentLine {
                item: product.map(|p| format!("{} (by {})", p.name, p.vendor_name)).unwrap_or_default(),
                quantity: line.quantity.to_string(),
                unit_price: currency.amount(line.unit_price),
                amount: currency.amount(line.line_total),
            });
        }
        let rate = u32::try_from(invoice.tax_rate).unwrap_or(0);
        let mut seller = vec![self.seller.name.clone(), self.seller.postal_address.clone()];
        seller.extend(self.seller.vat_number.as_ref().map(|n| format!("VAT number {n}")));
        Ok(InvoiceDocument {
            title: format!("Invoice {}", invoice.number),
            facts: vec![
                format!("Invoice date: {day}"),
                format!("Order {}", order.id),
                format!("Paid by {payment} on {day}"),
            ],
            seller,
            buyer,
            lines,
            totals: vec![
                ("Net total".into(), currency.amount(invoice.subtotal)),
                (coffer_domain::tax::tax_label(&invoice.tax_country, rate), currency.amount(invoice.tax)),
                ("Total".into(), currency.amount(invoice.total)),
            ],
            notes: vec![format!(
                "{} is the merchant of record for this sale: it sells the software above on behalf of the vendors \
                 named with each item. Amounts are in {}.",
                self.seller.name,
                currency.code()
            )],
        })
    }

    /// One of the signed-in customer's own credit notes as a document;
    /// `None` for anyone else's, exactly as for one that does not exist.
    pub async fn own_credit_note_document(
        &self,
        ctx: &RequestContext,
        number: i64,
    ) -> Result<Option<InvoiceDocument>, AppError> {
        let Some(note) = self.staff.ctx.db.credit_note(number).await? else { return Ok(None) };
        let Some(order) = self.own_order(ctx, &note.order_id).await? else { return Ok(None) };
        self.credit_note_document(&note, &order).await.map(Some)
    }

    /// The credit notes of an order, by number.
    pub async fn credit_notes_of(&self, order: &OrderId) -> Result<Vec<CreditNote>, AppError> {
        Ok(self.staff.ctx.db.credit_notes_of(order).await?)
    }

    /// A credit note as its document: the invoice it corrects, what was
    /// refunded (one line, or the rest of the order), net, VAT and total
    /// credited, and how the money goes back.
    pub async fn credit_note_document(
        &self,
        note: &CreditNote,
        order: &coffer_store::StoredOrder,
    ) -> Result<InvoiceDocument, AppError> {
        let ctx = &self.staff.ctx;
        let invoice = ctx.db.invoice(note.invoice_number).await?.ok_or(AppError::NotFound)?;
        let mut doc = self.invoice_document(&invoice, order).await?;
        let currency = Currency::parse(&note.currency)?;
        // The lines this note credits: its own line, or every line no
        // other credit note credited on its own.
        let credited_alone: Vec<i64> =
            ctx.db.credit_notes_of(&order.id).await?.iter().filter_map(|n| n.line_no).collect();
        let credited = |line_no: i64| match note.line_no {
            Some(own) => own == line_no,
            None => !credited_alone.contains(&line_no),
        };
        doc.lines = order
            .lines
            .iter()
            .zip(doc.lines)
            .filter(|(line, _)| credited(line.line_no))
            .map(|(_, shown)| shown)
            .collect();
        let day = coffer_domain::order::long_day_utc(note.issued_at);
        doc.title = format!("Credit note {}", note.number);
        doc.facts = vec![
            format!("Credit note date: {day}"),
            format!("Corrects invoice {} of {}", invoice.number, coffer_domain::order::long_day_utc(invoice.issued_at)),
            format!("Order {}", order.id),
        ];
        let rate = u32::try_from(invoice.tax_rate).unwrap_or(0);
        doc.totals = vec![
            ("Net credited".into(), currency.amount(note.net)),
            (coffer_domain::tax::tax_label(&invoice.tax_country, rate), currency.amount(note.tax)),
            ("Total credited".into(), currency.amount(note.total)),
        ];
        let back = if order.payment_method == "bank_transfer" {
            "We transfer it back to the bank account the payment came from."
        } else {
            "It goes back to the card the order was paid with."
        };
        doc.notes
            .insert(0, format!("This credit note cancels the amounts above from invoice {}. {back}", invoice.number));
        Ok(doc)
    }

    /// Emails the PDF of every invoice and credit note not emailed yet to
    /// its buyer (the numbering job calls this after it numbers). Up to 20
    /// at a time are written in one unit, each email with its document's
    /// mark, so a crash loses none and sends none twice; a busy shop pays
    /// one commit per twenty, not one per order, and no unit is large
    /// enough to hold the writer up (each carries its PDF). An erased buyer's
    /// document is marked and not sent. Returns how many were sent; stops
    /// at the first failure, which the next run retries.
    pub async fn email_invoices(&self) -> Result<usize, AppError> {
        const AT_ONCE: i64 = 20;
        let ctx = &self.staff.ctx;
        let mut sent = 0;
        loop {
            let mut due: Vec<Paper> =
                ctx.db.invoices_to_email(AT_ONCE).await?.into_iter().map(Paper::Invoice).collect();
            due.extend(ctx.db.credit_notes_to_email(AT_ONCE).await?.into_iter().map(Paper::CreditNote));
            if due.is_empty() {
                return Ok(sent);
            }
            let mut batch = Vec::with_capacity(due.len());
            for paper in due {
                let mail = match ctx.db.order(paper.order_id()).await? {
                    Some(order) => match ctx.vault.data_key(&order.data_key_id).await? {
                        Some(key) => Some(self.paper_email(&paper, &order, &key).await?),
                        None => None,
                    },
                    None => None,
                };
                batch.push((paper, mail));
            }
            let now = ctx.clock.now();
            sent += ctx
                .db
                .write(unit!(|tx| {
                    let mut sent = 0;
                    for (paper, mail) in &batch {
                        let first = match paper {
                            Paper::Invoice(i) => tx.mark_invoice_emailed(i.number, now).await?,
                            Paper::CreditNote(n) => tx.mark_credit_note_emailed(n.number, now).await?,
                        };
                        // Marked a moment ago by another worker: theirs.
                        if let (true, Some(mail)) = (first, mail) {
                            tx.enqueue_email(mail).await?;
                            sent += 1;
                        }
                    }
                    Ok::<_, AppError>(sent)
                }))
                .await?;
        }
    }

    /// The email of an invoice or a credit note: a short text and the PDF,
    /// sealed under the buyer's key.
    async fn paper_email(
        &self,
        paper: &Paper,
        order: &coffer_store::StoredOrder,
        key: &coffer_crypto::DataKey,
    ) -> Result<coffer_store::NewEmail, AppError> {
        let (document, what, file) = match paper {
            Paper::Invoice(i) => (
                self.invoice_document(i, order).await?,
                format!("invoice {}", i.number),
                format!("invoice-{}", i.number),
            ),
            Paper::CreditNote(n) => (
                self.credit_note_document(n, order).await?,
                format!("credit note {}", n.number),
                format!("credit-note-{}", n.number),
            ),
        };
        let pdf = crate::invoice_pdf::render_pdf(&document);
        let open = |column: &'static str, sealed: &Option<coffer_crypto::Sealed>| {
            open_order_field(Some(key), order, column, sealed.as_ref()).map(Option::unwrap_or_default)
        };
        let (name, email) = (open("name", &order.name)?, open("email", &order.email)?);
        let subject = format!("Your {what} for order {}", order.id);
        let total = document.totals.last().map(|(_, amount)| amount.clone()).unwrap_or_default();
        let body = format!(
            "Hello {name},\n\nYour {what} for order {} ({total}) is attached as a PDF. It is also in your account, \
             with every invoice and credit note of yours.\n\nThe seller is {}, merchant of record for this \
             order.\n\nCoffer\n",
            order.id, self.seller.name
        );
        let letter = Letter { kind: "invoice", to: &email, subject: &subject, body: &body };
        let attachment = (format!("coffer-{file}.pdf"), pdf);
        self.outbox.seal_with_attachment(&letter, key, &order.data_key_id, &attachment)
    }
}

/// A numbered document a buyer is sent.
#[derive(Clone)]
enum Paper {
    Invoice(Invoice),
    CreditNote(CreditNote),
}

impl Paper {
    fn order_id(&self) -> &OrderId {
        match self {
            Paper::Invoice(i) => &i.order_id,
            Paper::CreditNote(n) => &n.order_id,
        }
    }
}
