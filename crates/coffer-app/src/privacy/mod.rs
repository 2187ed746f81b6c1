//! The privacy services: keys ([`keys`], [`vault`]), the customer record
//! with erasure and export ([`customers`]), and the audit log ([`audit`]).

pub mod audit;
pub mod customers;
pub mod keys;
pub mod vault;

pub use customers::{
    CardRecord, ConsentRecord, CustomerRecord, CustomerService, LicenseKeyRecord, OrderAddress, OrderRecord,
    OrderRecordDetails, OrderRecordLine, Reader, ReplayReport,
};
pub use keys::{FileKeyProvider, KeyProvider};
pub use vault::Vault;

/// The access export as a readable HTML page (the JSON export's content).
pub fn export_html(export: &serde_json::Value) -> String {
    let mut more = account_section(&export["account"]);
    more.push_str(&orders_section(&list(export, "orders")));
    more.push_str(&messages_section(&list(export, "messages")));
    more.push_str(&requests_section(&list(export, "privacy_requests")));
    more.push_str(&disclosures_section(&list(export, "disclosures")));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Your data held by Coffer</title>\n\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;vertical-align:top;padding:.4rem;\
         border-bottom:1px solid #ddd}}</style></head>\n<body><h1>Your data held by Coffer</h1>\n\
         <p>Customer id {}. This is everything we hold about you, why, and who receives it.</p>\n\
         <table><thead><tr><th>Data</th><th>Value</th><th>Why we hold it</th><th>Legal basis</th>\
         <th>Shared with</th></tr></thead><tbody>\n{}</tbody></table>\n{more}</body></html>\n",
        escape(export["customer_id"].as_str().unwrap_or_default()),
        personal_data_rows(export),
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

/// A text field of an export entry, escaped; `spaced` turns `snake_case`
/// codes into words.
fn text(value: &serde_json::Value, spaced: bool) -> String {
    let raw = value.as_str().unwrap_or_default();
    if spaced { escape(&raw.replace('_', " ")) } else { escape(raw) }
}

/// The export's list under `key` (empty when absent).
fn list(export: &serde_json::Value, key: &str) -> Vec<serde_json::Value> {
    export[key].as_array().cloned().unwrap_or_default()
}

/// One table row per personal field: its value, purpose, legal basis and
/// who receives it.
fn personal_data_rows(export: &serde_json::Value) -> String {
    let mut rows = String::new();
    for field in export["personal_data"].as_array().into_iter().flatten() {
        let recipients: Vec<String> = field["recipients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(|s| s.replace('_', " ")))
            .collect();
        rows.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            text(&field["label"], false),
            escape(&show(&field["value"])),
            text(&field["purpose"], false),
            text(&field["legal_basis"], true),
            escape(&recipients.join(", ")),
        ));
    }
    rows
}

fn account_section(account: &serde_json::Value) -> String {
    if !account.is_object() {
        return String::new();
    }
    let yes_no = |v: &serde_json::Value| if v.as_bool() == Some(true) { "yes" } else { "no" };
    format!(
        "<h2>Your account</h2>\n<p>Password set: {}. Two-step sign-in: {}.</p>\n",
        yes_no(&account["password_set"]),
        yes_no(&account["second_factor"])
    )
}

