//! The order confirmation email.

use super::*;

/// What an order confirmation tells its buyer.
pub(super) struct OrderEmail<'a> {
    pub(super) name: &'a str,
    pub(super) id: &'a OrderId,
    pub(super) status: OrderStatus,
    pub(super) currency: Currency,
    pub(super) lines: &'a [PricedLine],
    pub(super) totals: &'a coffer_domain::Totals,
    pub(super) license_keys: &'a [(ProductId, String)],
    pub(super) downloads: &'a [(ProductId, String)],
    pub(super) payment_reference: Option<&'a str>,
    /// For a bank transfer: where to pay, and the last day to.
    pub(super) bank: Option<(&'a coffer_domain::BankAccount, String)>,
    pub(super) invitation: Option<&'a str>,
    /// For a held order: where to upload proof of identity.
    pub(super) identity: Option<&'a str>,
    pub(super) operator: &'a str,
}

/// The order confirmation: what was bought, what it cost, and what comes
/// next (keys and downloads, a check, or the bank transfer).
pub(super) fn order_email_body(mail: &OrderEmail<'_>) -> String {
    let money = |minor: i64| mail.currency.amount(minor);
    let name_of = |product: &ProductId| {
        mail.lines.iter().find(|l| &l.line.product_id == product).map(|l| l.name.as_str()).unwrap_or_default()
    };
    let mut out = format!("Hello {},\n\nThank you for your order {}.\n\n", mail.name, mail.id);
    for line in mail.lines {
        out.push_str(&format!("{} × {}: {}\n", line.line.quantity, line.name, money(line.line.line_total)));
    }
    out.push_str(&format!(
        "Subtotal: {}\nTax: {}\nTotal: {}\n\n",
        money(mail.totals.subtotal),
        money(mail.totals.tax),
        money(mail.totals.total)
    ));
    match mail.status {
        OrderStatus::Fulfilled => {
            out.push_str("Your invoice follows in a separate email as a PDF as soon as it is numbered.\n\n");
            for (product, key) in mail.license_keys {
                out.push_str(&format!("Your license key for {}:\n{key}\n\n", name_of(product)));
            }
            for (product, link) in mail.downloads {
                out.push_str(&format!("Download {} (the link works for 7 days):\n{link}\n\n", name_of(product)));
            }
        }
        OrderStatus::OnHold => {
            out.push_str(
                "Your payment is approved. Before we deliver, we check the order. You can speed this up by \
                 uploading a photo or scan of an identity document (JPEG, PNG or PDF, up to 8 MB); it is \
                 encrypted, seen only by our reviewers and deleted 30 days after the decision.\n\n",
            );
            if let Some(link) = mail.identity {
                out.push_str(&format!("Upload it here within 7 days:\n{link}\n\n"));
            }
            out.push_str("We write to you as soon as the check is done.\n\n");
        }
        OrderStatus::Pending => {
            out.push_str(&format!(
                "Please transfer {} to the account below, quoting the reference {} so we can match your \
                 payment. We deliver as soon as the money arrives.\n\n",
                money(mail.totals.total),
                mail.payment_reference.unwrap_or_default()
            ));
            if let Some((bank, pay_by)) = &mail.bank {
                out.push_str(&format!(
                    "Account holder: {}\nIBAN: {}\nBIC: {}\nReference: {}\nAmount: {}\n\nIf the money has not \
                     arrived by {pay_by}, the order is cancelled and we tell you.\n\n",
                    bank.holder,
                    bank.iban,
                    bank.bic,
                    mail.payment_reference.unwrap_or_default(),
                    money(mail.totals.total)
                ));
            }
        }
        _ => {}
    }
    if let Some(link) = mail.invitation {
        out.push_str(&format!(
            "Your purchases are also in your Coffer account. Open this link within 7 days to set your password:\n{link}\n\n"
        ));
    }
    out.push_str(&format!("The seller is {}, merchant of record for this order.\n\nCoffer\n", mail.operator));
    out
}
