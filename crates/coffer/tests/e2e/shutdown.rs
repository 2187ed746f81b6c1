//! SIGTERM stops the server cleanly: requests under way are answered in
//! full, then the process exits 0.

use crate::server;
use coffer_testkit::TestBackend;
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
            let client = reqwest::Client::new();
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
