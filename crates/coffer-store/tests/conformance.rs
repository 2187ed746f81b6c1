//! The storage conformance suite: every test runs against SQLite and
//! PostgreSQL (`<test>::sqlite`, `<test>::postgres`), each on a fresh
//! database of its own. A backend that passes it is correct.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_crypto::Sealed;
use coffer_domain::{Actor, AuditAction, AuditEntry, CustomerId, DataKeyId, OrderId, OrderStatus};
use coffer_domain::{
    Currency, Delivery, ManualClock, Millis, Money, NewProduct, NewVendor, Prices, ProductId, VendorId, VendorSlug,
};
use coffer_store::prelude::*;
use coffer_store::{
    Backend, CatalogReader, CatalogWriter, Db, DbOptions, NewEmail, NewOrder, OrderLine, ProductQuery,
    SealedOrderFields, StoreError,
};
use coffer_testkit::{TestBackend, TestDatabase};
use std::time::Duration;

struct Fixture {
    db: Db,
    _database: TestDatabase,
}

async fn fixture(backend: TestBackend) -> Fixture {
    let database = TestDatabase::new(backend).await;
    let db = Db::open(&database.url, &DbOptions::default()).await.expect("opening the test database");
    db.migrate().await.expect("migrating");
    Fixture { db, _database: database }
}

coffer_testkit::on_both_backends_with!(fixture;
    migrations_are_idempotent,
    vendor_and_product_round_trip,
    times_are_exact_i64_millis,
    duplicate_slug_is_a_conflict,
    product_of_unknown_vendor_is_refused,
    products_page_by_cursor_and_vendor,
    failing_unit_leaves_the_rest_of_its_batch_committed,
    no_caller_hears_success_before_the_commit,
    panicking_unit_is_rolled_back_and_writes_go_on,
    failing_command_unit_leaves_the_rest_of_its_batch_committed,
    an_event_is_relayed_once_with_its_order,
);

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn vendor(slug: &str) -> coffer_domain::Vendor {
    NewVendor::new(slug, &format!("Vendor {slug}"), Millis(1_000)).unwrap().vendor().clone()
}

fn product(vendor: &VendorId, name: &str, prices: &[(&str, i64)]) -> NewProduct {
    let prices = Prices::new(prices.iter().map(|(c, m)| Money::new(*m, Currency::parse(c).unwrap()).unwrap())).unwrap();
    NewProduct::new(vendor.clone(), name, "A useful tool.\nSecond line.", prices, Delivery::LicenseKey, Millis(2_000))
        .unwrap()
}

async fn insert_vendor(db: &Db, v: &coffer_domain::Vendor) -> Result<(), StoreError> {
    let v = v.clone();
    db.write(move |tx| Box::pin(async move { tx.insert_vendor(&v).await })).await
}

async fn insert_product(db: &Db, p: &NewProduct) -> Result<(), StoreError> {
    let p = p.clone();
    db.write(move |tx| Box::pin(async move { tx.insert_product(&p).await })).await
}

async fn slugs(db: &Db) -> Vec<String> {
    let mut s: Vec<String> = db.vendors().await.unwrap().into_iter().map(|v| v.slug.to_string()).collect();
    s.sort();
    s
}

async fn migrations_are_idempotent(f: Fixture) {
    f.db.migrate().await.expect("a second migration run is a no-op");
    assert!(f.db.vendors().await.unwrap().is_empty());
    assert!(f.db.ping().await);
}

