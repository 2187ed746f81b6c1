//! `POST /api/v1/orders` as CONTRACT.md states it: the test cards, bank
//! transfer, consent and age, tax by country, license keys a vendor can
//! verify offline, and every refusal with its code and field.

use crate::{client, on_both_backends};
use coffer_store::prelude::*;
use coffer_testkit::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    test_cards_behave_as_the_contract_says,
    refusals_name_their_code_and_field,
    idempotency_keys_give_one_order,
    invoices_are_numbered_without_gaps_after_commit,
    the_fraud_screen_holds_risky_orders_and_says_why,
    staff_approve_reject_mark_paid_and_refund,
    proof_of_identity_is_uploaded_encrypted_and_shown_to_reviewers,
    support_refunds_line_by_line_to_the_exact_total,
    vendors_see_only_their_own_lines,
    paying_twice_from_one_review_makes_one_order,
    staff_refund_and_reject_orders_of_an_erased_customer,
    p06_vendors_get_the_buyer_only_of_orders_they_fill_or_support,
    first_orders_from_one_new_address_at_once_make_one_customer,
);

pub(crate) async fn policy_version(server: &TestServer) -> String {
    let policy: Value = client().get(server.url("/api/v1/privacy-policy")).send().await.unwrap().json().await.unwrap();
    assert!(policy["html"].as_str().unwrap().contains("data protection officer"));
    policy["version"].as_str().unwrap().to_owned()
}

