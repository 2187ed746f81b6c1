//! What a person sees, in headless Chromium: the storefront, a product link
//! followed, and the cookie rule accepted over plain-HTTP loopback.

use crate::{client, server};
use coffer_testkit::{Browser, TestBackend};
use std::path::PathBuf;

/// Fills checkout's details with an address in Berlin, as a person types them.
async fn fill_berlin_details(browser: &Browser, name: &str, email: &str) {
    for (css, value) in
        [("#name", name), ("#email", email), ("#line1", "Hauptstr. 1"), ("#city", "Berlin"), ("#postal_code", "10115")]
    {
        browser.fill(&browser.find(css).await, value).await;
    }
    browser.choose("#country", "DE").await;
}

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
    // The storefront shows prices in the currency checkout starts in.
    let usd = first["prices"]["USD"].as_i64().unwrap();
    let shown = browser.text(&browser.find(".product-grid .card .price").await).await;
    assert_eq!(shown, format!("{}.{:02} USD", usd / 100, usd % 100));

    let link = browser.find(".product-grid .card h2 a").await;
    assert_eq!(browser.text(&link).await, first["name"].as_str().unwrap());
    browser.click(&link).await;
    let id = first["id"].as_str().unwrap();
    assert_eq!(browser.current_url().await, server.url(&format!("/products/{id}")));
    assert_eq!(browser.title().await, format!("{} · Coffer", first["name"].as_str().unwrap()));
    assert_eq!(browser.text(&browser.find("h1").await).await, first["name"].as_str().unwrap());
    let page = browser.text(&browser.find("main").await).await;
    assert!(page.contains(&format!("by {}", first["vendor"]["name"].as_str().unwrap())), "{page}");
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

