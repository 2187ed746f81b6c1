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
            escape(field["label"].as_str().unwrap_or_default()),
            escape(&show(&field["value"])),
            escape(field["purpose"].as_str().unwrap_or_default()),
            escape(&field["legal_basis"].as_str().unwrap_or_default().replace('_', " ")),
            escape(&recipients.join(", ")),
        ));
    }
    let mut more = String::new();
    let account = &export["account"];
    if account.is_object() {
        let yes_no = |v: &serde_json::Value| if v.as_bool() == Some(true) { "yes" } else { "no" };
        more.push_str(&format!(
            "<h2>Your account</h2>\n<p>Password set: {}. Two-step sign-in: {}.</p>\n",
            yes_no(&account["password_set"]),
            yes_no(&account["second_factor"])
        ));
    }
    let list = |key: &str| export[key].as_array().cloned().unwrap_or_default();
    more.push_str("<h2>Your orders</h2>\n");
    let orders = list("orders");
    if orders.is_empty() {
        more.push_str("<p>None.</p>\n");
    }
    for o in &orders {
        let lines: Vec<String> = o["lines"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{} × {}", l["quantity"], l["product_id"].as_str().unwrap_or_default()))
            .collect();
        more.push_str(&format!(
            "<h3>Order {}</h3>\n<p>{}: {} (minor units) {}; {}. Consent to privacy policy version {} ({}).</p>\n",
            escape(o["id"].as_str().unwrap_or_default()),
            escape(&o["status"].as_str().unwrap_or_default().replace('_', " ")),
            o["total"],
            escape(o["currency"].as_str().unwrap_or_default()),
            escape(&lines.join(", ")),
            escape(o["consent"]["privacy_policy_version"].as_str().unwrap_or_default()),
            escape(o["consent"]["channel"].as_str().unwrap_or_default()),
        ));
        more.push_str(&format!("<p>Details kept with the order: {}</p>\n", escape(&show(&o["details"]))));
        for key in o["license_keys"].as_array().into_iter().flatten() {
            more.push_str(&format!(
                "<p>License key: <code>{}</code></p>\n",
                escape(key["key"].as_str().unwrap_or_default())
            ));
        }
    }
    more.push_str("<h2>Messages we keep (90 days)</h2>\n");
    let messages = list("messages");
    if messages.is_empty() {
        more.push_str("<p>None.</p>\n");
    }
    for m in &messages {
        more.push_str(&format!(
            "<h3>{}</h3>\n<p>To {} ({}, {})</p>\n<pre>{}</pre>\n",
            escape(m["subject"].as_str().unwrap_or("(no subject)")),
            escape(m["to"].as_str().unwrap_or_default()),
            escape(m["kind"].as_str().unwrap_or_default()),
            escape(m["status"].as_str().unwrap_or_default()),
            escape(m["body"].as_str().unwrap_or_default()),
        ));
    }
    more.push_str("<h2>Your data requests</h2>\n");
    let requests = list("privacy_requests");
    if requests.is_empty() {
        more.push_str("<p>None.</p>\n");
    } else {
        more.push_str("<ul>\n");
        for r in &requests {
            more.push_str(&format!(
                "<li>{} ({}): {}</li>\n",
                escape(r["kind"].as_str().unwrap_or_default()),
                escape(r["jurisdiction"].as_str().unwrap_or_default()),
                escape(&r["status"].as_str().unwrap_or_default().replace('_', " ")),
            ));
        }
        more.push_str("</ul>\n");
    }
    more.push_str("<h2>Who received your data</h2>\n");
    let disclosures = list("disclosures");
    if disclosures.is_empty() {
        more.push_str("<p>No one outside Coffer has received your data.</p>\n");
    } else {
        more.push_str("<ul>\n");
        for d in &disclosures {
            let fields: Vec<&str> = d["fields"].as_array().into_iter().flatten().filter_map(|f| f.as_str()).collect();
            more.push_str(&format!(
                "<li>{} {}: {}, for {} ({})</li>\n",
                escape(&d["recipient_kind"].as_str().unwrap_or_default().replace('_', " ")),
                escape(d["recipient"].as_str().unwrap_or_default()),
                escape(&fields.join(", ")),
                escape(d["purpose"].as_str().unwrap_or_default()),
                escape(&d["legal_basis"].as_str().unwrap_or_default().replace('_', " ")),
            ));
        }
        more.push_str("</ul>\n");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Your data held by Coffer</title>\n\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;vertical-align:top;padding:.4rem;\
         border-bottom:1px solid #ddd}}</style></head>\n<body><h1>Your data held by Coffer</h1>\n\
         <p>Customer id {}. This is everything we hold about you, why, and who receives it.</p>\n\
         <table><thead><tr><th>Data</th><th>Value</th><th>Why we hold it</th><th>Legal basis</th>\
         <th>Shared with</th></tr></thead><tbody>\n{rows}</tbody></table>\n{more}</body></html>\n",
        escape(export["customer_id"].as_str().unwrap_or_default())
    )
}
