//! Privacy-core benchmarks (issue 4 targets), on real SQLite and PostgreSQL:
//!
//! - seal + open of one personal field;
//! - email lookup through the blind index against a plain indexed lookup;
//! - erasure of one customer with 10 thousand and with 1 million customers
//!   (and their data keys) in the databases;
//! - `audit verify` throughput;
//! - re-wrap throughput during key rotation, and read latency p99 with and
//!   without a rotation running.
//!
//! `cargo bench --workspace --bench privacy [-- --quick]`. Prints Markdown
//! for docs/benchmarks.md. Figures are medians of batches measured in this
//! one run. Under `cargo test` (no `--bench` argument) it runs once with tiny
//! sizes, so the benchmark code itself stays working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_app::SystemClock;
use coffer_app::privacy::audit::AuditService;
use coffer_app::privacy::{CustomerService, FileKeyProvider, Reader, Vault};
use coffer_crypto::{DataKey, FieldContext, open_field, seal_field, wrap_secret};
use coffer_domain::{Actor, Clock, CustomerDetails, CustomerId};
use coffer_store::prelude::*;
use coffer_store::{CustomerReader, Db, DbOptions, KeyStore};
use coffer_testkit::{TestBackend, TestDatabase};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64) * p).ceil() as usize;
    values[index.saturating_sub(1).min(values.len() - 1)]
}

struct Setup {
    db: Db,
    keys: KeyStore,
    vault: Arc<Vault>,
    customers: CustomerService,
    audit: AuditService,
    data_url: String,
    key_url: String,
    backend: TestBackend,
    _data: TestDatabase,
    _key_db: TestDatabase,
}

async fn setup(backend: TestBackend) -> Setup {
    let data = TestDatabase::new(backend).await;
    let key_db = TestDatabase::new(backend).await;
    let key_url = key_db.key_store_url();
    let db = Db::open(&data.url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    let keys = KeyStore::open(&key_url, &DbOptions::default()).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let provider = FileKeyProvider::open(&data.dir.path().join("keys")).unwrap();
    let vault = Arc::new(Vault::open(Arc::new(provider), keys.clone(), clock.clone()).await.unwrap());
    let customers = CustomerService::new(db.clone(), vault.clone(), clock.clone());
    let audit = AuditService::new(db.clone(), vault.clone(), clock);
    let data_url = data.url.clone();
    Setup { db, keys, vault, customers, audit, data_url, key_url, backend, _data: data, _key_db: key_db }
}

async fn raw(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await.unwrap()
}

fn person(n: usize) -> CustomerDetails {
    CustomerDetails {
        name: format!("Bench Person {n}"),
        email: format!("bench{n}@example.org"),
        phone: Some("+1 555 0100".into()),
        address: None,
    }
}

/// Filler rows straight in SQL: `count` customers (random bytes where the
/// ciphertext would be) and their data keys, ids `cus_f…`/`dek_f…`.
async fn fill(s: &Setup, count: u64) {
    let (customers, keys) = match s.backend {
        TestBackend::Sqlite => (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO customers (id, data_key_id, email_index, email_index_version, name, email, phone, address, created_at, updated_at) \
             SELECT printf('cus_f%031x', i), printf('dek_f%031x', i), randomblob(32), 1, randomblob(48), randomblob(60), randomblob(40), randomblob(160), 0, 0 FROM n",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO data_keys (id, kek_version, wrapped, created_at) SELECT printf('dek_f%031x', i), 1, randomblob(65), 0 FROM n",
        ),
        TestBackend::Postgres => (
            "INSERT INTO customers (id, data_key_id, email_index, email_index_version, name, email, phone, address, created_at, updated_at) \
             SELECT 'cus_f' || lpad(to_hex(i), 31, '0'), 'dek_f' || lpad(to_hex(i), 31, '0'), sha256(i::text::bytea), 1, \
             sha256(('n' || i)::bytea), sha256(('e' || i)::bytea), sha256(('p' || i)::bytea), sha256(('a' || i)::bytea), 0, 0 \
             FROM generate_series(1, $1::bigint) AS i",
            "INSERT INTO data_keys (id, kek_version, wrapped, created_at) \
             SELECT 'dek_f' || lpad(to_hex(i), 31, '0'), 1, sha256(i::text::bytea), 0 FROM generate_series(1, $1::bigint) AS i",
        ),
    };
    let count = i64::try_from(count).unwrap();
    let data = raw(&s.data_url).await;
    sqlx::query(sqlx::AssertSqlSafe(customers)).bind(count).execute(&data).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(keys)).bind(count).execute(&raw(&s.key_url).await).await.unwrap();
    // An order of one line for every filler customer: with its event and
    // license key, four rows more per customer.
    let filler = match s.backend {
        TestBackend::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1), \
             src(i, c, k) AS (SELECT i, printf('cus_f%031x', i), printf('dek_f%031x', i) FROM n)"
        }
        TestBackend::Postgres => {
            "WITH src(i, c, k) AS (SELECT i, 'cus_f' || lpad(to_hex(i), 31, '0'), 'dek_f' || lpad(to_hex(i), 31, '0') \
             FROM generate_series(1, $1::bigint) AS i)"
        }
    };
    for sql in order_rows(s.backend, filler) {
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(count).execute(&data).await.unwrap();
    }
    if s.backend == TestBackend::Postgres {
        sqlx::query("ANALYZE").execute(&raw(&s.data_url).await).await.unwrap();
        sqlx::query("ANALYZE").execute(&raw(&s.key_url).await).await.unwrap();
    }
}

