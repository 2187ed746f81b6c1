//! The checkout's money moves and its retention job, through the services
//! on SQLite and PostgreSQL, with a clock the tests move.
//!
//! Money: two staff members refunding at once give back once; money goes
//! back through a job committed with the move, so a move not recorded gives
//! nothing back, a refund the gateway refuses is retried until it goes
//! through, and a job run again after a crash gives back once (the gateway's
//! idempotency key); a card the gateway approved for an order that could
//! not be recorded is voided (findings 7 and 8 of the security review).
//! Retention: every category of the data
//! inventory goes on time and not before (findings 10 and 11).
//!
//! The gateway here is the built-in simulated one wrapped to count its
//! calls and to be slow, so concurrent moves really overlap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_app::checkout::{
    AgeInput, CardInput, CardPayment, Channel, CheckoutDeps, CheckoutService, CheckoutSettings, GatewayFuture,
    GiveBackFuture, OrderRequest, PaymentGateway, SimulatedGateway, StaffAction,
};
use coffer_app::privacy::{CustomerService, FileKeyProvider, Vault};
use coffer_app::request::RequestContext;
use coffer_domain::{
    Clock, CustomerDetails, MailingAddress, ManualClock, OrderStatus, PaymentMethod, Principal, StaffRole,
};
use coffer_store::prelude::*;
use coffer_store::{Db, DbOptions, KeyStore};
use coffer_testkit::{TestBackend, TestDatabase};
use secrecy::SecretString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The simulated gateway, counting calls; it can refuse refunds. Like a
/// real processor it gives back once per idempotency key.
#[derive(Default)]
struct WatchedGateway {
    authorized: AtomicUsize,
    /// Give-back calls, repeated ones included.
    give_back_calls: AtomicUsize,
    /// Give-backs made (once per idempotency key).
    given_back: AtomicUsize,
    keys_seen: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Minor units given back in all.
    given_back_minor: std::sync::atomic::AtomicI64,
    refuse_refunds: AtomicBool,
}

impl PaymentGateway for WatchedGateway {
    fn authorize<'a>(&'a self, payment: CardPayment<'a>) -> GatewayFuture<'a> {
        Box::pin(async move {
            self.authorized.fetch_add(1, Ordering::SeqCst);
            SimulatedGateway.authorize(payment).await
        })
    }

    fn give_back<'a>(
        &'a self,
        token: &'a str,
        amount_minor: i64,
        currency: &'a str,
        idempotency_key: &'a str,
    ) -> GiveBackFuture<'a> {
        Box::pin(async move {
            self.give_back_calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            if self.refuse_refunds.load(Ordering::SeqCst) {
                return Err(coffer_app::AppError::Gateway("the processor is down".into()));
            }
            if self.keys_seen.lock().unwrap().insert(idempotency_key.to_owned()) {
                self.given_back.fetch_add(1, Ordering::SeqCst);
                self.given_back_minor.fetch_add(amount_minor, Ordering::SeqCst);
            }
            SimulatedGateway.give_back(token, amount_minor, currency, idempotency_key).await
        })
    }
}

struct Fixture {
    checkout: CheckoutService,
    customers: CustomerService,
    accounts: coffer_app::accounts::AccountService,
    outbox: coffer_app::mail::Outbox,
    clock: Arc<ManualClock>,
    mail_dir: std::path::PathBuf,
    gateway: Arc<WatchedGateway>,
    db: Db,
    product: String,
    data_url: String,
    keys_url: String,
    _data: TestDatabase,
    _keys: TestDatabase,
}