/// P17: every page, visited in a real browser as each kind of user
/// (anonymous, buyer, customer, staff), sets only cookies of the published
/// list, each `HttpOnly` and `Secure`, holding an opaque token or product
/// ids and nothing else. The published list is the code's own registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p17_every_page_sets_only_listed_opaque_cookies() {
    let server = server(TestBackend::Sqlite).await;
    let creds = server.demo_credentials();
    let registry = coffer_web::COOKIES;
    // The published list names exactly the registry's cookies.
    let published = client().get(server.url("/privacy/cookies")).send().await.unwrap().text().await.unwrap();
    for spec in registry {
        let row = format!("<code class=\"cookie-name\">{}</code>", spec.name);
        assert!(published.contains(&row), "{} is published", spec.name);
    }
    assert_eq!(published.matches("<code class=\"cookie-name\">coffer_").count(), registry.len(), "and nothing else");

    let personal: Vec<String> =
        [creds["customer"]["email"].as_str().unwrap(), "Dana", "Erika", "cookie.buyer@example.org", "4242", "Hauptstr"]
            .iter()
            .map(|s| s.to_lowercase())
            .collect();
    let browser = Browser::start().await;
    let mut seen = std::collections::BTreeSet::new();
    let check = |page: String, cookies: Vec<serde_json::Value>, seen: &mut std::collections::BTreeSet<String>| {
        for cookie in cookies {
            let name = cookie["name"].as_str().unwrap();
            let value = cookie["value"].as_str().unwrap();
            let base = name.strip_prefix("__Host-").unwrap_or(name);
            let spec = registry
                .iter()
                .find(|s| s.name == base)
                .unwrap_or_else(|| panic!("{page}: cookie {name} is not on the published list"));
            assert_eq!((cookie["httpOnly"].as_bool(), cookie["secure"].as_bool()), (Some(true), Some(true)), "{name}");
            let opaque =
                |v: &str| v.len() >= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let product_ids = |v: &str| {
                v.split('|').all(|item| {
                    item.split_once(':').is_some_and(|(id, n)| {
                        id.strip_prefix("prd_")
                            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
                            && n.parse::<u32>().is_ok()
                    })
                })
            };
            let fits = match spec.value {
                coffer_web::CookieValue::OpaqueToken => opaque(value),
                coffer_web::CookieValue::ProductIds => product_ids(value),
            };
            assert!(fits, "{page}: {name} holds {value:?}");
            assert!(!personal.iter().any(|p| value.to_lowercase().contains(p)), "{page}: personal data in {name}");
            seen.insert(base.to_owned());
        }
    };
    let visit = |path: &'static str| {
        let (browser, url) = (&browser, server.url(path));
        async move {
            browser.goto(&url).await;
            browser.cookies().await
        }
    };
    let products: Vec<String> = creds["vendors"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["products"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()))
        .collect();

    // Anonymous: every public page.
    for path in ["/", "/checkout", "/account", "/privacy", "/privacy/cookies", "/privacy/request", "/staff", "/nope"] {
        let cookies = visit(path).await;
        check(path.to_owned(), cookies, &mut seen);
    }
    for id in &products {
        browser.goto(&server.url(&format!("/products/{id}"))).await;
        check(format!("/products/{id}"), browser.cookies().await, &mut seen);
    }

    // A buyer: cart, details, review, payment, confirmation.
    browser.goto(&server.url(&format!("/products/{}", products[0]))).await;
    browser.click(&browser.find("form.buy button").await).await;
    browser.wait_for_title("Checkout · Coffer").await;
    check("/checkout with a cart".into(), browser.cookies().await, &mut seen);
    fill_berlin_details(&browser, "Erika Mustermann", "cookie.buyer@example.org").await;
    browser.click(&browser.find("input[name=consent]").await).await;
    browser.click(&browser.find("input[name=age][value=adult]").await).await;
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for_title("Review and pay · Coffer").await;
    check("review".into(), browser.cookies().await, &mut seen);
    browser.fill(&browser.find("#card_number").await, "4242 4242 4242 4242").await;
    browser.fill(&browser.find("#exp_month").await, "12").await;
    browser.fill(&browser.find("#exp_year").await, "2030").await;
    browser.fill(&browser.find("#cvc").await, "123").await;
    browser.click(&browser.find("form[action='/checkout/pay'] button").await).await;
    browser.wait_for_title("Thank you · Coffer").await;
    check("confirmation".into(), browser.cookies().await, &mut seen);

    // A customer: sign in, every account page, sign out.
    browser.goto(&server.url("/account")).await;
    browser.fill(&browser.find("#email").await, creds["customer"]["email"].as_str().unwrap()).await;
    browser.fill(&browser.find("#password").await, creds["customer"]["password"].as_str().unwrap()).await;
    browser.click(&browser.find("form[action='/account/sign-in'] button").await).await;
    browser.wait_for_title("Your account · Coffer").await;
    for path in ["/account", "/account/data", "/account/data.json", "/account/delete"] {
        let cookies = visit(path).await;
        check(format!("{path} signed in"), cookies, &mut seen);
    }
    browser.goto(&server.url("/account")).await;
    browser.click(&browser.find("form[action='/account/sign-out'] button").await).await;
    browser.wait_for_title("Sign in · Coffer").await;
    check("signed out".into(), browser.cookies().await, &mut seen);

    // Staff (an admin opens every page): password, code, console.
    let admin = creds["staff"].as_array().unwrap().iter().find(|s| s["role"] == "admin").unwrap().clone();
    browser.goto(&server.url("/staff")).await;
    browser.fill(&browser.find("#email").await, admin["email"].as_str().unwrap()).await;
    browser.fill(&browser.find("#password").await, admin["password"].as_str().unwrap()).await;
    browser.click(&browser.find("form[action='/staff/sign-in'] button").await).await;
    browser.wait_for("#code").await;
    let secret = coffer_crypto::totp_secret_from_base32(admin["totp_secret"].as_str().unwrap()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    browser.fill(&browser.find("#code").await, &coffer_crypto::totp_code(&secret, now).unwrap()).await;
    browser.click(&browser.find("form[action='/staff/sign-in/code'] button").await).await;
    browser.wait_for("form[action='/staff/sign-out']").await;
    for path in ["/staff", "/staff/reviews", "/staff/transfers", "/staff/requests", "/staff/members", "/staff/vendors"]
    {
        let cookies = visit(path).await;
        check(format!("{path} as staff"), cookies, &mut seen);
    }

    // A vendor's owner: password, code, every portal page.
    vendor_sign_in(&browser, &server).await;
    for path in [
        "/vendor",
        "/vendor/orders",
        "/vendor/products",
        "/vendor/statement",
        "/vendor/keys",
        "/vendor/members",
        "/vendor/webhooks",
        "/vendor/terms",
    ] {
        let cookies = visit(path).await;
        check(format!("{path} as a vendor"), cookies, &mut seen);
    }
    let expected: std::collections::BTreeSet<String> = registry.iter().map(|s| s.name.to_owned()).collect();
    assert_eq!(seen, expected, "every listed cookie was met, so each was checked");
}