/// Statements writing one fulfilled one-line order, its event and its
/// license key for each row `(i, customer id, data key id)` of the CTE
/// `src` defined by `with` (random bytes where ciphertext would be).
fn order_rows(backend: TestBackend, with: &str) -> Vec<String> {
    let blob = |tag: &str| match backend {
        TestBackend::Sqlite => "randomblob(48)".to_owned(),
        TestBackend::Postgres => format!("sha256((c || '{tag}')::bytea)"),
    };
    let order = "'ord' || substr(c, 4)";
    vec![
        "INSERT INTO privacy_policy_versions (version, html, published_at) VALUES ('bench', '<p>Bench</p>', 0) \
         ON CONFLICT (version) DO NOTHING"
            .to_owned(),
        format!(
            "{with} INSERT INTO orders (id, customer_id, data_key_id, status, currency, subtotal, tax, total, tax_country, \
             payment_method, name, email, address, card, adult, policy_version, consent_at, consent_channel, fraud_score, \
             fraud_reasons, created_at, updated_at) SELECT {order}, c, k, 'fulfilled', 'USD', 1999, 380, 2379, 'DE', 'card', \
             {}, {}, {}, {}, 1, 'bench', i, 'web', 0, '[]', i, i FROM src",
            blob("n"),
            blob("e"),
            blob("a"),
            blob("c")
        ),
        format!(
            "{with} INSERT INTO order_lines (order_id, line_no, product_id, vendor_id, quantity, unit_price, line_total) \
             SELECT {order}, 1, 'prd_bench', 'ven_bench', 1, 1999, 1999 FROM src"
        ),
        format!(
            "{with} INSERT INTO order_events (order_id, seq, at, to_status, actor, reason) \
             SELECT {order}, 1, i, 'fulfilled', 'customer:' || c, 'payment approved; delivered' FROM src"
        ),
        format!(
            "{with} INSERT INTO license_keys (order_id, line_no, product_id, vendor_id, license_key, issued_at) \
             SELECT {order}, 1, 'prd_bench', 'ven_bench', {}, i FROM src",
            blob("k")
        ),
    ]
}

