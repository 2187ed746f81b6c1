//! Money moves against the gateway, through the checkout service on SQLite
//! and PostgreSQL: two staff members refunding at once reach the gateway
//! once; a refused refund changes nothing and frees the order; a card the
//! gateway approved for an order that could not be recorded is voided
//! (findings 7 and 8 of the security review).
//!
//! The gateway here is the built-in simulated one wrapped to count its
//! calls and to be slow, so concurrent moves really overlap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_app::SystemClock;
use coffer_app::checkout::{
    AgeInput, CardInput, CardPayment, Channel, CheckoutDeps, CheckoutService, CheckoutSettings, GatewayFuture,
    GiveBackFuture, OrderRequest, PaymentGateway, SimulatedGateway, StaffAction,
};
use coffer_app::privacy::{CustomerService, FileKeyProvider, Vault};
use coffer_domain::{Actor, Clock, CustomerDetails, MailingAddress, OrderStatus, PaymentMethod};
use coffer_store::{Db, DbOptions, KeyStore};
use coffer_testkit::{TestBackend, TestDatabase};
use secrecy::SecretString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The simulated gateway, counting calls; it can refuse refunds.
#[derive(Default)]
struct WatchedGateway {
    authorized: AtomicUsize,
    given_back: AtomicUsize,
    refuse_refunds: AtomicBool,
}

impl PaymentGateway for WatchedGateway {
    fn authorize<'a>(&'a self, payment: CardPayment<'a>) -> GatewayFuture<'a> {
        Box::pin(async move {
            self.authorized.fetch_add(1, Ordering::SeqCst);
            SimulatedGateway.authorize(payment).await
        })
    }

    fn give_back<'a>(&'a self, token: &'a str, amount_minor: i64, currency: &'a str) -> GiveBackFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if self.refuse_refunds.load(Ordering::SeqCst) {
                return Err(coffer_app::AppError::Refused("the processor is down".into()));
            }
            self.given_back.fetch_add(1, Ordering::SeqCst);
            SimulatedGateway.give_back(token, amount_minor, currency).await
        })
    }
}

struct Fixture {
    checkout: CheckoutService,
    customers: CustomerService,
    gateway: Arc<WatchedGateway>,
    db: Db,
    product: String,
    data_url: String,
    _data: TestDatabase,
    _keys: TestDatabase,
}

async fn fixture(backend: TestBackend) -> Fixture {
    let data = TestDatabase::new(backend).await;
    let key_db = TestDatabase::new(backend).await;
    let key_store_url = match backend {
        TestBackend::Sqlite => format!("sqlite://{}?mode=rwc", key_db.dir.path().join("keystore.db").display()),
        TestBackend::Postgres => key_db.url.clone(),
    };
    let db = Db::open(&data.url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let keys = KeyStore::open(&key_store_url, &DbOptions::default()).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let provider = FileKeyProvider::open(&data.dir.path().join("keys")).unwrap();
    let vault = Arc::new(Vault::open(Arc::new(provider), keys, clock.clone()).await.unwrap());
    let customers = CustomerService::new(db.clone(), vault.clone(), clock.clone());
    coffer_app::demo::seed(&db, clock.as_ref()).await.unwrap();
    let now = clock.now();
    db.write(move |tx| Box::pin(async move { coffer_store::publish_policy(tx, "test-policy", "<p>T</p>", now).await }))
        .await
        .unwrap();
    let outbox = coffer_app::mail::Outbox::new(
        &coffer_app::config::MailConfig::default(),
        data.dir.path(),
        db.clone(),
        vault.clone(),
        clock.clone(),
    )
    .unwrap();
    let gateway = Arc::new(WatchedGateway::default());
    let checkout = CheckoutService::new(
        CheckoutDeps {
            db: db.clone(),
            catalog: coffer_app::CatalogService::new(db.clone(), clock.clone(), 0),
            vault,
            customers: customers.clone(),
            outbox,
            gateway: gateway.clone(),
            files: Arc::new(coffer_app::files::LocalFileStore::new(data.dir.path().join("files")).unwrap()),
            clock,
        },
        CheckoutSettings {
            fraud: coffer_app::config::FraudConfig::default().settings(),
            operator_name: "Test Operator".into(),
            taxes: coffer_domain::TaxTable::new(coffer_app::config::OperatorConfig::default().tax_rates),
            policy_version: "test-policy".into(),
            base_url: "http://127.0.0.1".into(),
        },
    )
    .unwrap();
    let (product,): (String,) = sqlx::query_as("SELECT id FROM products WHERE delivery = 'license_key' LIMIT 1")
        .fetch_one(&raw(&data.url).await)
        .await
        .unwrap();
    Fixture { checkout, customers, gateway, db, product, data_url: data.url.clone(), _data: data, _keys: key_db }
}

async fn raw(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

fn request(f: &Fixture, email: &str, card: &str) -> OrderRequest {
    OrderRequest {
        currency: "USD".into(),
        items: vec![(f.product.clone(), 1)],
        customer: CustomerDetails {
            name: "Erika Mustermann".into(),
            email: email.into(),
            phone: None,
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
            number: SecretString::from(card.to_owned()),
            exp_month: 12,
            exp_year: 2030,
            cvc: SecretString::from("123"),
        }),
        consent: Some(("test-policy".into(), true)),
        age: Some(AgeInput { adult: true, guardian_name: None, guardian_consents: false }),
        client_ip: None,
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::fixture(coffer_testkit::TestBackend::Sqlite).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::fixture(coffer_testkit::TestBackend::Postgres).await).await;
            }
        }
    )*};
}

