//! The privacy services: keys ([`keys`], [`vault`]), the customer record
//! with erasure and export ([`customers`]), and the audit log ([`audit`]).

pub mod audit;
pub mod customers;
pub mod keys;
pub mod vault;

pub use customers::{
    AccessExport, AccountRecord, CardRecord, ConsentRecord, CustomerRecord, CustomerService, DisclosureRecord,
    LicenseKeyRecord, MessageRecord, OrderAddress, OrderRecord, OrderRecordDetails, OrderRecordLine,
    PersonalDataRecord, PrivacyRequestRecord, Reader, ReplayReport,
};
pub use keys::{FileKeyProvider, KeyProvider};
pub use vault::Vault;

/// The access export as a readable HTML page (the JSON export's content).
pub fn export_html(export: &AccessExport) -> String {
    let mut more = account_section(&export.account);
    more.push_str(&orders_section(&export.orders));
    more.push_str(&messages_section(&export.messages));
    more.push_str(&requests_section(&export.privacy_requests));
    more.push_str(&disclosures_section(&export.disclosures));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Your data held by Coffer</title>\n\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;vertical-align:top;padding:.4rem;\
         border-bottom:1px solid #ddd}}</style></head>\n<body><h1>Your data held by Coffer</h1>\n\
         <p>Customer id {}. This is everything we hold about you, why, and who receives it.</p>\n\
         <table><thead><tr><th>Data</th><th>Value</th><th>Why we hold it</th><th>Legal basis</th>\
         <th>Shared with</th></tr></thead><tbody>\n{}</tbody></table>\n{more}</body></html>\n",
        escape(export.customer_id.as_str()),
        personal_data_rows(&export.personal_data),
    )
}

/// Text made safe to place in HTML, inside elements or quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A value as a person reads it: text as it is, an object as its non-empty
/// `key: value` pairs, nothing as "(not given)".
fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "(not given)".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(_, v)| v.as_str().is_none_or(|s| !s.is_empty()))
            .map(|(k, v)| format!("{k}: {}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A `snake_case` code (or a serialised enum) in words, escaped.
fn words<T: serde::Serialize>(code: &T) -> String {
    let code = match serde_json::to_value(code) {
        Ok(serde_json::Value::String(code)) => code,
        _ => String::new(),
    };
    escape(&code.replace('_', " "))
}

/// One table row per personal field: its value, purpose, legal basis and
/// who receives it.
fn personal_data_rows(fields: &[PersonalDataRecord]) -> String {
    let mut rows = String::new();
    for field in fields {
        let recipients: Vec<String> = field.recipients.iter().map(words).collect();
        rows.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(field.label),
            escape(&show(&field.value)),
            escape(field.purpose),
            words(&field.legal_basis),
            recipients.join(", "),
        ));
    }
    rows
}

fn account_section(account: &AccountRecord) -> String {
    let yes_no = |set: bool| if set { "yes" } else { "no" };
    format!(
        "<h2>Your account</h2>\n<p>Password set: {}. Two-step sign-in: {}.</p>\n",
        yes_no(account.password_set),
        yes_no(account.second_factor)
    )
}

fn orders_section(orders: &[OrderRecord]) -> String {
    let mut out = String::from("<h2>Your orders</h2>\n");
    if orders.is_empty() {
        out.push_str("<p>None.</p>\n");
    }
    for o in orders {
        let lines: Vec<String> = o.lines.iter().map(|l| format!("{} × {}", l.quantity, l.product_id)).collect();
        out.push_str(&format!(
            "<h3>Order {}</h3>\n<p>{}: {} (minor units) {}; {}. Consent to privacy policy version {} ({}).</p>\n",
            escape(o.id.as_str()),
            words(&o.status),
            o.total,
            escape(&o.currency),
            escape(&lines.join(", ")),
            escape(&o.consent.privacy_policy_version),
            escape(&o.consent.channel),
        ));
        let details = serde_json::to_value(&o.details).unwrap_or_default();
        out.push_str(&format!("<p>Details kept with the order: {}</p>\n", escape(&show(&details))));
        for key in &o.license_keys {
            out.push_str(&format!("<p>License key: <code>{}</code></p>\n", escape(&key.key)));
        }
    }
    out
}

fn messages_section(messages: &[MessageRecord]) -> String {
    let mut out = String::from("<h2>Messages we keep (90 days)</h2>\n");
    if messages.is_empty() {
        out.push_str("<p>None.</p>\n");
    }
    for m in messages {
        out.push_str(&format!(
            "<h3>{}</h3>\n<p>To {} ({}, {})</p>\n<pre>{}</pre>\n",
            escape(m.subject.as_deref().unwrap_or("(no subject)")),
            escape(m.to.as_deref().unwrap_or_default()),
            escape(&m.kind),
            escape(&m.status),
            escape(m.body.as_deref().unwrap_or_default()),
        ));
    }
    out
}

