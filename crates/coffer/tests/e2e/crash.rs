//! A crash (SIGKILL) while new buyers check out. A first order's data key
//! is committed to the key store ahead of demand (a batch of spare keys),
//! then the customer and the order are one unit of the data database: the
//! kill lands between those two commits for every order in flight.

use coffer_app::privacy::Reader;
use coffer_app::request::RequestContext;
use coffer_domain::{CustomerId, Millis};
use coffer_store::{Db, DbOptions, KeyStore};
use coffer_testkit::TestServer;
use reqwest::StatusCode;
use std::collections::HashSet;
use std::time::Duration;

mod a_kill_between_the_key_and_the_order_leaves_no_row_without_its_key_and_no_key_erasure_misses {
    use coffer_testkit::{TestBackend, TestServer};

    /// Many orders from one address: the per-address order limit is off.
    async fn loaded_server(backend: TestBackend) -> TestServer {
        TestServer::start_with(crate::BIN, backend, &[("COFFER_HTTP__ORDERS_PER_MINUTE", "0")]).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_kill_between_the_key_and_the_order_leaves_no_row_without_its_key_and_no_key_erasure_misses(
            loaded_server(TestBackend::Sqlite).await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_kill_between_the_key_and_the_order_leaves_no_row_without_its_key_and_no_key_erasure_misses(
            loaded_server(TestBackend::Postgres).await,
        )
        .await;
    }
}

/// After the kill and a restart: every order answered 201 is stored; every
/// customer row opens (its key was durable first); every key no row names
/// is a spare, which the sweep deletes once its window has passed; and
/// erasing every customer leaves none of their keys in the key store.
async fn a_kill_between_the_key_and_the_order_leaves_no_row_without_its_key_and_no_key_erasure_misses(
    mut server: TestServer,
) {
    let version = crate::checkout::policy_version(&server).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..6 {
        let url = server.url("/api/v1/orders");
        let template = crate::checkout::order(&server, &version, "4242 4242 4242 4242", "x@example.org");
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let client = coffer_testkit::http_client();
            let mut answered = Vec::new();
            for n in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let mut body = template.clone();
                body["customer"]["email"] = format!("first-order-{worker}-{n}@example.org").into();
                // After the kill connections fail or break off mid-answer.
                let Ok(response) = client.post(&url).json(&body).send().await else { continue };
                let status = response.status();
                let Ok(body) = response.json::<serde_json::Value>().await else { continue };
                assert_eq!(status, StatusCode::CREATED, "{body}");
                answered.push(body["id"].as_str().unwrap().to_owned());
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut orders = Vec::new();
    for worker in workers {
        orders.extend(worker.await.unwrap());
    }
    assert!(orders.len() >= 10, "orders were placed before the kill: {}", orders.len());
    server.restart().await;

    let pool = crate::checkout::raw_pool(&server).await;
    for id in &orders {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders WHERE id = $1")
            .bind(id.clone())
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "order {id} was answered 201 but is not stored");
    }
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, data_key_id FROM customers").fetch_all(&pool).await.unwrap();
    pool.close().await;
    assert!(rows.len() > orders.len(), "the buyers and the demo customer are stored: {}", rows.len());

    // No row without its key: every customer opens.
    let customers = crate::privacy::customers(&server).await;
    for (id, _) in &rows {
        let id = CustomerId::parse(id).unwrap();
        customers.get(&id, &Reader::TheCustomer).await.expect("every stored customer opens with its key");
    }

    // Every key a row does not name is a spare, and the kill left some.
    let keys = KeyStore::open(&server.key_store_url(), &DbOptions::default()).await.unwrap();
    let named: HashSet<&str> = rows.iter().map(|(_, key)| key.as_str()).collect();
    let spares = keys.expired_spare_keys(Millis(i64::MAX), 100_000).await.unwrap();
    let orphans: Vec<&String> = spares.iter().filter(|id| !named.contains(id.as_str())).collect();
    assert!(!orphans.is_empty(), "the killed server held spare keys it never handed out");

    // The sweep, two hours on: the orphans go, the used spares stay as keys.
    let db = Db::open(&server.database_url(), &DbOptions::default()).await.unwrap();
    let later = Millis(coffer_domain::Clock::now(&coffer_app::SystemClock).0 + 2 * 60 * 60 * 1000);
    let deleted = coffer_app::retention::sweep_spare_keys(&db, &keys, later).await.unwrap();
    assert_eq!(deleted, orphans.len() as u64);
    for orphan in &orphans {
        assert!(keys.data_key(orphan).await.unwrap().is_none(), "an unused spare survived the sweep");
    }
    assert!(keys.expired_spare_keys(Millis(i64::MAX), 10).await.unwrap().is_empty(), "every spare is settled");

    // Erasure reaches every key: after erasing every customer, none is left.
    for (id, key) in &rows {
        assert!(keys.data_key(key).await.unwrap().is_some(), "a used spare is an ordinary key after the sweep");
        customers.erase(&CustomerId::parse(id).unwrap(), &RequestContext::cli("crash test")).await.unwrap();
        assert!(keys.data_key(key).await.unwrap().is_none(), "erasure destroyed the key");
    }
}