on_both_backends!(
    two_refunds_at_once_reach_the_gateway_once,
    a_refused_refund_changes_nothing_and_frees_the_order,
    an_approved_card_is_voided_when_its_order_is_not_recorded,
    an_erased_customers_order_is_refunded_through_the_gateway,
);

fn staff(n: u8) -> Actor {
    Actor::Staff(format!("stf_{n}"))
}

async fn two_refunds_at_once_reach_the_gateway_once(f: Fixture) {
    let (first, second) = (staff(1), staff(2));
    let placed = f.checkout.place(request(&f, "twice@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    let (one, two) = tokio::join!(
        f.checkout.staff_action(&placed.id, StaffAction::Refund, &first, "asked"),
        f.checkout.staff_action(&placed.id, StaffAction::Refund, &second, "asked"),
    );
    assert_eq!([one.is_ok(), two.is_ok()].iter().filter(|ok| **ok).count(), 1, "{one:?} {two:?}");
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1, "the money went back once");
    // A line refund racing a whole refund: the same.
    let placed = f.checkout.place(request(&f, "race@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    let (whole, line) = tokio::join!(
        f.checkout.staff_action(&placed.id, StaffAction::Refund, &first, "asked"),
        f.checkout.refund_line(&placed.id, 1, &second, "asked"),
    );
    assert_eq!([whole.is_ok(), line.is_ok()].iter().filter(|ok| **ok).count(), 1, "{whole:?} {line:?}");
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 2);
    // After the race, a second refund is refused by the order's status.
    let again = f.checkout.staff_action(&placed.id, StaffAction::Refund, &staff(1), "again").await;
    assert!(again.is_err());
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 2);
}

async fn a_refused_refund_changes_nothing_and_frees_the_order(f: Fixture) {
    let placed = f.checkout.place(request(&f, "down@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    f.gateway.refuse_refunds.store(true, Ordering::SeqCst);
    let refused = f.checkout.staff_action(&placed.id, StaffAction::Refund, &staff(1), "asked").await;
    assert!(refused.is_err());
    assert_eq!(f.db.order(&placed.id).await.unwrap().unwrap().status, OrderStatus::Fulfilled);
    f.gateway.refuse_refunds.store(false, Ordering::SeqCst);
    let done = f.checkout.staff_action(&placed.id, StaffAction::Refund, &staff(1), "asked").await.unwrap();
    assert_eq!(done, OrderStatus::Refunded, "the claim was freed when the gateway refused");
}

async fn an_approved_card_is_voided_when_its_order_is_not_recorded(f: Fixture) {
    // The order's write fails after the gateway approved (here: a table it
    // writes is gone, as a broken database would be).
    let data = raw(&f.data_url).await;
    sqlx::query("ALTER TABLE order_events RENAME TO order_events_away").execute(&data).await.unwrap();
    let placed = f.checkout.place(request(&f, "late@example.org", "4242424242424242"), Channel::Api).await;
    assert!(placed.is_err(), "the order was not recorded");
    assert_eq!(f.gateway.authorized.load(Ordering::SeqCst), 1);
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1, "the approved payment was voided");
    sqlx::query("ALTER TABLE order_events_away RENAME TO order_events").execute(&data).await.unwrap();
    f.checkout.place(request(&f, "late@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1, "a recorded order keeps its payment");
}

async fn an_erased_customers_order_is_refunded_through_the_gateway(f: Fixture) {
    let placed = f.checkout.place(request(&f, "left@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    let customer = f.customers.find_by_email("left@example.org").await.unwrap().unwrap();
    f.customers.erase(&customer, &Actor::System).await.unwrap();
    let done = f.checkout.staff_action(&placed.id, StaffAction::Refund, &staff(1), "asked").await.unwrap();
    assert_eq!(done, OrderStatus::Refunded);
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1, "the token outlived the erasure");
    let view = f.checkout.staff_view(&placed.id, &staff(1)).await.unwrap();
    assert!(view.erased && view.name.is_empty() && view.email.is_empty());
}
