//! Vendor-side benchmarks (issue 16 targets), against the real release
//! binary on SQLite (or PostgreSQL with `--postgres`):
//!
//! - `GET /api/v1/vendor/orders` (a page of 50, over 500 orders) at 32
//!   clients: requests/s, p50 and p99, next to `GET /static/style.css`
//!   of the same server (the yardstick) measured in the same run;
//! - the API-key check (`VendorService::check_api_key`) in process, next
//!   to the store's lookup alone and the key's SHA-256 alone;
//! - webhook delivery to a local receiver while new buyers order: events
//!   delivered per second, the lag after the last order, and duplicates.
//!
//! `cargo bench -p coffer --bench vendors [-- --quick] [-- --postgres]`.
//! Prints Markdown for docs/benchmarks.md. Under `cargo test` it runs once
//! with tiny sizes, so the code keeps working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_testkit::{TestBackend, TestServer};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64) * p).ceil() as usize;
    values[index.saturating_sub(1).min(values.len() - 1)]
}

fn client() -> reqwest::Client {
    coffer_testkit::http_client_builder().pool_max_idle_per_host(64).build().unwrap()
}

/// Requests/s, p50 and p99 (ms) of `GET path` by `clients` loops for `secs`.
async fn load(base: &str, path: &str, key: Option<&str>, clients: usize, secs: f64) -> (f64, f64, f64) {
    let client = client();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url, key) = (client.clone(), format!("{base}{path}"), key.map(str::to_owned));
            tokio::spawn(async move {
                let mut times = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    let mut request = client.get(&url);
                    if let Some(key) = &key {
                        request = request.bearer_auth(key);
                    }
                    let response = request.send().await.unwrap();
                    assert!(response.status().is_success(), "{}", response.status());
                    response.bytes().await.unwrap();
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let rps = all.len() as f64 / secs;
    (rps, percentile(&mut all, 0.5), percentile(&mut all, 0.99))
}

fn order(product: &str, version: &str, n: usize) -> Value {
    json!({
        "currency": "USD",
        "items": [{"product_id": product, "quantity": 1}],
        "customer": {"name": "Bench Buyer", "email": format!("bench.buyer.{n}@example.org"),
                     "address": {"line1": "1 Main St", "city": "Springfield", "postal_code": "62701", "country": "US"}},
        "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        "consent": {"privacy_policy_version": version, "accepted": true},
        "age": {"adult": true}
    })
}

/// Places `count` orders by new buyers, `clients` at a time; the time.
async fn place_orders(base: &str, product: &str, version: &str, from: usize, count: usize, clients: usize) -> Duration {
    let client = client();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(from));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, base, product, version, next) =
                (client.clone(), base.to_owned(), product.to_owned(), version.to_owned(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n >= from + count {
                        break;
                    }
                    let r = client
                        .post(format!("{base}/api/v1/orders"))
                        .json(&order(&product, &version, n))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// A keep-alive HTTP/1.1 receiver answering 200: each event id it got, how
/// often, and when.
type Seen = Arc<Mutex<(HashMap<String, u32>, Vec<Instant>)>>;

async fn receiver() -> (u16, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let store = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::new();
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    // One request: its head, then its body.
                    let head_end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                    let header = |name: &str| {
                        head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned())).unwrap_or_default()
                    };
                    let length: usize = header("content-length:").parse().unwrap_or(0);
                    let event = header("coffer-event-id:");
                    while buf.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + length);
                    {
                        let mut seen = store.lock().unwrap();
                        *seen.0.entry(event).or_default() += 1;
                        seen.1.push(Instant::now());
                    }
                    if socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

