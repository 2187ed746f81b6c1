//! SIGTERM stops the server cleanly: requests under way are answered in
//! full, background work finishes its unit under way, then the process
//! exits 0 within 10 seconds, having lost nothing.

use crate::server;
use coffer_testkit::{TestBackend, TestServer};
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_requests_in_flight_then_exits_cleanly() {
    let mut server = server(TestBackend::Sqlite).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let url = server.url("/api/v1/products");
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let client = coffer_testkit::http_client();
            let mut complete = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(response) = client.get(&url).send().await else { break };
                // A response that started must arrive whole.
                assert_eq!(response.status(), 200);
                let body: serde_json::Value = response.json().await.expect("a complete body");
                assert_eq!(body["products"].as_array().map(Vec::len), Some(4));
                complete += 1;
            }
            complete
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(15)).expect("the server exits after SIGTERM");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(status.success(), "exit status {status:?}; log:\n{}", server.logs());
    let mut total = 0;
    for worker in workers {
        total += worker.await.expect("no truncated response");
    }
    assert!(total > 0, "requests were served before the signal");
    let logs = server.logs();
    let draining = logs.find("shutting down").expect("the shutdown is logged");
    let stopped = logs.find("\"stopped\"").expect("the end is logged");
    assert!(draining < stopped);
}

/// SIGTERM while new buyers are checking out: the server exits within 10
/// seconds, every order it answered 201 is in the database, and after a
/// restart every one of them has its confirmation email delivered (what the
/// mail loop had not sent yet stayed queued as a job). Nothing half-done:
/// no order without its email job, no email job claimed and left.
async fn sigterm_under_load_loses_no_order_and_no_email(mut server: TestServer) {
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
                body["customer"]["email"] = format!("new-buyer-{worker}-{n}@example.org").into();
                // Refused connections after the signal are expected: the
                // port no longer accepts. An answer that started is whole.
                let Ok(response) = client.post(&url).json(&body).send().await else { continue };
                let status = response.status();
                let body: serde_json::Value = response.json().await.expect("a complete body");
                if status == StatusCode::CREATED {
                    answered.push(body["id"].as_str().unwrap().to_owned());
                } else {
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = std::time::Instant::now();
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(15)).expect("the server exits after SIGTERM");
    let took = signalled.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(status.success(), "exit status {status:?}; log:\n{}", server.logs());
    assert!(took < Duration::from_secs(10), "the server took {took:?} to stop");
    let mut orders = Vec::new();
    for worker in workers {
        orders.extend(worker.await.expect("no truncated response"));
    }
    assert!(orders.len() >= 10, "orders were placed under load: {}", orders.len());

    // Nothing half-done: each answered order is there with its email job,
    // and no job is left claimed.
    let pool = crate::checkout::raw_pool(&server).await;
    for id in &orders {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders WHERE id = $1")
            .bind(id.clone())
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "order {id} was answered 201 but is not stored");
    }
    let (claimed,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE status = 'pending' AND claimed_until IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(claimed, 0, "a job was claimed and left at shutdown");
    pool.close().await;

    // After a restart, every order's confirmation arrives.
    server.restart().await;
    let mail_dir = server.data_dir.join("mail");
    let mut missing = orders.clone();
    for _ in 0..300 {
        let mail = std::fs::read_dir(&mail_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect::<String>()
            })
            .unwrap_or_default();
        missing.retain(|id| !mail.contains(id.as_str()));
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(missing.is_empty(), "{} of {} answered orders have no email: {missing:?}", missing.len(), orders.len());
}

mod sigterm_under_load_loses_no_order_and_no_email {
    use coffer_testkit::{TestBackend, TestServer};

    /// Many orders from one address: the per-address order limit is off.
    async fn loaded_server(backend: TestBackend) -> TestServer {
        TestServer::start_with(crate::BIN, backend, &[("COFFER_HTTP__ORDERS_PER_MINUTE", "0")]).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::sigterm_under_load_loses_no_order_and_no_email(loaded_server(TestBackend::Sqlite).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::sigterm_under_load_loses_no_order_and_no_email(loaded_server(TestBackend::Postgres).await).await;
    }
}
