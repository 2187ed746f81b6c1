//! The JSON API and the demo data as the contract describes them.

use crate::client;
use coffer_testkit::TestServer;
use serde_json::Value;

crate::on_both_backends!(
    health_answers_ok,
    demo_catalog_is_served,
    product_by_id_matches_the_list,
    products_page_by_cursor,
    openapi_covers_every_json_route,
    demo_credentials_match_what_is_served,
    every_answer_carries_security_headers_and_a_request_id,
    logs_carry_no_request_data,
);

async fn get_json(server: &TestServer, path: &str) -> (u16, Value) {
    let r = client().get(server.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn health_answers_ok(server: TestServer) {
    assert_eq!(get_json(&server, "/health").await, (200, serde_json::json!({"status": "ok"})));
}

async fn demo_catalog_is_served(server: TestServer) {
    let (status, body) = get_json(&server, "/api/v1/products").await;
    assert_eq!(status, 200);
    let products = body["products"].as_array().unwrap();
    assert_eq!(products.len(), 4, "two demo vendors with two products each");
    let mut by_vendor = std::collections::BTreeMap::<String, Vec<&Value>>::new();
    for p in products {
        by_vendor.entry(p["vendor"]["slug"].as_str().unwrap().to_owned()).or_default().push(p);
        assert!(p["id"].as_str().unwrap().starts_with("prd_"));
        assert!(p["prices"]["USD"].as_i64().unwrap() > 0);
        assert!(p["prices"]["EUR"].as_i64().unwrap() > 0);
    }
    assert_eq!(by_vendor.len(), 2);
    for products in by_vendor.values() {
        assert_eq!(products[0]["delivery"], "license_key", "a vendor's first product delivers a license key");
        assert_eq!(products[1]["delivery"], "download", "its second a download");
    }
}

async fn product_by_id_matches_the_list(server: TestServer) {
    let (_, list) = get_json(&server, "/api/v1/products").await;
    for listed in list["products"].as_array().unwrap() {
        let (status, one) = get_json(&server, &format!("/api/v1/products/{}", listed["id"].as_str().unwrap())).await;
        assert_eq!(status, 200);
        assert_eq!(&one, listed);
    }
}

async fn products_page_by_cursor(server: TestServer) {
    let (_, all) = get_json(&server, "/api/v1/products").await;
    let (_, first) = get_json(&server, "/api/v1/products?limit=3").await;
    assert_eq!(first["products"].as_array().unwrap().len(), 3);
    let after = first["next_after"].as_str().unwrap();
    let (_, second) = get_json(&server, &format!("/api/v1/products?limit=3&after={after}")).await;
    assert_eq!(second["products"].as_array().unwrap().len(), 1);
    assert!(second.get("next_after").is_none());
    let ids: Vec<&Value> = first["products"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["products"].as_array().unwrap())
        .map(|p| &p["id"])
        .collect();
    let all_ids: Vec<&Value> = all["products"].as_array().unwrap().iter().map(|p| &p["id"]).collect();
    assert_eq!(ids, all_ids);
    let (_, lumen) = get_json(&server, "/api/v1/products?vendor=lumen-labs").await;
    let lumen = lumen["products"].as_array().unwrap();
    assert_eq!(lumen.len(), 2);
    assert!(lumen.iter().all(|p| p["vendor"]["slug"] == "lumen-labs"));
}

async fn openapi_covers_every_json_route(server: TestServer) {
    let (status, doc) = get_json(&server, "/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "OpenAPI 3.1");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    // Every JSON route the router has, read from the router itself.
    let routed: Vec<String> =
        coffer_web::routed_paths().into_iter().filter(|p| p.starts_with("/api/") || p == "/health").collect();
    assert_eq!(documented, routed.iter().map(String::as_str).collect::<Vec<_>>());
    for path in documented {
        let ops = paths[path].as_object().unwrap();
        assert!(!ops.is_empty(), "{path} has operations");
        for (method, op) in ops {
            let answers = op["responses"].as_object().unwrap();
            assert!(answers.keys().any(|code| code.starts_with('2')), "{method} {path} documents its success");
        }
    }
    let order = &paths["/api/v1/orders"]["post"];
    assert!(order["requestBody"].is_object(), "the order body is documented");
    for refusal in ["402", "422"] {
        assert!(order["responses"][refusal].is_object(), "orders document {refusal}");
    }
    let verify = &paths["/api/v1/licenses/verify"]["post"];
    assert!(verify["requestBody"].is_object() && verify["security"].is_null(), "no sign-in: {verify}");
    for answer in ["200", "400", "413", "415", "422", "429"] {
        assert!(verify["responses"][answer].is_object(), "license checks document {answer}");
    }
    assert!(paths["/api/v1/vendors/{slug}/revocations"]["get"]["responses"]["404"].is_object());
}

async fn demo_credentials_match_what_is_served(server: TestServer) {
    let credentials = server.demo_credentials();
    assert_eq!(credentials["base_url"], server.base_url);
    let vendors = credentials["vendors"].as_array().unwrap();
    assert!(vendors.len() >= 2);
    for vendor in vendors {
        let products = vendor["products"].as_array().unwrap();
        assert!(products.len() >= 2);
        for product in products {
            let (status, served) =
                get_json(&server, &format!("/api/v1/products/{}", product["id"].as_str().unwrap())).await;
            assert_eq!(status, 200);
            assert_eq!(served["name"], product["name"]);
            assert_eq!(served["prices"], product["prices"]);
            assert_eq!(served["vendor"]["slug"], vendor["slug"]);
        }
    }
}

async fn every_answer_carries_security_headers_and_a_request_id(server: TestServer) {
    let mut ids = std::collections::HashSet::new();
    for path in ["/", "/health", "/api/v1/products", "/static/style.css", "/nope", "/api/nope"] {
        let r = client().get(server.url(path)).header("x-request-id", "client-chosen").send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("script-src"), "{path}: no script allowed at all");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let id = h["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, "client-chosen", "request ids are never taken from the client");
        assert!(ids.insert(id), "request ids are unique");
    }
}

/// Whatever a client puts in the path or query string (where personal data
/// could travel) never reaches the logs: they name the route template only.
async fn logs_carry_no_request_data(server: TestServer) {
    let canary = "canary-jane.doe@example.org";
    for path in [
        format!("/api/v1/products?vendor={canary}"),
        format!("/api/v1/products/{canary}"),
        format!("/products/{canary}"),
        format!("/{canary}"),
        format!("/?q={canary}"),
    ] {
        let status = client().get(server.url(&path)).send().await.unwrap().status();
        assert!(status.is_client_error() || status.is_success(), "{path}: {status}");
    }
    // Let the log lines land.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = server.logs();
    assert!(logs.contains("request finished"), "requests are logged: {logs}");
    assert!(logs.contains("/api/v1/products/{id}"), "by route template");
    assert!(!logs.contains("canary"), "request data reached the log:\n{logs}");
}
