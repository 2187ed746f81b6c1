//! Bad input of every kind gets a 4xx with a stable code (JSON under the
//! API, a page elsewhere); never a 500, a panic or a hang.

use crate::client;
use coffer_testkit::TestServer;
use std::io::{Read, Write};

crate::on_both_backends!(
    non_utf8_query_strings_are_refused_on_every_route,
    bad_query_parameters_name_the_field,
    traversal_and_unknown_ids_are_not_found,
    unknown_routes_and_methods,
    oversized_bodies_are_refused,
);

/// Sends bytes exactly as given (no client-side path normalisation) and
/// returns the status, the head and the body.
pub fn raw_request(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn raw_get(server: &TestServer, target: &str) -> (u16, String, String) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    raw_request(server.port(), request.as_bytes())
}

/// An API error: the status, and the body in the error model.
async fn api_error(server: &TestServer, path: &str) -> (u16, String, Option<String>) {
    let r = client().get(server.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{path}: {content_type}");
    let body: serde_json::Value = r.json().await.unwrap();
    let code = body["error"]["code"].as_str().unwrap_or_else(|| panic!("{path}: {body}")).to_owned();
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    (status, code, body["error"]["field"].as_str().map(str::to_owned))
}

async fn first_product_id(server: &TestServer) -> String {
    let body: serde_json::Value =
        client().get(server.url("/api/v1/products")).send().await.unwrap().json().await.unwrap();
    body["products"][0]["id"].as_str().unwrap().to_owned()
}

async fn non_utf8_query_strings_are_refused_on_every_route(server: TestServer) {
    let id = first_product_id(&server).await;
    for path in ["/health", "/api/openapi.json", "/api/v1/products", &format!("/api/v1/products/{id}")] {
        for query in ["?vendor=%FF", "?%C3%28=1", "?a=%ED%A0%80"] {
            let target = format!("{path}{query}");
            let (status, code, _) = api_error(&server, &target).await;
            assert_eq!((status, code.as_str()), (400, "invalid_query"), "{target}");
        }
    }
    for path in ["/", &format!("/products/{id}"), "/static/style.css"] {
        let target = format!("{path}?x=%FF%FE");
        let (status, head, body) = raw_get(&server, &target);
        assert_eq!(status, 400, "{target}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/html"), "{target}: a page");
        assert!(body.contains("<h1>"), "{target}: a finished page");
    }
}

async fn bad_query_parameters_name_the_field(server: TestServer) {
    for (query, status, code, field) in [
        ("limit=abc", 400, "invalid_query", None),
        ("limit=-1", 400, "invalid_query", None),
        ("colour=red", 400, "invalid_query", None),
        ("limit=0", 422, "invalid_parameter", Some("limit")),
        ("limit=101", 422, "invalid_parameter", Some("limit")),
        ("vendor=Not%20A%20Slug", 422, "invalid_parameter", Some("vendor")),
        ("after=..%2F..%2Fetc%2Fpasswd", 422, "invalid_parameter", Some("after")),
    ] {
        let got = api_error(&server, &format!("/api/v1/products?{query}")).await;
        assert_eq!(got, (status, code.to_owned(), field.map(str::to_owned)), "{query}");
    }
}

async fn traversal_and_unknown_ids_are_not_found(server: TestServer) {
    let unknown = format!("prd_{}", "0".repeat(32));
    for id in [unknown.as_str(), "..%2F..%2Fetc%2Fpasswd", "..", "prd_..%2f..%2f", "%00", "a%2Fb"] {
        // Raw, so no client normalises `..` away before the server sees it.
        let (status, _, body) = raw_get(&server, &format!("/api/v1/products/{id}"));
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{id}");
        let (status, _, body) = raw_get(&server, &format!("/products/{id}"));
        assert_eq!(status, 404, "/products/{id}");
        assert!(body.contains("Page not found"), "/products/{id}");
    }
    let (status, code, _) = api_error(&server, "/api/v1/products/%FF%FE").await;
    assert_eq!((status, code.as_str()), (400, "invalid_path"));
    for target in
        ["/static/../../etc/passwd", "/static/..%2F..%2FCargo.toml", "/../../etc/passwd", "/products/../../etc/passwd"]
    {
        let (status, _, body) = raw_get(&server, target);
        assert!(status == 404 || status == 400, "{target}: {status}");
        assert!(!body.contains("root:"), "{target} leaked a file");
    }
}

async fn unknown_routes_and_methods(server: TestServer) {
    let (status, code, _) = api_error(&server, "/api/v2/everything").await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let page = client().get(server.url("/no/such/page")).send().await.unwrap();
    assert_eq!(page.status(), 404);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Page not found") && html.contains("href=\"/\""));

    for path in ["/api/v1/products", "/health"] {
        let r = client()
            .post(server.url(path))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert!(r.headers()["allow"].to_str().unwrap().contains("GET"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    let r = client().delete(server.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.text().await.unwrap().contains("<h1>"));
}

/// A 2 MiB body is refused on its announced length alone, before the
/// server reads any of it. (The request carries the header only: a client
/// that kept writing the body would see the server close the connection
/// under it, an artifact of the client, not of the answer.)
async fn oversized_bodies_are_refused(server: TestServer) {
    let oversized = |method: &str, path: &str| {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            2 * 1024 * 1024
        );
        raw_request(server.port(), request.as_bytes())
    };
    for path in ["/api/v1/products", "/health"] {
        let (status, _, body) = oversized("GET", path);
        assert_eq!(status, 413, "{path}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
    let (status, _, body) = oversized("POST", "/");
    assert_eq!(status, 413);
    assert!(body.contains("<h1>"));
}