async fn vendor_and_product_round_trip(f: Fixture) {
    let v = vendor("acme");
    insert_vendor(&f.db, &v).await.unwrap();
    let p = product(&v.id, "Acme Editor", &[("USD", 1999), ("EUR", 1899), ("JPY", 2500)]);
    insert_product(&f.db, &p).await.unwrap();

    let stored = f.db.product(&p.id).await.unwrap().expect("the product is found");
    assert_eq!(stored.id, p.id);
    assert_eq!(stored.name, "Acme Editor");
    assert_eq!(stored.description, "A useful tool.\nSecond line.");
    assert_eq!(stored.vendor_slug, v.slug);
    assert_eq!(stored.vendor_name, "Vendor acme");
    assert_eq!(stored.delivery, Delivery::LicenseKey);
    assert_eq!(stored.prices, p.prices);
    assert_eq!(stored.prices.get(usd()).map(Money::minor), Some(1999));
    assert_eq!(f.db.vendor_by_slug(&v.slug).await.unwrap(), Some(v));
    assert_eq!(f.db.product(&ProductId::generate()).await.unwrap(), None);
}

async fn times_are_exact_i64_millis(f: Fixture) {
    let clock = ManualClock::at(1_764_000_000_123);
    clock.advance(7);
    let v = NewVendor::new("timely", "Timely", coffer_domain::Clock::now(&clock)).unwrap().vendor().clone();
    insert_vendor(&f.db, &v).await.unwrap();
    let stored = f.db.vendor_by_slug(&v.slug).await.unwrap().unwrap();
    assert_eq!(stored.created_at, Millis(1_764_000_000_130));
}