/// At a phone's width (390 px) nothing scrolls sideways on any public page:
/// the storefront, a product, the cart with its errors, the review, the
/// confirmation, the sign-in, the account and its data, the policy, the
/// cookie list, the data request form, the staff sign-in and the 404 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_public_page_scrolls_sideways_on_a_phone() {
    let server = server(TestBackend::Sqlite).await;
    let creds = server.demo_credentials();
    let product = creds["vendors"][0]["products"][0]["id"].as_str().unwrap().to_owned();
    let browser = Browser::start().await;
    browser.resize(390, 844).await;
    let mut wide = Vec::new();
    let check = async |name: &str, wide: &mut Vec<String>| {
        let overflow = browser.sideways_overflow().await;
        browser.screenshot(&screenshot_path(&format!("phone-{name}.png"))).await;
        if overflow != 0 {
            wide.push(format!("{name}: {overflow} px too wide"));
        }
    };
    for (name, path) in [
        ("storefront", "/".to_owned()),
        ("product", format!("/products/{product}")),
        ("sign-in", "/account".into()),
        ("privacy", "/privacy".into()),
        ("cookies", "/privacy/cookies".into()),
        ("request", "/privacy/request".into()),
        ("staff-sign-in", "/staff".into()),
        ("not-found", "/nope".into()),
        ("empty-cart", "/checkout".into()),
    ] {
        browser.goto(&server.url(&path)).await;
        check(name, &mut wide).await;
    }
    // The cart with two products, then every error of an empty form.
    for id in [&product, creds["vendors"][1]["products"][1]["id"].as_str().unwrap()] {
        browser.goto(&server.url(&format!("/products/{id}"))).await;
        browser.click(&browser.find("form.buy button").await).await;
        browser.wait_for_title("Checkout · Coffer").await;
    }
    check("cart", &mut wide).await;
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for("#problems").await;
    check("cart-errors", &mut wide).await;
    let phone = browser.find("#phone").await;
    let name = browser.find("#name").await;
    assert_eq!(browser.css(&phone, "width").await, browser.css(&name, "width").await, "the phone box is a full field");
    fill_berlin_details(&browser, "Erika Mustermann", creds["customer"]["email"].as_str().unwrap()).await;
    browser.click(&browser.find("input[name=age][value=adult]").await).await;
    browser.click(&browser.find("input[name=consent]").await).await;
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for_title("Review and pay · Coffer").await;
    check("review", &mut wide).await;
    // The expiry and code boxes line up: the same top edge, labels on one line.
    let (month, year) = (browser.find("#exp_month").await, browser.find("#exp_year").await);
    let top = |element: String| {
        let browser = &browser;
        async move { browser.rect(&element).await.1 }
    };
    assert_eq!(top(month.clone()).await, top(year).await, "the expiry boxes line up");
    browser.fill(&browser.find("#card_number").await, "4242 4242 4242 4242").await;
    browser.fill(&month, "12").await;
    browser.fill(&browser.find("#exp_year").await, "2030").await;
    browser.fill(&browser.find("#cvc").await, "123").await;
    browser.click(&browser.find("form[action='/checkout/pay'] button").await).await;
    browser.wait_for_title("Thank you · Coffer").await;
    check("confirmation", &mut wide).await;
    // The demo customer's account and data pages.
    browser.goto(&server.url("/account")).await;
    browser.fill(&browser.find("#email").await, creds["customer"]["email"].as_str().unwrap()).await;
    browser.fill(&browser.find("#password").await, creds["customer"]["password"].as_str().unwrap()).await;
    browser.click(&browser.find("form[action='/account/sign-in'] button").await).await;
    browser.wait_for_title("Your account · Coffer").await;
    check("account", &mut wide).await;
    browser.goto(&server.url("/account/data")).await;
    check("account-data", &mut wide).await;
    // The order's invoice, once numbered.
    for _ in 0..50 {
        browser.goto(&server.url("/account/invoices/1")).await;
        if browser.title().await == "Invoice 1 · Coffer" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    browser.wait_for_title("Invoice 1 · Coffer").await;
    check("invoice", &mut wide).await;
    assert!(wide.is_empty(), "pages wider than a phone: {wide:?}");
}