fn requests_section(requests: &[PrivacyRequestRecord]) -> String {
    let mut out = String::from("<h2>Your data requests</h2>\n");
    if requests.is_empty() {
        out.push_str("<p>None.</p>\n");
        return out;
    }
    out.push_str("<ul>\n");
    for r in requests {
        out.push_str(&format!("<li>{} ({}): {}</li>\n", escape(&r.kind), escape(&r.jurisdiction), words(&r.status),));
    }
    out.push_str("</ul>\n");
    out
}

fn disclosures_section(disclosures: &[DisclosureRecord]) -> String {
    let mut out = String::from("<h2>Who received your data</h2>\n");
    if disclosures.is_empty() {
        out.push_str("<p>No one outside Coffer has received your data.</p>\n");
        return out;
    }
    out.push_str("<ul>\n");
    for d in disclosures {
        let name = d.recipient_name.as_deref().unwrap_or(&d.recipient);
        let contact =
            d.privacy_contact.as_deref().map(|c| format!("; their privacy contact: {}", escape(c))).unwrap_or_default();
        out.push_str(&format!(
            "<li>{} {}: {}, for {} ({}){contact}</li>\n",
            words(&d.recipient_kind),
            escape(name),
            escape(&d.fields.join(", ")),
            escape(&d.purpose),
            words(&d.legal_basis),
        ));
    }
    out.push_str("</ul>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jo'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jo&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn values_read_as_text_and_empty_parts_are_left_out() {
        assert_eq!(show(&json!(null)), "(not given)");
        assert_eq!(show(&json!("Ada")), "Ada");
        assert_eq!(show(&json!({"city": "Berlin", "line2": "", "zip": 10115})), "city: Berlin, zip: 10115");
        assert_eq!(show(&json!(true)), "true");
        assert_eq!(words(&"legitimate_interest"), "legitimate interest");
        assert_eq!(words(&coffer_domain::inventory::LegalBasis::LegitimateInterest), "legitimate interest");
        assert_eq!(words(&3), "");
    }

    #[test]
    fn each_section_says_none_when_empty_and_escapes_what_it_shows() {
        let account = AccountRecord { password_set: true, second_factor: false };
        assert!(account_section(&account).contains("Password set: yes. Two-step sign-in: no."));
        assert!(orders_section(&[]).ends_with("<p>None.</p>\n"));
        assert!(messages_section(&[]).ends_with("<p>None.</p>\n"));
        assert!(requests_section(&[]).ends_with("<p>None.</p>\n"));
        assert!(disclosures_section(&[]).contains("No one outside Coffer"));
        let product = coffer_domain::ProductId::generate();
        let order = OrderRecord {
            id: coffer_domain::OrderId::generate(),
            status: "on_hold",
            placed_at_ms: 1,
            currency: "EUR<".into(),
            subtotal: 2000,
            tax: 379,
            total: 2379,
            payment_method: "card".into(),
            payment_reference: None,
            lines: vec![OrderRecordLine {
                line_no: 1,
                product_id: product.clone(),
                quantity: 2,
                unit_price: 1000,
                line_total: 2000,
            }],
            license_keys: vec![LicenseKeyRecord { product_id: product.clone(), key: "k&k".into() }],
            details: OrderRecordDetails {
                name: Some("A <b>".into()),
                email: None,
                phone: None,
                address: None,
                card: None,
                guardian_name: None,
            },
            consent: ConsentRecord { privacy_policy_version: "v1".into(), at_ms: 1, channel: "web".into() },
        };
        let html = orders_section(&[order]);
        assert!(html.contains(&format!("<p>on hold: 2379 (minor units) EUR&lt;; 2 × {product}.")), "{html}");
        assert!(html.contains("name: A &lt;b&gt;") && html.contains("<code>k&amp;k</code>"), "{html}");
        let html = disclosures_section(&[DisclosureRecord {
            id: "dis_1".into(),
            recipient_kind: "vendor_user".into(),
            recipient: "acme".into(),
            recipient_name: None,
            privacy_contact: Some("Jo <dpo@acme.test>".into()),
            fields: vec!["email".into(), "name".into()],
            purpose: "support".into(),
            legal_basis: "contract".into(),
            disclosed_at_ms: 1,
        }]);
        assert!(
            html.contains(
                "<li>vendor user acme: email, name, for support (contract); their privacy contact: Jo &lt;dpo@acme.test&gt;</li>"
            ),
            "{html}"
        );
    }
}