fn field_crypto(iterations: usize) -> f64 {
    let key = DataKey::generate().unwrap();
    let ctx = FieldContext { table: "customers", column: "email", row_id: "cus_1", data_key_id: "dek_1" };
    let plain = b"ada.lovelace@example.org";
    let mut batches = Vec::new();
    for _ in 0..(iterations / 1_000) {
        let started = Instant::now();
        for _ in 0..1_000 {
            let sealed = seal_field(&key, &ctx, plain).unwrap();
            std::hint::black_box(open_field(&key, &ctx, &sealed).unwrap());
        }
        batches.push(started.elapsed().as_secs_f64() * 1e6 / 1_000.0);
    }
    median(batches)
}

async fn lookups(s: &Setup, rounds: usize) -> (f64, f64) {
    let mut ids = Vec::new();
    for n in 0..200 {
        ids.push(s.customers.create(&person(n), &Actor::System).await.unwrap().id);
    }
    let (mut plain, mut blind) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        for id in &ids {
            std::hint::black_box(s.db.customer(id).await.unwrap());
        }
        plain.push(started.elapsed().as_secs_f64() * 1e6 / ids.len() as f64);
        let started = Instant::now();
        for n in 0..ids.len() {
            std::hint::black_box(s.customers.find_by_email(&format!("bench{n}@example.org")).await.unwrap());
        }
        blind.push(started.elapsed().as_secs_f64() * 1e6 / ids.len() as f64);
    }
    (median(plain), median(blind))
}

/// The checkout of a server, over the setup's databases, with the demo
/// catalog; and the id of a demo product delivered as a license key.
async fn checkout(s: &Setup) -> (coffer_app::checkout::CheckoutService, String) {
    use coffer_app::checkout::{CheckoutDeps, CheckoutService, CheckoutSettings, SimulatedGateway};
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    coffer_app::demo::seed(&s.db, clock.as_ref()).await.unwrap();
    let (version, now) = ("bench-policy".to_owned(), clock.now());
    s.db.write(move |tx| Box::pin(async move { tx.publish_policy("bench-policy", "<p>Bench</p>", now).await }))
        .await
        .unwrap();
    let mail = coffer_app::config::MailConfig::default();
    let outbox =
        coffer_app::mail::Outbox::new(&mail, s._data.dir.path(), s.db.clone(), s.vault.clone(), clock.clone()).unwrap();
    let files = coffer_app::files::LocalFileStore::new(s._data.dir.path().join("files")).unwrap();
    let checkout = CheckoutService::new(
        CheckoutDeps {
            db: s.db.clone(),
            catalog: coffer_app::CatalogService::new(s.db.clone(), clock.clone(), 0),
            vault: s.vault.clone(),
            customers: s.customers.clone(),
            outbox,
            gateway: Arc::new(SimulatedGateway),
            files: Arc::new(files),
            clock,
        },
        CheckoutSettings {
            fraud: coffer_app::config::FraudConfig::default().settings(),
            seller: coffer_app::checkout::Seller {
                name: "Bench Operator".into(),
                postal_address: "Example Street 1, 10115 Berlin, Germany".into(),
                vat_number: Some("DE000000000".into()),
            },
            taxes: coffer_domain::TaxTable::standard(),
            bank: Some(coffer_domain::BankAccount::demo()),
            transfer_expiry_ms: 14 * 24 * 60 * 60 * 1000,
            policy_version: version,
            base_url: "http://127.0.0.1".into(),
        },
    )
    .unwrap();
    let product: (String,) =
        sqlx::query_as("SELECT id FROM products WHERE delivery = 'license_key' ORDER BY id LIMIT 1")
            .fetch_one(&raw(&s.data_url).await)
            .await
            .unwrap();
    (checkout, product.0)
}