async fn key_check(server: &TestServer, key: &str, rounds: usize) -> (f64, f64, f64) {
    use coffer_app::config::Config;
    // A second handle on the server's own stores, as a second server would.
    let config = Config {
        data_dir: server.data_dir.clone(),
        key_dir: Some(server.key_dir()),
        database_url: Some(server.database_url()),
        ..Config::default()
    };
    let db = coffer_store::Db::open(&server.database_url(), &coffer_store::DbOptions::default()).await.unwrap();
    let around = coffer_app::Surroundings {
        base_url: server.base_url.clone(),
        policy_version: String::new(),
        actor: coffer_domain::Actor::System,
    };
    let app = coffer_app::App::build(&config, db.clone(), around).await.unwrap();
    let hash = coffer_crypto::token_hash(key);
    let time = |values: &mut Vec<f64>| percentile(values, 0.5);
    let (mut check, mut lookup, mut digest) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        assert!(app.vendors.check_api_key(key).await.unwrap().is_some());
        check.push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        assert!(db.live_api_key(&hash).await.unwrap().is_some());
        lookup.push(started.elapsed().as_secs_f64() * 1e6);
        let started = Instant::now();
        std::hint::black_box(coffer_crypto::token_hash(std::hint::black_box(key)));
        digest.push(started.elapsed().as_secs_f64() * 1e6);
    }
    (time(&mut check), time(&mut lookup), time(&mut digest))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick") || !bench;
    let backend = if args.iter().any(|a| a == "--postgres") { TestBackend::Postgres } else { TestBackend::Sqlite };
    let (orders, secs, stream) = if !bench {
        (60, 0.5, 40)
    } else if quick {
        (500, 3.0, 1000)
    } else {
        (500, 10.0, 4000)
    };
    let server = TestServer::start_with(
        BIN,
        backend,
        &[
            ("COFFER_WEBHOOKS__ALLOW_PRIVATE", "true"),
            ("COFFER_HTTP__ORDERS_PER_MINUTE", "0"),
            ("COFFER_HTTP__VENDOR_API_PER_MINUTE", "100000000"),
        ],
    )
    .await;
    let demo = server.demo_credentials();
    let key = demo["vendors"][0]["api_key"].as_str().unwrap().to_owned();
    let product = demo["vendors"][0]["products"][0]["id"].as_str().unwrap().to_owned();
    let base = server.base_url.clone();
    let policy: Value =
        client().get(format!("{base}/api/v1/privacy-policy")).send().await.unwrap().json().await.unwrap();
    let version = policy["version"].as_str().unwrap().to_owned();

    // The vendor's order list over `orders` orders.
    place_orders(&base, &product, &version, 0, orders, 16).await;
    let (static_rps, static_p50, static_p99) = load(&base, "/static/style.css", None, 32, secs).await;
    let (list_rps, list_p50, list_p99) = load(&base, "/api/v1/vendor/orders?limit=50", Some(&key), 32, secs).await;
    let (static_rps2, _, _) = load(&base, "/static/style.css", None, 32, secs).await;
    println!("### Vendor order list ({backend:?}, {orders} orders, page of 50, 32 clients, {secs} s each)\n");
    println!("| route | requests/s | p50 ms | p99 ms |\n| --- | --- | --- | --- |");
    println!("| GET /api/v1/vendor/orders?limit=50 | {list_rps:.0} | {list_p50:.2} | {list_p99:.2} |");
    println!(
        "| GET /static/style.css (yardstick, before / after) | {static_rps:.0} / {static_rps2:.0} | {static_p50:.2} | {static_p99:.2} |\n"
    );

    let rounds = if bench { 20_000 } else { 200 };
    let (check, lookup, digest) = key_check(&server, &key, rounds).await;
    println!("### API-key check, in process ({rounds} rounds, medians)\n");
    println!("| step | µs |\n| --- | --- |");
    println!("| VendorService::check_api_key (hash, lookup, last-use note) | {check:.1} |");
    println!("| the store's lookup alone (Db::live_api_key) | {lookup:.1} |");
    println!("| SHA-256 of the key alone | {digest:.2} |\n");

    // Webhooks: an endpoint for every event; new buyers order.
    let (port, seen) = receiver().await;
    let made: Value = client()
        .post(format!("{base}/api/v1/vendor/webhooks"))
        .bearer_auth(&key)
        .json(&json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["order.paid", "order.fulfilled"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(made["id"].is_string(), "{made}");
    let ordering = place_orders(&base, &product, &version, 1_000_000, stream, 32).await;
    let ordered_at = Instant::now();
    let expected = stream * 2;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = seen.lock().unwrap().1.len();
        if got >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lag = ordered_at.elapsed();
    let (counts, times) = seen.lock().unwrap().clone();
    let delivered = times.len();
    let span = times.last().unwrap().duration_since(*times.first().unwrap()).as_secs_f64().max(1e-3);
    let duplicates: u32 = counts.values().map(|n| n - 1).sum();
    println!(
        "### Webhook delivery to a local receiver ({backend:?}, {stream} new-buyer orders at 32 clients, 2 events each)\n"
    );
    println!("| figure | value |\n| --- | --- |");
    println!("| orders/s while delivering | {:.0} |", stream as f64 / ordering.as_secs_f64());
    println!("| events delivered | {delivered} of {expected} |");
    println!("| deliveries/s (first to last delivery) | {:.0} |", delivered as f64 / span);
    println!("| all delivered after the last order | {:.2} s |", lag.as_secs_f64());
    println!("| duplicate deliveries of one event | {duplicates} |");
    assert_eq!(delivered, expected, "every event delivered");
    assert_eq!(duplicates, 0, "no event twice");
}