/// The small things a person notices: the browser finds an icon, the policy
/// is named by its date, cookie names never break, the staff console has
/// its own menu.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_small_things_are_finished() {
    let server = server(TestBackend::Sqlite).await;
    let icon = client().get(server.url("/favicon.ico")).send().await.unwrap();
    assert_eq!(icon.status(), reqwest::StatusCode::OK);
    assert_eq!(icon.headers()["content-type"], "image/x-icon");
    assert_eq!(&icon.bytes().await.unwrap()[..4], &[0, 0, 1, 0], "an ICO file");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let today = coffer_domain::order::long_day_utc(coffer_domain::Millis(now));
    let policy = client().get(server.url("/privacy")).send().await.unwrap().text().await.unwrap();
    assert!(policy.contains(&format!("Version of {today}, ")), "named by its date: {policy}");

    let browser = Browser::start().await;
    browser.resize(390, 844).await;
    browser.goto(&server.url("/privacy/cookies")).await;
    let names = browser.count("code.cookie-name").await;
    assert_eq!(names, coffer_web::COOKIES.len());
    for n in 1..=names {
        let name = browser.find(&format!("#cookie-list tbody tr:nth-child({n}) code.cookie-name")).await;
        assert_eq!(browser.css(&name, "white-space").await, "nowrap");
        let (_, _, _, height) = browser.rect(&name).await;
        assert!(height < 30.0, "cookie {n}'s name is on one line ({height} px high)");
    }
    let page = browser.text(&browser.find("main").await).await;
    assert!(!page.contains("as above"), "{page}");

    let admin = crate::staff::demo_staff_session(&server, "admin").await;
    let console = client().get(server.url("/staff")).header("cookie", &admin).send().await.unwrap();
    let console = console.text().await.unwrap();
    assert!(console.contains("aria-label=\"Staff\"") && console.contains("href=\"/staff/transfers\""), "{console}");
    assert!(!console.contains("href=\"/checkout\""), "no shop menu in the console: {console}");
}