async fn fixture(backend: TestBackend) -> Fixture {
    let data = TestDatabase::new(backend).await;
    let key_db = TestDatabase::new(backend).await;
    let key_store_url = key_db.key_store_url();
    let db = Db::open(&data.url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let keys = KeyStore::open(&key_store_url, &DbOptions::default()).await.unwrap();
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
    let gateway = Arc::new(WatchedGateway::default());
    let checkout = CheckoutService::new(
        CheckoutDeps {
            db: db.clone(),
            catalog: coffer_app::CatalogService::new(db.clone(), clock.clone(), 0),
            vault: vault.clone(),
            customers: customers.clone(),
            outbox: outbox.clone(),
            gateway: gateway.clone(),
            files,
            clock: clock.clone(),
        },
        CheckoutSettings {
            fraud: coffer_app::config::FraudConfig::default().settings(),
            seller: coffer_app::checkout::Seller {
                name: "Test Operator".into(),
                postal_address: "Example Street 1, 10115 Berlin, Germany".into(),
                vat_number: Some("DE000000000".into()),
            },
            taxes: coffer_domain::TaxTable::standard(),
            bank: Some(coffer_domain::BankAccount::demo()),
            transfer_expiry_ms: 14 * 24 * 60 * 60 * 1000,
            policy_version: "test-policy".into(),
            base_url: "http://127.0.0.1".into(),
        },
    )
    .unwrap();
    let (product,): (String,) = sqlx::query_as("SELECT id FROM products WHERE delivery = 'license_key' LIMIT 1")
        .fetch_one(&raw(&data.url).await)
        .await
        .unwrap();
    let accounts = coffer_app::accounts::AccountService::new(
        db.clone(),
        vault.clone(),
        customers.clone(),
        outbox.clone(),
        coffer_app::accounts::PasswordPool::new(1),
        clock,
        "http://127.0.0.1".into(),
    );
    Fixture {
        checkout,
        customers,
        accounts,
        outbox,
        clock: manual,
        mail_dir: data.dir.path().join("mail"),
        gateway,
        db,
        product,
        data_url: data.url.clone(),
        keys_url: key_store_url.clone(),
        _data: data,
        _keys: key_db,
    }
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

coffer_testkit::on_both_backends_with!(fixture;
    two_refunds_at_once_reach_the_gateway_once,
    a_refund_the_gateway_refuses_is_retried_until_it_goes_through,
    a_move_that_is_not_recorded_gives_nothing_back,
    an_approved_card_is_voided_when_its_order_is_not_recorded,
    an_erased_customers_order_is_refunded_through_the_gateway,
    every_retention_category_goes_on_time_and_not_before,
    a_whole_refund_after_a_line_refund_gives_back_only_the_rest,
    a_give_back_run_again_after_a_crash_gives_back_once,
    services_refuse_a_principal_without_the_permission,
    an_expired_hold_whose_payment_token_is_gone_is_cancelled_all_the_same,
    an_unpaid_transfer_is_cancelled_after_its_days_and_the_buyer_told,
    a_checkout_draft_is_sealed_opens_only_with_its_token_and_goes_after_a_day,
    each_invoice_is_emailed_once_as_pdf_and_an_erased_buyer_gets_none,
    refunds_get_gap_free_credit_notes_that_refer_to_their_invoice,
);

/// An administrator: every staff move is theirs to make.
fn staff(n: u8) -> RequestContext {
    RequestContext::new(Principal::Staff { id: format!("stf_{n}"), role: StaffRole::Admin })
}

async fn two_refunds_at_once_reach_the_gateway_once(f: Fixture) {
    let (first, second) = (staff(1), staff(2));
    let placed =
        f.checkout.placement().place(request(&f, "twice@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    let (one, two) = tokio::join!(
        f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &first, "asked"),
        f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &second, "asked"),
    );
    assert_eq!([one.is_ok(), two.is_ok()].iter().filter(|ok| **ok).count(), 1, "{one:?} {two:?}");
    assert_eq!(run_jobs(&f).await, 1);
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1, "the money went back once");
    // A line refund racing a whole refund: the same.
    let placed =
        f.checkout.placement().place(request(&f, "race@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    let (whole, line) = tokio::join!(
        f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &first, "asked"),
        f.checkout.staff().refund_line(&placed.id, 1, &second, "asked"),
    );
    assert_eq!([whole.is_ok(), line.is_ok()].iter().filter(|ok| **ok).count(), 1, "{whole:?} {line:?}");
    run_jobs(&f).await;
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 2);
    // After the race, a second refund is refused by the order's status.
    let again = f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(1), "again").await;
    assert!(again.is_err());
    assert_eq!(run_jobs(&f).await, 0);
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 2);
}

/// Runs the due give-back jobs, as the server's `payments` loop does.
async fn run_jobs(f: &Fixture) -> usize {
    f.checkout.staff().run_give_backs(&coffer_app::supervisor::CancellationToken::new()).await.unwrap()
}

async fn job_of(f: &Fixture) -> (String, String, i64, Option<String>) {
    let (id, status, attempts, error): (String, String, i64, Option<String>) = sqlx::query_as(
        "SELECT id, status, attempts, last_error FROM jobs WHERE kind = 'give_back' ORDER BY created_at DESC, id LIMIT 1",
    )
    .fetch_one(&raw(&f.data_url).await)
    .await
    .unwrap();
    (id, status, attempts, error)
}

async fn a_refund_the_gateway_refuses_is_retried_until_it_goes_through(f: Fixture) {
    let placed =
        f.checkout.placement().place(request(&f, "down@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    f.gateway.refuse_refunds.store(true, Ordering::SeqCst);
    let refunded = f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(1), "asked").await.unwrap();
    assert_eq!(refunded, OrderStatus::Refunded, "the refund is recorded; the money follows");
    assert_eq!(run_jobs(&f).await, 0);
    let (_, status, attempts, error) = job_of(&f).await;
    assert_eq!((status.as_str(), attempts, error.as_deref()), ("pending", 1, Some("gateway_refused")));
    // Not due again before its backoff (5 s).
    f.clock.advance(4_000);
    assert_eq!(run_jobs(&f).await, 0);
    assert_eq!(f.gateway.give_back_calls.load(Ordering::SeqCst), 1, "no call before the backoff");
    f.gateway.refuse_refunds.store(false, Ordering::SeqCst);
    f.clock.advance(2_000);
    assert_eq!(run_jobs(&f).await, 1);
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1);
    assert_eq!(f.gateway.given_back_minor.load(Ordering::SeqCst), placed.total);
    assert_eq!(job_of(&f).await.1, "done");
    assert_eq!(run_jobs(&f).await, 0, "done once");
}