fn orders_section(orders: &[serde_json::Value]) -> String {
    let mut out = String::from("<h2>Your orders</h2>\n");
    if orders.is_empty() {
        out.push_str("<p>None.</p>\n");
    }
    for o in orders {
        let lines: Vec<String> = o["lines"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{} × {}", l["quantity"], l["product_id"].as_str().unwrap_or_default()))
            .collect();
        out.push_str(&format!(
            "<h3>Order {}</h3>\n<p>{}: {} (minor units) {}; {}. Consent to privacy policy version {} ({}).</p>\n",
            text(&o["id"], false),
            text(&o["status"], true),
            o["total"],
            text(&o["currency"], false),
            escape(&lines.join(", ")),
            text(&o["consent"]["privacy_policy_version"], false),
            text(&o["consent"]["channel"], false),
        ));
        out.push_str(&format!("<p>Details kept with the order: {}</p>\n", escape(&show(&o["details"]))));
        for key in o["license_keys"].as_array().into_iter().flatten() {
            out.push_str(&format!("<p>License key: <code>{}</code></p>\n", text(&key["key"], false)));
        }
    }
    out
}

fn messages_section(messages: &[serde_json::Value]) -> String {
    let mut out = String::from("<h2>Messages we keep (90 days)</h2>\n");
    if messages.is_empty() {
        out.push_str("<p>None.</p>\n");
    }
    for m in messages {
        out.push_str(&format!(
            "<h3>{}</h3>\n<p>To {} ({}, {})</p>\n<pre>{}</pre>\n",
            escape(m["subject"].as_str().unwrap_or("(no subject)")),
            text(&m["to"], false),
            text(&m["kind"], false),
            text(&m["status"], false),
            text(&m["body"], false),
        ));
    }
    out
}

fn requests_section(requests: &[serde_json::Value]) -> String {
    let mut out = String::from("<h2>Your data requests</h2>\n");
    if requests.is_empty() {
        out.push_str("<p>None.</p>\n");
        return out;
    }
    out.push_str("<ul>\n");
    for r in requests {
        out.push_str(&format!(
            "<li>{} ({}): {}</li>\n",
            text(&r["kind"], false),
            text(&r["jurisdiction"], false),
            text(&r["status"], true),
        ));
    }
    out.push_str("</ul>\n");
    out
}

fn disclosures_section(disclosures: &[serde_json::Value]) -> String {
    let mut out = String::from("<h2>Who received your data</h2>\n");
    if disclosures.is_empty() {
        out.push_str("<p>No one outside Coffer has received your data.</p>\n");
        return out;
    }
    out.push_str("<ul>\n");
    for d in disclosures {
        let fields: Vec<&str> = d["fields"].as_array().into_iter().flatten().filter_map(|f| f.as_str()).collect();
        out.push_str(&format!(
            "<li>{} {}: {}, for {} ({})</li>\n",
            text(&d["recipient_kind"], true),
            text(&d["recipient"], false),
            escape(&fields.join(", ")),
            text(&d["purpose"], false),
            text(&d["legal_basis"], true),
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
        assert_eq!(text(&json!("legitimate_interest"), true), "legitimate interest");
        assert_eq!(text(&json!(3), false), "");
    }

    #[test]
    fn each_section_says_none_when_empty_and_escapes_what_it_shows() {
        assert_eq!(account_section(&json!(null)), "");
        assert!(account_section(&json!({"password_set": true})).contains("Password set: yes. Two-step sign-in: no."));
        assert!(orders_section(&[]).ends_with("<p>None.</p>\n"));
        assert!(messages_section(&[]).ends_with("<p>None.</p>\n"));
        assert!(requests_section(&[]).ends_with("<p>None.</p>\n"));
        assert!(disclosures_section(&[]).contains("No one outside Coffer"));
        let order = json!({"id": "ord_1", "status": "on_hold", "total": 2379, "currency": "EUR",
            "lines": [{"quantity": 2, "product_id": "prd_<x>"}],
            "consent": {"privacy_policy_version": "v1", "channel": "web"},
            "details": {"name": "A <b>"}, "license_keys": [{"key": "k&k"}]});
        let html = orders_section(&[order]);
        assert!(html.contains("<p>on hold: 2379 (minor units) EUR; 2 × prd_&lt;x&gt;."), "{html}");
        assert!(html.contains("name: A &lt;b&gt;") && html.contains("<code>k&amp;k</code>"), "{html}");
        let html = disclosures_section(&[json!({"recipient_kind": "vendor_user", "recipient": "acme",
            "fields": ["email", "name"], "purpose": "support", "legal_basis": "contract"})]);
        assert!(html.contains("<li>vendor user acme: email, name, for support (contract)</li>"), "{html}");
    }
}