/// An order for the first demo vendor's license-key product, paid with `card`.
pub(crate) fn order(server: &TestServer, version: &str, card: &str, email: &str) -> Value {
    let product = server.demo_credentials()["vendors"][0]["products"][0]["id"].as_str().unwrap().to_owned();
    json!({
        "currency": "USD",
        "items": [{"product_id": product, "quantity": 1}],
        "customer": {"name": "Erika Mustermann", "email": email, "phone": "+49 30 1234567",
                     "address": {"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}},
        "card": {"number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        "consent": {"privacy_policy_version": version, "accepted": true},
        "age": {"adult": true}
    })
}

pub(crate) async fn post_order(server: &TestServer, body: &Value) -> (StatusCode, Value) {
    let response = client().post(server.url("/api/v1/orders")).json(body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn test_cards_behave_as_the_contract_says(server: TestServer) {
    let version = policy_version(&server).await;
    // Approved: fulfilled, German VAT on the net price, a license key.
    let (status, placed) =
        post_order(&server, &order(&server, &version, "4242 4242 4242 4242", "erika@example.org")).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!((placed["status"].as_str(), placed["subtotal"].as_i64()), (Some("fulfilled"), Some(1999)));
    assert_eq!((placed["tax"].as_i64(), placed["total"].as_i64()), (Some(380), Some(2379)));
    assert!(placed["id"].as_str().unwrap().starts_with("ord_"));
    let keys = placed["license_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    // The key verifies offline against the vendor's public key, and its
    // payload names the order and a pseudonym, never the customer.
    let public_key = server.demo_credentials()["vendors"][0]["license_public_key"].as_str().unwrap().to_owned();
    let payload = coffer_crypto::verify_license(&public_key, keys[0]["key"].as_str().unwrap()).unwrap();
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload["order_id"], placed["id"]);
    assert_eq!(payload["product_id"], keys[0]["product_id"]);
    assert!(payload["licensee"].as_str().unwrap().starts_with("lic_"));
    assert!(payload["issued_at"].as_str().unwrap().ends_with('Z'));
    let text = String::from_utf8_lossy(&serde_json::to_vec(&payload).unwrap()).to_lowercase();
    assert!(!text.contains("erika") && !text.contains("mustermann"), "{text}");
    // A second order by the same address joins the same licensee pseudonym.
    let (_, again) = post_order(&server, &order(&server, &version, "4242424242424242", "ERIKA@example.org")).await;
    let again = coffer_crypto::verify_license(&public_key, again["license_keys"][0]["key"].as_str().unwrap()).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&again).unwrap()["licensee"], payload["licensee"]);

    // Declined: 402, and no order.
    let (status, declined) =
        post_order(&server, &order(&server, &version, "4000 0000 0000 0002", "d@example.org")).await;
    assert_eq!((status, declined["error"]["code"].as_str()), (StatusCode::PAYMENT_REQUIRED, Some("card_declined")));
    // Review: approved but on hold, nothing delivered yet.
    let (status, held) = post_order(&server, &order(&server, &version, "4000 0000 0000 9235", "r@example.org")).await;
    assert_eq!((status, held["status"].as_str()), (StatusCode::CREATED, Some("on_hold")));
    assert_eq!(held["license_keys"], json!([]));
    // Any other Luhn-valid number: approved.
    let (status, other) = post_order(&server, &order(&server, &version, "5555 5555 5555 4444", "m@example.org")).await;
    assert_eq!((status, other["status"].as_str()), (StatusCode::CREATED, Some("fulfilled")));
    // Bank transfer: pending with a reference; no card at all.
    let mut bank = order(&server, &version, "", "bank@example.org");
    bank["payment_method"] = json!("bank_transfer");
    bank.as_object_mut().unwrap().remove("card");
    bank["customer"]["address"]["country"] = json!("US");
    let (status, pending) = post_order(&server, &bank).await;
    assert_eq!((status, pending["status"].as_str()), (StatusCode::CREATED, Some("pending")), "{pending}");
    assert!(pending["payment_reference"].as_str().unwrap().starts_with("CF-"));
    assert_eq!(pending["tax"], json!(0), "no tax for the US in the demo table");
    // Where to pay and by when: the demo account, 14 days from today.
    assert_eq!(
        pending["bank_account"],
        json!({"holder": "Coffer Demo Operator", "iban": "DE89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX"})
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let due = coffer_domain::order::long_day_utc(coffer_domain::Millis((now as i64) + 14 * 24 * 3600 * 1000));
    assert_eq!(pending["pay_by"], json!(due));
    assert!(other.get("bank_account").is_none() && other.get("pay_by").is_none(), "not for a card: {other}");

    // The orders are stored, the declined one is not.
    let db = coffer_store::Db::open(&server.database_url(), &coffer_store::DbOptions::default()).await.unwrap();
    let order_id = coffer_domain::OrderId::parse(placed["id"].as_str().unwrap()).unwrap();
    let stored = db.order(&order_id).await.unwrap().unwrap();
    assert_eq!((stored.total, stored.tax_country.as_str(), stored.consent_channel.as_str()), (2379, "DE", "api"));
    assert_eq!(stored.policy_version, version);
    assert_eq!(db.orders_of(&stored.customer_id).await.unwrap().len(), 2, "both orders joined one customer");
}

/// What is changed in a good order (a JSON pointer and the new value, or
/// `None` to remove it), and the code and field of the 422 expected.
type Refusal = (&'static str, &'static str, Option<Value>, &'static str, Option<&'static str>);

async fn refusals_name_their_code_and_field(server: TestServer) {
    let version = policy_version(&server).await;
    let base = order(&server, &version, "4242424242424242", "refused@example.org");
    // (what, JSON pointer, new value or `None` to remove it, code, field); all 422.
    let cases: [Refusal; 18] = [
        ("luhn", "/card/number", Some(json!("4242424242424241")), "card_invalid", Some("card.number")),
        ("expired", "/card/exp_year", Some(json!(2020)), "card_expired", Some("card.exp_year")),
        ("card with bank transfer", "/payment_method", Some(json!("bank_transfer")), "card_not_allowed", Some("card")),
        ("no consent", "/consent", None, "consent_required", Some("consent")),
        ("consent refused", "/consent/accepted", Some(json!(false)), "consent_required", Some("consent")),
        (
            "old policy",
            "/consent/privacy_policy_version",
            Some(json!("0000")),
            "consent_required",
            Some("consent.privacy_policy_version"),
        ),
        ("no age", "/age", None, "age_attestation_required", Some("age")),
        ("minor alone", "/age", Some(json!({"adult": false})), "age_attestation_required", Some("age.guardian_name")),
        (
            "guardian not consenting",
            "/age",
            Some(json!({"adult": false, "guardian_name": "Hans", "guardian_consents": false})),
            "age_attestation_required",
            Some("age.guardian_consents"),
        ),
        (
            "unknown product",
            "/items/0/product_id",
            Some(json!("prd_01a215a81d94714cab6bfee7390f3095")),
            "unknown_product",
            Some("items[0].product_id"),
        ),
        ("not priced in JPY", "/currency", Some(json!("JPY")), "currency_not_offered", Some("items[0].product_id")),
        ("zero quantity", "/items/0/quantity", Some(json!(0)), "invalid_quantity", Some("items[0].quantity")),
        ("no items", "/items", Some(json!([])), "invalid_items", Some("items")),
        ("bad email", "/customer/email", Some(json!("not-an-address")), "invalid_customer", Some("customer.email")),
        (
            "unknown country",
            "/customer/address/country",
            Some(json!("XX")),
            "invalid_customer",
            Some("customer.address.country"),
        ),
        ("oversized name", "/customer/name", Some(json!("n".repeat(5000))), "invalid_customer", Some("customer.name")),
        ("number as a number", "/card/number", Some(json!(4242424242424242u64)), "invalid_field", Some("card.number")),
        ("unknown field", "/coupon", Some(json!("FREE")), "invalid_field", Some("coupon")),
    ];
    for (name, pointer, value, code, field) in cases {
        let mut body = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let parent = if parent.is_empty() { &mut body } else { body.pointer_mut(parent).unwrap() };
        match (parent, value) {
            (Value::Object(map), Some(value)) => {
                map.insert(key.to_owned(), value);
            }
            (Value::Object(map), None) => {
                map.remove(key);
            }
            (Value::Array(list), Some(value)) => list[key.parse::<usize>().unwrap()] = value,
            _ => unreachable!("{name}"),
        }
        let (got, answer) = post_order(&server, &body).await;
        assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {answer}");
        assert_eq!(answer["error"]["code"].as_str(), Some(code), "{name}: {answer}");
        assert_eq!(answer["error"]["field"].as_str(), field, "{name}: {answer}");
        let text = answer.to_string();
        assert!(!text.contains("4242424242424242") && !text.contains("refused@example.org"), "{name} echoes: {text}");
    }
    let syntax =
        client().post(server.url("/api/v1/orders")).header("content-type", "application/json").body("{bad").send();
    assert_eq!(syntax.await.unwrap().status(), StatusCode::BAD_REQUEST);
    let form = client().post(server.url("/api/v1/orders")).body("{}").send().await.unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // None of the refusals stored an order.
    let (orders,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM orders").fetch_one(&raw_pool(&server).await).await.unwrap();
    assert_eq!(orders, 0);
}

pub(crate) async fn raw_pool(server: &TestServer) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&server.database_url()).await.unwrap()
}

/// An order by the demo customer's address joins their account: the page
/// lists it with its license key, and "download my data" holds the order,
/// its consent record and the card's last four digits, never the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_appear_in_the_account_and_its_download() {
    let server = crate::server(coffer_testkit::TestBackend::Sqlite).await;
    let creds = server.demo_credentials();
    let (email, password) =
        (creds["customer"]["email"].as_str().unwrap().to_owned(), creds["customer"]["password"].as_str().unwrap());
    let version = policy_version(&server).await;
    let (status, placed) = post_order(&server, &order(&server, &version, "4242424242424242", &email)).await;
    assert_eq!(status, StatusCode::CREATED);
    let key = placed["license_keys"][0]["key"].as_str().unwrap().to_owned();
    let cookie = signed_in(&server, &email, password).await;
    let page =
        client().get(server.url("/account")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&key), "the license key is on the account page");
    assert!(page.contains("Northwind Notes Pro") && page.contains("23.79 USD"), "{page}");
    // The order never changed the account's own details.
    assert!(page.contains("Hello, Dana Demo"));
    let data = account_data(&server, &cookie).await;
    let orders = data["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["consent"]["privacy_policy_version"], json!(version));
    assert_eq!(orders[0]["consent"]["channel"], json!("api"));
    assert_eq!(orders[0]["details"]["name"], json!("Erika Mustermann"), "the order keeps its own copy");
    assert_eq!(orders[0]["details"]["card"]["last4"], json!("4242"));
    assert!(orders[0]["details"]["card"].get("token").is_none());
    assert_eq!(orders[0]["license_keys"][0]["key"], json!(key));
    // The numbering job gives the invoice a moment after the order.
    let mut page = String::new();
    for _ in 0..50 {
        page =
            client().get(server.url("/account")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
        if page.contains("/account/invoices/1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(page.contains("/account/invoices/1"), "{page}");
    let invoice = client().get(server.url("/account/invoices/1")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(invoice.status(), StatusCode::OK);
    let invoice = invoice.text().await.unwrap();
    for expected in [
        "Invoice 1",
        "Coffer Demo Operator",
        "Erika Mustermann",
        "Hauptstr. 1",
        "10115 Berlin",
        "VAT (Germany, 19%)",
        "23.79 USD",
        "VAT number DE000000000",
        "Paid by card (Visa ending 4242) on",
    ] {
        assert!(invoice.contains(expected), "{expected}: {invoice}");
    }
    // The same invoice as a PDF, from the account and attached to an email.
    let pdf = client().get(server.url("/account/invoices/1.pdf")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let pdf = pdf.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&pdf);
    assert!(pdf.starts_with(b"%PDF-") && text.contains("(Invoice 1)") && text.contains("(23.79 USD)"), "{text}");
    assert!(text.contains("(VAT number DE000000000)") && text.contains("(Erika Mustermann)"), "{text}");
    let mail = crate::accounts::mail_containing_all(&server, &["Your invoice 1 for order", "application/pdf"]).await;
    assert!(mail.contains("filename=\"coffer-invoice-1.pdf\"") || mail.contains("coffer-invoice-1.pdf"), "{mail}");
    // Sent once: a second look finds one invoice email.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let invoice_mails = std::fs::read_dir(server.data_dir.join("mail"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|m| m.contains("Your invoice 1 for order"))
        .count();
    assert_eq!(invoice_mails, 1, "one invoice email");
    let missing = client().get(server.url("/account/invoices/2")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let anonymous = client().get(server.url("/account/invoices/1")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER, "signed-in customers only");
    // Another customer (signed up from their own order's invitation) gets
    // "not found" for Dana's invoice, exactly as for one that does not exist.
    let (status, _) = post_order(&server, &order(&server, &version, "4242424242424242", "other@example.org")).await;
    assert_eq!(status, StatusCode::CREATED);
    let mail = crate::accounts::mail_containing_all(&server, &["other@example.org", "/account/link/"]).await;
    let start = mail.find("/account/link/").expect("an invitation");
    let link: String = mail[start..].chars().take_while(|c| !c.is_whitespace() && *c != '<' && *c != '"').collect();
    let set = client().post(server.url(&link)).form(&[("password", "copper kettle sunrise 88")]).send().await.unwrap();
    assert_eq!(set.status(), StatusCode::SEE_OTHER);
    let other = set.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let theirs = client().get(server.url("/account/invoices/1")).header("cookie", &other).send().await.unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    let theirs = client().get(server.url("/account/invoices/1.pdf")).header("cookie", &other).send().await.unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND, "nor its PDF");

    // Support refunds the order: a credit note referring to the invoice,
    // in the account as a page and a PDF, and for nobody else.
    let support = crate::staff::demo_staff_session(&server, "support").await;
    let id = placed["id"].as_str().unwrap();
    assert_eq!(staff_act(&server, &support, id, "refund", "asked for it").await.0, StatusCode::OK);
    let mut note = None;
    for _ in 0..50 {
        let r = client().get(server.url("/account/credit-notes/1")).header("cookie", &cookie).send().await.unwrap();
        if r.status() == StatusCode::OK {
            note = Some(r.text().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let note = note.expect("credit note 1 is numbered a moment after the refund");
    for expected in ["Credit note 1", "Corrects invoice 1 of", "Total credited", "23.79 USD", "goes back to the card"] {
        assert!(note.contains(expected), "{expected}: {note}");
    }
    let pdf = client().get(server.url("/account/credit-notes/1.pdf")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(String::from_utf8_lossy(&pdf.bytes().await.unwrap()).contains("(Credit note 1)"));
    let overview = client().get(server.url("/account")).header("cookie", &cookie).send().await.unwrap();
    assert!(overview.text().await.unwrap().contains("/account/credit-notes/1"));
    let theirs = client().get(server.url("/account/credit-notes/1")).header("cookie", &other).send().await.unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
}

/// Signs a customer in with their password; the session cookie.
async fn signed_in(server: &TestServer, email: &str, password: &str) -> String {
    let response = crate::accounts::sign_in(server, email, password).await;
    response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned()
}

/// The signed-in customer's "download my data".
async fn account_data(server: &TestServer, cookie: &str) -> Value {
    client().get(server.url("/account/data.json")).header("cookie", cookie).send().await.unwrap().json().await.unwrap()
}

/// With several orders, the account's download lists each, newest first,
/// with its own lines and license keys (read for all orders at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_order_in_the_account_keeps_its_own_lines_and_keys() {
    let server = crate::server(coffer_testkit::TestBackend::Postgres).await;
    let creds = server.demo_credentials();
    let (email, password) =
        (creds["customer"]["email"].as_str().unwrap().to_owned(), creds["customer"]["password"].as_str().unwrap());
    let version = policy_version(&server).await;
    let mut placed = Vec::new();
    for product in [&creds["vendors"][0]["products"][0], &creds["vendors"][1]["products"][0]] {
        let mut body = order(&server, &version, "4242424242424242", &email);
        body["items"][0]["product_id"] = product["id"].clone();
        let (status, order) = post_order(&server, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        placed.push(order);
    }
    let cookie = signed_in(&server, &email, password).await;
    let data = account_data(&server, &cookie).await;
    let orders = data["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 2);
    for (listed, placed) in orders.iter().zip(placed.iter().rev()) {
        assert_eq!(listed["id"], placed["id"], "newest first");
        assert_eq!(listed["license_keys"].as_array().unwrap().len(), 1);
        assert_eq!(listed["license_keys"][0]["key"], placed["license_keys"][0]["key"]);
        let lines = listed["lines"].as_array().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["product_id"], listed["license_keys"][0]["product_id"]);
    }
    assert_ne!(orders[0]["lines"][0]["product_id"], orders[1]["lines"][0]["product_id"]);
}

/// A download product's link streams the file, a limited number of times;
/// a forged link and a held order give no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_links_stream_the_file_a_limited_number_of_times() {
    let server = crate::server(coffer_testkit::TestBackend::Sqlite).await;
    let version = policy_version(&server).await;
    let product = server.demo_credentials()["vendors"][0]["products"][1].clone();
    assert_eq!(product["delivery"], json!("download"));
    let mut body = order(&server, &version, "4242424242424242", "dl@example.org");
    body["items"][0]["product_id"] = product["id"].clone();
    let (status, placed) = post_order(&server, &body).await;
    assert_eq!((status, placed["status"].as_str()), (StatusCode::CREATED, Some("fulfilled")), "{placed}");
    assert_eq!(placed["license_keys"], json!([]));
    let url = placed["downloads"][0]["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&server.base_url) && url.contains("/downloads/"), "{url}");
    for _ in 0..coffer_app::checkout::DOWNLOAD_MAX_USES {
        let file = client().get(&url).send().await.unwrap();
        assert_eq!(file.status(), StatusCode::OK);
        assert!(file.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename="));
        assert!(file.text().await.unwrap().starts_with(product["name"].as_str().unwrap()));
    }
    assert_eq!(client().get(&url).send().await.unwrap().status(), StatusCode::GONE, "the limit");
    // A changed expiry or order breaks the signature.
    let (head, signature) = url.rsplit_once('.').unwrap();
    // Another last digit of the expiry (whatever it was).
    let other = if head.ends_with('9') { '8' } else { '9' };
    let forged = format!("{}{other}.{signature}", &head[..head.len() - 1]);
    assert_eq!(client().get(&forged).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(client().get(server.url("/downloads/nothing")).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // An order held for review gets no download yet.
    let mut held = order(&server, &version, "4000000000009235", "dl2@example.org");
    held["items"][0]["product_id"] = product["id"].clone();
    let (_, held) = post_order(&server, &held).await;
    assert_eq!((held["status"].as_str(), &held["downloads"]), (Some("on_hold"), &json!([])));
}

/// A first order writes its new buyer in the order's own unit; several
/// first orders from one address at once all succeed, and the ones that
/// lose the race for the address start again as that customer's orders.
async fn first_orders_from_one_new_address_at_once_make_one_customer(server: TestServer) {
    let version = policy_version(&server).await;
    let pool = raw_pool(&server).await;
    let count = |pool: sqlx::AnyPool| async move {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM customers").fetch_one(&pool).await.unwrap();
        n
    };
    let before = count(pool.clone()).await;
    let body = order(&server, &version, "4242424242424242", "all-at-once@example.org");
    let answers = futures::future::join_all((0..8).map(|_| async {
        let response = client().post(server.url("/api/v1/orders")).json(&body).send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    }))
    .await;
    let mut ids = Vec::new();
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{answer}");
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(count(pool.clone()).await, before + 1, "one customer for one address");
    let mut buyers = std::collections::HashSet::new();
    for id in &ids {
        let (customer,): (String,) = sqlx::query_as("SELECT customer_id FROM orders WHERE id = $1")
            .bind(id.clone())
            .fetch_one(&pool)
            .await
            .unwrap();
        buyers.insert(customer);
    }
    assert_eq!(buyers.len(), 1, "all eight orders belong to the one customer");
    pool.close().await;
}

async fn post_with_key(server: &TestServer, key: &str, body: &Value) -> (StatusCode, Value) {
    let response =
        client().post(server.url("/api/v1/orders")).header("idempotency-key", key).json(body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn idempotency_keys_give_one_order(server: TestServer) {
    let version = policy_version(&server).await;
    let body = order(&server, &version, "4242424242424242", "once@example.org");
    // Eight identical submissions at once: one order, the same answer.
    let answers = futures::future::join_all((0..8).map(|_| post_with_key(&server, "key-1", &body))).await;
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer, &answers[0].1, "every repeat answers as the first, license keys included");
    }
    // The card is not part of the comparison: a retry typed with spaces is the same request.
    let mut spaced = body.clone();
    spaced["card"]["number"] = json!("4242 4242 4242 4242");
    assert_eq!(post_with_key(&server, "key-1", &spaced).await.1, answers[0].1);
    // Finding 14 of the security review: a replay with another card is not
    // the same request, and does not hand out the first order's keys.
    let mut other_card = body.clone();
    other_card["card"]["number"] = json!("5555555555554444");
    let (status, refused) = post_with_key(&server, "key-1", &other_card).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused"))
    );
    assert!(refused.get("license_keys").is_none() && !refused.to_string().contains(&answers[0].1["id"].to_string()));
    // Another body under the same key is refused.
    let mut other = body.clone();
    other["items"][0]["quantity"] = json!(2);
    let (status, refused) = post_with_key(&server, "key-1", &other).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused"))
    );
    // A failed request frees its key: a declined card, then a good one.
    let declined = order(&server, &version, "4000000000000002", "once@example.org");
    assert_eq!(post_with_key(&server, "key-2", &declined).await.0, StatusCode::PAYMENT_REQUIRED);
    let mut retried = declined.clone();
    retried["card"]["number"] = json!("4242424242424242");
    assert_eq!(post_with_key(&server, "key-2", &retried).await.0, StatusCode::CREATED);
    // Two orders in all: key-1's and key-2's retry.
    let (orders,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM orders").fetch_one(&raw_pool(&server).await).await.unwrap();
    assert_eq!(orders, 2);
}

/// A person buys from two vendors in the browser: cart, details, review
/// with the German VAT, a declined card (message on the page, details kept,
/// card fields empty), then an approved one: keys and a download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_buys_in_the_browser_after_a_declined_card() {
    let server = crate::server(coffer_testkit::TestBackend::Sqlite).await;
    let vendors = server.demo_credentials()["vendors"].clone();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let browser = coffer_testkit::Browser::start().await;
    for product in [&vendors[0]["products"][0], &vendors[1]["products"][1]] {
        browser.goto(&server.url(&format!("/products/{}", product["id"].as_str().unwrap()))).await;
        browser.wait_for_title(&format!("{} · Coffer", product["name"].as_str().unwrap())).await;
        browser.click(&browser.find("form.buy button").await).await;
        browser.wait_for_title("Checkout · Coffer").await;
    }
    assert_eq!(browser.count("table.cart tbody tr:not(.subtotal)").await, 2, "one line per product, two vendors");
    // An empty form: every problem at once, beside its field, and a summary
    // at the top that links to each.
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for("#problems").await;
    let summary: Vec<String> = {
        let mut texts = Vec::new();
        let links = browser.count("#problems li a").await;
        for n in 1..=links {
            let link = browser.find(&format!("#problems li:nth-child({n}) a")).await;
            texts.push(browser.attribute(&link, "href").await);
        }
        texts
    };
    assert_eq!(summary, ["#name", "#email", "#line1", "#city", "#country", "#age-adult", "#consent"]);
    for input in ["name", "email", "line1", "city", "country"] {
        let element = browser.find(&format!("#{input}")).await;
        assert_eq!(browser.attribute(&element, "aria-invalid").await, "true", "{input}");
        assert_eq!(browser.attribute(&element, "aria-describedby").await, format!("{input}-error"), "{input}");
        assert!(!browser.text(&browser.find(&format!("#{input}-error")).await).await.is_empty(), "{input}");
    }
    assert!(browser.text(&browser.find("#age-error").await).await.contains("18 or older"));
    assert!(browser.text(&browser.find("#consent-error").await).await.contains("privacy policy"));
    browser.screenshot(&dir.join("checkout-errors.png")).await;
    // A bad email and nothing else typed: still every problem, the email's
    // own message among them.
    browser.fill(&browser.find("#email").await, "erika@").await;
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for_text("#email-error", "not a valid email address").await;
    assert_eq!(browser.value(&browser.find("#email").await).await, "erika@", "what was typed stays");
    assert_eq!(browser.count("#problems li").await, 7);
    browser.clear(&browser.find("#email").await).await;
    let fields = [
        ("#name", "Erika Mustermann"),
        ("#email", "erika.browser@example.org"),
        ("#line1", "Hauptstr. 1"),
        ("#city", "Berlin"),
        ("#postal_code", "10115"),
    ];
    for (css, value) in fields {
        browser.fill(&browser.find(css).await, value).await;
    }
    // The country is picked by name; the form sends its ISO code.
    assert_eq!(browser.attribute(&browser.find("select#country").await, "autocomplete").await, "country");
    browser.choose("#country", "DE").await;
    assert_eq!(browser.value(&browser.find("#country").await).await, "DE");
    browser.screenshot(&dir.join("checkout-details.png")).await;
    // The currency switch keeps every detail typed, and so does a quantity
    // the cart refuses (with the reason).
    browser.choose("#currency-pick", "EUR").await;
    browser.click(&browser.find("button[value=prices]").await).await;
    browser.wait_for_text("#subtotal", "EUR").await;
    assert_eq!(browser.value(&browser.find("#name").await).await, "Erika Mustermann", "the details are kept");
    assert_eq!(browser.value(&browser.find("#country").await).await, "DE");
    let quantity = browser.find("input.quantity").await;
    browser.fill(&quantity, "50").await; // after the 1 there: 150
    browser.click(&browser.find("button[value=update]").await).await;
    assert!(browser.text(&browser.wait_for("#cart-notice").await).await.contains("the most is 100"));
    assert_eq!(browser.value(&browser.find("input.quantity").await).await, "1", "150 refused, 1 kept");
    assert_eq!(browser.value(&browser.find("#email").await).await, "erika.browser@example.org");
    browser.choose("#currency-pick", "USD").await;
    browser.click(&browser.find("button[value=prices]").await).await;
    let subtotal = browser.wait_for_text("#subtotal", "USD").await;
    assert_eq!(subtotal, "34.99 USD", "line totals add up");
    browser.click(&browser.find("input[name=consent]").await).await;
    // P16: no age answer is chosen in advance, and none means no order.
    assert_eq!(browser.count("input[name=age]:checked").await, 0, "the age question starts unanswered");
    browser.click(&browser.find("#review-button").await).await;
    assert!(browser.text(&browser.wait_for("#age-error").await).await.contains("18 or older"));
    assert_eq!(browser.count("#problems li").await, 1, "only the age is left");
    assert_eq!(browser.count("input[name=age]:checked").await, 0, "still unanswered");
    browser.click(&browser.find("input[name=age][value=adult]").await).await;
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for_title("Review and pay · Coffer").await;
    assert!(browser.current_url().await.ends_with("/checkout/review"), "review at its own address");
    // 19.99 + 15.00 net, 19% VAT: 6.65; the total before any card is asked.
    assert_eq!(browser.text(&browser.find("#total").await).await, "41.64 USD");
    let review = browser.text(&browser.find("main").await).await;
    assert!(review.contains("VAT (Germany, 19%)"), "{review}");
    // The billing address is shown before paying, in the German order.
    let address = browser.text(&browser.find("#billing-address").await).await;
    assert_eq!(
        address.lines().collect::<Vec<_>>(),
        ["Erika Mustermann", "Hauptstr. 1", "10115 Berlin", "Germany", "erika.browser@example.org"]
    );
    browser.screenshot(&dir.join("checkout-review.png")).await;

    let card = |number: &'static str| {
        let browser = &browser;
        async move {
            browser.fill(&browser.find("#card_number").await, number).await;
            browser.fill(&browser.find("#exp_month").await, "12").await;
            browser.fill(&browser.find("#exp_year").await, "2030").await;
            browser.fill(&browser.find("#cvc").await, "123").await;
            browser.click(&browser.find("form[action='/checkout/pay'] button").await).await;
        }
    };
    card("4000 0000 0000 0002").await;
    // Back on the review (its own address, a redirect): the message by the
    // card field, the expiry kept, the number and code never sent back.
    let problems = browser.text(&browser.wait_for("#problems").await).await;
    assert!(problems.contains("Card number: The card was declined; try another card."), "{problems}");
    assert!(browser.current_url().await.ends_with("/checkout/review"));
    let number = browser.find("#card_number").await;
    assert_eq!(browser.value(&number).await, "", "the card is never sent back");
    assert_eq!(browser.attribute(&number, "aria-invalid").await, "true");
    assert_eq!(browser.value(&browser.find("#exp_month").await).await, "12", "the expiry is kept");
    assert_eq!(browser.value(&browser.find("#exp_year").await).await, "2030");
    assert_eq!(browser.value(&browser.find("#cvc").await).await, "", "the code is never kept");
    browser.screenshot(&dir.join("checkout-declined.png")).await;
    // Every card problem at once.
    browser.fill(&browser.find("#card_number").await, "4242 4242 4242 4241").await;
    browser.clear(&browser.find("#exp_month").await).await;
    browser.fill(&browser.find("#exp_month").await, "13").await;
    browser.fill(&browser.find("#cvc").await, "12").await;
    browser.click(&browser.find("form[action='/checkout/pay'] button").await).await;
    browser.wait_for("#cvc-error").await;
    assert_eq!(browser.count("#problems li").await, 3, "number, expiry and code");
    assert!(browser.text(&browser.find("#card_number-error").await).await.contains("not valid"));
    assert!(browser.text(&browser.find("#exp-error").await).await.contains("1 to 12"));
    // Going back to change the details keeps them, and the currency.
    browser.click(&browser.find("a[href='/checkout']").await).await;
    browser.wait_for_title("Checkout · Coffer").await;
    assert_eq!(browser.value(&browser.find("#name").await).await, "Erika Mustermann");
    assert_eq!(browser.value(&browser.find("#postal_code").await).await, "10115");
    assert_eq!(browser.value(&browser.find("#currency-pick").await).await, "USD");
    assert_eq!(browser.count("input[name=consent]:checked").await, 1);
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for_title("Review and pay · Coffer").await;
    browser.clear(&browser.find("#exp_month").await).await;
    browser.clear(&browser.find("#exp_year").await).await;

    card("4242 4242 4242 4242").await;
    browser.wait_for_title("Thank you · Coffer").await;
    // The confirmation has its own address and survives a reload.
    let done = browser.current_url().await;
    assert!(done.contains("/checkout/done/"), "{done}");
    let order_id = browser.text(&browser.find("#order-id").await).await;
    browser.goto(&done).await;
    browser.wait_for_title("Thank you · Coffer").await;
    assert_eq!(browser.text(&browser.find("#order-id").await).await, order_id, "a reload shows the order again");
    assert!(browser.text(&browser.find("#order-status").await).await.starts_with("Paid and delivered"));
    let key_element = browser.find("code.license-key").await;
    let key = browser.text(&key_element).await;
    // Made to be copied: monospace, on one line, selected whole by a click.
    assert!(browser.css(&key_element, "font-family").await.contains("monospace"));
    assert_eq!(browser.css(&key_element, "white-space").await, "nowrap");
    assert_eq!(browser.css(&key_element, "user-select").await, "all");
    let public_key = vendors[0]["license_public_key"].as_str().unwrap();
    assert!(coffer_crypto::verify_license(public_key, &key).is_ok(), "the key on the page verifies");
    let href = browser.attribute(&browser.find("a.download").await, "href").await;
    let file = client().get(&href).send().await.unwrap();
    assert_eq!(file.status(), StatusCode::OK);
    browser.screenshot(&dir.join("checkout-done.png")).await;
    // The cart is emptied.
    browser.goto(&server.url("/checkout")).await;
    browser.wait_for_title("Checkout · Coffer").await;
    assert!(browser.text(&browser.find("main").await).await.contains("Your cart is empty."));

    // The confirmation email: text and HTML, the key, the download and an
    // invitation to the account, which the first order creates.
    let mail = crate::accounts::mail_containing(&server, "Thank you for your order").await;
    assert!(mail.contains("multipart/alternative") && mail.contains("text/html"), "{mail}");
    assert!(mail.contains(&key), "the license key is in the email");
    assert!(mail.contains("/downloads/") && mail.contains("Total: 41.64 USD"), "{mail}");
    let start = mail.find("/account/link/").expect("an invitation");
    let link: String = mail[start..].chars().take_while(|c| !c.is_whitespace() && *c != '<' && *c != '"').collect();
    browser.goto(&server.url(&link)).await;
    browser.wait_for_title("Set your password · Coffer").await;
    browser.fill(&browser.find("#password").await, "copper kettle sunrise 88").await;
    browser.click(&browser.find("form button").await).await;
    browser.wait_for_title("Your account · Coffer").await;
    assert_eq!(browser.text(&browser.find("h1").await).await, "Hello, Erika Mustermann");
    assert!(browser.text(&browser.find("#orders + div, .order").await).await.contains("41.64 USD"));
    browser.screenshot(&dir.join("account-with-order.png")).await;
}

async fn invoices_are_numbered_without_gaps_after_commit(server: TestServer) {
    let version = policy_version(&server).await;
    // Twelve orders at once: paid ones get invoices, held and pending ones not yet.
    let cards = ["4242424242424242", "5555555555554444", "4000000000009235"];
    let bodies: Vec<Value> = (0..12)
        .map(|n| {
            let mut body = order(&server, &version, cards[n % 3], &format!("buyer{n}@example.org"));
            if n == 11 {
                body["payment_method"] = json!("bank_transfer");
                body.as_object_mut().unwrap().remove("card");
            }
            body
        })
        .collect();
    let placed = futures::future::join_all(bodies.iter().map(|b| post_order(&server, b))).await;
    let paid: Vec<String> = placed
        .iter()
        .filter(|(_, o)| o["status"] == "fulfilled")
        .map(|(_, o)| o["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paid.len(), 8);
    // Meanwhile a second numbering job (another server, say) runs too.
    let db = coffer_store::Db::open(&server.database_url(), &coffer_store::DbOptions::default()).await.unwrap();
    let extra = db.number_invoices(coffer_domain::Millis(0), 3).await.unwrap();
    assert!(extra.len() <= 3);
    let mut numbers = Vec::new();
    for _ in 0..100 {
        numbers.clear();
        for id in &paid {
            if let Some(invoice) = db.invoice_of(&coffer_domain::OrderId::parse(id).unwrap()).await.unwrap() {
                numbers.push(invoice.number);
            }
        }
        if numbers.len() == paid.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<i64>>(), "gap-free, each paid order once");
    let (invoices,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM invoices").fetch_one(&raw_pool(&server).await).await.unwrap();
    assert_eq!(invoices, 8, "held and pending orders are not invoiced yet");
    // Erasure keeps the invoice: amounts, tax and date without identity.
    let first = coffer_domain::OrderId::parse(&paid[0]).unwrap();
    let email =
        bodies.iter().zip(&placed).find(|(_, (_, o))| o["id"] == paid[0].as_str()).unwrap().0["customer"]["email"]
            .as_str()
            .unwrap()
            .to_owned();
    let erased = server.cli(&["erase", "--email", &email]);
    assert!(erased.status.success(), "{}", String::from_utf8_lossy(&erased.stderr));
    let kept = db.invoice_of(&first).await.unwrap().unwrap();
    assert_eq!((kept.total, kept.tax, kept.tax_country.as_str()), (2379, 380, "DE"));
    let order = db.order(&first).await.unwrap().unwrap();
    assert!(order.name.is_none() && order.email.is_none() && order.address.is_none() && order.card.is_none());
}

async fn fraud_reasons(server: &TestServer, id: &Value) -> (i64, String) {
    sqlx::query_as("SELECT fraud_score, fraud_reasons FROM orders WHERE id = $1")
        .bind(id.as_str().unwrap().to_owned())
        .fetch_one(&raw_pool(server).await)
        .await
        .unwrap()
}

async fn the_fraud_screen_holds_risky_orders_and_says_why(server: TestServer) {
    let version = policy_version(&server).await;
    // A German card (not a documented test card), billed to Brazil, from a
    // disposable address: held, with the reasons stored.
    let mut risky = order(&server, &version, "4000 0027 6000 0016", "someone@mailinator.com");
    risky["customer"]["address"]["country"] = json!("BR");
    let (status, held) = post_order(&server, &risky).await;
    assert_eq!((status, held["status"].as_str()), (StatusCode::CREATED, Some("on_hold")), "{held}");
    assert_eq!(held["license_keys"], json!([]));
    let (score, reasons) = fraud_reasons(&server, &held["id"]).await;
    assert_eq!((score, reasons.as_str()), (70, "card_country_differs_from_billing,disposable_email_domain"));
    // The same card billed to Germany from an ordinary address passes.
    let (_, fine) = post_order(&server, &order(&server, &version, "4000 0027 6000 0016", "fine@example.org")).await;
    assert_eq!(fine["status"], json!("fulfilled"));
    assert_eq!(fraud_reasons(&server, &fine["id"]).await, (0, String::new()));
    // Velocity: many orders for one address in the hour, with ordinary cards.
    let mut last = Value::Null;
    for _ in 0..6 {
        last = post_order(&server, &order(&server, &version, "5555 5555 5555 4444", "busy@example.org")).await.1;
    }
    assert_eq!(last["status"], json!("on_hold"), "{last}");
    assert!(fraud_reasons(&server, &last["id"]).await.1.contains("velocity_email"));
    // The documented test cards are never screened: still approved.
    for _ in 0..6 {
        let (_, again) = post_order(&server, &order(&server, &version, "4242424242424242", "busy@example.org")).await;
        assert_eq!(again["status"], json!("fulfilled"));
    }
}

async fn staff_get(server: &TestServer, path: &str, cookie: &str) -> (StatusCode, String) {
    let r = client().get(server.url(path)).header("cookie", cookie).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

pub(crate) async fn staff_act(
    server: &TestServer,
    cookie: &str,
    order: &str,
    action: &str,
    reason: &str,
) -> (StatusCode, String) {
    // The session's CSRF token, from the console's own form.
    let (_, page) = staff_get(server, "/staff", cookie).await;
    let csrf = crate::accounts::field_value(&page, "csrf");
    let r = client()
        .post(server.url(&format!("/staff/orders/{order}/action")))
        .header("cookie", cookie)
        .form(&[("csrf", csrf.as_str()), ("action", action), ("reason", reason)])
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn staff_approve_reject_mark_paid_and_refund(server: TestServer) {
    let version = policy_version(&server).await;
    let held = post_order(&server, &order(&server, &version, "4000000000009235", "held@example.org")).await.1;
    let held2 = post_order(&server, &order(&server, &version, "4000000000009235", "held2@example.org")).await.1;
    let mut bank = order(&server, &version, "", "bank@example.org");
    bank["payment_method"] = json!("bank_transfer");
    bank.as_object_mut().unwrap().remove("card");
    let pending = post_order(&server, &bank).await.1;
    let reference = pending["payment_reference"].as_str().unwrap().to_owned();
    let (held, held2, pending) =
        (held["id"].as_str().unwrap(), held2["id"].as_str().unwrap(), pending["id"].as_str().unwrap());

    let reviewer = crate::staff::demo_staff_session(&server, "reviewer").await;
    let support = crate::staff::demo_staff_session(&server, "support").await;
    // Queues by role.
    let (status, queue) = staff_get(&server, "/staff/reviews", &reviewer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(queue.contains(held) && queue.contains("gateway review"), "{queue}");
    assert_eq!(staff_get(&server, "/staff/reviews", &support).await.0, StatusCode::FORBIDDEN);
    assert_eq!(staff_get(&server, "/staff/transfers", &reviewer).await.0, StatusCode::FORBIDDEN);
    let transfers = staff_get(&server, "/staff/transfers", &support).await.1;
    assert!(transfers.contains(pending) && transfers.contains(&reference) && transfers.contains("23.79 USD"));
    // Support finds the order by the reference as a bank statement shows it.
    let as_the_bank_wrote_it = reference.to_lowercase().replace('-', " ");
    let path = format!("/staff/transfers?reference={}", as_the_bank_wrote_it.replace(' ', "+"));
    let (status, found) = staff_get(&server, &path, &support).await;
    assert_eq!(status, StatusCode::OK);
    let table = &found[found.find("id=\"found\"").expect("a table of what was found")..];
    assert!(table.contains(pending) && table.contains("pending"), "{found}");
    let (_, none) = staff_get(&server, "/staff/transfers?reference=CF-0000000000", &support).await;
    assert!(none.contains("No order has this reference"), "{none}");
    assert_eq!(staff_get(&server, &path, &reviewer).await.0, StatusCode::FORBIDDEN);
    let (_, order_page) = staff_get(&server, &format!("/staff/orders/{pending}"), &support).await;
    assert!(order_page.contains("id=\"transfer-due\"") && order_page.contains(&reference), "{order_page}");
    // A customer session is no staff session.
    assert_eq!(staff_get(&server, &format!("/staff/orders/{held}"), "").await.0, StatusCode::SEE_OTHER);
    // The order page shows the buyer, and that read is audited.
    let (status, page) = staff_get(&server, &format!("/staff/orders/{held}"), &reviewer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Erika Mustermann") && page.contains("held@example.org"));
    assert_eq!(staff_get(&server, "/staff/orders/ord_nope", &reviewer).await.0, StatusCode::NOT_FOUND);

    // Support may not approve; the reviewer approves: delivered, emailed.
    assert_eq!(staff_act(&server, &support, held, "approve", "").await.0, StatusCode::FORBIDDEN);
    let (status, page) = staff_act(&server, &reviewer, held, "approve", "looks fine").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("the order is now fulfilled"), "{page}");
    let thanks = format!("Thank you for your order {held}.");
    crate::accounts::mail_containing_all(&server, &[&thanks, "Your license key for Northwind Notes Pro"]).await;
    // Acting twice is refused: the order moved on.
    assert_eq!(staff_act(&server, &reviewer, held, "approve", "").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    // Rejecting needs a reason, which the customer is told.
    let (status, page) = staff_act(&server, &reviewer, held2, "reject", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("say why"), "{page}");
    assert_eq!(staff_act(&server, &reviewer, held2, "reject", "identity not confirmed").await.0, StatusCode::OK);
    let refused = format!("We could not accept your order {held2}");
    crate::accounts::mail_containing_all(&server, &[&refused, "identity not confirmed", "voided"]).await;

    // The transfer arrives: support marks it; the order is delivered.
    let (status, page) = staff_act(&server, &support, pending, "transfer_received", "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("the order is now fulfilled"));
    // A refund ends the order; its downloads stop.
    let (status, page) = staff_act(&server, &support, held, "refund", "customer asked").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("customer asked"), "the history shows the reason: {page}");
    let refunded = format!("Your order {held} is refunded (customer asked)");
    crate::accounts::mail_containing_all(&server, &[&refunded, "23.79 USD"]).await;

    let pool = raw_pool(&server).await;
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM orders ORDER BY created_at, id").fetch_all(&pool).await.unwrap();
    let status_of = |id: &str| statuses.iter().find(|(i, _)| i == id).unwrap().1.clone();
    assert_eq!(
        (status_of(held), status_of(held2), status_of(pending)),
        ("refunded".into(), "rejected".into(), "fulfilled".into())
    );
    // Orders paid later (approved, transfer received) get their invoice
    // from the numbering job too; the rejected one never does.
    let db = coffer_store::Db::open(&server.database_url(), &coffer_store::DbOptions::default()).await.unwrap();
    let invoice_of = |id: &str| {
        let (db, id) = (db.clone(), coffer_domain::OrderId::parse(id).unwrap());
        async move { db.invoice_of(&id).await.unwrap() }
    };
    for _ in 0..100 {
        if invoice_of(held).await.is_some() && invoice_of(pending).await.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(invoice_of(held).await.is_some(), "the approved order has its invoice");
    assert!(invoice_of(pending).await.is_some(), "the paid transfer has its invoice");
    assert!(invoice_of(held2).await.is_none(), "a rejected order has none");
    let (reads,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE action = 'customer.read' AND actor LIKE 'staff:%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(reads >= 3, "every staff read of an order is audited ({reads})");
}

fn multipart(name: &str, file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "coffer-test-boundary-7f3a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn proof_of_identity_is_uploaded_encrypted_and_shown_to_reviewers(server: TestServer) {
    let version = policy_version(&server).await;
    let held = post_order(&server, &order(&server, &version, "4000000000009235", "idcheck@example.org")).await.1;
    let id = held["id"].as_str().unwrap().to_owned();
    let thanks = format!("Thank you for your order {id}.");
    let mail = crate::accounts::mail_containing_all(&server, &[&thanks, "/identity/"]).await;
    let start = mail.find("/identity/").unwrap();
    let link: String = mail[start..].chars().take_while(|c| !c.is_whitespace() && *c != '<' && *c != '"').collect();
    assert_eq!(client().get(server.url(&link)).send().await.unwrap().status(), StatusCode::OK);
    let upload = |bytes: Vec<u8>| {
        let url = server.url(&link);
        async move {
            let (content_type, body) = multipart("document", "id.bin", &bytes);
            client().post(url).header("content-type", content_type).body(body).send().await.unwrap()
        }
    };
    // Checked by content: a text file named anything is refused.
    let text = upload(b"just some text, not an identity document".to_vec()).await;
    assert_eq!(text.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text.text().await.unwrap().contains("JPEG or PNG photo or a PDF"));
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    png.extend_from_slice(b"IDCANARY-plaintext-marker-of-the-document");
    assert_eq!(upload(png.clone()).await.status(), StatusCode::OK);
    // The used link says the document was received.
    let again = client().get(server.url(&link)).send().await.unwrap().text().await.unwrap();
    assert!(again.contains("We received your document on"), "{again}");
    // Encrypted at rest: the marker is not in the stored file.
    let stored = std::fs::read(server.data_dir.join("files").join(format!("{id}.identity"))).unwrap();
    assert!(!stored.windows(8).any(|w| w == b"IDCANARY"), "the document is stored encrypted");
    // Forged links give nothing.
    let forged = format!("{}x", link);
    assert_eq!(client().get(server.url(&forged)).send().await.unwrap().status(), StatusCode::GONE);

    let reviewer = crate::staff::demo_staff_session(&server, "reviewer").await;
    let support = crate::staff::demo_staff_session(&server, "support").await;
    assert!(staff_get(&server, &format!("/staff/orders/{id}"), &reviewer).await.1.contains("view the document"));
    let staff_reads = || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE action = 'customer.read' AND actor LIKE 'staff:%'")
                .fetch_one(&raw_pool(&server).await)
                .await
                .unwrap();
        n
    };
    let reads_before = staff_reads().await;
    let shown = client()
        .get(server.url(&format!("/staff/orders/{id}/identity")))
        .header("cookie", &reviewer)
        .send()
        .await
        .unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    assert_eq!(shown.headers()["content-type"], "image/png");
    assert_eq!(shown.bytes().await.unwrap().to_vec(), png);
    assert_eq!(staff_reads().await, reads_before + 1, "the reviewer's view of the document is audited");
    assert_eq!(
        staff_get(&server, &format!("/staff/orders/{id}/identity"), &support).await.0,
        StatusCode::FORBIDDEN,
        "reviewers only"
    );
    // The decision schedules the document's deletion; the link closes.
    assert_eq!(staff_act(&server, &reviewer, &id, "approve", "document matches").await.0, StatusCode::OK);
    let (delete_after,): (Option<i64>,) = sqlx::query_as("SELECT delete_after FROM id_documents WHERE order_id = $1")
        .bind(id.clone())
        .fetch_one(&raw_pool(&server).await)
        .await
        .unwrap();
    let days = (delete_after.unwrap() - held_at_ms()) / (24 * 60 * 60 * 1000);
    assert!((29..=30).contains(&days), "{days} days");
    assert_eq!(client().get(server.url(&link)).send().await.unwrap().status(), StatusCode::GONE);
    // Thirty days on (moved back here), the retention job deletes file and row.
    sqlx::query("UPDATE id_documents SET delete_after = 1 WHERE order_id = $1")
        .bind(id.clone())
        .execute(&raw_pool(&server).await)
        .await
        .unwrap();
    let run = server.cli(&["retention", "run"]);
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "{out} {}", String::from_utf8_lossy(&run.stderr));
    assert!(out.lines().any(|l| l.starts_with("1\tproof-of-identity documents")), "{out}");
    assert!(!server.data_dir.join("files").join(format!("{id}.identity")).exists(), "the file is gone");
    let (left,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM id_documents").fetch_one(&raw_pool(&server).await).await.unwrap();
    assert_eq!(left, 0);
    // The decision itself stays in the order's history.
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM order_events WHERE order_id = $1")
        .bind(id.clone())
        .fetch_one(&raw_pool(&server).await)
        .await
        .unwrap();
    assert_eq!(events, 3, "placed on hold, paid, fulfilled");
    // A job given up is kept and listed for a person (ids and codes only).
    let listed = |server: &TestServer| String::from_utf8_lossy(&server.cli(&["jobs", "failed"]).stdout).into_owned();
    assert!(listed(&server).contains("No background job has failed."), "{}", listed(&server));
    let (job,): (String,) = sqlx::query_as("SELECT id FROM jobs WHERE kind = 'email' ORDER BY created_at LIMIT 1")
        .fetch_one(&raw_pool(&server).await)
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET status = 'failed', last_error = 'smtp_permanent', finished_at = 1, created_at = 1 WHERE id = $1")
        .bind(job.clone())
        .execute(&raw_pool(&server).await)
        .await
        .unwrap();
    assert!(server.cli(&["retention", "run"]).status.success());
    let out = listed(&server);
    assert!(out.lines().any(|l| l.starts_with(&format!("{job}\temail\t")) && l.contains("smtp_permanent")), "{out}");
    assert!(!out.contains('@'), "no address in the list: {out}");
}

fn held_at_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

pub(crate) async fn staff_refund_line(
    server: &TestServer,
    cookie: &str,
    order: &str,
    line: &str,
    reason: &str,
) -> (StatusCode, String) {
    let (_, page) = staff_get(server, "/staff", cookie).await;
    let csrf = crate::accounts::field_value(&page, "csrf");
    let r = client()
        .post(server.url(&format!("/staff/orders/{order}/action")))
        .header("cookie", cookie)
        .form(&[("csrf", csrf.as_str()), ("action", "refund_line"), ("line", line), ("reason", reason)])
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn support_refunds_line_by_line_to_the_exact_total(server: TestServer) {
    let version = policy_version(&server).await;
    let vendors = server.demo_credentials()["vendors"].clone();
    let mut body = order(&server, &version, "4242424242424242", "lines@example.org");
    body["items"] = json!([
        {"product_id": vendors[0]["products"][0]["id"], "quantity": 1},
        {"product_id": vendors[1]["products"][1]["id"], "quantity": 1}
    ]);
    let (_, placed) = post_order(&server, &body).await;
    assert_eq!((placed["status"].as_str(), placed["total"].as_i64()), (Some("fulfilled"), Some(4164)), "{placed}");
    let id = placed["id"].as_str().unwrap().to_owned();
    let download = placed["downloads"][0]["url"].as_str().unwrap().to_owned();
    let support = crate::staff::demo_staff_session(&server, "support").await;
    let reviewer = crate::staff::demo_staff_session(&server, "reviewer").await;
    assert_eq!(staff_refund_line(&server, &reviewer, &id, "2", "no").await.0, StatusCode::FORBIDDEN);
    assert_eq!(staff_refund_line(&server, &support, &id, "2", "").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, page) = staff_refund_line(&server, &support, &id, "2", "presets not needed").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("line 2 is refunded; the order is fulfilled"), "{page}");
    // 15.00 and its 19% share: 2.85.
    assert!(page.contains("refunded 17.85 USD"), "{page}");
    assert_eq!(client().get(&download).send().await.unwrap().status(), StatusCode::FORBIDDEN, "that download stops");
    assert_eq!(staff_refund_line(&server, &support, &id, "2", "again").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, page) = staff_refund_line(&server, &support, &id, "1", "changed their mind").await;
    assert!(page.contains("the order is refunded"), "{page}");
    let (refunded,): (i64,) =
        sqlx::query_as("SELECT CAST(SUM(refunded_amount) AS BIGINT) FROM order_lines WHERE order_id = $1")
            .bind(id.clone())
            .fetch_one(&raw_pool(&server).await)
            .await
            .unwrap();
    assert_eq!(refunded, 4164, "the refunds add up to the total exactly");
    let told = format!("Lumen Film Presets from your order {id}");
    crate::accounts::mail_containing_all(&server, &[&told, "17.85 USD"]).await;
}

async fn vendor_get(server: &TestServer, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = client().get(server.url(path));
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn vendors_see_only_their_own_lines(server: TestServer) {
    let version = policy_version(&server).await;
    let vendors = server.demo_credentials()["vendors"].clone();
    let (key_a, key_b) = (vendors[0]["api_key"].as_str().unwrap(), vendors[1]["api_key"].as_str().unwrap());
    // One order across both vendors, one for the second vendor only.
    let mut both = order(&server, &version, "4242424242424242", "two.vendors@example.org");
    both["items"] = json!([
        {"product_id": vendors[0]["products"][0]["id"], "quantity": 1},
        {"product_id": vendors[1]["products"][0]["id"], "quantity": 2}
    ]);
    let both = post_order(&server, &both).await.1;
    let mut only_b = order(&server, &version, "4242424242424242", "one.vendor@example.org");
    only_b["items"] = json!([{"product_id": vendors[1]["products"][1]["id"], "quantity": 1}]);
    let only_b = post_order(&server, &only_b).await.1;

    let (status, list) = vendor_get(&server, "/api/v1/vendor/orders", Some(key_a)).await;
    assert_eq!(status, StatusCode::OK);
    let orders = list["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 1, "vendor A has one order: {list}");
    let seen = &orders[0];
    assert_eq!(seen["id"], both["id"]);
    assert_eq!(seen["lines"].as_array().unwrap().len(), 1, "only its own line");
    assert_eq!(seen["lines"][0]["product_id"], vendors[0]["products"][0]["id"]);
    assert_eq!(seen["vendor_subtotal"], json!(1999));
    assert!(
        seen.get("total").is_none() && !seen.to_string().contains(vendors[1]["products"][0]["id"].as_str().unwrap())
    );
    assert!(seen.get("buyer").is_none() && !list.to_string().contains("Erika"), "a list names no buyer: {list}");
    let pool = raw_pool(&server).await;
    let vendor_reads = || async {
        let (reads, disclosures): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM audit_log WHERE action = 'customer.read' AND actor LIKE 'vendor:%'), \
             (SELECT COUNT(*) FROM disclosures)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (reads, disclosures)
    };
    assert_eq!(vendor_reads().await, (0, 0), "a list call reads and discloses nobody");
    let (_, detail) =
        vendor_get(&server, &format!("/api/v1/vendor/orders/{}", both["id"].as_str().unwrap()), Some(key_a)).await;
    assert_eq!(detail["buyer"]["name"], json!("Erika Mustermann"));
    assert_eq!(detail["buyer"]["address"]["country"], json!("DE"));
    assert_eq!(vendor_reads().await, (1, 1), "the detail's read is audited and disclosed");
    // Another vendor's order is not found, exactly as one that does not exist.
    let other =
        vendor_get(&server, &format!("/api/v1/vendor/orders/{}", only_b["id"].as_str().unwrap()), Some(key_a)).await;
    let missing = vendor_get(&server, "/api/v1/vendor/orders/ord_01a215cc77287193853eff2713a62a15", Some(key_a)).await;
    assert_eq!(other.0, StatusCode::NOT_FOUND);
    assert_eq!(other, missing);
    let (status, b) =
        vendor_get(&server, &format!("/api/v1/vendor/orders/{}", both["id"].as_str().unwrap()), Some(key_b)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["vendor_subtotal"], json!(2 * 4900), "vendor B's own line only");
    // No key, or a wrong one: 401.
    for key in [None, Some("cvk_not-a-key")] {
        let (status, body) = vendor_get(&server, "/api/v1/vendor/orders", key).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    }
    // Each read is audited and recorded as a disclosure the customer sees.
    let (reads,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE action = 'customer.read' AND actor LIKE 'vendor:%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(reads >= 2, "{reads}");
    let export = server.cli(&["export", "--email", "two.vendors@example.org"]);
    let export: Value = serde_json::from_slice(&export.stdout).unwrap();
    let disclosures = export["disclosures"].as_array().unwrap();
    assert!(
        disclosures.iter().any(|d| d["recipient_kind"] == "vendor"
            && d["fields"] == json!(["orders.name", "orders.email", "orders.phone", "orders.address"])),
        "{disclosures:?}"
    );
}

/// Adds the `Set-Cookie`s of a response to a `Cookie` header, as a browser
/// keeps them (a cleared cookie goes).
fn keep_cookies(jar: &mut Vec<(String, String)>, response: &reqwest::Response) {
    for set in response.headers().get_all(reqwest::header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
        let pair = set.split(';').next().unwrap_or_default();
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        jar.retain(|(n, _)| n != name);
        if !value.is_empty() && !set.contains("Max-Age=0") {
            jar.push((name.to_owned(), value.to_owned()));
        }
    }
}

/// A visitor's form pass and cookies after putting `product` in the cart
/// from its page.
async fn cart_with(server: &TestServer, product: &str) -> (crate::FormPass, Vec<(String, String)>) {
    let pass = crate::form_pass(server, &format!("/products/{product}")).await;
    let (name, value) = pass.cookie.split_once('=').unwrap();
    let mut jar = vec![(name.to_owned(), value.to_owned())];
    let added = client()
        .post(server.url("/cart"))
        .header(reqwest::header::COOKIE, cookie_header(&jar))
        .form(&[("product_id", product), ("form_token", pass.token.as_str())])
        .send()
        .await
        .unwrap();
    keep_cookies(&mut jar, &added);
    (pass, jar)
}

fn cookie_header(jar: &[(String, String)]) -> String {
    jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
}

fn location(response: &reqwest::Response) -> String {
    response.headers()[reqwest::header::LOCATION].to_str().unwrap().to_owned()
}

/// Finding 6 of the security review: the pay form sent twice (a double
/// click, a reload) makes one order and one email; every answer leads to
/// the one confirmation, which can be reloaded. Every form post is
/// answered with a redirect (post, then get).
async fn paying_twice_from_one_review_makes_one_order(server: TestServer) {
    let product = server.demo_credentials()["vendors"][0]["products"][0]["id"].as_str().unwrap().to_owned();
    let (pass, mut jar) = cart_with(&server, &product).await;
    let version = policy_version(&server).await;
    let details = [
        ("currency", "USD"),
        ("name", "Erika Mustermann"),
        ("email", "twice@example.org"),
        ("line1", "Hauptstr. 1"),
        ("city", "Berlin"),
        ("postal_code", "10115"),
        ("country", "DE"),
        ("payment_method", "card"),
        ("age", "adult"),
        ("consent", version.as_str()),
        ("action", "review"),
        ("form_token", pass.token.as_str()),
    ];
    let posted = client()
        .post(server.url("/checkout"))
        .header(reqwest::header::COOKIE, cookie_header(&jar))
        .form(&details)
        .send()
        .await
        .unwrap();
    assert_eq!((posted.status(), location(&posted).as_str()), (StatusCode::SEE_OTHER, "/checkout/review"));
    keep_cookies(&mut jar, &posted);
    assert!(jar.iter().any(|(n, _)| n.ends_with("coffer_checkout")), "the draft's cookie: {jar:?}");
    let review = client().get(server.url("/checkout/review")).header(reqwest::header::COOKIE, cookie_header(&jar));
    let review = review.send().await.unwrap();
    assert_eq!(review.status(), StatusCode::OK);
    let review = review.text().await.unwrap();
    let token = crate::accounts::field_value(&review, "review_token");
    assert!(token.len() >= 32, "{review}");
    assert!(!review.contains("twice@example.org\" type=\"hidden\""), "the details are not carried in the page");
    let card = [("card_number", "4242424242424242"), ("exp_month", "12"), ("exp_year", "2030"), ("cvc", "123")];
    let reviewed = crate::accounts::field_value(&review, "reviewed");
    let mut form: Vec<(&str, &str)> = card.to_vec();
    form.push(("review_token", token.as_str()));
    form.push(("reviewed", reviewed.as_str()));
    // The cart changed in another tab since the review: no payment for
    // what the buyer did not see; back to a fresh review.
    let mut changed = jar.clone();
    for (name, value) in &mut changed {
        if name.ends_with("coffer_cart") {
            *value = format!("{product}:2");
        }
    }
    let stale = client()
        .post(server.url("/checkout/pay"))
        .header(reqwest::header::COOKIE, cookie_header(&changed))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!((stale.status(), location(&stale).as_str()), (StatusCode::SEE_OTHER, "/checkout/review"));
    let again = client().get(server.url("/checkout/review")).header(reqwest::header::COOKIE, cookie_header(&changed));
    let again = again.send().await.unwrap().text().await.unwrap();
    assert!(again.contains("changed since this page was shown"), "{again}");
    let (orders,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM orders").fetch_one(&raw_pool(&server).await).await.unwrap();
    assert_eq!(orders, 0, "nothing paid for a cart not reviewed");
    let cookies = cookie_header(&jar);
    let pay = |form: Vec<(&'static str, String)>| {
        let cookies = cookies.clone();
        let server = &server;
        async move {
            let r = client()
                .post(server.url("/checkout/pay"))
                .header(reqwest::header::COOKIE, cookies)
                .form(&form)
                .send()
                .await
                .unwrap();
            (r.status(), r.headers().get(reqwest::header::LOCATION).map(|l| l.to_str().unwrap().to_owned()))
        }
    };
    let owned: Vec<(&'static str, String)> = form.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
    let (first, second) = futures::join!(pay(owned.clone()), pay(owned.clone()));
    let third = pay(owned.clone()).await;
    let done = format!("/checkout/done/{token}");
    for answer in [&first, &second, &third] {
        assert_eq!(answer, &(StatusCode::SEE_OTHER, Some(done.clone())), "every submit leads to the one confirmation");
    }
    let order_id = |page: &str| -> String {
        let start = page.find("ord_").unwrap_or_else(|| panic!("an order id in {page}"));
        page[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
    };
    // The confirmation reloads, with its keys, for anyone holding its token only.
    let confirmation = client().get(server.url(&done)).send().await.unwrap();
    assert_eq!(confirmation.status(), StatusCode::OK);
    let confirmation = confirmation.text().await.unwrap();
    assert!(confirmation.contains("license-key"), "{confirmation}");
    let again = client().get(server.url(&done)).send().await.unwrap().text().await.unwrap();
    assert_eq!(order_id(&again), order_id(&confirmation), "a reload shows the same order");
    for wrong in [format!("/checkout/done/{}x", token), "/checkout/done/abc.def".into()] {
        assert_eq!(client().get(server.url(&wrong)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    }
    let (orders,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM orders").fetch_one(&raw_pool(&server).await).await.unwrap();
    assert_eq!(orders, 1, "one review, one order");
    // Wait for the confirmation, then check no second one follows it.
    crate::accounts::mail_containing(&server, &order_id(&confirmation)).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let confirmations = std::fs::read_dir(server.data_dir.join("mail"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|m| m.replace("=\r\n", ""))
        .filter(|m| m.contains(&format!("Thank you for your order {}", order_id(&confirmation))))
        .count();
    assert_eq!(confirmations, 1, "one confirmation (the invoice follows in its own email)");
    // Without a review token this server made there is no payment.
    for forged in [None, Some("made-up-token"), Some("abc.def")] {
        let mut other: Vec<(&'static str, String)> =
            owned.iter().filter(|(name, _)| *name != "review_token").cloned().collect();
        other.extend(forged.map(|t| ("review_token", t.to_owned())));
        let (status, to) = pay(other).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "review token {forged:?}");
        assert!(!to.unwrap_or_default().starts_with("/checkout/done"), "review token {forged:?}");
    }
    let (orders,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM orders").fetch_one(&raw_pool(&server).await).await.unwrap();
    assert_eq!(orders, 1, "still one order");
}

/// Finding 7 of the security review: refunds, rejections and the order
/// page work on orders whose customer was erased; the page says "erased"
/// in place of the person; nothing is delivered to nobody.
async fn staff_refund_and_reject_orders_of_an_erased_customer(server: TestServer) {
    let version = policy_version(&server).await;
    let paid = post_order(&server, &order(&server, &version, "4242424242424242", "gone@example.org")).await.1;
    let held = post_order(&server, &order(&server, &version, "4000000000009235", "gone@example.org")).await.1;
    let (paid, held) = (paid["id"].as_str().unwrap(), held["id"].as_str().unwrap());
    let erased = server.cli(&["erase", "--email", "gone@example.org"]);
    assert!(erased.status.success(), "{}", String::from_utf8_lossy(&erased.stderr));

    let support = crate::staff::demo_staff_session(&server, "support").await;
    let reviewer = crate::staff::demo_staff_session(&server, "reviewer").await;
    let (status, page) = staff_get(&server, &format!("/staff/orders/{paid}"), &support).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("erased") && !page.contains("Erika"), "{page}");
    let (status, page) = staff_act(&server, &support, paid, "refund", "customer asked before leaving").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("the order is now refunded"), "{page}");
    // A held order: no approval (nobody to deliver to), rejection works.
    let (_, page) = staff_get(&server, &format!("/staff/orders/{held}"), &reviewer).await;
    assert!(!page.contains("value=\"approve\""), "no approve button for an erased customer: {page}");
    let (status, page) = staff_act(&server, &reviewer, held, "approve", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("nobody to deliver to"), "{page}");
    let (status, page) = staff_act(&server, &reviewer, held, "reject", "customer erased").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let pool = raw_pool(&server).await;
    let statuses: Vec<(String,)> =
        sqlx::query_as("SELECT status FROM orders ORDER BY created_at, id").fetch_all(&pool).await.unwrap();
    assert_eq!(statuses, [("refunded".to_owned(),), ("rejected".to_owned(),)]);
    let (moves,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM payment_moves").fetch_one(&pool).await.unwrap();
    assert_eq!(moves, 0, "every claim ended with its move");
}

/// Finding 4 of the security review (P6): the buyer's details reach a
/// vendor only on one order's detail, and only while the vendor fills the
/// order (paid, fulfilled) or supports it (refunded after delivery); never
/// for held, rejected, pending or refunded-before-delivery orders.
async fn p06_vendors_get_the_buyer_only_of_orders_they_fill_or_support(server: TestServer) {
    let version = policy_version(&server).await;
    let key = server.demo_credentials()["vendors"][0]["api_key"].as_str().unwrap().to_owned();
    let place = |card: &'static str, email: &'static str| {
        let body = order(&server, &version, card, email);
        let server = &server;
        async move { post_order(server, &body).await.1["id"].as_str().unwrap().to_owned() }
    };
    let fulfilled = place("4242424242424242", "filled@example.org").await;
    let held = place("4000000000009235", "held@example.org").await;
    let rejected = place("4000000000009235", "rejected@example.org").await;
    let refunded_after = place("4242424242424242", "refunded.after@example.org").await;
    let mut bank = order(&server, &version, "", "pending@example.org");
    bank["payment_method"] = json!("bank_transfer");
    bank.as_object_mut().unwrap().remove("card");
    let pending = post_order(&server, &bank).await.1["id"].as_str().unwrap().to_owned();
    let reviewer = crate::staff::demo_staff_session(&server, "reviewer").await;
    let support = crate::staff::demo_staff_session(&server, "support").await;
    assert_eq!(staff_act(&server, &reviewer, &rejected, "reject", "not confirmed").await.0, StatusCode::OK);
    assert_eq!(staff_act(&server, &support, &refunded_after, "refund", "asked").await.0, StatusCode::OK);

    let buyer_of = |id: String| {
        let (server, key) = (&server, key.clone());
        async move {
            let (status, body) = vendor_get(server, &format!("/api/v1/vendor/orders/{id}"), Some(&key)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["buyer"].clone()
        }
    };
    assert_eq!(buyer_of(fulfilled.clone()).await["email"], json!("filled@example.org"));
    assert_eq!(buyer_of(refunded_after.clone()).await["email"], json!("refunded.after@example.org"));
    for (what, id) in [("on hold", &held), ("rejected", &rejected), ("pending", &pending)] {
        assert_eq!(buyer_of(id.clone()).await, Value::Null, "no buyer for an order {what}");
    }
    // Each order that showed a buyer was recorded once per read; the others never.
    let export =
        |email: &str| -> Value { serde_json::from_slice(&server.cli(&["export", "--email", email]).stdout).unwrap() };
    assert_eq!(export("filled@example.org")["disclosures"].as_array().unwrap().len(), 1);
    for email in ["held@example.org", "rejected@example.org", "pending@example.org"] {
        assert_eq!(export(email)["disclosures"].as_array().unwrap().len(), 0, "{email}");
    }
}

/// Every EU member state, the United Kingdom, Norway and Switzerland pay
/// their standard VAT on the API (a sample across the table, with the
/// rates that changed lately), and the order keeps the rate it was charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_in_europe_pay_their_countrys_vat() {
    let server = crate::server(coffer_testkit::TestBackend::Sqlite).await;
    let version = policy_version(&server).await;
    let pool = raw_pool(&server).await;
    // (country, basis points): 19.99 net.
    let rates = [
        ("PT", 2300),
        ("SE", 2500),
        ("PL", 2300),
        ("FI", 2550),
        ("EE", 2400),
        ("SK", 2300),
        ("RO", 2100),
        ("HU", 2700),
        ("LU", 1700),
        ("GB", 2000),
        ("NO", 2500),
        ("CH", 810),
        ("US", 0),
    ];
    for (n, (country, rate)) in rates.into_iter().enumerate() {
        let mut body = order(&server, &version, "4242424242424242", &format!("vat{n}@example.org"));
        body["customer"]["address"]["country"] = json!(country);
        let (status, placed) = post_order(&server, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{country}: {placed}");
        let tax = (1999 * rate + 5_000) / 10_000;
        assert_eq!((placed["tax"].as_i64(), placed["total"].as_i64()), (Some(tax), Some(1999 + tax)), "{country}");
        let (kept_country, kept_rate): (String, i64) =
            sqlx::query_as("SELECT tax_country, tax_rate FROM orders WHERE id = $1")
                .bind(placed["id"].as_str().unwrap())
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((kept_country.as_str(), kept_rate), (country, rate), "the order keeps its rate");
    }
}

/// The operator adds rate rows in configuration: one in force from
/// yesterday changes today's rate, one from tomorrow does not yet; a bad
/// row or a bad IBAN stops the server with the setting named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_rate_rows_apply_from_their_day() {
    let dir = tempfile::tempdir().unwrap();
    let day = |offset: i64| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        coffer_domain::order::rfc3339_utc(coffer_domain::Millis(now + offset * 24 * 3600 * 1000))[..10].to_owned()
    };
    let config = dir.path().join("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "[[operator.tax_rates]]\ncountry = \"PT\"\nrate = 2400\nfrom = \"{}\"\n\n\
             [[operator.tax_rates]]\ncountry = \"SE\"\nrate = 1000\nfrom = \"{}\"\n",
            day(-1),
            day(1)
        ),
    )
    .unwrap();
    let server = TestServer::start_with(
        crate::BIN,
        coffer_testkit::TestBackend::Sqlite,
        &[("COFFER_CONFIG", config.to_str().unwrap())],
    )
    .await;
    let version = policy_version(&server).await;
    for (country, tax) in [("PT", 480), ("SE", 500)] {
        let mut body = order(&server, &version, "4242424242424242", &format!("{country}@example.org"));
        body["customer"]["address"]["country"] = json!(country);
        let (status, placed) = post_order(&server, &body).await;
        assert_eq!((status, placed["tax"].as_i64()), (StatusCode::CREATED, Some(tax)), "{country}: {placed}");
    }
    for (setting, text) in [
        ("operator.tax_rates", "[[operator.tax_rates]]\ncountry = \"Portugal\"\nrate = 2300\nfrom = \"2024-01-01\"\n"),
        (
            "operator.bank",
            "[operator.bank]\nholder = \"Op\"\niban = \"DE89 3704 0044 0532 0130 01\"\nbic = \"COBADEFF\"\n",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = std::process::Command::new(crate::BIN)
            .args(["migrate", "--config", config.to_str().unwrap(), "--data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(setting), "{err}");
    }
}

/// A person pays by bank transfer in the browser: the review says the bank
/// details come next; the confirmation shows the operator's account, the
/// reference, the amount and the last day, on a desktop and on a phone; the
/// email and the account show the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_pays_by_bank_transfer_in_the_browser() {
    let server = crate::server(coffer_testkit::TestBackend::Sqlite).await;
    let vendors = server.demo_credentials()["vendors"].clone();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let browser = coffer_testkit::Browser::start().await;
    let product = &vendors[0]["products"][0];
    browser.goto(&server.url(&format!("/products/{}", product["id"].as_str().unwrap()))).await;
    browser.click(&browser.find("form.buy button").await).await;
    browser.wait_for_title("Checkout · Coffer").await;
    for (css, value) in [
        ("#name", "Joana Silva"),
        ("#email", "joana.transfer@example.org"),
        ("#line1", "Rua Augusta 100"),
        ("#city", "Lisboa"),
        ("#postal_code", "1100-053"),
    ] {
        browser.fill(&browser.find(css).await, value).await;
    }
    browser.choose("#country", "PT").await;
    browser.click(&browser.find("input[name=payment_method][value=bank_transfer]").await).await;
    browser.click(&browser.find("input[name=age][value=adult]").await).await;
    browser.click(&browser.find("input[name=consent]").await).await;
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for_title("Review and pay · Coffer").await;
    // Portugal: 23% of 19.99.
    let review = browser.text(&browser.find("main").await).await;
    assert!(review.contains("VAT (Portugal, 23%)") && review.contains("24.59 USD"), "{review}");
    assert!(review.contains("show our bank account and the reference"), "{review}");
    assert_eq!(browser.count("#card_number").await, 0, "no card asked");
    browser.click(&browser.find("form[action='/checkout/pay'] button").await).await;
    browser.wait_for_title("Thank you · Coffer").await;
    assert_eq!(browser.text(&browser.find("#order-status").await).await, "Waiting for your bank transfer.");
    assert_eq!(browser.text(&browser.find("#bank-holder").await).await, "Coffer Demo Operator");
    assert_eq!(browser.text(&browser.find("#bank-iban").await).await, "DE89 3704 0044 0532 0130 00");
    assert_eq!(browser.text(&browser.find("#bank-bic").await).await, "COBADEFFXXX");
    assert_eq!(browser.text(&browser.find("#amount-due").await).await, "24.59 USD");
    let reference = browser.text(&browser.find("#payment-reference").await).await;
    assert!(reference.starts_with("CF-"), "{reference}");
    let pay_by = browser.text(&browser.find("#pay-by").await).await;
    browser.screenshot(&dir.join("checkout-transfer-done.png")).await;
    // On a phone the IBAN stays whole on one line and nothing scrolls sideways.
    browser.resize(390, 844).await;
    let iban = browser.find("#bank-iban").await;
    assert_eq!(browser.css(&iban, "white-space").await, "nowrap");
    assert_eq!(browser.sideways_overflow().await, 0, "the page fits a phone");
    browser.screenshot(&dir.join("checkout-transfer-done-phone.png")).await;
    browser.resize(1280, 900).await;

    let mail = crate::accounts::mail_containing_all(&server, &[&reference, "IBAN: DE89 3704 0044 0532 0130 00"]).await;
    assert!(mail.contains(&format!("arrived by {pay_by}")), "{mail}");
    let start = mail.find("/account/link/").expect("an invitation");
    let link: String = mail[start..].chars().take_while(|c| !c.is_whitespace() && *c != '<' && *c != '"').collect();
    browser.goto(&server.url(&link)).await;
    browser.wait_for_title("Set your password · Coffer").await;
    browser.fill(&browser.find("#password").await, "copper kettle sunrise 88").await;
    browser.click(&browser.find("form button").await).await;
    browser.wait_for_title("Your account · Coffer").await;
    let order = browser.text(&browser.find(".order").await).await;
    assert!(order.contains("Waiting for your bank transfer of 24.59 USD by") && order.contains(&reference), "{order}");
    assert!(order.contains("DE89 3704 0044 0532 0130 00"), "{order}");
    // The data page shows the order in words: products by name, amounts
    // with their currency, the address in its usual order.
    browser.goto(&server.url("/account/data")).await;
    browser.wait_for_title("Your data · Coffer").await;
    let record = browser.text(&browser.find(".order-record").await).await;
    for expected in ["24.59 USD", "1 × Northwind Notes Pro: 19.99 USD", "Tax: 4.60 USD", "1100-053 Lisboa", "Portugal"]
    {
        assert!(record.contains(expected), "{expected}: {record}");
    }
    browser.screenshot(&dir.join("account-data-order.png")).await;
}

/// A field far longer than any form allows (a script, not a person) is
/// answered like any mistake: the form again with the message beside the
/// field, never a failure; the draft stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_field_is_a_mistake_on_the_form_not_a_failure() {
    let server = crate::server(coffer_testkit::TestBackend::Sqlite).await;
    let product = server.demo_credentials()["vendors"][0]["products"][0]["id"].as_str().unwrap().to_owned();
    let (pass, mut jar) = cart_with(&server, &product).await;
    let huge = "x".repeat(500_000);
    let posted = client()
        .post(server.url("/checkout"))
        .header(reqwest::header::COOKIE, cookie_header(&jar))
        .form(&[("name", huge.as_str()), ("action", "review"), ("form_token", pass.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!((posted.status(), location(&posted).as_str()), (StatusCode::SEE_OTHER, "/checkout#problems"));
    keep_cookies(&mut jar, &posted);
    let page = client().get(server.url("/checkout")).header(reqwest::header::COOKIE, cookie_header(&jar));
    let page = page.send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"name-error\"") && page.contains("This is too long."), "{page}");
    let (size,): (i64,) = sqlx::query_as("SELECT MAX(LENGTH(sealed)) FROM checkout_drafts")
        .fetch_one(&raw_pool(&server).await)
        .await
        .unwrap();
    assert!(size < 8_000, "the draft stays small: {size} bytes");
}