/// The screenshots in `docs/screenshots/`, made by `scripts/screenshots`
/// (ignored in the test run: it writes into the repository). Checkout,
/// review, confirmation and the invoice, at desktop width and at 390 px,
/// and the invoice's PDF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by scripts/screenshots"]
async fn docs_screenshots() {
    let dir = PathBuf::from(std::env::var("COFFER_SCREENSHOTS_DIR").expect("COFFER_SCREENSHOTS_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let server = server(TestBackend::Sqlite).await;
    let creds = server.demo_credentials();
    let browser = Browser::start().await;
    let both = async |name: &str| {
        browser.resize(1280, 900).await;
        browser.screenshot(&dir.join(format!("{name}.png"))).await;
        browser.resize(390, 844).await;
        browser.screenshot(&dir.join(format!("{name}-phone.png"))).await;
        browser.resize(1280, 900).await;
    };
    for product in [&creds["vendors"][0]["products"][0], &creds["vendors"][1]["products"][1]] {
        browser.goto(&server.url(&format!("/products/{}", product["id"].as_str().unwrap()))).await;
        browser.click(&browser.find("form.buy button").await).await;
        browser.wait_for_title("Checkout · Coffer").await;
    }
    let email = creds["customer"]["email"].as_str().unwrap();
    fill_berlin_details(&browser, "Dana Demo", email).await;
    browser.click(&browser.find("input[name=age][value=adult]").await).await;
    both("checkout").await;
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for("#problems").await;
    both("checkout-errors").await;
    browser.click(&browser.find("input[name=consent]").await).await;
    browser.click(&browser.find("#review-button").await).await;
    browser.wait_for_title("Review and pay · Coffer").await;
    both("review").await;
    for (css, value) in
        [("#card_number", "4242 4242 4242 4242"), ("#exp_month", "12"), ("#exp_year", "2030"), ("#cvc", "123")]
    {
        browser.fill(&browser.find(css).await, value).await;
    }
    browser.click(&browser.find("form[action='/checkout/pay'] button").await).await;
    browser.wait_for_title("Thank you · Coffer").await;
    both("confirmation").await;
    browser.goto(&server.url("/account")).await;
    browser.fill(&browser.find("#email").await, email).await;
    browser.fill(&browser.find("#password").await, creds["customer"]["password"].as_str().unwrap()).await;
    browser.click(&browser.find("form[action='/account/sign-in'] button").await).await;
    browser.wait_for_title("Your account · Coffer").await;
    for _ in 0..50 {
        browser.goto(&server.url("/account/invoices/1")).await;
        if browser.title().await == "Invoice 1 · Coffer" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    browser.wait_for_title("Invoice 1 · Coffer").await;
    both("invoice").await;
    let cookie: Vec<String> = browser
        .cookies()
        .await
        .iter()
        .map(|c| format!("{}={}", c["name"].as_str().unwrap(), c["value"].as_str().unwrap()))
        .collect();
    let pdf = client().get(server.url("/account/invoices/1.pdf")).header("cookie", cookie.join("; ")).send().await;
    let pdf = pdf.unwrap().bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    std::fs::write(dir.join("invoice.pdf"), &pdf).unwrap();
    // The vendor portal.
    vendor_sign_in(&browser, &server).await;
    both("vendor-home").await;
    for (name, path) in [
        ("vendor-orders", "/vendor/orders"),
        ("vendor-products", "/vendor/products"),
        ("vendor-statement", "/vendor/statement"),
        ("vendor-webhooks", "/vendor/webhooks"),
        ("vendor-terms", "/vendor/terms"),
    ] {
        browser.goto(&server.url(path)).await;
        both(name).await;
    }
}

/// Signs the first demo vendor's owner in to the portal, password then code.
async fn vendor_sign_in(browser: &Browser, server: &coffer_testkit::TestServer) {
    let vendor = server.demo_credentials()["vendors"][0].clone();
    browser.goto(&server.url("/vendor")).await;
    browser.fill(&browser.find("#email").await, vendor["user_email"].as_str().unwrap()).await;
    browser.fill(&browser.find("#password").await, vendor["password"].as_str().unwrap()).await;
    browser.click(&browser.find("form[action='/vendor/sign-in'] button").await).await;
    browser.wait_for("#code").await;
    let secret = coffer_crypto::totp_secret_from_base32(vendor["totp_secret"].as_str().unwrap()).unwrap();
    // The next step's code: the seed may have used this one.
    let code = coffer_crypto::totp_code(&secret, crate::accounts::unix_now() + 30).unwrap();
    browser.fill(&browser.find("#code").await, &code).await;
    browser.click(&browser.find("form[action='/vendor/sign-in/code'] button").await).await;
    browser.wait_for_title("Northwind Software: vendor portal · Coffer").await;
}

/// The vendor portal in a browser without JavaScript needs: a product added
/// through its form, and every portal page finished at desktop width and
/// fitting a phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendor_portal_is_used_in_a_browser_and_fits_a_phone() {
    let server = server(TestBackend::Sqlite).await;
    let browser = Browser::start().await;
    vendor_sign_in(&browser, &server).await;
    // A product through the form: a wrong price first, said beside the form.
    browser.goto(&server.url("/vendor/products")).await;
    browser.fill(&browser.find("#name").await, "Northwind Sync").await;
    browser.fill(&browser.find("#prices").await, "USD 12.50, XYZ 3").await;
    browser.click(&browser.find("form[action='/vendor/products#new'] button").await).await;
    let problem = browser.wait_for_text("p.notice", "XYZ").await;
    assert!(problem.contains("not a currency we know"), "{problem}");
    assert_eq!(browser.value(&browser.find("#name").await).await, "Northwind Sync", "what was typed stays");
    browser.clear(&browser.find("#prices").await).await;
    browser.fill(&browser.find("#prices").await, "USD 12.50, EUR 11").await;
    browser.click(&browser.find("form[action='/vendor/products#new'] button").await).await;
    browser.wait_for_title("Northwind Sync: vendor portal · Coffer").await;
    let facts = browser.text(&browser.find("dl.facts").await).await;
    assert!(facts.contains("On sale") && facts.contains("12.50"), "{facts}");
    // An order to show, then every page at a phone's width.
    let version = crate::checkout::policy_version(&server).await;
    let (_, placed) = crate::checkout::post_order(
        &server,
        &crate::checkout::order(&server, &version, "4242424242424242", "portal.buyer@example.org"),
    )
    .await;
    let order = placed["id"].as_str().unwrap().to_owned();
    browser.resize(390, 844).await;
    let mut wide = Vec::new();
    for (name, path) in [
        ("home", "/vendor".to_owned()),
        ("orders", "/vendor/orders".into()),
        ("order", format!("/vendor/orders/{order}")),
        ("products", "/vendor/products".into()),
        ("statement", "/vendor/statement".into()),
        ("keys", "/vendor/keys".into()),
        ("members", "/vendor/members".into()),
        ("webhooks", "/vendor/webhooks".into()),
        ("terms", "/vendor/terms".into()),
    ] {
        browser.goto(&server.url(&path)).await;
        assert!(browser.title().await.ends_with("vendor portal · Coffer"), "{name}: {}", browser.title().await);
        browser.screenshot(&screenshot_path(&format!("phone-vendor-{name}.png"))).await;
        let overflow = browser.sideways_overflow().await;
        if overflow != 0 {
            wide.push(format!("{name}: {overflow} px too wide"));
        }
    }
    assert!(wide.is_empty(), "portal pages wider than a phone: {wide:?}");
    // The order's page names its buyer, after the demo owner's terms.
    browser.goto(&server.url(&format!("/vendor/orders/{order}"))).await;
    let buyer = browser.text(&browser.find("main").await).await;
    assert!(buyer.contains("portal.buyer@example.org") && buyer.contains("recorded"), "{buyer}");
}
