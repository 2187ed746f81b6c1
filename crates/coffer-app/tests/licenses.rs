//! License status through the services, on SQLite and PostgreSQL: a refund
//! (of a line or of the whole order) revokes exactly the refunded keys in
//! its own unit, and only staff with the refund permission make one; a
//! check is valid only for a key its vendor signed and no refund revoked;
//! each vendor's revocation list is signed, verifies with that vendor's
//! public key, names keys by what their payload holds and nothing of the
//! buyer, and never lists another vendor's keys. A revocation outlives
//! the customer's erasure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_app::AppError;
use coffer_app::checkout::{
    AgeInput, CardInput, Channel, CheckoutDeps, CheckoutService, CheckoutSettings, LicenseCheck, LicenseStatus,
    OrderRequest, PlacedOrder, SimulatedGateway, StaffAction,
};
use coffer_app::privacy::{CustomerService, FileKeyProvider, Vault};
use coffer_app::request::RequestContext;
use coffer_domain::{
    Clock, CustomerDetails, MailingAddress, ManualClock, OrderStatus, PaymentMethod, Permission, Principal, ProductId,
    StaffRole, VendorId,
};
use coffer_store::prelude::*;
use coffer_store::{Db, DbOptions, KeyStore};
use coffer_testkit::{TestBackend, TestDatabase};
use secrecy::SecretString;
use serde_json::Value;
use std::sync::Arc;

/// A demo vendor with its license-key product.
struct Seller {
    id: VendorId,
    slug: String,
    product: String,
}

struct Fixture {
    checkout: CheckoutService,
    customers: CustomerService,
    clock: Arc<ManualClock>,
    /// Two vendors, each with a product that delivers a license key.
    sellers: [Seller; 2],
    data_url: String,
    _data: TestDatabase,
    _keys: TestDatabase,
}

async fn fixture(backend: TestBackend) -> Fixture {
    let data = TestDatabase::new(backend).await;
    let key_db = TestDatabase::new(backend).await;
    let db = Db::open(&data.url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let keys = KeyStore::open(&key_db.key_store_url(), &DbOptions::default()).await.unwrap();
    let manual = Arc::new(ManualClock::at(coffer_app::SystemClock.now().0));
    let clock: Arc<dyn Clock> = manual.clone();
    let provider = FileKeyProvider::open(&data.dir.path().join("keys")).unwrap();
    let vault = Arc::new(Vault::open(Arc::new(provider), keys, clock.clone()).await.unwrap());
    let files: Arc<dyn coffer_app::files::FileStore> =
        Arc::new(coffer_app::files::LocalFileStore::new(data.dir.path().join("files")).unwrap());
    let customers = CustomerService::new(db.clone(), vault.clone(), clock.clone())
        .with_files(Some(data.dir.path().join("mail")), files.clone());
    coffer_app::demo::seed(&db, clock.as_ref()).await.unwrap();
    let now = clock.now();
    db.write(move |tx| Box::pin(async move { tx.publish_policy("test-policy", "<p>T</p>", now).await })).await.unwrap();
    let outbox = coffer_app::mail::Outbox::new(
        &coffer_app::config::MailConfig::default(),
        data.dir.path(),
        db.clone(),
        vault.clone(),
        clock.clone(),
    )
    .unwrap();
    let checkout = CheckoutService::new(
        CheckoutDeps {
            db: db.clone(),
            catalog: coffer_app::CatalogService::new(db.clone(), clock.clone(), 0),
            vault,
            customers: customers.clone(),
            outbox,
            gateway: Arc::new(SimulatedGateway),
            files,
            clock,
        },
        CheckoutSettings {
            fraud: coffer_app::config::FraudConfig::default().settings(),
            seller: coffer_app::checkout::Seller {
                name: "Test Operator".into(),
                postal_address: "Example Street 1, 10115 Berlin, Germany".into(),
                vat_number: None,
            },
            taxes: coffer_domain::TaxTable::standard(),
            bank: None,
            transfer_expiry_ms: 14 * 24 * 60 * 60 * 1000,
            policy_version: "test-policy".into(),
            base_url: "http://127.0.0.1".into(),
        },
    )
    .unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT p.id, v.id, v.slug FROM products p JOIN vendors v ON v.id = p.vendor_id \
         WHERE p.delivery = 'license_key' ORDER BY v.slug, p.id",
    )
    .fetch_all(&raw(&data.url).await)
    .await
    .unwrap();
    let mut by_vendor: Vec<Seller> = Vec::new();
    for (product, vendor, slug) in rows {
        if by_vendor.iter().all(|s| s.slug != slug) {
            by_vendor.push(Seller { id: VendorId::parse(&vendor).unwrap(), slug, product });
        }
    }
    let mut sellers = by_vendor.into_iter();
    let (first, second) = (sellers.next().unwrap(), sellers.next().expect("two demo vendors sell license keys"));
    Fixture {
        checkout,
        customers,
        clock: manual,
        sellers: [first, second],
        data_url: data.url.clone(),
        _data: data,
        _keys: key_db,
    }
}