async fn a_move_that_is_not_recorded_gives_nothing_back(f: Fixture) {
    let placed = f
        .checkout
        .placement()
        .place(request(&f, "broken@example.org", "4242424242424242"), Channel::Api)
        .await
        .unwrap();
    let data = raw(&f.data_url).await;
    sqlx::query("ALTER TABLE order_events RENAME TO order_events_away").execute(&data).await.unwrap();
    let refused = f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(1), "asked").await;
    assert!(refused.is_err());
    sqlx::query("ALTER TABLE order_events_away RENAME TO order_events").execute(&data).await.unwrap();
    assert_eq!(run_jobs(&f).await, 0);
    assert_eq!(f.gateway.give_back_calls.load(Ordering::SeqCst), 0, "no money moved for a move not made");
    assert_eq!(f.db.order(&placed.id).await.unwrap().unwrap().status, OrderStatus::Fulfilled);
    // The claim was freed: the move can be made now.
    let done = f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(1), "asked").await.unwrap();
    assert_eq!(done, OrderStatus::Refunded);
    assert_eq!(run_jobs(&f).await, 1);
}

async fn an_approved_card_is_voided_when_its_order_is_not_recorded(f: Fixture) {
    // The order's write fails after the gateway approved (here: a table it
    // writes is gone, as a broken database would be).
    let data = raw(&f.data_url).await;
    sqlx::query("ALTER TABLE order_events RENAME TO order_events_away").execute(&data).await.unwrap();
    let placed = f.checkout.placement().place(request(&f, "late@example.org", "4242424242424242"), Channel::Api).await;
    assert!(placed.is_err(), "the order was not recorded");
    assert_eq!(f.gateway.authorized.load(Ordering::SeqCst), 1);
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1, "the approved payment was voided");
    sqlx::query("ALTER TABLE order_events_away RENAME TO order_events").execute(&data).await.unwrap();
    f.checkout.placement().place(request(&f, "late@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1, "a recorded order keeps its payment");
}

async fn an_erased_customers_order_is_refunded_through_the_gateway(f: Fixture) {
    let placed =
        f.checkout.placement().place(request(&f, "left@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    let customer = f.customers.find_by_email("left@example.org").await.unwrap().unwrap();
    f.customers.erase(&customer, &RequestContext::cli("test")).await.unwrap();
    let done = f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(1), "asked").await.unwrap();
    assert_eq!(done, OrderStatus::Refunded);
    assert_eq!(run_jobs(&f).await, 1);
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1, "the token outlived the erasure");
    let view = f.checkout.staff().staff_view(&placed.id, &staff(1)).await.unwrap();
    assert!(view.erased && view.name.is_empty() && view.email.is_empty());
}

const DAY: i64 = 24 * 60 * 60 * 1000;
const MINUTE: i64 = 60 * 1000;
const HOUR: i64 = 60 * MINUTE;
/// A PNG's first bytes: enough for the upload's type check.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n0000000000000000";

/// Counts of what retention looks after, read straight from the database.
async fn count(f: &Fixture, sql: &str) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&raw(&f.data_url).await).await.unwrap();
    n
}

fn mail_files(f: &Fixture) -> usize {
    std::fs::read_dir(&f.mail_dir).map(|d| d.count()).unwrap_or(0)
}

/// Moves the clock to `at` after the start and runs the job.
async fn run_at(f: &Fixture, start: i64, at: i64) -> coffer_app::retention::RetentionReport {
    let now = f.clock.now().0;
    f.clock.advance(start + at - now);
    f.checkout.run_retention().await.unwrap()
}

async fn held_with_document(f: &Fixture, email: &str) -> coffer_domain::OrderId {
    let held = f.checkout.placement().place(request(f, email, "4000000000009235"), Channel::Api).await.unwrap();
    assert_eq!(held.status, OrderStatus::OnHold);
    let link = f.checkout.identity().identity_link(&held.id).await.unwrap();
    let token = link.rsplit('/').next().unwrap();
    f.checkout.identity().upload_identity(token, PNG).await.unwrap();
    held.id
}

