//! The vendor side over HTTP and the command line: onboarding with
//! `coffer vendors add`, the portal's enrolment and two-step sign-in, the
//! data-processing terms gating buyers, API keys, products, suspension,
//! webhooks to a real local receiver, and statements that reconcile with
//! the invoices.

use crate::accounts::{field_value, unix_now};
use crate::checkout::{order, policy_version, post_order, raw_pool};
use crate::{client, on_both_backends};
use coffer_testkit::{TestBackend, TestServer};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_backends!(
    a_vendor_is_onboarded_by_link_and_sees_buyers_only_after_its_terms,
    suspension_stops_keys_sessions_and_listings_at_once,
    vendor_products_through_the_api_stay_the_vendors_own,
    statements_reconcile_with_the_invoices,
    admins_onboard_suspend_and_reinstate_in_the_console,
);

fn cookie_of(response: &reqwest::Response, name: &str) -> String {
    let set = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("a {name} cookie"))
        .to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

async fn get(server: &TestServer, path: &str, cookie: &str) -> reqwest::Response {
    client().get(server.url(path)).header(COOKIE, cookie).send().await.unwrap()
}

async fn post(server: &TestServer, path: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client().post(server.url(path)).header(COOKIE, cookie).form(form).send().await.unwrap()
}

/// The portal page's CSRF token.
async fn csrf(server: &TestServer, path: &str, cookie: &str) -> String {
    field_value(&get(server, path, cookie).await.text().await.unwrap(), "csrf")
}