async fn duplicate_slug_is_a_conflict(f: Fixture) {
    insert_vendor(&f.db, &vendor("same")).await.unwrap();
    let again = insert_vendor(&f.db, &vendor("same")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(slugs(&f.db).await, ["same"]);
}

async fn product_of_unknown_vendor_is_refused(f: Fixture) {
    let orphan = product(&VendorId::generate(), "Orphan", &[("USD", 100)]);
    let result = insert_product(&f.db, &orphan).await;
    assert!(matches!(result, Err(StoreError::MissingReference(_))), "foreign keys are enforced: {result:?}");
    assert_eq!(f.db.product(&orphan.id).await.unwrap(), None);
}

async fn products_page_by_cursor_and_vendor(f: Fixture) {
    let a = vendor("alpha");
    let b = vendor("beta");
    insert_vendor(&f.db, &a).await.unwrap();
    insert_vendor(&f.db, &b).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let owner = if i % 2 == 0 { &a } else { &b };
        let p = product(&owner.id, &format!("Tool {i}"), &[("USD", 100 + i), ("EUR", 90 + i)]);
        insert_product(&f.db, &p).await.unwrap();
        ids.push(p.id);
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = f.db.products(&ProductQuery { vendor: None, after: after.clone(), limit: 2 }).await.unwrap();
        assert!(page.products.len() <= 2);
        assert!(page.products.iter().all(|p| p.prices.iter().count() == 2), "prices are not split across pages");
        seen.extend(page.products.into_iter().map(|p| p.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every product once, in id order");

    let only_b = ProductQuery { vendor: Some(VendorSlug::parse("beta").unwrap()), after: None, limit: 100 };
    let page = f.db.products(&only_b).await.unwrap();
    assert_eq!(page.products.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), [ids[1].clone(), ids[3].clone()]);
    assert!(page.next_after.is_none());
}

/// Units A, B and C are queued together (on SQLite the writer is held so
/// they form one batch). B writes, then fails: its write is rolled back,
/// A's and C's are committed.
async fn failing_unit_leaves_the_rest_of_its_batch_committed(f: Fixture) {
    let before = f.db.writer_stats();
    let hold = f.db.hold_writes().await;
    let unit = |slug: &'static str, fail: bool| {
        let db = f.db.clone();
        tokio::spawn(async move {
            db.write(move |tx| {
                Box::pin(async move {
                    tx.insert_vendor(&vendor(slug)).await?;
                    if fail {
                        // The same slug again: a real constraint violation.
                        tx.insert_vendor(&vendor(slug)).await?;
                    }
                    Ok::<_, StoreError>(slug)
                })
            })
            .await
        })
    };
    let a = unit("unit-a", false);
    let b = unit("unit-b", true);
    let c = unit("unit-c", false);
    wait_for_queue(&f.db, 3).await;
    drop(hold);

    assert_eq!(a.await.unwrap(), Ok("unit-a"));
    assert!(matches!(b.await.unwrap(), Err(StoreError::Conflict(_))));
    assert_eq!(c.await.unwrap(), Ok("unit-c"));
    assert_eq!(slugs(&f.db).await, ["unit-a", "unit-c"]);

    let after = f.db.writer_stats();
    assert_eq!(after.units - before.units, 3);
    match f.db.backend() {
        Backend::Sqlite => assert_eq!(after.commits - before.commits, 1, "one batch, one commit"),
        Backend::Postgres => assert_eq!(after.commits - before.commits, 2, "a transaction per successful unit"),
    }
}

/// Waits until `n` units are with the held SQLite writer: it takes the
/// first off the queue and waits at the hold; the rest stay queued.
async fn wait_for_queue(db: &Db, n: usize) {
    if db.backend() == Backend::Postgres {
        return;
    }
    for _ in 0..1000 {
        if db.queued_writes() + 1 >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("units did not queue up");
}

/// While the writer is held nobody hears back; once released, every caller
/// that hears success can already read its row from another connection.
async fn no_caller_hears_success_before_the_commit(f: Fixture) {
    let hold = f.db.hold_writes().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let db = f.db.clone();
        tasks.push(tokio::spawn(async move {
            let v = vendor(&format!("early-{i}"));
            let slug = v.slug.clone();
            db.write(move |tx| Box::pin(async move { tx.insert_vendor(&v).await })).await.unwrap();
            // Read through the reader pool, a different connection.
            db.vendor_by_slug(&slug).await.unwrap().is_some()
        }));
    }
    if f.db.backend() == Backend::Sqlite {
        wait_for_queue(&f.db, 20).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(tasks.iter().all(|t| !t.is_finished()), "a caller heard back while the batch was not committed");
        let stats = f.db.writer_stats();
        drop(hold);
        for task in tasks {
            assert!(task.await.unwrap(), "success was reported before the row was committed");
        }
        assert_eq!(f.db.writer_stats().commits - stats.commits, 1, "twenty units, one commit");
    } else {
        drop(hold);
        for task in tasks {
            assert!(task.await.unwrap(), "success was reported before the row was committed");
        }
    }
}

fn a_bug_in_a_unit_of_work() -> Result<(), StoreError> {
    panic!("a bug in a unit of work, after it wrote")
}

async fn panicking_unit_is_rolled_back_and_writes_go_on(f: Fixture) {
    let result =
        f.db.write(|tx| {
            Box::pin(async move {
                tx.insert_vendor(&vendor("doomed")).await?;
                a_bug_in_a_unit_of_work()
            })
        })
        .await;
    assert_eq!(result, Err(StoreError::UnitPanicked));
    insert_vendor(&f.db, &vendor("survivor")).await.expect("the write path still works");
    assert_eq!(slugs(&f.db).await, ["survivor"]);
}

/// An order placement (a command unit: order, line, event, audit entry,
/// email `eml-<mail>`, in that order), audited with subject `who`.
fn placement(id: &OrderId, who: &str, mail: &str) -> coffer_store::WriteCommands {
    let sealed = |text: &str| Sealed::from_stored(text.as_bytes().to_vec());
    let customer = CustomerId::generate();
    let key = DataKeyId::generate();
    let order = NewOrder {
        id: id.clone(),
        customer_id: customer.clone(),
        data_key_id: key.clone(),
        status: OrderStatus::Fulfilled,
        currency: "USD".into(),
        subtotal: 1000,
        tax: 0,
        total: 1000,
        tax_country: "US".into(),
        tax_rate: 0,
        payment_method: "card",
        payment_reference: None,
        fields: SealedOrderFields {
            name: sealed("n"),
            email: sealed("e"),
            phone: None,
            address: sealed("a"),
            card: None,
            guardian_name: None,
            payment_token: None,
        },
        adult: true,
        policy_version: "v1".into(),
        consent_channel: "api",
        fraud_score: 0,
        fraud_reasons: String::new(),
        lines: vec![OrderLine {
            line_no: 1,
            product_id: ProductId::generate(),
            vendor_id: VendorId::generate(),
            quantity: 1,
            unit_price: 1000,
            line_total: 1000,
            refunded_amount: 0,
        }],
        license_keys: Vec::new(),
        at: Millis(5_000),
        actor: format!("customer:{customer}"),
        reason: "test".into(),
    };
    let entry = AuditEntry::new(Millis(5_000), &Actor::System, AuditAction::OrderPlaced, Some(who.to_owned()));
    let email = NewEmail {
        id: format!("eml-{mail}"),
        kind: "order_placed".into(),
        data_key_id: key,
        one_off_key: false,
        recipient: sealed("r"),
        subject: sealed("s"),
        body: sealed("b"),
        attachment: None,
        at: Millis(5_000),
    };
    coffer_store::order_placement(None, &order, &entry, &email, None).unwrap()
}

/// Command units share batches with closure units: one whose last
/// statement fails (its email's id is taken) is rolled back whole, its
/// order and audit entry included, and the others of the batch commit,
/// whatever order they queued in.
async fn failing_command_unit_leaves_the_rest_of_its_batch_committed(f: Fixture) {
    f.db.write(|tx| Box::pin(async move { tx.publish_policy("v1", "<p>policy</p>", Millis(1)).await })).await.unwrap();
    let (first, failing, second) = (OrderId::generate(), OrderId::generate(), OrderId::generate());
    f.db.write_commands(placement(&OrderId::generate(), "earlier", "taken")).await.unwrap();
    let before = f.db.writer_stats();
    let hold = f.db.hold_writes().await;
    let command = |id: &OrderId, who: &'static str, mail: &'static str| {
        let (db, commands) = (f.db.clone(), placement(id, who, mail));
        tokio::spawn(async move { db.write_commands(commands).await })
    };
    let a = command(&first, "a", "a");
    let b = command(&failing, "b", "taken");
    let db = f.db.clone();
    let closure = tokio::spawn(async move { insert_vendor(&db, &vendor("between")).await });
    let c = command(&second, "c", "c");
    wait_for_queue(&f.db, 4).await;
    drop(hold);

    assert_eq!(a.await.unwrap(), Ok(()));
    assert!(matches!(b.await.unwrap(), Err(StoreError::Conflict(_))), "an email id taken");
    assert_eq!(closure.await.unwrap(), Ok(()));
    assert_eq!(c.await.unwrap(), Ok(()));
    assert!(f.db.order(&first).await.unwrap().is_some());
    assert!(f.db.order(&second).await.unwrap().is_some());
    assert!(f.db.order(&failing).await.unwrap().is_none(), "the failed unit's order was rolled back");
    assert_eq!(slugs(&f.db).await, ["between"]);
    for (who, kept) in [("a", 1), ("b", 0), ("c", 1)] {
        assert_eq!(f.db.audit_entries_for_subject(who).await.unwrap().len(), kept, "audit entry of {who}");
    }
    assert!(f.db.email_status("eml-a").await.unwrap().is_some());
    assert!(f.db.email_status("eml-c").await.unwrap().is_some());
    let after = f.db.writer_stats();
    assert_eq!(after.units - before.units, 4);
    match f.db.backend() {
        // One commit per run of units of one kind: at most three here.
        Backend::Sqlite => assert!(after.commits - before.commits < 4, "the four units were committed together"),
        Backend::Postgres => assert_eq!(after.commits - before.commits, 3, "a transaction per successful unit"),
    }
}

/// The relay reads a batch's events with their orders in one query, and
/// its unit is idempotent: relaying an event again (as after a crash, or a
/// second server's relay) adds no second ledger entry, delivery or job.
/// The ledger's entries cannot be changed or removed.
async fn an_event_is_relayed_once_with_its_order(f: Fixture) {
    use coffer_domain::{WebhookDeliveryId, WebhookEndpointId};
    use coffer_store::{NewDelivery, NewJob, NewLedgerEntry, WebhookEndpoint};
    let v = vendor("relayed");
    insert_vendor(&f.db, &v).await.unwrap();
    let endpoint = WebhookEndpoint {
        id: WebhookEndpointId::generate(),
        vendor_id: v.id.clone(),
        url: "https://example.org/hook".into(),
        events: vec!["order.paid".into()],
        created_at: Millis(1),
    };
    let stored = endpoint.clone();
    f.db.write(move |tx| Box::pin(async move { tx.insert_webhook_endpoint(&stored).await })).await.unwrap();
    f.db.write(|tx| Box::pin(async move { tx.publish_policy("v1", "<p>policy</p>", Millis(1)).await })).await.unwrap();
    let order = OrderId::generate();
    f.db.write_commands(placement(&order, "buyer", "placed")).await.unwrap();

    let events = f.db.events_to_relay(10).await.unwrap();
    assert_eq!(events.len(), 1);
    let (event, read) = (&events[0], events[0].order.as_ref().expect("the order comes with its event"));
    assert_eq!((&event.order_id, event.seq, event.to_status.as_str()), (&order, 1, "fulfilled"));
    assert_eq!((read.status, read.currency.as_str(), read.lines.len()), (OrderStatus::Fulfilled, "USD", 1));
    assert_eq!(read.lines[0].line_total, 1000);

    let relay = |n: usize| {
        let ledger: Vec<NewLedgerEntry> = [("sale", 1000), ("fee", -100)]
            .into_iter()
            .map(|(kind, amount)| NewLedgerEntry {
                id: format!("led-{n}-{kind}"),
                vendor_id: v.id.clone(),
                order_id: order.clone(),
                line_no: 1,
                kind,
                currency: "USD".into(),
                amount,
                at: Millis(5_000),
            })
            .collect();
        let delivery = NewDelivery {
            id: WebhookDeliveryId::generate(),
            endpoint_id: endpoint.id.clone(),
            vendor_id: v.id.clone(),
            event_key: format!("{order}:1:order.paid"),
            event_type: "order.paid",
            order_id: order.clone(),
            at: Millis(5_000),
            job: NewJob { id: format!("job-relay-{n}"), kind: "webhook", payload: "{}".into(), at: Millis(6_000) },
        };
        (
            coffer_store::relay_batch(
                &ledger,
                std::slice::from_ref(&delivery),
                &[],
                &[(order.clone(), 1)],
                Millis(7_000),
            ),
            delivery,
        )
    };
    let (first, delivered) = relay(1);
    f.db.write_commands(first).await.unwrap();
    assert!(f.db.events_to_relay(10).await.unwrap().is_empty(), "the event is marked relayed");
    let (again, repeated) = relay(2);
    f.db.write_commands(again).await.expect("relaying again is not an error");

    let mut ledger = f.db.ledger_of_order(&order).await.unwrap();
    ledger.sort();
    assert_eq!(ledger, [(1, "fee".to_owned()), (1, "sale".to_owned())], "one entry per line and kind");
    assert!(f.db.webhook_delivery(&delivered.id).await.unwrap().is_some());
    assert!(f.db.webhook_delivery(&repeated.id).await.unwrap().is_none(), "no second delivery of the event");
    assert!(f.db.job_status("job-relay-1").await.unwrap().is_some(), "the delivery's job");
    assert!(f.db.job_status("job-relay-2").await.unwrap().is_none(), "no job without a new delivery");

    // Entries are only added: the database refuses to change or remove one.
    let pool = sqlx::AnyPool::connect(&f._database.url).await.unwrap();
    for statement in ["UPDATE ledger_entries SET amount = 0", "DELETE FROM ledger_entries"] {
        let refused = sqlx::query(statement).execute(&pool).await.expect_err(statement);
        assert!(refused.to_string().contains("ledger entries are only added"), "{statement}: {refused}");
    }
    assert_eq!(f.db.ledger_of_order(&order).await.unwrap().len(), 2, "both entries are still there");
}

/// P10 in transit: `sslmode` in a PostgreSQL URL is honoured; with
/// `sslmode=require` every connection of the pool is encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p10_postgres_connections_use_tls_when_the_url_asks() {
    let database = coffer_testkit::TestDatabase::new(coffer_testkit::TestBackend::Postgres).await;
    let separator = if database.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}sslmode=require", database.url);
    let db = Db::open(&url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let pool = sqlx::postgres::PgPool::connect(&url).await.unwrap();
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&pool).await.unwrap();
    assert!(ssl, "the connection is encrypted");
    // The store's own connections too: every backend of this database.
    let (plain,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
         WHERE a.datname = current_database() AND NOT s.ssl",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(plain, 0);
    assert!(db.ping().await);
}