async fn erasures(s: &Setup, count: usize) -> f64 {
    use coffer_app::checkout::{AgeInput, CardInput, Channel, OrderRequest};
    use secrecy::SecretString;
    let (checkout, product) = checkout(s).await;
    let mut ids: Vec<CustomerId> = Vec::new();
    for n in 0..count {
        // Each customer comes from a real checkout: order, line, event,
        // license key, audit entry and order email, sealed under their key.
        let customer = CustomerDetails {
            address: Some(coffer_domain::MailingAddress {
                line1: "Hauptstr. 1".into(),
                line2: String::new(),
                city: "Berlin".into(),
                region: String::new(),
                postal_code: "10115".into(),
                country: "DE".into(),
            }),
            ..person(10_000 + n)
        };
        let request = OrderRequest {
            currency: "USD".into(),
            items: vec![(product.clone(), 1)],
            customer: customer.clone(),
            payment_method: coffer_domain::PaymentMethod::Card,
            card: Some(CardInput {
                number: SecretString::from("4242424242424242"),
                exp_month: 12,
                exp_year: 2030,
                cvc: SecretString::from("123"),
            }),
            consent: Some(("bench-policy".into(), true)),
            age: Some(AgeInput { adult: true, guardian_name: None, guardian_consents: false }),
            client_ip: None,
        };
        checkout.placement().place(request, Channel::Api).await.unwrap();
        ids.push(s.customers.find_by_email(&customer.email).await.unwrap().unwrap());
    }
    let data = raw(&s.data_url).await;
    let mut times = Vec::new();
    for id in &ids {
        let started = Instant::now();
        s.customers.erase(id, &coffer_app::request::RequestContext::cli("bench")).await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    // The orders stayed, without identity or license keys (a key's row
    // stays, emptied, so a revoked key stays revoked).
    let (kept, named, keys): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(o.name), (SELECT count(l.license_key) FROM license_keys l JOIN orders p \
         ON p.id = l.order_id JOIN customers c ON c.id = p.customer_id WHERE c.erased_at IS NOT NULL) \
         FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.erased_at IS NOT NULL",
    )
    .fetch_one(&data)
    .await
    .unwrap();
    assert_eq!((kept, named, keys), (i64::try_from(count).unwrap(), 0, 0));
    median(times)
}

async fn audit_verify(s: &Setup, entries: u64) -> (f64, f64) {
    let sql = match s.backend {
        TestBackend::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO audit_log (id, at, actor, action, subject) \
             SELECT printf('aud_f%031x', i), i, 'system', 'customer.read', printf('cus_f%031x', i) FROM n"
        }
        TestBackend::Postgres => {
            "INSERT INTO audit_log (id, at, actor, action, subject) \
             SELECT 'aud_f' || lpad(to_hex(i), 31, '0'), i, 'system', 'customer.read', 'cus_f' || lpad(to_hex(i), 31, '0') \
             FROM generate_series(1, $1::bigint) AS i"
        }
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(i64::try_from(entries).unwrap())
        .execute(&raw(&s.data_url).await)
        .await
        .unwrap();
    let started = Instant::now();
    s.audit.seal_and_sign().await.unwrap();
    let seal_rate = entries as f64 / started.elapsed().as_secs_f64();
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let chain = s.audit.verify().await.unwrap().unwrap();
        rates.push(chain.entries as f64 / started.elapsed().as_secs_f64());
    }
    (seal_rate, median(rates))
}

/// Reads of real customers, one at a time, for `duration` or until `stop`
/// is set; latencies in ms.
async fn read_latencies(
    customers: CustomerService,
    ids: Arc<Vec<CustomerId>>,
    duration: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<f64> {
    let mut latencies = Vec::new();
    let until = Instant::now() + duration;
    let mut i = 0;
    while Instant::now() < until && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let started = Instant::now();
        customers.get(&ids[i % ids.len()], &Reader::TheCustomer).await.unwrap();
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        i += 1;
    }
    latencies
}