async fn raw(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

coffer_testkit::on_both_backends_with!(fixture;
    a_line_refund_revokes_only_that_lines_key,
    a_whole_refund_revokes_every_key_of_the_order,
    the_revocation_list_is_signed_and_names_no_buyer,
    forged_malformed_and_unissued_keys_are_invalid,
    a_revocation_outlives_the_customers_erasure,
    keys_issued_before_hashes_are_checked_by_their_signed_order_line,
    only_staff_who_may_refund_revoke_a_key,
);

/// An administrator: every staff move is theirs to make.
fn staff() -> RequestContext {
    RequestContext::new(Principal::Staff { id: "stf_1".into(), role: StaffRole::Admin })
}

/// An order by Erika Mustermann of one license-key product of each vendor
/// in `sellers` (by index), paid by card and delivered.
async fn buy(f: &Fixture, email: &str, sellers: &[usize]) -> PlacedOrder {
    let request = OrderRequest {
        currency: "USD".into(),
        items: sellers.iter().map(|&s| (f.sellers[s].product.clone(), 1)).collect(),
        customer: CustomerDetails {
            name: "Erika Mustermann".into(),
            email: email.into(),
            phone: Some("+49 30 1234567".into()),
            address: Some(MailingAddress {
                line1: "Hauptstr. 1".into(),
                line2: String::new(),
                city: "Berlin".into(),
                region: String::new(),
                postal_code: "10115".into(),
                country: "DE".into(),
            }),
        },
        payment_method: PaymentMethod::Card,
        card: Some(CardInput {
            number: SecretString::from("4242424242424242"),
            exp_month: 12,
            exp_year: 2030,
            cvc: SecretString::from("123"),
        }),
        consent: Some(("test-policy".into(), true)),
        age: Some(AgeInput { adult: true, guardian_name: None, guardian_consents: false }),
        client_ip: None,
    };
    let placed = f.checkout.placement().place(request, Channel::Api).await.unwrap();
    assert_eq!(placed.status, OrderStatus::Fulfilled);
    assert_eq!(placed.license_keys.len(), sellers.len());
    placed
}

/// The key of `seller`'s product in a placed order.
fn key_of(f: &Fixture, placed: &PlacedOrder, seller: usize) -> String {
    let product = ProductId::parse(&f.sellers[seller].product).unwrap();
    placed.license_keys.iter().find(|(p, _)| *p == product).map(|(_, k)| k.clone()).unwrap()
}

/// The line number of `seller`'s product in the stored order.
async fn line_of(f: &Fixture, placed: &PlacedOrder, seller: usize) -> i64 {
    let pool = raw(&f.data_url).await;
    let (line,): (i64,) = sqlx::query_as("SELECT line_no FROM order_lines WHERE order_id = $1 AND product_id = $2")
        .bind(placed.id.to_string())
        .bind(f.sellers[seller].product.clone())
        .fetch_one(&pool)
        .await
        .unwrap();
    line
}

async fn check(f: &Fixture, key: &str) -> LicenseCheck {
    f.checkout.fulfilment().check_license(key).await.unwrap()
}

fn active(product: &str) -> LicenseCheck {
    LicenseCheck { status: LicenseStatus::Active, product_id: Some(ProductId::parse(product).unwrap()) }
}

fn revoked(product: &str) -> LicenseCheck {
    LicenseCheck { status: LicenseStatus::Revoked, product_id: Some(ProductId::parse(product).unwrap()) }
}

fn invalid() -> LicenseCheck {
    LicenseCheck { status: LicenseStatus::Invalid, product_id: None }
}

/// A vendor's revocation list, verified with its public key as a vendor's
/// program would (the key as `demo-credentials.json` shows it): the list's
/// JSON and its text.
async fn revocations(f: &Fixture, seller: usize) -> (Value, String) {
    let seller = &f.sellers[seller];
    let signed = f.checkout.fulfilment().revocation_list(&seller.slug).await.unwrap();
    let public = f.checkout.fulfilment().license_signer(&seller.id).await.unwrap().public_key_base64();
    let bytes = coffer_crypto::verify_revocation_list(&public, &signed).expect("signed by the vendor's license key");
    assert_eq!(URL_SAFE_NO_PAD.decode(&signed.list).unwrap(), bytes);
    let text = String::from_utf8(bytes).unwrap();
    (serde_json::from_str(&text).unwrap(), text)
}

/// The order ids a list names.
fn listed_orders(list: &Value) -> Vec<String> {
    list["revoked"].as_array().unwrap().iter().map(|e| e["order_id"].as_str().unwrap().to_owned()).collect()
}

/// The key's revocation time as stored (`None`: not revoked), and whether
/// its row is still there.
async fn stored_revocation(f: &Fixture, placed: &PlacedOrder, seller: usize) -> Option<i64> {
    let line = line_of(f, placed, seller).await;
    let (revoked_at,): (Option<i64>,) =
        sqlx::query_as("SELECT revoked_at FROM license_keys WHERE order_id = $1 AND line_no = $2")
            .bind(placed.id.to_string())
            .bind(line)
            .fetch_one(&raw(&f.data_url).await)
            .await
            .expect("the key's row is kept");
    revoked_at
}

async fn a_line_refund_revokes_only_that_lines_key(f: Fixture) {
    let placed = buy(&f, "lines@example.org", &[0, 1]).await;
    let (first, second) = (key_of(&f, &placed, 0), key_of(&f, &placed, 1));
    assert_eq!(check(&f, &first).await, active(&f.sellers[0].product));
    assert_eq!(check(&f, &second).await, active(&f.sellers[1].product));
    let line = line_of(&f, &placed, 0).await;
    let refunded = f.checkout.staff().refund_line(&placed.id, line, &staff(), "asked").await.unwrap();
    assert_eq!(refunded, OrderStatus::Fulfilled, "the other line stands");
    let answer = check(&f, &first).await;
    assert_eq!(answer, revoked(&f.sellers[0].product));
    assert!(!answer.valid());
    assert_eq!(check(&f, &second).await, active(&f.sellers[1].product), "the other line's key still works");
    assert_eq!(stored_revocation(&f, &placed, 0).await, Some(f.clock.now().0));
    assert_eq!(stored_revocation(&f, &placed, 1).await, None);
    assert_eq!(listed_orders(&revocations(&f, 0).await.0), [placed.id.to_string()]);
    assert!(listed_orders(&revocations(&f, 1).await.0).is_empty(), "the other vendor's key is not revoked");
}

async fn a_whole_refund_revokes_every_key_of_the_order(f: Fixture) {
    let placed = buy(&f, "whole@example.org", &[0, 1]).await;
    let untouched = buy(&f, "other.buyer@example.org", &[0]).await;
    // One line first, the rest an hour later: each key keeps its own time.
    let line = line_of(&f, &placed, 1).await;
    f.checkout.staff().refund_line(&placed.id, line, &staff(), "asked").await.unwrap();
    let line_refunded_at = f.clock.now().0;
    f.clock.advance(60 * 60 * 1000);
    let done = f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(), "asked").await.unwrap();
    assert_eq!(done, OrderStatus::Refunded);
    assert_eq!(check(&f, &key_of(&f, &placed, 0)).await, revoked(&f.sellers[0].product));
    assert_eq!(check(&f, &key_of(&f, &placed, 1)).await, revoked(&f.sellers[1].product));
    assert_eq!(stored_revocation(&f, &placed, 0).await, Some(f.clock.now().0));
    assert_eq!(stored_revocation(&f, &placed, 1).await, Some(line_refunded_at));
    assert_eq!(check(&f, &key_of(&f, &untouched, 0)).await, active(&f.sellers[0].product), "another order's key");
    let (list, _) = revocations(&f, 1).await;
    assert_eq!(
        list["revoked"][0]["revoked_at"],
        coffer_domain::order::rfc3339_utc(coffer_domain::Millis(line_refunded_at))
    );
}