coffer_testkit::on_both_backends_with!(fixture;
    concurrent_workers_never_claim_one_job_twice,
    an_outcome_counts_only_under_the_claim_that_holds_the_job,
    failed_jobs_are_kept_for_a_person_and_done_ones_forgotten,
    a_money_move_whose_claim_was_taken_over_cannot_end_the_new_one,
);

/// Four workers (as on four servers) claim from one queue at once: each job
/// is claimed exactly once while its lease lasts, and every job is claimed.
async fn concurrent_workers_never_claim_one_job_twice(f: Fixture) {
    use coffer_store::{JobClaim, JobOutcome};
    let ids: Vec<String> = (0..60).map(|n| format!("job-{n:02}")).collect();
    enqueue_test_jobs(&f, &ids.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut workers = Vec::new();
    for _ in 0..4 {
        let db = f.db.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = db.claim_jobs("test", Millis(10), 60_000, 7).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    all.sort();
    let expected: Vec<String> = (0..60).map(|n| format!("job-{n:02}")).collect();
    assert_eq!(all, expected, "every job claimed exactly once");
    // Another kind's worker sees none of them; a finished job is not claimed again.
    assert!(f.db.claim_jobs("other", Millis(10), 60_000, 10).await.unwrap().is_empty());
    f.db.finish_jobs(vec![(JobClaim { id: "job-00".into(), attempts: 1 }, JobOutcome::Done)], Millis(20))
        .await
        .unwrap();
    assert!(f.db.claim_jobs("test", Millis(120_000), 60_000, 100).await.unwrap().iter().all(|j| j.id != "job-00"));
    assert_eq!(f.db.job_status("job-00").await.unwrap().unwrap().0, "done");
}

async fn enqueue_test_jobs(f: &Fixture, ids: &[&str]) {
    use coffer_store::{JobWriter, NewJob};
    let jobs: Vec<NewJob> = ids
        .iter()
        .map(|id| NewJob { id: (*id).to_owned(), kind: "test", payload: "{}".into(), at: Millis(1) })
        .collect();
    f.db.write(move |tx| {
        Box::pin(async move {
            for job in &jobs {
                tx.enqueue_job(job).await?;
            }
            Ok::<_, StoreError>(())
        })
    })
    .await
    .unwrap();
}

/// A worker whose lease ran out while its call was under way comes back
/// after another worker took the job over: its outcome changes nothing (no
/// late `Failed` over a `Done`, no retry time over the new claim's).
async fn an_outcome_counts_only_under_the_claim_that_holds_the_job(f: Fixture) {
    use coffer_store::JobOutcome;
    enqueue_test_jobs(&f, &["job-slow"]).await;
    let first = f.db.claim_jobs("test", Millis(10), 60_000, 1).await.unwrap().remove(0);
    // The lease ends; a second worker claims the job and finishes it.
    let second = f.db.claim_jobs("test", Millis(60_011), 60_000, 1).await.unwrap().remove(0);
    assert_eq!((second.id.as_str(), second.attempts), ("job-slow", 2));
    f.db.finish_jobs(vec![(second.claim(), JobOutcome::Done)], Millis(60_020)).await.unwrap();
    // The first worker's late outcome is ignored.
    f.db.finish_jobs(vec![(first.claim(), JobOutcome::Failed { error: "late".into() })], Millis(60_030)).await.unwrap();
    let (status, attempts, error) = f.db.job_status("job-slow").await.unwrap().unwrap();
    assert_eq!((status.as_str(), attempts, error), ("done", 2, None));
    // While a claim holds its job, its outcome counts.
    enqueue_test_jobs(&f, &["job-retry"]).await;
    let claim = f.db.claim_jobs("test", Millis(70_000), 60_000, 1).await.unwrap().remove(0).claim();
    let retry = JobOutcome::Retry { at: Millis(90_000), error: "busy".into() };
    f.db.finish_jobs(vec![(claim, retry)], Millis(70_010)).await.unwrap();
    let (status, _, error) = f.db.job_status("job-retry").await.unwrap().unwrap();
    assert_eq!((status.as_str(), error.as_deref()), ("pending", Some("busy")));
    assert!(f.db.claim_jobs("test", Millis(89_999), 60_000, 1).await.unwrap().is_empty(), "not due before its time");
    // A job claimed but not run (the server stopping) is due again at once,
    // its attempt not counted.
    let claim = f.db.claim_jobs("test", Millis(90_000), 60_000, 1).await.unwrap().remove(0).claim();
    assert_eq!(claim.attempts, 2);
    f.db.finish_jobs(vec![(claim, JobOutcome::Untried)], Millis(90_010)).await.unwrap();
    let again = f.db.claim_jobs("test", Millis(90_020), 60_000, 1).await.unwrap();
    assert_eq!((again[0].id.as_str(), again[0].attempts), ("job-retry", 2), "claimable at once, same count");
}

/// Retention forgets done jobs; a job given up stays, listed, until a
/// person has looked at it.
async fn failed_jobs_are_kept_for_a_person_and_done_ones_forgotten(f: Fixture) {
    use coffer_store::JobOutcome;
    enqueue_test_jobs(&f, &["job-done", "job-failed", "job-open"]).await;
    let claimed = f.db.claim_jobs("test", Millis(10), 60_000, 3).await.unwrap();
    let outcomes = claimed
        .iter()
        .map(|job| {
            let outcome = match job.id.as_str() {
                "job-done" => JobOutcome::Done,
                "job-failed" => JobOutcome::Failed { error: "refused".into() },
                _ => JobOutcome::Retry { at: Millis(30), error: "busy".into() },
            };
            (job.claim(), outcome)
        })
        .collect();
    f.db.finish_jobs(outcomes, Millis(20)).await.unwrap();
    assert_eq!(f.db.forget_finished_jobs(Millis(1_000_000)).await.unwrap(), 1);
    assert!(f.db.job_status("job-done").await.unwrap().is_none());
    let failed = f.db.failed_jobs(10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].id.as_str(), failed[0].last_error.as_deref()), ("job-failed", Some("refused")));
    assert_eq!(f.db.job_status("job-open").await.unwrap().unwrap().0, "pending", "a pending job stays");
}