async fn api(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client().request(method, server.url(path)).header(AUTHORIZATION, format!("Bearer {key}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Adds a vendor with the CLI; its owner's enrolment path.
fn add_vendor(server: &TestServer, slug: &str, owner: &str) -> String {
    let out = server.cli(&["vendors", "add", "--slug", slug, "--name", "Acme Tools", "--owner-email", owner]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let link = stdout.lines().find(|l| l.contains("/vendor/enrol/")).expect("an enrolment link").trim().to_owned();
    link[link.find("/vendor/enrol/").unwrap()..].to_owned()
}

/// Enrols by the link with a password; the session cookie and the TOTP secret.
async fn enrol(server: &TestServer, path: &str, password: &str) -> (String, Vec<u8>) {
    let html = get(server, path, "").await.text().await.unwrap();
    let secret_text = field_value(&html, "secret");
    let secret = coffer_crypto::totp_secret_from_base32(&secret_text).unwrap();
    let code = coffer_crypto::totp_code(&secret, unix_now()).unwrap();
    let done = post(server, path, "", &[("password", password), ("secret", &secret_text), ("code", &code)]).await;
    assert_eq!(done.status(), StatusCode::OK);
    let cookie = cookie_of(&done, "coffer_vendor");
    assert!(done.text().await.unwrap().contains("recovery codes"));
    (cookie, secret)
}

/// Signs in with password and code; the session cookie.
async fn sign_in(server: &TestServer, email: &str, password: &str, secret: &[u8]) -> reqwest::Response {
    let pass = crate::form_pass(server, "/vendor").await;
    let step = client()
        .post(server.url("/vendor/sign-in"))
        .header(COOKIE, &pass.cookie)
        .form(&[("email", email), ("password", password), ("form_token", &pass.token)])
        .send()
        .await
        .unwrap();
    assert_eq!(step.status(), StatusCode::OK);
    assert!(step.headers().get(SET_COOKIE).is_none(), "no session before the code");
    let ticket = field_value(&step.text().await.unwrap(), "ticket");
    // The code of the next step: the enrolment used this one.
    let code = coffer_crypto::totp_code(secret, unix_now() + 30).unwrap();
    client()
        .post(server.url("/vendor/sign-in/code"))
        .form(&[("ticket", ticket.as_str()), ("code", code.as_str())])
        .send()
        .await
        .unwrap()
}

/// Makes an API key in the portal; the key shown once.
async fn make_key(server: &TestServer, cookie: &str) -> String {
    let token = csrf(server, "/vendor/keys", cookie).await;
    let page = post(server, "/vendor/keys", cookie, &[("csrf", &token), ("label", "Build server")]).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let start = html.find("id=\"new-key\">").expect("the new key, shown once") + "id=\"new-key\">".len();
    html[start..].chars().take_while(|c| *c != '<').collect()
}

async fn a_vendor_is_onboarded_by_link_and_sees_buyers_only_after_its_terms(server: TestServer) {
    let path = add_vendor(&server, "acme", "owner@acme.example");
    // Bad input: a clear message and a non-zero exit, nothing written.
    for (args, says) in [
        (vec!["--slug", "acme", "--name", "Again", "--owner-email", "other@acme.example"], "slug exists"),
        (vec!["--slug", "Bad Slug", "--name", "X", "--owner-email", "x@acme.example"], "slug must be"),
        (vec!["--slug", "okay", "--name", "X", "--owner-email", "not-an-address"], "email"),
        (vec!["--slug", "other", "--name", "X", "--owner-email", "owner@acme.example"], "already belongs"),
    ] {
        let out = server.cli(&[&["vendors", "add"][..], &args[..]].concat());
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = String::from_utf8_lossy(&server.cli(&["vendors", "list"]).stdout).into_owned();
    assert!(listed.lines().any(|l| l.starts_with("acme\tAcme Tools\tactive\tnot accepted\t1\t0")), "{listed}");
    assert!(!listed.contains("other\t") && !listed.contains("okay\t"), "{listed}");

    let (cookie, secret) = enrol(&server, &path, "acme lantern harbour 2026").await;
    assert_eq!(get(&server, &path, "").await.status(), StatusCode::GONE, "the link works once");
    let home = get(&server, "/vendor", &cookie).await.text().await.unwrap();
    assert!(home.contains("Acme Tools") && home.contains("data-processing terms"), "{home}");
    // Signing in again always asks for the code; a wrong password gets nothing.
    let signed = sign_in(&server, "owner@acme.example", "acme lantern harbour 2026", &secret).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = cookie_of(&signed, "coffer_vendor");

    // A product through the API with a key made in the portal.
    let key = make_key(&server, &cookie).await;
    assert!(key.starts_with("cvk_"));
    let (status, product) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/vendor/products",
        &key,
        Some(json!({"name": "Acme Widget", "description": "Turns things.", "prices": {"USD": 2500}, "delivery": "license_key"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    assert_eq!((product["published"].as_bool(), product["listed"].as_bool()), (Some(true), Some(true)));
    let version = policy_version(&server).await;
    let mut body = order(&server, &version, "4242424242424242", "buyer.of.acme@example.org");
    body["items"] = json!([{"product_id": product["id"], "quantity": 1}]);
    let (status, placed) = post_order(&server, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let detail_path = format!("/api/v1/vendor/orders/{}", placed["id"].as_str().unwrap());

    // Before the owner accepts the terms: the order, never its buyer.
    let (_, detail) = api(&server, reqwest::Method::GET, &detail_path, &key, None).await;
    assert_eq!(detail["id"], placed["id"]);
    assert!(detail["buyer"].is_null(), "no buyer before the terms: {detail}");
    let page = get(&server, &format!("/vendor/orders/{}", placed["id"].as_str().unwrap()), &cookie).await;
    assert!(!page.text().await.unwrap().contains("Erika"));

    // The owner accepts the terms shown (their version is checked).
    let terms = get(&server, "/vendor/terms", &cookie).await.text().await.unwrap();
    let (token, version_shown) = (field_value(&terms, "csrf"), field_value(&terms, "version"));
    let stale =
        post(&server, "/vendor/terms", &cookie, &[("csrf", &token), ("version", "0000"), ("accept", "on")]).await;
    assert_eq!(stale.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let accepted =
        post(&server, "/vendor/terms", &cookie, &[("csrf", &token), ("version", &version_shown), ("accept", "on")])
            .await;
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    let listed = String::from_utf8_lossy(&server.cli(&["vendors", "list"]).stdout).into_owned();
    assert!(listed.contains("acme\tAcme Tools\tactive\taccepted"), "{listed}");

    // Now the detail carries the buyer, audited and recorded; the export
    // names the vendor and its privacy contact (the owner: none named).
    let (_, detail) = api(&server, reqwest::Method::GET, &detail_path, &key, None).await;
    assert_eq!(detail["buyer"]["name"], "Erika Mustermann", "{detail}");
    let export = server.cli(&["export", "--email", "buyer.of.acme@example.org"]);
    let export: Value = serde_json::from_slice(&export.stdout).unwrap();
    let disclosure = export["disclosures"].as_array().unwrap().first().cloned().expect("a disclosure");
    assert_eq!(
        (disclosure["recipient_name"].as_str(), disclosure["privacy_contact"].as_str()),
        (Some("Acme Tools"), Some("owner@acme.example"))
    );
    // A named contact replaces the owner in the export.
    let token = csrf(&server, "/vendor/terms", &cookie).await;
    let bad = post(&server, "/vendor/privacy-contact", &cookie, &[("csrf", &token), ("contact", "Jane Roe")]).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY, "a contact needs an address");
    let named = "Jane Roe <privacy@acme.example>";
    let saved = post(&server, "/vendor/privacy-contact", &cookie, &[("csrf", &token), ("contact", named)]).await;
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let export = server.cli(&["export", "--email", "buyer.of.acme@example.org"]);
    let export: Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(export["disclosures"][0]["privacy_contact"].as_str(), Some(named));

    // The owner got an email for the new order, without the buyer.
    let mail = crate::accounts::mail_containing(&server, "New order").await;
    assert!(mail.contains(placed["id"].as_str().unwrap()) && mail.contains("Acme Widget"), "{mail}");
    assert!(!mail.contains("Erika") && !mail.contains("buyer.of.acme"), "no buyer in the email: {mail}");

    // A member invited by the owner cannot open the owner's pages, and a
    // key revoked in the portal answers 401.
    let token = csrf(&server, "/vendor/members", &cookie).await;
    let invited = post(
        &server,
        "/vendor/members",
        &cookie,
        &[("csrf", &token), ("email", "dev@acme.example"), ("role", "member")],
    )
    .await;
    let html = invited.text().await.unwrap();
    let start = html.find("/vendor/enrol/").expect("a member's link");
    let member_path: String = html[start..].chars().take_while(|c| *c != '<').collect();
    let (member, _) = enrol(&server, &member_path, "acme member meadow 2026").await;
    assert_eq!(get(&server, "/vendor/keys", &member).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(get(&server, "/vendor/orders", &member).await.status(), StatusCode::OK);
    let keys = get(&server, "/vendor/keys", &cookie).await.text().await.unwrap();
    let key_id: String =
        keys[keys.find("/vendor/keys/vak_").unwrap() + "/vendor/keys/".len()..].chars().take(36).collect();
    let token = csrf(&server, "/vendor/keys", &cookie).await;
    let revoked = post(&server, &format!("/vendor/keys/{key_id}/revoke"), &cookie, &[("csrf", &token)]).await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let (status, answer) = api(&server, reqwest::Method::GET, "/api/v1/vendor/orders", &key, None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
}

async fn suspension_stops_keys_sessions_and_listings_at_once(server: TestServer) {
    let vendor = server.demo_credentials()["vendors"][0].clone();
    let key = vendor["api_key"].as_str().unwrap();
    let product = vendor["products"][0]["id"].as_str().unwrap();
    let secret = coffer_crypto::totp_secret_from_base32(vendor["totp_secret"].as_str().unwrap()).unwrap();
    let signed =
        sign_in(&server, vendor["user_email"].as_str().unwrap(), vendor["password"].as_str().unwrap(), &secret).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = cookie_of(&signed, "coffer_vendor");
    assert_eq!(get(&server, "/vendor/orders", &cookie).await.status(), StatusCode::OK);
    assert_eq!(api(&server, reqwest::Method::GET, "/api/v1/vendor/products", key, None).await.0, StatusCode::OK);

    let out = server.cli(&["vendors", "suspend", "northwind", "--reason", "sold someone else's software"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, answer) = api(&server, reqwest::Method::GET, "/api/v1/vendor/products", key, None).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let page = get(&server, "/vendor/orders", &cookie).await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER, "the session ended");
    assert_eq!(page.headers()[LOCATION], "/vendor");
    // Listings follow within the catalog cache's second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let listed: Value =
        client().get(server.url("/api/v1/products?vendor=northwind")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["products"], json!([]), "{listed}");
    assert_eq!(
        client().get(server.url(&format!("/products/{product}"))).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let version = policy_version(&server).await;
    let (status, refused) =
        post_order(&server, &order(&server, &version, "4242424242424242", "late@example.org")).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_product"))
    );
    // The owner cannot sign in while suspended.
    let again =
        sign_in_password_only(&server, vendor["user_email"].as_str().unwrap(), vendor["password"].as_str().unwrap())
            .await;
    assert!(!again.contains("name=\"ticket\""), "no code step for a suspended vendor");
    let twice = server.cli(&["vendors", "suspend", "northwind", "--reason", "again"]);
    assert!(!twice.status.success() && String::from_utf8_lossy(&twice.stderr).contains("already suspended"));
    let pool = raw_pool(&server).await;
    let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'vendor.suspended'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(audited, 1);

    let out = server.cli(&["vendors", "reinstate", "northwind"]);
    assert!(out.status.success());
    assert_eq!(api(&server, reqwest::Method::GET, "/api/v1/vendor/products", key, None).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, _) = post_order(&server, &order(&server, &version, "4242424242424242", "back@example.org")).await;
    assert_eq!(status, StatusCode::CREATED);
    let unknown = server.cli(&["vendors", "reinstate", "nobody"]);
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("no vendor"));
}

async fn sign_in_password_only(server: &TestServer, email: &str, password: &str) -> String {
    let pass = crate::form_pass(server, "/vendor").await;
    client()
        .post(server.url("/vendor/sign-in"))
        .header(COOKIE, &pass.cookie)
        .form(&[("email", email), ("password", password), ("form_token", &pass.token)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn vendor_products_through_the_api_stay_the_vendors_own(server: TestServer) {
    let vendors = server.demo_credentials()["vendors"].clone();
    let (a, b) = (vendors[0]["api_key"].as_str().unwrap(), vendors[1]["api_key"].as_str().unwrap());
    let new =
        |prices: Value| json!({"name": "Notes Cloud", "description": "", "prices": prices, "delivery": "license_key"});
    let (status, bad) =
        api(&server, reqwest::Method::POST, "/api/v1/vendor/products", a, Some(new(json!({"USD": 100, "XXQ": 5}))))
            .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str(), bad["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_price"), Some("prices.XXQ"))
    );
    let (status, bad) = api(&server, reqwest::Method::POST, "/api/v1/vendor/products", a, Some(new(json!({})))).await;
    assert_eq!((status, bad["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_price")));
    let raw = client()
        .post(server.url("/api/v1/vendor/products"))
        .header(AUTHORIZATION, format!("Bearer {a}"))
        .header(CONTENT_TYPE, "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, made) =
        api(&server, reqwest::Method::POST, "/api/v1/vendor/products", a, Some(new(json!({"USD": 990, "EUR": 900}))))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let path = format!("/api/v1/vendor/products/{}", made["id"].as_str().unwrap());
    // Another vendor's product is exactly as one that does not exist.
    let (status, other) = api(&server, reqwest::Method::GET, &path, b, None).await;
    assert_eq!((status, other["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, _) = api(&server, reqwest::Method::PATCH, &path, b, Some(json!({"published": false}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let missing = "/api/v1/vendor/products/prd_00000000000000000000000000000000";
    assert_eq!(api(&server, reqwest::Method::GET, missing, a, None).await.1, other);
    // Withdrawn: gone from the storefront and checkout, still the vendor's.
    let (status, changed) =
        api(&server, reqwest::Method::PATCH, &path, a, Some(json!({"published": false, "name": "Notes Cloud 2"})))
            .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!((changed["name"].as_str(), changed["published"].as_bool()), (Some("Notes Cloud 2"), Some(false)));
    let public =
        client().get(server.url(&format!("/api/v1/products/{}", made["id"].as_str().unwrap()))).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let (_, own) = api(&server, reqwest::Method::GET, "/api/v1/vendor/products?limit=100", a, None).await;
    assert!(own["products"].as_array().unwrap().iter().any(|p| p["id"] == made["id"]));
    let (_, theirs) = api(&server, reqwest::Method::GET, "/api/v1/vendor/products?limit=100", b, None).await;
    assert!(!theirs["products"].as_array().unwrap().iter().any(|p| p["id"] == made["id"]));
    // Bad keys are all the same 401.
    for key in ["", "cvk_nothing", &"x".repeat(500)] {
        let (status, answer) = api(&server, reqwest::Method::GET, "/api/v1/vendor/products", key, None).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    }
    let (status, answer) = api(&server, reqwest::Method::GET, "/api/v1/vendor/orders?limit=0", a, None).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")));
    let (status, _) = api(&server, reqwest::Method::GET, "/api/v1/vendor/orders?status=lost", a, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Waits until `check` holds (asynchronous work: the relay, the numbering).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 10 s");
}

async fn statements_reconcile_with_the_invoices(server: TestServer) {
    let vendors = server.demo_credentials()["vendors"].clone();
    let key = vendors[0]["api_key"].as_str().unwrap().to_owned();
    let version = policy_version(&server).await;
    let mut two = order(&server, &version, "4242424242424242", "ledger.one@example.org");
    two["items"] = json!([
        {"product_id": vendors[0]["products"][0]["id"], "quantity": 2},
        {"product_id": vendors[1]["products"][0]["id"], "quantity": 1}
    ]);
    let first = post_order(&server, &two).await.1;
    let second = post_order(&server, &order(&server, &version, "4242424242424242", "ledger.two@example.org")).await.1;
    let held = post_order(&server, &order(&server, &version, "4000000000009235", "ledger.held@example.org")).await.1;
    assert_eq!(held["status"], "on_hold");
    let today: String = {
        let (_, s) = api(&server, reqwest::Method::GET, "/api/v1/vendor/orders?limit=1", &key, None).await;
        s["orders"][0]["placed_at"].as_str().unwrap()[..10].to_owned()
    };
    // The order list pages with a cursor and filters by status and day.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) =
            api(&server, reqwest::Method::GET, &format!("/api/v1/vendor/orders?limit=1{cursor}"), &key, None).await;
        seen.extend(page["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        match page["next_after"].as_str() {
            Some(next) => cursor = format!("&after={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = [&held, &second, &first].iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seen, expected, "newest first, each once");
    let (_, held_only) = api(&server, reqwest::Method::GET, "/api/v1/vendor/orders?status=on_hold", &key, None).await;
    assert_eq!(held_only["orders"].as_array().unwrap().len(), 1);
    assert_eq!(held_only["orders"][0]["id"], held["id"]);
    let (_, none) = api(&server, reqwest::Method::GET, "/api/v1/vendor/orders?to=2020-01-01", &key, None).await;
    assert_eq!(none["orders"], json!([]));
    let (_, today_only) =
        api(&server, reqwest::Method::GET, &format!("/api/v1/vendor/orders?from={today}&to={today}"), &key, None).await;
    assert_eq!(today_only["orders"].as_array().unwrap().len(), 3);
    let path = format!("/api/v1/vendor/statement?from={today}&to={today}");
    let statement = || {
        let (server, key, path) = (&server, key.clone(), path.clone());
        async move { api(server, reqwest::Method::GET, &path, &key, None).await.1 }
    };
    eventually("the ledger entries of two paid orders", || async {
        statement().await["entries"].as_array().is_some_and(|e| e.len() == 4)
    })
    .await;
    let s = statement().await;
    let usd = &s["currencies"][0];
    // Vendor A sold 2 × 19.99 and 1 × 19.99; the held order is not a sale.
    assert_eq!(
        (usd["currency"].as_str(), usd["sales"].as_i64(), usd["refunds"].as_i64()),
        (Some("USD"), Some(5997), Some(0))
    );
    assert_eq!((usd["fees"].as_i64(), usd["net"].as_i64()), (Some(600), Some(5397)), "10 % of each line, rounded");
    // Reconciles with the invoices: vendor A's lines on them, net.
    let pool = raw_pool(&server).await;
    let ids = [first["id"].as_str().unwrap().to_owned(), second["id"].as_str().unwrap().to_owned()];
    eventually("both invoices", || async {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoices WHERE order_id = $1 OR order_id = $2")
            .bind(&ids[0])
            .bind(&ids[1])
            .fetch_one(&pool)
            .await
            .unwrap();
        n == 2
    })
    .await;
    let invoiced_a: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(l.line_total), 0) AS BIGINT) FROM order_lines l JOIN invoices i ON i.order_id = l.order_id \
         WHERE l.vendor_id = $1 AND (i.order_id = $2 OR i.order_id = $3)",
    )
    .bind(vendor_id(&pool, "northwind").await)
    .bind(&ids[0])
    .bind(&ids[1])
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(invoiced_a, usd["sales"].as_i64().unwrap(), "statement sales = vendor A's invoiced lines");

    // A refund of the second order by support: refund and fee given back.
    let support = crate::staff::demo_staff_session(&server, "support").await;
    let order_page = format!("/staff/orders/{}", ids[1]);
    let token = csrf(&server, &order_page, &support).await;
    let refunded = post(
        &server,
        &format!("{order_page}/action"),
        &support,
        &[("csrf", &token), ("action", "refund"), ("reason", "asked")],
    )
    .await;
    assert!(refunded.status().is_success() || refunded.status() == StatusCode::SEE_OTHER, "{}", refunded.status());
    eventually("the refund's entries", || async {
        statement().await["entries"].as_array().is_some_and(|e| e.len() == 6)
    })
    .await;
    let usd = statement().await["currencies"][0].clone();
    assert_eq!(
        (usd["sales"].as_i64(), usd["refunds"].as_i64(), usd["fees"].as_i64()),
        (Some(5997), Some(1999), Some(400))
    );
    assert_eq!(usd["net"].as_i64(), Some(5997 - 1999 - 400));
    // The other vendor's statement holds only its own line.
    let (_, other) = api(&server, reqwest::Method::GET, &path, vendors[1]["api_key"].as_str().unwrap(), None).await;
    assert!(other["entries"].as_array().unwrap().iter().all(|e| e["order_id"] == first["id"]), "{other}");
    // The period is checked.
    let (status, bad) =
        api(&server, reqwest::Method::GET, "/api/v1/vendor/statement?from=2026-02-01&to=2026-01-01", &key, None).await;
    assert_eq!((status, bad["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_period")));
    let (status, _) = api(&server, reqwest::Method::GET, "/api/v1/vendor/statement", &key, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn vendor_id(pool: &sqlx::AnyPool, slug: &str) -> String {
    sqlx::query_scalar("SELECT id FROM vendors WHERE slug = $1").bind(slug).fetch_one(pool).await.unwrap()
}

// ---- webhooks, against a real local receiver ----

/// What a receiver got: headers (lower-cased names) and body.
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A plain HTTP receiver on 127.0.0.1 answering `status`.
async fn receiver(status: Arc<std::sync::atomic::AtomicU16>) -> (u16, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Received = Arc::default();
    let store = got.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (store, status) = (store.clone(), status.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                    .collect();
                store.lock().unwrap().push((headers, buf[head_end..].to_vec()));
                let code = status.load(std::sync::atomic::Ordering::SeqCst);
                let answer = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, got)
}

mod webhooks {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        signed_logged_replayed(TestBackend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        signed_logged_replayed(TestBackend::Postgres).await;
    }
}

async fn signed_logged_replayed(backend: TestBackend) {
    let server = TestServer::start_with(crate::BIN, backend, &[("COFFER_WEBHOOKS__ALLOW_PRIVATE", "true")]).await;
    let vendors = server.demo_credentials()["vendors"].clone();
    let (a, b) = (vendors[0]["api_key"].as_str().unwrap(), vendors[1]["api_key"].as_str().unwrap());
    let status = Arc::new(std::sync::atomic::AtomicU16::new(500));
    let (port, got) = receiver(status.clone()).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (code, bad) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/vendor/webhooks",
        a,
        Some(json!({"url": url, "events": ["order.shipped"]})),
    )
    .await;
    assert_eq!((code, bad["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_events")));
    let (code, made) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/vendor/webhooks",
        a,
        Some(json!({"url": url, "events": ["order.paid", "order.refunded"]})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let (_, list) = api(&server, reqwest::Method::GET, "/api/v1/vendor/webhooks", a, None).await;
    assert!(!list.to_string().contains(&secret), "the secret is shown once");
    let deliveries = format!("/api/v1/vendor/webhooks/{}/deliveries", made["id"].as_str().unwrap());
    assert_eq!(
        api(&server, reqwest::Method::GET, &deliveries, b, None).await.0,
        StatusCode::NOT_FOUND,
        "not vendor B's"
    );

    let version = policy_version(&server).await;
    let placed = post_order(&server, &order(&server, &version, "4242424242424242", "hooked@example.org")).await.1;
    // The receiver answers 500: logged with its status, to be tried again.
    eventually("a first attempt", || async { !got.lock().unwrap().is_empty() }).await;
    let log = || async { api(&server, reqwest::Method::GET, &deliveries, a, None).await.1 };
    eventually("the failed attempt in the log", || async { log().await["deliveries"][0]["attempts"] == json!(1) })
        .await;
    let entry = log().await["deliveries"][0].clone();
    assert_eq!(
        (entry["type"].as_str(), entry["status"].as_str(), entry["last_status_code"].as_i64()),
        (Some("order.paid"), Some("pending"), Some(500))
    );
    assert_eq!(entry["order_id"], placed["id"]);
    // Signed as the contract says, with the buyer the vendor may have.
    let (headers, body) = got.lock().unwrap()[0].clone();
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    let signature = header("coffer-signature");
    let now = i64::try_from(unix_now()).unwrap();
    assert!(coffer_crypto::verify_webhook_signature(&secret, &signature, &body, now, 300), "{signature}");
    let t: i64 = signature.split(',').next().unwrap().trim_start_matches("t=").parse().unwrap();
    let expected = {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&body);
        hex::encode(mac.finalize().into_bytes())
    };
    assert_eq!(signature, format!("t={t},v1={expected}"));
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (event["type"].as_str(), event["data"]["order"]["id"].as_str()),
        (Some("order.paid"), placed["id"].as_str())
    );
    assert_eq!(header("coffer-event-id"), event["id"].as_str().unwrap());
    assert_eq!(event["data"]["order"]["buyer"]["email"], "hooked@example.org", "{event}");
    // Replayed by hand once the receiver is fixed: delivered, same event id.
    status.store(200, std::sync::atomic::Ordering::SeqCst);
    let replay = format!("{deliveries}/{}/replay", entry["id"].as_str().unwrap());
    let (code, queued) = api(&server, reqwest::Method::POST, &replay, a, None).await;
    assert_eq!((code, queued["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")));
    assert_eq!(api(&server, reqwest::Method::POST, &replay, b, None).await.0, StatusCode::NOT_FOUND);
    eventually("the replay delivered", || async { log().await["deliveries"][0]["status"] == json!("delivered") }).await;
    let (headers, _) = got.lock().unwrap().last().cloned().unwrap();
    assert!(headers.iter().any(|(k, v)| k == "coffer-event-id" && v == event["id"].as_str().unwrap()));
    assert_eq!(log().await["deliveries"].as_array().unwrap().len(), 1, "one event, one delivery");
    assert_eq!(log().await["deliveries"][0]["attempts"], json!(2), "the failed attempt and the replay");
    // Vendor B had no endpoint and was told nothing; order.fulfilled was
    // not asked for.
    assert!(got.lock().unwrap().iter().all(|(_, body)| !String::from_utf8_lossy(body).contains("order.fulfilled")));

    // Suspension stops webhooks: a refund's event is not sent.
    let before = got.lock().unwrap().len();
    assert!(server.cli(&["vendors", "suspend", "northwind", "--reason", "checking"]).status.success());
    let support = crate::staff::demo_staff_session(&server, "support").await;
    let order_page = format!("/staff/orders/{}", placed["id"].as_str().unwrap());
    let token = csrf(&server, &order_page, &support).await;
    post(
        &server,
        &format!("{order_page}/action"),
        &support,
        &[("csrf", &token), ("action", "refund"), ("reason", "asked")],
    )
    .await;
    // The relay runs every 250 ms; an event of a suspended vendor gets no
    // delivery, then or later.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(got.lock().unwrap().len(), before, "nothing sent while suspended");
    assert!(server.cli(&["vendors", "reinstate", "northwind"]).status.success());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(got.lock().unwrap().len(), before, "nor after");
    assert_eq!(log().await["deliveries"].as_array().unwrap().len(), 1);
}

mod private_destinations {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let server = crate::server(TestBackend::Sqlite).await;
        let key = server.demo_credentials()["vendors"][0]["api_key"].as_str().unwrap().to_owned();
        for (url, code) in [
            ("http://example.com/hook", "webhook_url_not_https"),
            ("https://127.0.0.1/hook", "webhook_url_private"),
            ("https://10.1.2.3/hook", "webhook_url_private"),
            ("https://169.254.169.254/latest", "webhook_url_private"),
            ("https://[::1]/hook", "webhook_url_private"),
            ("https://user:pw@example.com/hook", "webhook_url_credentials"),
            ("not a url", "webhook_url_invalid"),
        ] {
            let (status, answer) = api(
                &server,
                reqwest::Method::POST,
                "/api/v1/vendor/webhooks",
                &key,
                Some(json!({"url": url, "events": ["order.paid"]})),
            )
            .await;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
                "{url}"
            );
            assert!(!answer.to_string().contains(url), "the message does not echo the URL");
        }
    }
}

mod uploads {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        download_files_are_uploaded_checked_and_sold(TestBackend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        download_files_are_uploaded_checked_and_sold(TestBackend::Postgres).await;
    }
}

async fn upload(server: &TestServer, key: &str, product: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let response = client()
        .put(server.url(&format!("/api/v1/vendor/products/{product}/file?name=../tool-1.0.zip")))
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .header(CONTENT_TYPE, "application/zip")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn download_files_are_uploaded_checked_and_sold(backend: TestBackend) {
    let server = TestServer::start_with(crate::BIN, backend, &[("COFFER_VENDORS__MAX_UPLOAD_BYTES", "4096")]).await;
    let vendors = server.demo_credentials()["vendors"].clone();
    let (a, b) = (vendors[0]["api_key"].as_str().unwrap(), vendors[1]["api_key"].as_str().unwrap());
    let (_, made) = api(
        &server,
        reqwest::Method::POST,
        "/api/v1/vendor/products",
        a,
        Some(json!({"name": "Tool Pack", "prices": {"USD": 500}, "delivery": "download"})),
    )
    .await;
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!((made["published"].as_bool(), made["listed"].as_bool()), (Some(true), Some(false)), "no file yet");
    let (status, empty) = upload(&server, a, &id, Vec::new()).await;
    assert_eq!((status, empty["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("empty_file")));
    let (status, _) = upload(&server, a, &id, vec![7u8; 10_000]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = upload(&server, b, &id, vec![1u8; 100]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not vendor B's product");
    let bytes: Vec<u8> = (0..3000u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
    let (status, stored) = upload(&server, a, &id, bytes.clone()).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    use sha2::Digest;
    assert_eq!(stored["sha256"].as_str().unwrap(), hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!((stored["file_name"].as_str(), stored["size_bytes"].as_i64()), (Some("tool-1.0.zip"), Some(3000)));
    let (_, now) = api(&server, reqwest::Method::GET, &format!("/api/v1/vendor/products/{id}"), a, None).await;
    assert_eq!(now["listed"].as_bool(), Some(true), "on sale once its file is there");
    // Sold and downloaded: the buyer gets exactly these bytes.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let version = policy_version(&server).await;
    let mut body = order(&server, &version, "4242424242424242", "downloader@example.org");
    body["items"] = json!([{"product_id": id, "quantity": 1}]);
    let (status, placed) = post_order(&server, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let url = placed["downloads"][0]["url"].as_str().unwrap().to_owned();
    let got = client().get(&url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);
}

async fn admins_onboard_suspend_and_reinstate_in_the_console(server: TestServer) {
    let support = crate::staff::demo_staff_session(&server, "support").await;
    assert_eq!(get(&server, "/staff/vendors", &support).await.status(), StatusCode::FORBIDDEN, "admins only");
    let admin = crate::staff::demo_staff_session(&server, "admin").await;
    let token = csrf(&server, "/staff/vendors", &admin).await;
    let form = |slug: &'static str, email: &'static str| {
        vec![
            ("csrf", token.clone()),
            ("slug", slug.to_owned()),
            ("name", "Zeta Apps".to_owned()),
            ("owner_email", email.to_owned()),
        ]
    };
    let as_refs = |f: &Vec<(&'static str, String)>| f.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();
    let taken = client()
        .post(server.url("/staff/vendors"))
        .header(COOKIE, &admin)
        .form(&as_refs(&form("northwind", "z@zeta.example")))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(taken.text().await.unwrap().contains("slug exists"));
    let added = client()
        .post(server.url("/staff/vendors"))
        .header(COOKIE, &admin)
        .form(&as_refs(&form("zeta", "owner@zeta.example")))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let html = added.text().await.unwrap();
    let start = html.find("/vendor/enrol/").expect("the owner's link");
    let path: String = html[start..].chars().take_while(|c| *c != '<').collect();
    let (owner, _) = enrol(&server, &path, "zeta owner lantern 2026").await;
    assert_eq!(get(&server, "/vendor/orders", &owner).await.status(), StatusCode::OK);
    // Suspended from the console: the owner's session ends at once.
    let token = csrf(&server, "/staff/vendors", &admin).await;
    let no_reason = post(
        &server,
        "/staff/vendors/zeta/standing",
        &admin,
        &[("csrf", &token), ("action", "suspend"), ("reason", " ")],
    )
    .await;
    assert_eq!(no_reason.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let done = post(
        &server,
        "/staff/vendors/zeta/standing",
        &admin,
        &[("csrf", &token), ("action", "suspend"), ("reason", "unpaid fees")],
    )
    .await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(get(&server, "/vendor/orders", &owner).await.status(), StatusCode::SEE_OTHER);
    let listed = get(&server, "/staff/vendors", &admin).await.text().await.unwrap();
    assert!(listed.contains("Suspended: unpaid fees"), "{listed}");
    let forged =
        post(&server, "/staff/vendors/zeta/standing", &admin, &[("csrf", "forged"), ("action", "reinstate")]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let back =
        post(&server, "/staff/vendors/zeta/standing", &admin, &[("csrf", &token), ("action", "reinstate")]).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    let pool = raw_pool(&server).await;
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action LIKE 'vendor.%' AND actor LIKE 'staff:%' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(actions, ["vendor.added", "vendor.suspended", "vendor.reinstated"]);
}
