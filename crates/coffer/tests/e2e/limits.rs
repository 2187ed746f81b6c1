//! Card testing and floods (finding 3 of the security review): failed
//! payments per client address, email and card; order attempts per address
//! (`http.orders_per_minute`); vendor API requests per key. Each limit
//! answers 429 `too_many_attempts` with `Retry-After`.

use crate::checkout::{order, policy_version};
use crate::client;
use coffer_testkit::{TestBackend, TestServer};
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::Value;

const DECLINED: &str = "4000000000000002";
/// Luhn-valid, not a documented test card: approved by the gateway.
const OTHER_GOOD: &str = "5555555555554444";

async fn post_from(server: &TestServer, ip: &str, body: &Value) -> (StatusCode, Option<u64>, Value) {
    let r = client().post(server.url("/api/v1/orders")).header("x-forwarded-for", ip).json(body).send().await.unwrap();
    let retry = r.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap().parse().unwrap());
    (r.status(), retry, r.json().await.unwrap())
}

fn assert_limited((status, retry, body): &(StatusCode, Option<u64>, Value), what: &str) {
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{what}: {body}");
    assert_eq!(body["error"]["code"], "too_many_attempts", "{what}");
    assert!(retry.is_some_and(|s| s >= 1), "{what}: Retry-After");
}

async fn limited_server(backend: TestBackend, extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![("COFFER_HTTP__TRUSTED_PROXIES", "127.0.0.1")];
    env.extend_from_slice(extra);
    TestServer::start_with(crate::BIN, backend, &env).await
}

async fn failed_payments_are_limited_per_address_email_and_card(backend: TestBackend) {
    let server = limited_server(backend, &[]).await;
    let version = policy_version(&server).await;
    // Ten declined cards from one address, each with its own email: each 402.
    for n in 0..10 {
        let body = order(&server, &version, DECLINED, &format!("tester{n}@example.org"));
        let (status, _, answer) = post_from(&server, "198.51.100.1", &body).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "attempt {n}: {answer}");
    }
    // The eleventh try from that address is refused, even with a good card
    // and a new email, before the gateway is asked.
    let fresh = order(&server, &version, OTHER_GOOD, "someone.new@example.org");
    assert_limited(&post_from(&server, "198.51.100.1", &fresh).await, "the address");
    // The hosts of one IPv6 /64 are one address: ten invalid cards (an
    // impossible month) from ten of its hosts spend it.
    for n in 0..10 {
        let mut body = order(&server, &version, "4012888888881881", &format!("v6-{n}@example.org"));
        body["card"]["exp_month"] = serde_json::json!(13);
        let (status, _, _) = post_from(&server, &format!("2001:db8:5:6::{:x}", n + 1), &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let same_net = order(&server, &version, OTHER_GOOD, "v6-new@example.org");
    assert_limited(&post_from(&server, "2001:db8:5:6:ffff::1", &same_net).await, "the IPv6 /64");
    let next_net = order(&server, &version, OTHER_GOOD, "v6-next@example.org");
    assert_eq!(post_from(&server, "2001:db8:5:7::1", &next_net).await.0, StatusCode::CREATED, "the next /64 is free");
    // The declined card itself, from a new address and a new email.
    let same_card = order(&server, &version, DECLINED, "card.owner@example.org");
    assert_limited(&post_from(&server, "203.0.113.50", &same_card).await, "the card");
    // One email with failures from many addresses.
    for n in 0..10 {
        let body = order(&server, &version, "4242424242424241", "victim@example.org");
        let (status, _, _) = post_from(&server, &format!("192.0.2.{n}"), &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a Luhn-invalid card is card_invalid");
    }
    let good_card_same_email = order(&server, &version, OTHER_GOOD, "victim@example.org");
    assert_limited(&post_from(&server, "192.0.2.200", &good_card_same_email).await, "the email");
    // Nothing shared with the failures: the order goes through.
    let unrelated = order(&server, &version, OTHER_GOOD, "unrelated@example.org");
    assert_eq!(post_from(&server, "203.0.113.51", &unrelated).await.0, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_payments_are_limited_per_address_email_and_card_sqlite() {
    failed_payments_are_limited_per_address_email_and_card(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_payments_are_limited_per_address_email_and_card_postgres() {
    failed_payments_are_limited_per_address_email_and_card(TestBackend::Postgres).await;
}

/// `http.orders_per_minute` counts every order attempt of an address, good
/// or bad; the default is 120 and 0 turns it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_attempts_per_address_follow_orders_per_minute() {
    let default = limited_server(TestBackend::Sqlite, &[]).await;
    let junk = serde_json::json!({"currency": "USD"});
    // 120 a minute, as a burst of 120 that refills at 2 a second: the 121st
    // attempt is refused unless the burst took long enough for the budget
    // to refill (a loaded machine), and then within what refilled.
    let started = std::time::Instant::now();
    let mut allowed = 0;
    let refused = loop {
        let answer = post_from(&default, "198.51.100.7", &junk).await;
        if answer.0 != StatusCode::BAD_REQUEST {
            break answer;
        }
        allowed += 1;
        assert!(allowed <= 1_000, "never limited");
    };
    let refilled = (started.elapsed().as_secs_f64() * 2.0).ceil() as usize + 1;
    assert!((120..=120 + refilled).contains(&allowed), "{allowed} attempts allowed, {refilled} refilled meanwhile");
    assert_limited(&refused, "the attempt after the budget");
    assert_eq!(post_from(&default, "198.51.100.8", &junk).await.0, StatusCode::BAD_REQUEST, "another address");
    // Through the checkout page too.
    let page = client()
        .post(default.url("/checkout/pay"))
        .header("x-forwarded-for", "198.51.100.7")
        .form(&[("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers().contains_key(RETRY_AFTER));

    let off = limited_server(TestBackend::Sqlite, &[("COFFER_HTTP__ORDERS_PER_MINUTE", "0")]).await;
    for n in 0..150 {
        let (status, _, _) = post_from(&off, "198.51.100.7", &junk).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "attempt {n} with the limit off");
    }
}

/// Each vendor API key has its own budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_api_keys_are_limited_one_by_one() {
    let server = limited_server(TestBackend::Sqlite, &[("COFFER_HTTP__VENDOR_API_PER_MINUTE", "5")]).await;
    let vendors = server.demo_credentials()["vendors"].clone();
    let get = |key: String| {
        let url = server.url("/api/v1/vendor/orders");
        async move {
            let r = client().get(url).bearer_auth(key).send().await.unwrap();
            let retry = r.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap().parse().unwrap());
            (r.status(), retry, r.json::<Value>().await.unwrap())
        }
    };
    let first = vendors[0]["api_key"].as_str().unwrap().to_owned();
    let second = vendors[1]["api_key"].as_str().unwrap().to_owned();
    for n in 0..5 {
        assert_eq!(get(first.clone()).await.0, StatusCode::OK, "request {n}");
    }
    assert_limited(&get(first.clone()).await, "the sixth request of one key");
    assert_eq!(get(second).await.0, StatusCode::OK, "another vendor's key is not affected");
    // A wrong key is 401, not counted against anyone.
    assert_eq!(get("not-a-key".into()).await.0, StatusCode::UNAUTHORIZED);
}