/// A staff move's claim on an order's money stood so long that another
/// move took it over: the first move's release says so (its unit must not
/// commit) and leaves the new claim in place.
async fn a_money_move_whose_claim_was_taken_over_cannot_end_the_new_one(f: Fixture) {
    f.db.write(|tx| Box::pin(async move { tx.publish_policy("v1", "<p>policy</p>", Millis(1)).await })).await.unwrap();
    let order = OrderId::generate();
    f.db.write_commands(placement(&order, "moved", "moved")).await.unwrap();
    let claim = |at: i64| {
        let order = order.clone();
        f.db.write(move |tx| Box::pin(async move { tx.claim_payment_move(&order, "refund", Millis(at)).await }))
    };
    let release = |claim: Millis| {
        let order = order.clone();
        f.db.write(move |tx| Box::pin(async move { tx.release_payment_move(&order, claim).await }))
    };
    let first = claim(1_000).await.unwrap().expect("the order is free");
    assert_eq!(claim(2_000).await.unwrap(), None, "a live claim holds the order");
    // Ten minutes on, the first claim counts as abandoned.
    let second = claim(1_000 + 10 * 60 * 1000 + 1).await.unwrap().expect("a stale claim is taken over");
    assert!(!release(first).await.unwrap(), "the first move learns its claim is gone");
    assert_eq!(claim(700_000).await.unwrap(), None, "the second claim still holds the order");
    assert!(release(second).await.unwrap());
    assert!(claim(700_001).await.unwrap().is_some(), "released, the order is free again");
}

