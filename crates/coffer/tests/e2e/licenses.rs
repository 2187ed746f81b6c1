//! License status over HTTP, as CONTRACT.md and `docs/license-keys.md`
//! state it: `POST /api/v1/licenses/verify` says a key is valid until a
//! refund (of its line, or of the whole order, by support in the staff
//! console) revokes it; a forged key is invalid; refusals carry their
//! codes; checks are limited per client address
//! (`http.license_verify_per_minute`). Each vendor's revocation list
//! verifies with the public key in `demo-credentials.json` and shows a
//! revocation at once. The key is never logged.

use crate::checkout::{order, policy_version, post_order, staff_act, staff_refund_line};
use crate::{client, on_both_backends};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_testkit::{TestBackend, TestServer};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};

on_both_backends!(a_key_verifies_online_until_a_refund_revokes_it);

async fn verify(server: &TestServer, key: &str) -> Value {
    let r = client().post(server.url("/api/v1/licenses/verify")).json(&json!({"key": key})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    r.json().await.unwrap()
}

/// A raw verify request: its status and body.
async fn verify_raw(server: &TestServer, content_type: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let r = client()
        .post(server.url("/api/v1/licenses/verify"))
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The vendor's revocation list, verified with its public key from
/// `demo-credentials.json` as a vendor's program would: the list's JSON.
async fn revocations(server: &TestServer, vendor: usize) -> Value {
    let vendor = &server.demo_credentials()["vendors"][vendor];
    let r = client()
        .get(server.url(&format!("/api/v1/vendors/{}/revocations", vendor["slug"].as_str().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let body: Value = r.json().await.unwrap();
    let signed = coffer_crypto::SignedList {
        list: body["list"].as_str().unwrap().to_owned(),
        signature: body["signature"].as_str().unwrap().to_owned(),
    };
    let bytes = coffer_crypto::verify_revocation_list(vendor["license_public_key"].as_str().unwrap(), &signed)
        .expect("the list verifies with the vendor's public key");
    let list: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(list["vendor"], vendor["slug"]);
    list
}

fn listed(list: &Value) -> Vec<Value> {
    list["revoked"].as_array().unwrap().iter().map(|e| e["order_id"].clone()).collect()
}

async fn a_key_verifies_online_until_a_refund_revokes_it(server: TestServer) {
    let version = policy_version(&server).await;
    let vendors = server.demo_credentials()["vendors"].clone();
    let (first, second) = (vendors[0]["products"][0]["id"].clone(), vendors[1]["products"][0]["id"].clone());
    let mut body = order(&server, &version, "4242424242424242", "licensed@example.org");
    body["items"] = json!([{"product_id": first, "quantity": 1}, {"product_id": second, "quantity": 1}]);
    let (status, placed) = post_order(&server, &body).await;
    assert_eq!((status, placed["status"].as_str()), (StatusCode::CREATED, Some("fulfilled")), "{placed}");
    let id = placed["id"].as_str().unwrap().to_owned();
    let key_of = |product: &Value| {
        let keys = placed["license_keys"].as_array().unwrap();
        keys.iter().find(|k| k["product_id"] == *product).unwrap()["key"].as_str().unwrap().to_owned()
    };
    let (first_key, second_key) = (key_of(&first), key_of(&second));
    assert_eq!(verify(&server, &first_key).await, json!({"valid": true, "status": "active", "product_id": first}));
    assert_eq!(verify(&server, &second_key).await, json!({"valid": true, "status": "active", "product_id": second}));
    assert!(listed(&revocations(&server, 1).await).is_empty());

    // Support refunds the second line in the staff console: its key is
    // revoked at once, the other line's key still works.
    let support = crate::staff::demo_staff_session(&server, "support").await;
    let (status, page) = staff_refund_line(&server, &support, &id, "2", "asked").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(verify(&server, &second_key).await, json!({"valid": false, "status": "revoked", "product_id": second}));
    assert_eq!(verify(&server, &first_key).await, json!({"valid": true, "status": "active", "product_id": first}));
    let list = revocations(&server, 1).await;
    assert_eq!(listed(&list), [json!(id)]);
    let payload: Value =
        serde_json::from_slice(&coffer_crypto::unverified_license_payload(&second_key).unwrap()).unwrap();
    assert_eq!(list["revoked"][0]["licensee"], payload["licensee"]);
    assert_eq!(list["revoked"][0]["product_id"], second);
    assert!(listed(&revocations(&server, 0).await).is_empty(), "the other vendor's list");
    // Then the whole order: the first key too.
    let (status, page) = staff_act(&server, &support, &id, "refund", "asked again").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(verify(&server, &first_key).await, json!({"valid": false, "status": "revoked", "product_id": first}));
    assert_eq!(listed(&revocations(&server, 0).await), [json!(id)]);
    assert_eq!(listed(&revocations(&server, 1).await), [json!(id)], "listed once");

    // Forged: the payload changed, the signature kept; or pure junk.
    let (payload_part, signature) = first_key.split_once('.').unwrap();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_part).unwrap()).unwrap();
    claims["order_id"] = json!("ord_0193abcdef0123456789abcdef012345");
    let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let invalid = json!({"valid": false, "status": "invalid", "product_id": null});
    assert_eq!(verify(&server, &forged).await, invalid);
    assert_eq!(verify(&server, "not-a-key").await, invalid);

    // Refusals, each with its code; nothing of the body echoed.
    let (status, answer) = verify_raw(&server, "application/json", "{\"key\": ").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")));
    let (status, answer) = verify_raw(&server, "text/plain", json!({"key": first_key}).to_string()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type"))
    );
    let (status, answer) = verify_raw(&server, "application/json", r#"{"key": 42}"#).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")));
    assert_eq!(answer["error"]["field"], "key");
    let extra = json!({"key": first_key, "note": "x"}).to_string();
    let (status, answer) = verify_raw(&server, "application/json", extra).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!answer.to_string().contains(signature), "the key is not echoed: {answer}");
    let huge = json!({"key": "a".repeat(2 * 1024 * 1024)}).to_string();
    assert_eq!(verify_raw(&server, "application/json", huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    // Unknown and suspended vendors have no list.
    let r = client().get(server.url("/api/v1/vendors/no-such-vendor/revocations")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_found");
    let slug = vendors[0]["slug"].as_str().unwrap();
    let suspended = server.cli(&["vendors", "suspend", slug, "--reason", "testing"]);
    assert!(suspended.status.success(), "{}", String::from_utf8_lossy(&suspended.stderr));
    let r = client().get(server.url(&format!("/api/v1/vendors/{slug}/revocations"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // No key in the server's log.
    let logs = server.logs();
    for key in [&first_key, &second_key, &forged] {
        assert!(!logs.contains(key.split_once('.').unwrap().1), "a key was logged");
    }
}

/// `http.license_verify_per_minute` counts every check of an address,
/// well-formed or not; 0 turns it off.
async fn license_checks_are_limited_per_address(backend: TestBackend) {
    let env = [("COFFER_HTTP__TRUSTED_PROXIES", "127.0.0.1"), ("COFFER_HTTP__LICENSE_VERIFY_PER_MINUTE", "3")];
    let server = TestServer::start_with(crate::BIN, backend, &env).await;
    let check = |ip: &'static str, body: &'static str| {
        client()
            .post(server.url("/api/v1/licenses/verify"))
            .header("x-forwarded-for", ip)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
    };
    assert_eq!(check("198.51.100.7", r#"{"key": "a.b"}"#).await.unwrap().status(), StatusCode::OK);
    assert_eq!(check("198.51.100.7", "not json").await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(check("198.51.100.7", r#"{"key": "a.b"}"#).await.unwrap().status(), StatusCode::OK);
    let refused = check("198.51.100.7", r#"{"key": "a.b"}"#).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "too_many_attempts");
    assert_eq!(check("198.51.100.8", r#"{"key": "a.b"}"#).await.unwrap().status(), StatusCode::OK, "another address");
    // Orders from the limited address are counted apart.
    let version = policy_version(&server).await;
    let body = order(&server, &version, "4242424242424242", "limited@example.org");
    let r = client().post(server.url("/api/v1/orders")).header("x-forwarded-for", "198.51.100.7").json(&body);
    assert_eq!(r.send().await.unwrap().status(), StatusCode::CREATED);

    let env = [("COFFER_HTTP__TRUSTED_PROXIES", "127.0.0.1"), ("COFFER_HTTP__LICENSE_VERIFY_PER_MINUTE", "0")];
    let off = TestServer::start_with(crate::BIN, backend, &env).await;
    for n in 0..70 {
        let r = client()
            .post(off.url("/api/v1/licenses/verify"))
            .header("x-forwarded-for", "198.51.100.7")
            .json(&json!({"key": "a.b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "check {n} with the limit off");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_checks_are_limited_per_address_sqlite() {
    license_checks_are_limited_per_address(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_checks_are_limited_per_address_postgres() {
    license_checks_are_limited_per_address(TestBackend::Postgres).await;
}