async fn the_revocation_list_is_signed_and_names_no_buyer(f: Fixture) {
    let placed = buy(&f, "Erika.Listed@example.org", &[0]).await;
    let key = key_of(&f, &placed, 0);
    assert!(listed_orders(&revocations(&f, 0).await.0).is_empty());
    f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(), "asked").await.unwrap();
    // At once: nothing is cached.
    let (list, text) = revocations(&f, 0).await;
    assert_eq!(list["vendor"], f.sellers[0].slug);
    assert_eq!(list["issued_at"], coffer_domain::order::rfc3339_utc(f.clock.now()));
    let payload: Value = serde_json::from_slice(&coffer_crypto::unverified_license_payload(&key).unwrap()).unwrap();
    assert_eq!(
        list["revoked"],
        serde_json::json!([{
            "order_id": placed.id.to_string(),
            "product_id": f.sellers[0].product,
            "licensee": payload["licensee"],
            "key_sha256": hex::encode(coffer_crypto::license_key_hash(&key)),
            "revoked_at": coffer_domain::order::rfc3339_utc(f.clock.now()),
        }]),
        "the key by what its payload names and its hash; nothing else"
    );
    let customer = f.customers.find_by_email("erika.listed@example.org").await.unwrap().unwrap();
    let lower = text.to_lowercase();
    for buyer in ["erika", "mustermann", "example.org", "berlin", "hauptstr", "1234567", "4242", customer.as_str()] {
        assert!(!lower.contains(&buyer.to_lowercase()), "{buyer} in {text}");
    }
    assert!(!text.contains(&key), "the key itself is not published");
    // Another vendor's list never names it.
    let (other, other_text) = revocations(&f, 1).await;
    assert_eq!(other["vendor"], f.sellers[1].slug);
    assert!(listed_orders(&other).is_empty() && !other_text.contains(&placed.id.to_string()));
    // Unknown, malformed and suspended vendors have no list.
    for slug in ["no-such-vendor", "../etc", ""] {
        assert!(matches!(f.checkout.fulfilment().revocation_list(slug).await, Err(AppError::NotFound)), "{slug}");
    }
    sqlx::query("UPDATE vendors SET status = 'suspended' WHERE id = $1")
        .bind(f.sellers[0].id.to_string())
        .execute(&raw(&f.data_url).await)
        .await
        .unwrap();
    let suspended = f.checkout.fulfilment().revocation_list(&f.sellers[0].slug).await;
    assert!(matches!(suspended, Err(AppError::NotFound)), "{suspended:?}");
}