/// Under steady writes, with reads running all the time, SQLite never
/// starts its WAL over by itself; the writer does once it passes its
/// limit, so the WAL stays near that size instead of growing with every
/// order (`scripts/bench --only growth` saw 2.6 GB after 120 k orders).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_started_over_under_steady_reads_and_writes() {
    let database = TestDatabase::new(TestBackend::Sqlite).await;
    let options = DbOptions { wal_limit_frames: 256, ..DbOptions::default() };
    let db = Db::open(&database.url, &options).await.unwrap();
    db.migrate().await.unwrap();
    db.write(|tx| Box::pin(async move { tx.publish_policy("v1", "<p>policy</p>", Millis(1)).await })).await.unwrap();
    let file = database.url.trim_start_matches("sqlite://").split('?').next().unwrap().to_owned();
    let wal = std::path::PathBuf::from(format!("{file}-wal"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for reader in 0..4 {
        let (db, stop) = (db.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                db.products(&ProductQuery { vendor: None, after: None, limit: 50 + reader }).await.unwrap();
            }
        }));
    }
    for writer in 0..8 {
        let (db, stop) = (db.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let who = format!("w{writer}-{n}");
                db.write_commands(placement(&OrderId::generate(), &who, &who)).await.unwrap();
                n += 1;
            }
        }));
    }
    // Each time the WAL is started over, SQLite counts it in the WAL
    // header's checkpoint sequence number (big-endian, bytes 12..16).
    let sequence = || {
        use std::io::Read;
        let mut header = [0u8; 16];
        std::fs::File::open(&wal).and_then(|mut f| f.read_exact(&mut header)).ok()?;
        Some(u32::from_be_bytes([header[12], header[13], header[14], header[15]]))
    };
    let (started, mut last, mut largest, mut restarts) = (std::time::Instant::now(), None, 0, 0);
    while started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = sequence();
        if let (Some(before), Some(now)) = (last, now)
            && now != before
        {
            restarts += 1;
        }
        last = now.or(last);
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let (written,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders").fetch_one(&pool).await.unwrap();
    // 256 frames are 1 MiB; the load writes several MiB a second, more
    // than that between two looks of the checkpointer (every 250 ms).
    assert!(written > 1_000, "the load wrote enough to show growth: {written} orders");
    assert!(restarts >= 3, "the WAL was started over {restarts} times in 6 s (largest {largest} bytes)");
    // The limit and what a quarter second adds before the writer acts.
    assert!(largest < 16 << 20, "the WAL grew to {largest} bytes over {written} orders");
}