async fn rotation(s: &Setup, wraps: usize, read_for: Duration) -> (f64, f64, f64) {
    let mut ids = Vec::new();
    for n in 0..100 {
        ids.push(s.customers.create(&person(50_000 + n), &Actor::System).await.unwrap().id);
    }
    let ids = Arc::new(ids);
    // Real wraps under version 1 for `wraps` extra data keys.
    let kek = s.vault.provider().load(1).unwrap();
    let pool = raw(&s.key_url).await;
    let mut tx = pool.begin().await.unwrap();
    for n in 0..wraps {
        let id = format!("dek_r{n:031x}");
        let wrapped = wrap_secret(&kek, "data-key", &id, DataKey::generate().unwrap().expose()).unwrap();
        sqlx::query("INSERT INTO data_keys (id, kek_version, wrapped, created_at) VALUES ($1, 1, $2, 0)")
            .bind(id)
            .bind(wrapped)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let never = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let quiet = read_latencies(s.customers.clone(), ids.clone(), read_for, never).await;

    s.vault.provider().create(2).unwrap();
    s.keys.add_master_key(2, coffer_domain::Millis(0)).await.unwrap();
    s.keys.activate_master_key(2, coffer_domain::Millis(0)).await.unwrap();
    s.vault.reload().await.unwrap();
    // Reads for exactly as long as the re-wrap runs.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader =
        tokio::spawn(read_latencies(s.customers.clone(), ids.clone(), Duration::from_secs(3_600), done.clone()));
    let started = Instant::now();
    // As a serving process re-wraps in the background (batch, rest).
    // The server's defaults (keys.rewrap_batch, keys.rewrap_rest) unless overridden.
    let defaults = coffer_app::config::KeysConfig::default();
    let batch = std::env::var("COFFER_BENCH_REWRAP_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::from(defaults.rewrap_batch));
    let rest =
        std::env::var("COFFER_BENCH_REWRAP_REST").ok().and_then(|v| v.parse().ok()).unwrap_or(defaults.rewrap_rest);
    let total = s.vault.rewrap_all(batch, rest).await.unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let busy = reader.await.unwrap();
    assert_eq!(s.keys.wraps_under(1).await.unwrap(), 0);
    (rate, percentile(quiet, 0.99), percentile(busy, 0.99))
}

/// Sign-in timings (ms) and the session check (µs): `(right password
/// median, p99, wrong password for a known address median, p99, unknown
/// address median, p99, session check median µs)`.
async fn accounts(s: &Setup, rounds: usize) -> [f64; 7] {
    use coffer_app::accounts::{AccountService, PasswordPool};
    use secrecy::{ExposeSecret, SecretString};
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mail = coffer_app::config::MailConfig::default();
    let outbox =
        coffer_app::mail::Outbox::new(&mail, s._data.dir.path(), s.db.clone(), s.vault.clone(), clock.clone()).unwrap();
    let accounts = AccountService::new(
        s.db.clone(),
        s.vault.clone(),
        s.customers.clone(),
        outbox,
        PasswordPool::new(2),
        clock,
        String::new(),
    );
    let id = s.customers.create(&person(90_000), &Actor::System).await.unwrap().id;
    let password = "orbit velvet canyon 42 lantern";
    accounts.set_demo_password(&id, SecretString::from(password)).await.unwrap();
    let (mut right, mut wrong, mut unknown, mut checks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut token = String::new();
    for round in 0..rounds {
        let started = Instant::now();
        let session = accounts
            .sign_in("bench90000@example.org", SecretString::from(password))
            .await
            .unwrap()
            .unwrap()
            .session()
            .unwrap();
        right.push(started.elapsed().as_secs_f64() * 1e3);
        token = session.token.expose_secret().to_owned();
        // Interleaved, and never five failures in a row (no lock-out).
        let started = Instant::now();
        let _ = accounts.sign_in("bench90000@example.org", SecretString::from("not the password")).await.unwrap();
        wrong.push(started.elapsed().as_secs_f64() * 1e3);
        // A new unknown address each time, so the lock-out never answers instead.
        let started = Instant::now();
        let nobody = format!("nobody-{round}@example.org");
        let _ = accounts.sign_in(&nobody, SecretString::from("not the password")).await.unwrap();
        unknown.push(started.elapsed().as_secs_f64() * 1e3);
        let _ = accounts.sign_in("bench90000@example.org", SecretString::from(password)).await.unwrap();
    }
    for _ in 0..(rounds * 50) {
        let started = Instant::now();
        assert!(accounts.session(&token).await.unwrap().is_some());
        checks.push(started.elapsed().as_secs_f64() * 1e6);
    }
    [
        median(right.clone()),
        percentile(right, 0.99),
        median(wrong.clone()),
        percentile(wrong, 0.99),
        median(unknown.clone()),
        percentile(unknown, 0.99),
        median(checks),
    ]
}

/// For `scripts/bench --only rotation`: `count` real data keys wrapped
/// under the active master key of a server's key directory, written
/// straight into its key store, so a running server has a large re-wrap
/// to do. Ids `dek_l…`.
async fn fill_key_store(key_dir: &str, key_url: &str, count: usize) {
    let provider = FileKeyProvider::open(std::path::Path::new(key_dir)).unwrap();
    let keys = KeyStore::open(key_url, &DbOptions::default()).await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let vault = Vault::open(Arc::new(provider), keys, clock).await.unwrap();
    let version = vault.active_version().unwrap();
    let kek = vault.provider().load(version).unwrap();
    let pool = raw(key_url).await;
    const ROWS: usize = 500;
    for start in (0..count).step_by(ROWS) {
        let rows = ROWS.min(count - start);
        let values: Vec<String> =
            (0..rows).map(|i| format!("(${}, {version}, ${}, 0)", 2 * i + 1, 2 * i + 2)).collect();
        let sql = format!("INSERT INTO data_keys (id, kek_version, wrapped, created_at) VALUES {}", values.join(", "));
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for n in start..start + rows {
            let id = format!("dek_l{n:031x}");
            let wrapped = wrap_secret(&kek, "data-key", &id, DataKey::generate().unwrap().expose()).unwrap();
            insert = insert.bind(id).bind(wrapped);
        }
        insert.execute(&pool).await.unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var("COFFER_BENCH_ONLY").as_deref() == Ok("fill-key-store") {
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
        let count = var("COFFER_BENCH_FILL").parse().unwrap();
        fill_key_store(&var("COFFER_BENCH_KEY_DIR"), &var("COFFER_BENCH_KEY_URL"), count).await;
        return;
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let quick = smoke || std::env::args().any(|a| a == "--quick");
    let scale = |full: u64, quick_size: u64, smoke_size: u64| {
        if smoke {
            smoke_size
        } else if quick {
            quick_size
        } else {
            full
        }
    };
    if std::env::var("COFFER_BENCH_ONLY").as_deref() == Ok("rotation") {
        // COFFER_BENCH_BACKEND=sqlite|postgres measures one.
        let wanted = std::env::var("COFFER_BENCH_BACKEND").unwrap_or_default().to_lowercase();
        for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
            if !wanted.is_empty() && !format!("{backend:?}").eq_ignore_ascii_case(&wanted) {
                continue;
            }
            let (rate, quiet, busy) = rotation(
                &setup(backend).await,
                usize::try_from(scale(100_000, 20_000, 500)).unwrap(),
                Duration::from_secs(3),
            )
            .await;
            println!("{backend:?}: {rate:.0} keys/s, p99 {quiet:.2} -> {busy:.2} ms ({:.2}x)", busy / quiet);
        }
        return;
    }
    let only_accounts = std::env::var("COFFER_BENCH_ONLY").as_deref() == Ok("accounts");
    let big = scale(1_000_000, 100_000, 2_000);
    let small = scale(10_000, 10_000, 1_000);
    let count = usize::try_from(scale(200, 200, 10)).unwrap();
    println!("| measure | sqlite | postgres | target |");
    println!("| --- | ---: | ---: | --- |");
    let crypto = field_crypto(usize::try_from(scale(200_000, 200_000, 2_000)).unwrap());
    println!("| seal + open one field (µs, median of 200 batches) | {crypto:.2} | (same code) | ≤ 2 µs |");

    let mut rows: Vec<(String, Vec<String>, String)> = vec![
        ("plain indexed lookup by id (µs)".into(), vec![], String::new()),
        ("blind-index lookup by email (µs)".into(), vec![], String::new()),
        ("blind-index lookup vs plain".into(), vec![], "≤ +10%".into()),
        (format!("erasure, {small} customers with an order each (ms, median of {count})"), vec![], "≤ 5 ms".into()),
        (format!("erasure, {big} customers with an order each (ms, median of {count})"), vec![], String::new()),
        ("erasure: large vs small".into(), vec![], "≤ 1.5×".into()),
        ("audit seal (entries/s)".into(), vec![], String::new()),
        ("audit verify (entries/s, median of 3)".into(), vec![], "≥ 500 k/s on SQLite".into()),
        ("re-wrap, in-process probe (keys/s)".into(), vec![], "(target: scripts/bench --only rotation)".into()),
        ("probe: read p99 without rotation (ms)".into(), vec![], String::new()),
        ("probe: read p99 during rotation (ms)".into(), vec![], String::new()),
        ("probe: p99 during / without".into(), vec![], String::new()),
    ];
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        if only_accounts {
            break;
        }
        let s = setup(backend).await;
        let (plain, blind) = lookups(&s, if smoke { 2 } else { 30 }).await;
        let small_ms = {
            let s = setup(backend).await;
            fill(&s, small).await;
            erasures(&s, count).await
        };
        let large_ms = {
            let s = setup(backend).await;
            fill(&s, big).await;
            erasures(&s, count).await
        };
        let (seal, verify) = audit_verify(&setup(backend).await, scale(500_000, 100_000, 2_000)).await;
        let rotation_wraps = usize::try_from(scale(100_000, 20_000, 500)).unwrap();
        let read_for = Duration::from_millis(scale(3_000, 3_000, 200));
        let (rate, quiet, busy) = rotation(&setup(backend).await, rotation_wraps, read_for).await;
        let values = [
            format!("{plain:.1}"),
            format!("{blind:.1}"),
            format!("{:+.0}%", (blind / plain - 1.0) * 100.0),
            format!("{small_ms:.2}"),
            format!("{large_ms:.2}"),
            format!("{:.2}×", large_ms / small_ms),
            format!("{seal:.0}"),
            format!("{verify:.0}"),
            format!("{rate:.0}"),
            format!("{quiet:.2}"),
            format!("{busy:.2}"),
            format!("{:.2}×", busy / quiet),
        ];
        for (row, value) in rows.iter_mut().zip(values) {
            row.1.push(value);
        }
        drop(s);
    }
    for (name, values, target) in rows.into_iter().filter(|_| !only_accounts) {
        println!("| {name} | {} | {target} |", values.join(" | "));
    }
    println!();
    println!("| accounts (argon2id m=19456 KiB, t=2, p=1; pool of 2) | sqlite | postgres | target |");
    println!("| --- | ---: | ---: | --- |");
    let rounds = usize::try_from(scale(100, 30, 3)).unwrap();
    let mut columns = Vec::new();
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        columns.push(accounts(&setup(backend).await, rounds).await);
    }
    let names = [
        ("sign-in, right password: median (ms)", "stated"),
        ("sign-in, right password: p99 (ms)", "stated"),
        ("sign-in, wrong password, known address: median (ms)", ""),
        ("sign-in, wrong password, known address: p99 (ms)", ""),
        ("sign-in, unknown address: median (ms)", "≈ known"),
        ("sign-in, unknown address: p99 (ms)", "≈ known"),
        ("session check: median (µs)", "≤ 200 µs"),
    ];
    for (i, (name, target)) in names.iter().enumerate() {
        println!("| {name} | {:.2} | {:.2} | {target} |", columns[0][i], columns[1][i]);
    }
}