/// Re-encodes a key's payload after `change`, keeping its signature.
fn tampered(key: &str, change: impl FnOnce(&mut Value)) -> String {
    let (payload, signature) = key.split_once('.').unwrap();
    let mut json: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    change(&mut json);
    format!("{}.{signature}", URL_SAFE_NO_PAD.encode(json.to_string()))
}

async fn forged_malformed_and_unissued_keys_are_invalid(f: Fixture) {
    let placed = buy(&f, "forger@example.org", &[0]).await;
    let key = key_of(&f, &placed, 0);
    let payload: Value = serde_json::from_slice(&coffer_crypto::unverified_license_payload(&key).unwrap()).unwrap();
    let first_signer = f.checkout.fulfilment().license_signer(&f.sellers[0].id).await.unwrap();
    let second_signer = f.checkout.fulfilment().license_signer(&f.sellers[1].id).await.unwrap();
    let mut more_seats = payload.clone();
    more_seats["seats"] = serde_json::json!(500);
    let forged = [
        // The payload changed, the signature kept.
        tampered(&key, |p| p["seats"] = serde_json::json!(500)),
        tampered(&key, |p| p["product_id"] = serde_json::json!(f.sellers[1].product)),
        // Signed by another vendor's key.
        second_signer.sign(payload.to_string().as_bytes()),
        // Signed by its vendor, but not the key issued for that line.
        first_signer.sign(more_seats.to_string().as_bytes()),
        // A product nobody sells.
        tampered(&key, |p| p["product_id"] = serde_json::json!("prd_0193abcdef0123456789abcdef012345")),
    ];
    for (n, forged) in forged.iter().enumerate() {
        assert_eq!(check(&f, forged).await, invalid(), "forged key {n}");
    }
    // Signed by the product's vendor for an order Coffer keeps no record
    // of (a customer erased before records were kept): the signature alone
    // speaks, as it does offline.
    let unrecorded = serde_json::json!({"order_id": "ord_0193abcdef0123456789abcdef012345",
        "product_id": f.sellers[0].product, "licensee": "lic_000000000000000000000000", "seats": 1,
        "issued_at": "2026-01-01T00:00:00Z"});
    let unrecorded = first_signer.sign(unrecorded.to_string().as_bytes());
    assert_eq!(check(&f, &unrecorded).await, active(&f.sellers[0].product));
    assert_eq!(check(&f, &tampered(&unrecorded, |p| p["seats"] = serde_json::json!(2))).await, invalid());
    let (payload_part, signature_part) = key.split_once('.').unwrap();
    let long = "a".repeat(coffer_app::checkout::MAX_LICENSE_KEY_LEN + 1);
    for malformed in [
        "",
        "not a key",
        ".",
        payload_part,
        &format!("{payload_part}."),
        &format!(".{signature_part}"),
        &format!("{payload_part}.{signature_part}x"),
        &format!("{payload_part}.{}", &signature_part[..40]),
        &format!("{}.{signature_part}", URL_SAFE_NO_PAD.encode(b"not json")),
        &format!("{}.{signature_part}", URL_SAFE_NO_PAD.encode(br#"{"order_id": 1, "product_id": []}"#)),
        &format!("{key}.{signature_part}"),
        &long,
    ] {
        assert_eq!(check(&f, malformed).await, invalid(), "{malformed:?}");
    }
    assert_eq!(check(&f, &key).await, active(&f.sellers[0].product), "the real key all along");
}

async fn a_revocation_outlives_the_customers_erasure(f: Fixture) {
    let cli = RequestContext::cli("test");
    // Refunded, then erased.
    let before = buy(&f, "refunded.first@example.org", &[0]).await;
    f.checkout.staff().staff_action(&before.id, StaffAction::Refund, &staff(), "asked").await.unwrap();
    let customer = f.customers.find_by_email("refunded.first@example.org").await.unwrap().unwrap();
    f.customers.erase(&customer, &cli).await.unwrap();
    assert_eq!(check(&f, &key_of(&f, &before, 0)).await, revoked(&f.sellers[0].product));
    // Erased, then refunded.
    let after = buy(&f, "erased.first@example.org", &[0]).await;
    let customer = f.customers.find_by_email("erased.first@example.org").await.unwrap().unwrap();
    f.customers.erase(&customer, &cli).await.unwrap();
    assert_eq!(check(&f, &key_of(&f, &after, 0)).await, active(&f.sellers[0].product), "erasure revokes nothing");
    f.checkout.staff().staff_action(&after.id, StaffAction::Refund, &staff(), "asked").await.unwrap();
    assert_eq!(check(&f, &key_of(&f, &after, 0)).await, revoked(&f.sellers[0].product));
    let listed = listed_orders(&revocations(&f, 0).await.0);
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&before.id.to_string()) && listed.contains(&after.id.to_string()));
    // The sealed keys went with the customers; their rows stayed.
    let (sealed, rows): (i64, i64) = sqlx::query_as("SELECT COUNT(license_key), COUNT(*) FROM license_keys")
        .fetch_one(&raw(&f.data_url).await)
        .await
        .unwrap();
    assert_eq!((sealed, rows), (0, 2));
}

