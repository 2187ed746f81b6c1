//! What a person sees, in headless Chromium: the storefront, a product link
//! followed, and the cookie rule accepted over plain-HTTP loopback.

use crate::{client, server};
use coffer_testkit::{Browser, TestBackend};
use std::path::PathBuf;

fn screenshot_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storefront_links_to_a_product_page_a_person_can_read() {
    let server = server(TestBackend::Sqlite).await;
    let list: serde_json::Value =
        client().get(server.url("/api/v1/products")).send().await.unwrap().json().await.unwrap();
    let first = &list["products"][0];

    let browser = Browser::start().await;
    browser.goto(&server.url("/")).await;
    assert_eq!(browser.title().await, "Store · Coffer");
    assert_eq!(browser.count(".product-grid .card").await, 4);
    let heading = browser.text(&browser.find("h1").await).await;
    assert_eq!(heading, "Software from independent makers");
    // The stylesheet loaded under the strict CSP.
    let brand = browser.find(".brand").await;
    assert_eq!(browser.css(&brand, "font-weight").await, "700");
    browser.screenshot(&screenshot_path("storefront.png")).await;

    let link = browser.find(".product-grid .card h2 a").await;
    assert_eq!(browser.text(&link).await, first["name"].as_str().unwrap());
    browser.click(&link).await;
    let id = first["id"].as_str().unwrap();
    assert_eq!(browser.current_url().await, server.url(&format!("/products/{id}")));
    assert_eq!(browser.title().await, format!("{} · Coffer", first["name"].as_str().unwrap()));
    assert_eq!(browser.text(&browser.find("h1").await).await, first["name"].as_str().unwrap());
    let page = browser.text(&browser.find("main").await).await;
    assert!(page.contains(&format!("by {}", first["vendor"]["name"].as_str().unwrap())), "{page}");
    let usd = first["prices"]["USD"].as_i64().unwrap();
    assert!(page.contains(&format!("{}.{:02} USD", usd / 100, usd % 100)), "{page}");
    let eur = first["prices"]["EUR"].as_i64().unwrap();
    assert!(page.contains(&format!("{}.{:02} EUR", eur / 100, eur % 100)), "{page}");
    assert!(page.contains("License key"), "{page}");
    browser.screenshot(&screenshot_path("product.png")).await;

    let back = browser.find(".breadcrumb a").await;
    browser.click(&back).await;
    assert_eq!(browser.current_url().await, server.url("/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_page_is_a_finished_page() {
    let server = server(TestBackend::Sqlite).await;
    let browser = Browser::start().await;
    browser.goto(&server.url("/no/such/page")).await;
    assert_eq!(browser.title().await, "Page not found · Coffer");
    let back = browser.find("main a[href='/']").await;
    assert_eq!(browser.text(&back).await, "Back to the store");
    browser.screenshot(&screenshot_path("not-found.png")).await;
}

/// The session cookie as the cookie rule makes it for the plain-HTTP local
/// demo (no `__Host-` prefix; `Secure`, `HttpOnly`, `SameSite=Lax`) is kept
/// by Chromium on http://127.0.0.1 and sent back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_loopback_cookie_is_accepted_by_the_browser() {
    use axum::http::header::{COOKIE, SET_COOKIE};
    use axum::routing::get;
    let rule = coffer_web::CookieRule { secure_transport: false };
    assert_eq!(rule.cookie_name("coffer_session"), "coffer_session");
    assert_eq!(
        coffer_web::CookieRule { secure_transport: true }.cookie_name("coffer_session"),
        "__Host-coffer_session"
    );
    let set = rule.set_cookie("coffer_session", "opaque-random-id");
    let app = axum::Router::new().route("/set", get(move || async move { ([(SET_COOKIE, set)], "set") })).route(
        "/echo",
        get(|headers: axum::http::HeaderMap| async move {
            headers.get(COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("none").to_owned()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let browser = Browser::start().await;
    browser.goto(&format!("{base}/set")).await;
    let cookies = browser.cookies().await;
    let cookie =
        cookies.iter().find(|c| c["name"] == "coffer_session").unwrap_or_else(|| panic!("cookie refused: {cookies:?}"));
    assert_eq!(cookie["value"], "opaque-random-id");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["secure"], true);
    assert_eq!(cookie["sameSite"], "Lax");
    assert_eq!(cookie["path"], "/");
    browser.goto(&format!("{base}/echo")).await;
    let echoed = browser.text(&browser.find("body").await).await;
    assert_eq!(echoed, "coffer_session=opaque-random-id", "the browser sends the cookie back");
}