async fn every_retention_category_goes_on_time_and_not_before(f: Fixture) {
    let start = f.clock.now().0;
    // An order with an Idempotency-Key, paid by a card the fraud screen
    // counts; its buyer gets a password, a session (ended) and a link.
    let paid = f
        .checkout
        .placement()
        .place_once("key-1", b"body", request(&f, "paid@example.org", "5555555555554444"), Channel::Api)
        .await
        .unwrap();
    let buyer = f.customers.find_by_email("paid@example.org").await.unwrap().unwrap();
    f.accounts.set_demo_password(&buyer, SecretString::from("a long enough password")).await.unwrap();
    let session = f.accounts.sign_in("paid@example.org", SecretString::from("a long enough password")).await;
    let session = session.unwrap().unwrap().session().unwrap();
    f.accounts.sign_out(secrecy::ExposeSecret::expose_secret(&session.token)).await.unwrap();
    // Held orders with proof of identity: one a reviewer rejects now, one
    // nobody decides, and later one whose void the gateway refuses.
    let rejected = held_with_document(&f, "rejected@example.org").await;
    f.checkout.staff().staff_action(&rejected, StaffAction::Reject, &staff(1), "not confirmed").await.unwrap();
    let undecided = held_with_document(&f, "undecided@example.org").await;
    f.outbox.deliver_due().await.unwrap();
    let files_at_start = mail_files(&f);
    assert!(files_at_start >= 4, "{files_at_start}");

    let documents = "SELECT COUNT(*) FROM id_documents";
    let attempts = "SELECT COUNT(*) FROM fraud_attempts";
    let keys = "SELECT COUNT(*) FROM idempotency_keys";
    let ended = "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL";
    let links = "SELECT COUNT(*) FROM sign_in_links";
    let messages = "SELECT COUNT(*) FROM outbox_emails";
    let tokens = "SELECT COUNT(*) FROM orders WHERE payment_token IS NOT NULL";
    let (messages_at_start, tokens_at_start) = (count(&f, messages).await, count(&f, tokens).await);
    assert!(count(&f, attempts).await > 0 && tokens_at_start == 3);
    assert_eq!((count(&f, documents).await, count(&f, keys).await, count(&f, ended).await), (2, 1, 1));

    // Spare customer keys: an hour after they were made, the ones no
    // customer took go (nothing is sealed under them); the buyers' stay.
    let spares = "SELECT COUNT(*) FROM data_keys WHERE spare_until IS NOT NULL";
    let spare_count = |f: &Fixture| {
        let url = f.keys_url.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(spares)).fetch_one(&raw(&url).await).await.unwrap();
            n
        }
    };
    let made = coffer_app::privacy::vault::SPARE_BATCH as i64;
    assert_eq!(spare_count(&f).await, made, "one batch made for the three buyers");
    assert_eq!(run_at(&f, start, HOUR - MINUTE).await, coffer_app::retention::RetentionReport::default());
    let report = run_at(&f, start, HOUR + MINUTE).await;
    assert_eq!(report.unused_spare_keys, made as u64 - 3, "{report:?}");
    assert_eq!(spare_count(&f).await, 0, "the three used ones are ordinary keys now");
    for email in ["paid@example.org", "rejected@example.org", "undecided@example.org"] {
        let id = f.customers.find_by_email(email).await.unwrap().unwrap();
        f.customers.get(&id, &coffer_app::privacy::Reader::TheCustomer).await.expect("a buyer's key stays");
    }
    // Just under a day: nothing else goes.
    assert_eq!(run_at(&f, start, DAY - MINUTE).await, coffer_app::retention::RetentionReport::default());
    // Just over a day: velocity records, the idempotency answer, the ended session.
    let report = run_at(&f, start, DAY + MINUTE).await;
    assert!(report.fraud_attempts > 0 && report.idempotency_keys == 1 && report.sessions >= 1, "{report:?}");
    assert_eq!((count(&f, attempts).await, count(&f, keys).await, count(&f, ended).await), (0, 0, 0));
    assert_eq!(count(&f, documents).await, 2);
    // Links: the invitations live 7 days, and go a day after that.
    let invitations = count(&f, links).await;
    assert!(invitations >= 1);
    assert_eq!(run_at(&f, start, 8 * DAY - MINUTE).await.sign_in_links, 0);
    assert_eq!(run_at(&f, start, 8 * DAY + MINUTE).await.sign_in_links, u64::try_from(invitations).unwrap());

    // Fourteen days on hold without a decision: cancelled, voided, told;
    // its document has no use left and goes in the same run.
    assert_eq!(run_jobs(&f).await, 1, "the rejected order's void");
    let voided_before = f.gateway.given_back.load(Ordering::SeqCst);
    assert_eq!(run_at(&f, start, 14 * DAY - MINUTE).await.expired_holds, 0);
    let report = run_at(&f, start, 14 * DAY + MINUTE).await;
    assert_eq!((report.expired_holds, report.identity_documents), (1, 1), "{report:?}");
    assert_eq!(f.db.order(&undecided).await.unwrap().unwrap().status, OrderStatus::Cancelled);
    run_jobs(&f).await;
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), voided_before + 1, "the payment was voided");
    // A void the gateway refuses does not keep the hold: the order is
    // cancelled and its document goes all the same; the void is retried
    // until the gateway takes it.
    let stuck = held_with_document(&f, "stuck@example.org").await;
    f.gateway.refuse_refunds.store(true, Ordering::SeqCst);
    let uploaded = f.clock.now().0 - start;
    let report = run_at(&f, start, uploaded + 14 * DAY + MINUTE).await;
    assert_eq!((report.expired_holds, report.identity_documents), (1, 1), "the stuck order's document: {report:?}");
    assert_eq!(f.db.order(&stuck).await.unwrap().unwrap().status, OrderStatus::Cancelled);
    assert_eq!(run_jobs(&f).await, 0, "the gateway refuses the void");
    assert_eq!(count(&f, documents).await, 1, "the rejected order's document is not 30 days old yet");
    f.gateway.refuse_refunds.store(false, Ordering::SeqCst);
    let report = run_at(&f, start, 30 * DAY + MINUTE).await;
    assert_eq!(report.identity_documents, 1, "30 days after the rejection: {report:?}");
    assert_eq!(count(&f, documents).await, 0);
    assert_eq!(run_jobs(&f).await, 1, "the void went through once the gateway took it");
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), voided_before + 2);

    // Messages and their files: 90 days.
    f.outbox.deliver_due().await.unwrap();
    let report = run_at(&f, start, 90 * DAY - MINUTE).await;
    assert_eq!((report.messages, report.mail_files), (0, 0), "{report:?}");
    assert!(count(&f, messages).await >= messages_at_start);
    let report = run_at(&f, start, 90 * DAY + MINUTE).await;
    assert!(report.messages >= u64::try_from(messages_at_start).unwrap(), "{report:?}");
    assert!(report.mail_files >= u64::try_from(files_at_start).unwrap(), "{report:?}");
    // Gateway tokens: 540 days (chargebacks).
    assert_eq!(run_at(&f, start, 540 * DAY - MINUTE).await.payment_tokens, 0);
    assert_eq!(count(&f, tokens).await, 4);
    assert_eq!(run_at(&f, start, 540 * DAY + MINUTE).await.payment_tokens, 3, "the first three orders' tokens");
    assert_eq!(f.db.order(&paid.id).await.unwrap().unwrap().payment_token, None);
}