async fn keys_issued_before_hashes_are_checked_by_their_signed_order_line(f: Fixture) {
    let placed = buy(&f, "old.key@example.org", &[0]).await;
    let key = key_of(&f, &placed, 0);
    // As a key issued before migration 0023 is stored.
    sqlx::query("UPDATE license_keys SET key_hash = NULL, licensee = NULL")
        .execute(&raw(&f.data_url).await)
        .await
        .unwrap();
    assert_eq!(check(&f, &key).await, active(&f.sellers[0].product));
    assert_eq!(check(&f, &tampered(&key, |p| p["seats"] = serde_json::json!(9))).await, invalid());
    f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(), "asked").await.unwrap();
    assert_eq!(check(&f, &key).await, revoked(&f.sellers[0].product));
    let payload: Value = serde_json::from_slice(&coffer_crypto::unverified_license_payload(&key).unwrap()).unwrap();
    let (list, _) = revocations(&f, 0).await;
    assert_eq!(list["revoked"][0]["licensee"], payload["licensee"], "derived as when it was issued");
    assert_eq!(list["revoked"][0]["key_sha256"], Value::Null, "no hash was kept");
}

async fn only_staff_who_may_refund_revoke_a_key(f: Fixture) {
    let placed = buy(&f, "kept@example.org", &[0, 1]).await;
    // A vendor's key (even the order's own vendor's), a reviewer, a
    // customer: none may refund, so none revokes.
    let refusers = [
        RequestContext::new(Principal::VendorKey(f.sellers[0].id.to_string())),
        RequestContext::new(Principal::VendorKey(f.sellers[1].id.to_string())),
        RequestContext::new(Principal::Staff { id: "stf_2".into(), role: StaffRole::Reviewer }),
        RequestContext::new(Principal::Customer("cus_1".into())),
    ];
    for ctx in &refusers {
        let line = f.checkout.staff().refund_line(&placed.id, 1, ctx, "x").await;
        assert!(matches!(line, Err(AppError::Forbidden(Permission::RefundOrder))), "{line:?}");
        let whole = f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, ctx, "x").await;
        assert!(matches!(whole, Err(AppError::Forbidden(Permission::RefundOrder))), "{whole:?}");
    }
    assert_eq!(check(&f, &key_of(&f, &placed, 0)).await, active(&f.sellers[0].product));
    assert_eq!(check(&f, &key_of(&f, &placed, 1)).await, active(&f.sellers[1].product));
    assert!(listed_orders(&revocations(&f, 0).await.0).is_empty());
}