async fn a_whole_refund_after_a_line_refund_gives_back_only_the_rest(f: Fixture) {
    let (second,): (String,) =
        sqlx::query_as("SELECT id FROM products WHERE id <> $1 AND delivery = 'license_key' ORDER BY id LIMIT 1")
            .bind(f.product.clone())
            .fetch_one(&raw(&f.data_url).await)
            .await
            .unwrap();
    let mut two_lines = request(&f, "two@example.org", "4242424242424242");
    two_lines.items.push((second, 1));
    let placed = f.checkout.placement().place(two_lines, Channel::Api).await.unwrap();
    f.checkout.staff().refund_line(&placed.id, 1, &staff(1), "first line").await.unwrap();
    f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(1), "the rest").await.unwrap();
    assert_eq!(run_jobs(&f).await, 2);
    assert_eq!(f.gateway.given_back_minor.load(Ordering::SeqCst), placed.total, "the total back once, not more");
}

/// A worker died after the gateway gave the money back and before it
/// recorded so: the job is claimed again when its lease ends and runs again
/// with the same idempotency key, so the processor gives back once.
async fn a_give_back_run_again_after_a_crash_gives_back_once(f: Fixture) {
    let placed =
        f.checkout.placement().place(request(&f, "crash@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    f.checkout.staff().staff_action(&placed.id, StaffAction::Refund, &staff(1), "asked").await.unwrap();
    // The worker that dies: it claims the job and reaches the gateway.
    let claimed = f.db.claim_jobs(coffer_app::checkout::GIVE_BACK_JOB, f.clock.now(), 60_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let token = format!("sim_{}", "0".repeat(24));
    f.gateway.give_back(&token, placed.total, "USD", &claimed[0].id).await.unwrap();
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1);
    // Its lease holds the job meanwhile; after it, the job runs again.
    assert_eq!(run_jobs(&f).await, 0, "a live claim is left alone");
    f.clock.advance(61_000);
    assert_eq!(run_jobs(&f).await, 1);
    assert_eq!(f.gateway.give_back_calls.load(Ordering::SeqCst), 2, "the gateway was called again");
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 1, "and gave back once");
    assert_eq!(job_of(&f).await.1, "done");
}

/// Issue 13: the permission is checked inside the service, so a caller
/// that skips the web's role check (the CLI, a future route) is refused
/// all the same, and nothing moves.
async fn services_refuse_a_principal_without_the_permission(f: Fixture) {
    use coffer_app::AppError;
    use coffer_domain::Permission;
    let held =
        f.checkout.placement().place(request(&f, "held@example.org", "4000000000009235"), Channel::Api).await.unwrap();
    let paid =
        f.checkout.placement().place(request(&f, "paid@example.org", "4242424242424242"), Channel::Api).await.unwrap();
    let as_role = |role| RequestContext::new(Principal::Staff { id: "stf_9".into(), role });
    let customer = RequestContext::new(Principal::Customer("cus_1".into()));
    let refused = |r: Result<OrderStatus, AppError>, permission: Permission| {
        assert!(matches!(r, Err(AppError::Forbidden(p)) if p == permission), "{r:?}");
    };
    refused(
        f.checkout.staff().staff_action(&held.id, StaffAction::Approve, &as_role(StaffRole::Support), "").await,
        Permission::ApproveOrder,
    );
    refused(
        f.checkout.staff().staff_action(&paid.id, StaffAction::Refund, &as_role(StaffRole::Reviewer), "x").await,
        Permission::RefundOrder,
    );
    refused(f.checkout.staff().refund_line(&paid.id, 1, &as_role(StaffRole::Dpo), "x").await, Permission::RefundOrder);
    refused(
        f.checkout.staff().staff_action(&paid.id, StaffAction::Refund, &customer, "x").await,
        Permission::RefundOrder,
    );
    refused(
        f.checkout.staff().staff_action(&held.id, StaffAction::ExpireHold, &staff(1), "x").await,
        Permission::ExpireOrders,
    );
    assert!(matches!(
        f.checkout.staff().staff_view(&paid.id, &as_role(StaffRole::Dpo)).await,
        Err(AppError::Forbidden(Permission::ReadOrderForStaff))
    ));
    assert!(matches!(
        f.checkout.identity().identity_document(&held.id, &as_role(StaffRole::Support)).await,
        Err(AppError::Forbidden(Permission::ViewIdentityDocument))
    ));
    assert!(matches!(
        f.checkout.staff().queue(OrderStatus::OnHold, &as_role(StaffRole::Support)).await,
        Err(AppError::Forbidden(Permission::ReadReviewQueue))
    ));
    // Nothing moved, no money went back, no read was audited.
    assert_eq!(f.db.order(&held.id).await.unwrap().unwrap().status, OrderStatus::OnHold);
    assert_eq!(f.db.order(&paid.id).await.unwrap().unwrap().status, OrderStatus::Fulfilled);
    assert_eq!(f.gateway.given_back.load(Ordering::SeqCst), 0);
    // The staff view offers each principal only the moves it may make now.
    let offered = |view: coffer_app::checkout::StaffOrderView| (view.allowed, view.may_refund_lines);
    let reviewer_on_held =
        offered(f.checkout.staff().staff_view(&held.id, &as_role(StaffRole::Reviewer)).await.unwrap());
    assert_eq!(reviewer_on_held, (vec![StaffAction::Approve, StaffAction::Reject], false));
    let support_on_held = offered(f.checkout.staff().staff_view(&held.id, &as_role(StaffRole::Support)).await.unwrap());
    assert_eq!(support_on_held, (vec![], false));
    let support_on_paid = offered(f.checkout.staff().staff_view(&paid.id, &as_role(StaffRole::Support)).await.unwrap());
    assert_eq!(support_on_paid, (vec![StaffAction::Refund], true));
    let reviewer_on_paid =
        offered(f.checkout.staff().staff_view(&paid.id, &as_role(StaffRole::Reviewer)).await.unwrap());
    assert_eq!(reviewer_on_paid, (vec![], false));
    // The roles that hold the permissions may.
    f.checkout.staff().staff_action(&held.id, StaffAction::Approve, &as_role(StaffRole::Reviewer), "").await.unwrap();
    f.checkout
        .staff()
        .staff_action(&paid.id, StaffAction::Refund, &as_role(StaffRole::Support), "asked")
        .await
        .unwrap();
}

/// A hold whose payment token went with its customer (orders from before
/// tokens were kept apart) still expires: the processor let the
/// authorisation lapse long before, so it is cancelled with nothing to void
/// and does not stay in the expiry query's way, retried every minute.
async fn an_expired_hold_whose_payment_token_is_gone_is_cancelled_all_the_same(f: Fixture) {
    let start = f.clock.now().0;
    let held = held_with_document(&f, "lapsed@example.org").await;
    let pool = raw(&f.data_url).await;
    sqlx::query("UPDATE orders SET payment_token = NULL, card = NULL WHERE id = $1")
        .bind(held.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let report = run_at(&f, start, 14 * DAY + MINUTE).await;
    assert_eq!(report.expired_holds, 1, "{report:?}");
    assert_eq!(f.db.order(&held).await.unwrap().unwrap().status, OrderStatus::Cancelled);
    assert_eq!(count(&f, "SELECT COUNT(*) FROM jobs WHERE kind = 'give_back'").await, 0, "nothing to void");
    // A refusal still stands for a move staff make by hand.
    let other = held_with_document(&f, "lapsed-too@example.org").await;
    sqlx::query("UPDATE orders SET payment_token = NULL, card = NULL WHERE id = $1")
        .bind(other.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let refused = f.checkout.staff().staff_action(&other, StaffAction::Reject, &staff(2), "fake id").await;
    assert!(matches!(refused, Err(coffer_app::AppError::Order(e)) if e.code == "payment_token_gone"));
}

/// The mail files delivered so far that contain `text`.
fn mail_files_containing(f: &Fixture, text: &str) -> Vec<String> {
    std::fs::read_dir(&f.mail_dir)
        .map(|dir| {
            dir.filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
                .filter(|mail| mail.contains(text))
                .collect()
        })
        .unwrap_or_default()
}

/// A bank transfer order says where to pay and by when; when the money
/// has not come in the configured days (14 here), the retention job
/// cancels it and tells the buyer, and not a minute before. One paid in
/// time is left alone.
async fn an_unpaid_transfer_is_cancelled_after_its_days_and_the_buyer_told(f: Fixture) {
    let transfer = |email: &str| {
        let mut r = request(&f, email, "");
        r.payment_method = PaymentMethod::BankTransfer;
        r.card = None;
        r
    };
    let start = f.clock.now().0;
    let unpaid = f.checkout.placement().place(transfer("late@example.org"), Channel::Api).await.unwrap();
    let paid = f.checkout.placement().place(transfer("on-time@example.org"), Channel::Api).await.unwrap();
    assert_eq!(unpaid.status, OrderStatus::Pending);
    assert_eq!(unpaid.bank_account, Some(coffer_domain::BankAccount::demo()), "where to pay");
    let due = coffer_domain::order::long_day_utc(coffer_domain::Millis(start + 14 * DAY));
    assert_eq!(unpaid.pay_by.as_deref(), Some(due.as_str()));
    f.outbox.deliver_due().await.unwrap();
    let confirmation = mail_files_containing(&f, unpaid.payment_reference.as_deref().unwrap());
    assert_eq!(confirmation.len(), 1);
    assert!(confirmation[0].contains("IBAN: DE89 3704 0044 0532 0130 00"), "{}", confirmation[0]);
    assert!(confirmation[0].contains(&format!("arrived by {due}")), "{}", confirmation[0]);
    f.checkout.staff().staff_action(&paid.id, StaffAction::TransferReceived, &staff(1), "").await.unwrap();

    assert_eq!(run_at(&f, start, 14 * DAY - MINUTE).await.expired_transfers, 0);
    assert_eq!(f.db.order(&unpaid.id).await.unwrap().unwrap().status, OrderStatus::Pending);
    let report = run_at(&f, start, 14 * DAY + MINUTE).await;
    assert_eq!(report.expired_transfers, 1, "{report:?}");
    assert_eq!(f.db.order(&unpaid.id).await.unwrap().unwrap().status, OrderStatus::Cancelled);
    assert_eq!(f.db.order(&paid.id).await.unwrap().unwrap().status, OrderStatus::Fulfilled, "paid in time");
    assert_eq!(run_at(&f, start, 15 * DAY).await.expired_transfers, 0, "once");
    f.outbox.deliver_due().await.unwrap();
    let told = mail_files_containing(&f, &format!("Your order {} is cancelled", unpaid.id));
    assert_eq!(told.len(), 1, "the buyer is told once");
    assert!(told[0].contains("had not arrived within 14 days") && told[0].contains("pay it back"), "{}", told[0]);
    assert!(!told[0].contains("voided"), "no card payment to void: {}", told[0]);
    // Only the job cancels transfers.
    let refused = f.checkout.staff().staff_action(&paid.id, StaffAction::ExpireTransfer, &staff(1), "x").await;
    assert!(matches!(refused, Err(coffer_app::AppError::Forbidden(_))), "{refused:?}");
}

/// What a buyer typed at checkout is kept sealed: no plaintext in the
/// database, another token opens nothing, forgetting it works, and
/// retention deletes it a day after its last change, not before.
async fn a_checkout_draft_is_sealed_opens_only_with_its_token_and_goes_after_a_day(f: Fixture) {
    let placement = f.checkout.placement();
    let (mine, other) = (placement.new_draft_token().unwrap(), placement.new_draft_token().unwrap());
    let draft = br#"{"name":"Erika Mustermann","email":"draft@example.org"}"#;
    placement.save_draft(&mine, draft).await.unwrap();
    assert_eq!(placement.load_draft(&mine).await.unwrap().as_deref().map(Vec::as_slice), Some(&draft[..]));
    assert!(placement.load_draft(&other).await.unwrap().is_none(), "another buyer's token opens nothing");
    assert!(placement.load_draft("").await.unwrap().is_none());
    let pool = sqlx::AnyPool::connect(&f.data_url).await.unwrap();
    let (sealed,): (Vec<u8>,) = sqlx::query_as("SELECT sealed FROM checkout_drafts").fetch_one(&pool).await.unwrap();
    let text = String::from_utf8_lossy(&sealed);
    assert!(!text.contains("Erika") && !text.contains("draft@example.org"), "sealed at rest");
    let start = f.clock.now().0;
    assert_eq!(run_at(&f, start, DAY - MINUTE).await.checkout_drafts, 0);
    assert!(placement.load_draft(&mine).await.unwrap().is_some(), "kept for the day");
    assert_eq!(run_at(&f, start, DAY + MINUTE).await.checkout_drafts, 1);
    assert!(placement.load_draft(&mine).await.unwrap().is_none(), "gone after it");
    placement.save_draft(&other, draft).await.unwrap();
    placement.forget_draft(&other).await.unwrap();
    assert!(placement.load_draft(&other).await.unwrap().is_none(), "forgotten when the order is placed");
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM checkout_drafts").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 0);
}

/// Every numbered invoice goes to its buyer once, with its PDF attached
/// and sealed like the message; run again, nothing more is sent; an erased
/// buyer's invoice is marked and sent to nobody.
async fn each_invoice_is_emailed_once_as_pdf_and_an_erased_buyer_gets_none(f: Fixture) {
    use coffer_store::InvoiceStore;
    let kept = f.checkout.placement().place(request(&f, "pdf@example.org", "4242424242424242"), Channel::Api);
    let kept = kept.await.unwrap();
    let gone = f.checkout.placement().place(request(&f, "gone.pdf@example.org", "4242424242424242"), Channel::Api);
    let gone = gone.await.unwrap();
    assert_eq!(f.db.number_invoices(f.clock.now(), 100).await.unwrap().len(), 2);
    let customer = f.customers.find_by_email("gone.pdf@example.org").await.unwrap().unwrap();
    f.customers.erase(&customer, &RequestContext::cli("test")).await.unwrap();
    assert_eq!(f.checkout.email_invoices().await.unwrap(), 1, "the erased buyer's is not sent");
    assert_eq!(f.checkout.email_invoices().await.unwrap(), 0, "once");
    assert!(f.db.invoices_to_email(10).await.unwrap().is_empty(), "both marked");
    let pool = sqlx::AnyPool::connect(&f.data_url).await.unwrap();
    let (name, sealed): (String, Vec<u8>) =
        sqlx::query_as("SELECT attachment_name, attachment FROM outbox_emails WHERE kind = 'invoice'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(name, "coffer-invoice-1.pdf");
    assert!(!sealed.starts_with(b"%PDF"), "sealed at rest");
    f.outbox.deliver_due().await.unwrap();
    let mail = mail_files_containing(&f, &format!("Your invoice 1 for order {}", kept.id));
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("application/pdf") && mail[0].contains("coffer-invoice-1.pdf"), "{}", mail[0]);
    assert!(mail_files_containing(&f, &gone.id.to_string()).iter().all(|m| !m.contains("Your invoice")));
}

/// Each refund gets a credit note in a gap-free series of its own, for
/// the net and tax given back, referring to the order's invoice; a refund
/// made before the invoice is numbered waits for it; each note is emailed
/// once with its PDF.
async fn refunds_get_gap_free_credit_notes_that_refer_to_their_invoice(f: Fixture) {
    use coffer_store::{CreditNoteStore, InvoiceStore};
    let now = || f.clock.now();
    let first = f.checkout.placement().place(request(&f, "credit@example.org", "4242424242424242"), Channel::Api);
    let first = first.await.unwrap();
    assert_eq!(f.db.number_invoices(now(), 100).await.unwrap().len(), 1);
    f.checkout.staff().refund_line(&first.id, 1, &staff(1), "broken download").await.unwrap();
    assert_eq!(f.db.number_credit_notes(now(), 100).await.unwrap(), [1]);
    let note = f.db.credit_note(1).await.unwrap().unwrap();
    let invoice = f.db.invoice_of(&first.id).await.unwrap().unwrap();
    assert_eq!((note.invoice_number, note.line_no), (invoice.number, Some(1)));
    assert_eq!((note.net, note.tax, note.total), (invoice.subtotal, invoice.tax, invoice.total), "all of it");
    // Refunded before its invoice is numbered: the note waits for it.
    let second = f.checkout.placement().place(request(&f, "credit2@example.org", "4242424242424242"), Channel::Api);
    let second = second.await.unwrap();
    f.checkout.staff().staff_action(&second.id, StaffAction::Refund, &staff(1), "asked").await.unwrap();
    assert!(f.db.number_credit_notes(now(), 100).await.unwrap().is_empty(), "no invoice to refer to yet");
    assert_eq!(f.db.number_invoices(now(), 100).await.unwrap().len(), 1);
    assert_eq!(f.db.number_credit_notes(now(), 100).await.unwrap(), [2], "the next number, no gap");
    let whole = f.db.credit_note(2).await.unwrap().unwrap();
    assert_eq!((whole.line_no, whole.total), (None, second.total));
    assert!(f.db.number_credit_notes(now(), 100).await.unwrap().is_empty(), "each refund once");
    // Emailed with their PDFs, once.
    assert_eq!(f.checkout.email_invoices().await.unwrap(), 4, "two invoices, two credit notes");
    assert_eq!(f.checkout.email_invoices().await.unwrap(), 0);
    f.outbox.deliver_due().await.unwrap();
    let mail = mail_files_containing(&f, &format!("Your credit note 1 for order {}", first.id));
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("coffer-credit-note-1.pdf"), "{}", mail[0]);
}
