//! The access-control matrix: every route the router has (read from the
//! router itself, `coffer_web::routed_paths`) is in one table of who may
//! call it, and each is called, with each method it answers, as anonymous,
//! customers A and B, vendor A's owner and member, vendor B's owner, vendor
//! A's and B's API keys, and each staff role. A route missing from the
//! table fails the test, so no later route can skip it.
//!
//! A call passes the guard when the answer is not a refusal: 401, 403, 404
//! for a resource of another (exactly as a missing one), or a redirect to
//! a sign-in page. Input mistakes after the guard (400, 409, 415, 422) are
//! passing: the request reached the use case.

use crate::accounts::{csrf_from, field_value, fresh_link, session_cookie, unix_now};
use crate::checkout::{order, policy_version, post_order};
use crate::client;
use coffer_testkit::{TestBackend, TestServer};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum P {
    Anonymous,
    CustomerA,
    CustomerB,
    OwnerA,
    MemberA,
    OwnerB,
    KeyA,
    KeyB,
    Support,
    Reviewer,
    Dpo,
    Admin,
}

const EVERYONE: [P; 12] = [
    P::Anonymous,
    P::CustomerA,
    P::CustomerB,
    P::OwnerA,
    P::MemberA,
    P::OwnerB,
    P::KeyA,
    P::KeyB,
    P::Support,
    P::Reviewer,
    P::Dpo,
    P::Admin,
];

/// Who may call a route.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// Anyone: public pages, sign-in forms, links that carry their own token.
    Anyone,
    /// A signed-in customer, on their own account.
    Customer,
    /// Customer A only: the path names A's invoice.
    CustomerA,
    /// Staff with one of these roles.
    Staff(&'static [P]),
    /// Any user of a vendor; `true`: only vendor A's (the path names A's thing).
    VendorUser(bool),
    /// A vendor's owner; `true`: only vendor A's.
    VendorOwner(bool),
    /// A vendor's API key; `true`: only vendor A's.
    VendorKey(bool),
}

impl Who {
    /// Whether the path names one customer's or vendor's thing, so that
    /// another's call is a 404, exactly as for a missing one.
    fn scoped(self) -> bool {
        matches!(self, Who::CustomerA | Who::VendorUser(true) | Who::VendorOwner(true) | Who::VendorKey(true))
    }

    fn allows(self, p: P) -> bool {
        match self {
            Who::Anyone => true,
            Who::Customer => matches!(p, P::CustomerA | P::CustomerB),
            Who::CustomerA => p == P::CustomerA,
            Who::Staff(roles) => roles.contains(&p),
            Who::VendorUser(only_a) => matches!(p, P::OwnerA | P::MemberA) || (!only_a && p == P::OwnerB),
            Who::VendorOwner(only_a) => p == P::OwnerA || (!only_a && p == P::OwnerB),
            Who::VendorKey(only_a) => p == P::KeyA || (!only_a && p == P::KeyB),
        }
    }
}

const ORDER_STAFF: &[P] = &[P::Support, P::Reviewer, P::Admin];
const REVIEWERS: &[P] = &[P::Reviewer, P::Admin];
const SUPPORT: &[P] = &[P::Support, P::Admin];
const DPO: &[P] = &[P::Dpo, P::Admin];
const ADMIN: &[P] = &[P::Admin];

/// The one table: (method, path, who). Every routed path is here, with
/// each method it answers.
const TABLE: &[(&str, &str, Who)] = &[
    ("GET", "/", Who::Anyone),
    ("GET", "/favicon.ico", Who::Anyone),
    ("GET", "/static/style.css", Who::Anyone),
    ("GET", "/health", Who::Anyone),
    ("GET", "/api/openapi.json", Who::Anyone),
    ("GET", "/products/{id}", Who::Anyone),
    ("GET", "/privacy", Who::Anyone),
    ("GET", "/privacy/cookies", Who::Anyone),
    ("GET", "/privacy/request", Who::Anyone),
    ("POST", "/privacy/request", Who::Anyone),
    ("GET", "/privacy/request/confirm/{token}", Who::Anyone),
    ("POST", "/privacy/request/confirm/{token}", Who::Anyone),
    ("GET", "/downloads/{token}", Who::Anyone),
    ("GET", "/identity/{token}", Who::Anyone),
    ("POST", "/identity/{token}", Who::Anyone),
    ("POST", "/cart", Who::Anyone),
    ("GET", "/checkout", Who::Anyone),
    ("POST", "/checkout", Who::Anyone),
    ("GET", "/checkout/review", Who::Anyone),
    ("POST", "/checkout/pay", Who::Anyone),
    ("GET", "/checkout/done/{token}", Who::Anyone),
    ("GET", "/api/v1/products", Who::Anyone),
    ("GET", "/api/v1/products/{id}", Who::Anyone),
    ("POST", "/api/v1/orders", Who::Anyone),
    ("GET", "/api/v1/privacy-policy", Who::Anyone),
    ("POST", "/api/v1/licenses/verify", Who::Anyone),
    ("GET", "/api/v1/vendors/{slug}/revocations", Who::Anyone),
    // Each realm's home is its sign-in form for anyone not signed in.
    ("GET", "/account", Who::Anyone),
    ("POST", "/account/sign-in", Who::Anyone),
    ("POST", "/account/sign-in/code", Who::Anyone),
    ("POST", "/account/sign-out", Who::Anyone),
    ("POST", "/account/link", Who::Anyone),
    ("GET", "/account/link/{token}", Who::Anyone),
    ("POST", "/account/link/{token}", Who::Anyone),
    ("GET", "/staff", Who::Anyone),
    ("POST", "/staff/sign-in", Who::Anyone),
    ("POST", "/staff/sign-in/code", Who::Anyone),
    ("POST", "/staff/sign-out", Who::Anyone),
    ("GET", "/staff/enrol/{token}", Who::Anyone),
    ("POST", "/staff/enrol/{token}", Who::Anyone),
    ("GET", "/vendor", Who::Anyone),
    ("POST", "/vendor/sign-in", Who::Anyone),
    ("POST", "/vendor/sign-in/code", Who::Anyone),
    ("POST", "/vendor/sign-out", Who::Anyone),
    ("GET", "/vendor/enrol/{token}", Who::Anyone),
    ("POST", "/vendor/enrol/{token}", Who::Anyone),
    // A customer's own account.
    ("POST", "/account/sign-out-everywhere", Who::Customer),
    ("POST", "/account/totp/start", Who::Customer),
    ("POST", "/account/totp/enable", Who::Customer),
    ("POST", "/account/totp/disable", Who::Customer),
    ("POST", "/account/details", Who::Customer),
    ("POST", "/account/password", Who::Customer),
    ("GET", "/account/data", Who::Customer),
    ("GET", "/account/data.json", Who::Customer),
    ("GET", "/account/delete", Who::Customer),
    ("POST", "/account/delete", Who::Customer),
    ("GET", "/account/invoices/{number}", Who::CustomerA),
    ("GET", "/account/credit-notes/{number}", Who::CustomerA),
    // Staff, by role.
    ("GET", "/staff/requests", Who::Staff(DPO)),
    ("GET", "/staff/members", Who::Staff(ADMIN)),
    ("GET", "/staff/vendors", Who::Staff(ADMIN)),
    ("POST", "/staff/vendors", Who::Staff(ADMIN)),
    ("POST", "/staff/vendors/{slug}/standing", Who::Staff(ADMIN)),
    ("GET", "/staff/reviews", Who::Staff(REVIEWERS)),
    ("GET", "/staff/transfers", Who::Staff(SUPPORT)),
    ("GET", "/staff/orders/{id}", Who::Staff(ORDER_STAFF)),
    ("POST", "/staff/orders/{id}/action", Who::Staff(ORDER_STAFF)),
    ("GET", "/staff/orders/{id}/identity", Who::Staff(REVIEWERS)),
    // The vendor portal.
    ("GET", "/vendor/orders", Who::VendorUser(false)),
    ("GET", "/vendor/orders/{id}", Who::VendorUser(true)),
    ("GET", "/vendor/products", Who::VendorUser(false)),
    ("POST", "/vendor/products", Who::VendorUser(false)),
    ("GET", "/vendor/products/{id}", Who::VendorUser(true)),
    ("POST", "/vendor/products/{id}", Who::VendorUser(true)),
    ("POST", "/vendor/products/{id}/file", Who::VendorUser(true)),
    ("GET", "/vendor/statement", Who::VendorUser(false)),
    ("GET", "/vendor/statement.csv", Who::VendorUser(false)),
    ("GET", "/vendor/terms", Who::VendorUser(false)),
    ("POST", "/vendor/terms", Who::VendorOwner(false)),
    ("POST", "/vendor/privacy-contact", Who::VendorOwner(false)),
    ("GET", "/vendor/keys", Who::VendorOwner(false)),
    ("POST", "/vendor/keys", Who::VendorOwner(false)),
    ("POST", "/vendor/keys/{id}/revoke", Who::VendorOwner(true)),
    ("GET", "/vendor/members", Who::VendorOwner(false)),
    ("POST", "/vendor/members", Who::VendorOwner(false)),
    ("POST", "/vendor/members/{id}/remove", Who::VendorOwner(true)),
    ("GET", "/vendor/webhooks", Who::VendorOwner(false)),
    ("POST", "/vendor/webhooks", Who::VendorOwner(false)),
    ("GET", "/vendor/webhooks/{id}", Who::VendorOwner(true)),
    ("POST", "/vendor/webhooks/{id}/delete", Who::VendorOwner(true)),
    ("POST", "/vendor/webhooks/{id}/deliveries/{delivery}/replay", Who::VendorOwner(true)),
    // The vendor API.
    ("GET", "/api/v1/vendor/orders", Who::VendorKey(false)),
    ("GET", "/api/v1/vendor/orders/{id}", Who::VendorKey(true)),
    ("GET", "/api/v1/vendor/products", Who::VendorKey(false)),
    ("POST", "/api/v1/vendor/products", Who::VendorKey(false)),
    ("GET", "/api/v1/vendor/products/{id}", Who::VendorKey(true)),
    ("PATCH", "/api/v1/vendor/products/{id}", Who::VendorKey(true)),
    ("PUT", "/api/v1/vendor/products/{id}/file", Who::VendorKey(true)),
    ("GET", "/api/v1/vendor/statement", Who::VendorKey(false)),
    ("GET", "/api/v1/vendor/webhooks", Who::VendorKey(false)),
    ("POST", "/api/v1/vendor/webhooks", Who::VendorKey(false)),
    ("DELETE", "/api/v1/vendor/webhooks/{id}", Who::VendorKey(true)),
    ("GET", "/api/v1/vendor/webhooks/{id}/deliveries", Who::VendorKey(true)),
    ("POST", "/api/v1/vendor/webhooks/{id}/deliveries/{delivery_id}/replay", Who::VendorKey(true)),
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// What each principal sends: a cookie, a key, and its CSRF token.
#[derive(Default, Clone)]
struct Creds {
    cookie: String,
    key: String,
    csrf: String,
}

/// The things of vendor A and customer A the paths name.
struct Fixture {
    creds: BTreeMap<P, Creds>,
    params: BTreeMap<&'static str, String>,
    /// The addresses of vendor A's buyers.
    buyers: Vec<String>,
}

async fn portal_sign_in(server: &TestServer, email: &str, password: &str, secret: &str) -> String {
    let pass = crate::form_pass(server, "/vendor").await;
    let step = client()
        .post(server.url("/vendor/sign-in"))
        .header(COOKIE, &pass.cookie)
        .form(&[("email", email), ("password", password), ("form_token", &pass.token)])
        .send()
        .await
        .unwrap();
    let ticket = field_value(&step.text().await.unwrap(), "ticket");
    let secret = coffer_crypto::totp_secret_from_base32(secret).unwrap();
    let code = coffer_crypto::totp_code(&secret, unix_now() + 30).unwrap();
    let done = client()
        .post(server.url("/vendor/sign-in/code"))
        .form(&[("ticket", ticket.as_str()), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    vendor_cookie(&done)
}

fn vendor_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("coffer_vendor="))
        .expect("a vendor session")
        .to_owned();
    set.split(';').next().unwrap().to_owned()
}

async fn html(server: &TestServer, path: &str, cookie: &str) -> String {
    client().get(server.url(path)).header(COOKIE, cookie).send().await.unwrap().text().await.unwrap()
}

async fn fixture(server: &TestServer) -> Fixture {
    let demo = server.demo_credentials();
    let mut creds: BTreeMap<P, Creds> = BTreeMap::new();
    creds.insert(P::Anonymous, Creds::default());
    // Customers: the demo customer (A) and a second one (B) who set a
    // password from an emailed link.
    let (email, password) = crate::accounts::demo_customer(server);
    let a = session_cookie(&crate::accounts::sign_in(server, &email, &password).await);
    let version = policy_version(server).await;
    let (_, a_order) = post_order(server, &order(server, &version, "4242424242424242", &email)).await;
    post_order(server, &order(server, &version, "4242424242424242", "customer.b@example.org")).await;
    let link = fresh_link(server, "customer.b@example.org").await;
    let set =
        client().post(server.url(&link)).form(&[("password", "customer b orbit lantern 2026")]).send().await.unwrap();
    let b = session_cookie(&set);
    for (p, cookie) in [(P::CustomerA, a), (P::CustomerB, b)] {
        let csrf = csrf_from(&html(server, "/account", &cookie).await);
        creds.insert(p, Creds { cookie, csrf, ..Creds::default() });
    }
    // Staff, one per role.
    for (p, role) in [(P::Support, "support"), (P::Reviewer, "reviewer"), (P::Dpo, "dpo"), (P::Admin, "admin")] {
        let cookie = crate::staff::demo_staff_session(server, role).await;
        let csrf = csrf_from(&html(server, "/staff", &cookie).await);
        creds.insert(p, Creds { cookie, csrf, ..Creds::default() });
    }
    // Vendors: owners from the demo, a member of A, and their keys.
    let vendors = demo["vendors"].as_array().unwrap().clone();
    for (p, v, key_p) in [(P::OwnerA, &vendors[0], P::KeyA), (P::OwnerB, &vendors[1], P::KeyB)] {
        let cookie = portal_sign_in(
            server,
            v["user_email"].as_str().unwrap(),
            v["password"].as_str().unwrap(),
            v["totp_secret"].as_str().unwrap(),
        )
        .await;
        let csrf = csrf_from(&html(server, "/vendor", &cookie).await);
        creds.insert(p, Creds { cookie, csrf, ..Creds::default() });
        creds.insert(key_p, Creds { key: v["api_key"].as_str().unwrap().to_owned(), ..Creds::default() });
    }
    let owner_a = creds[&P::OwnerA].clone();
    let invite = |email: &'static str| {
        let owner_a = owner_a.clone();
        async move {
            let page = client()
                .post(server.url("/vendor/members"))
                .header(COOKIE, &owner_a.cookie)
                .form(&[("csrf", owner_a.csrf.as_str()), ("email", email), ("role", "member")])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let start = page.find("/vendor/enrol/").expect("a member link");
            page[start..].chars().take_while(|c| *c != '<').collect::<String>()
        }
    };
    let member_link = invite("member.a@northwind.example").await;
    let enrol_page = html(server, &member_link, "").await;
    let secret_text = field_value(&enrol_page, "secret");
    let secret = coffer_crypto::totp_secret_from_base32(&secret_text).unwrap();
    let code = coffer_crypto::totp_code(&secret, unix_now()).unwrap();
    let enrolled = client()
        .post(server.url(&member_link))
        .form(&[("password", "member of northwind 2026"), ("secret", &secret_text), ("code", &code)])
        .send()
        .await
        .unwrap();
    let member = vendor_cookie(&enrolled);
    let csrf = csrf_from(&html(server, "/vendor", &member).await);
    creds.insert(P::MemberA, Creds { cookie: member, csrf, ..Creds::default() });

    // Vendor A's things: an order, a product, a spare key, a spare member,
    // an endpoint and one of its deliveries.
    let key_a = creds[&P::KeyA].key.clone();
    let api = |method: reqwest::Method, path: String, body: Value| {
        let key_a = key_a.clone();
        async move {
            let r = client()
                .request(method, server.url(&path))
                .header(AUTHORIZATION, format!("Bearer {key_a}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            r.json::<Value>().await.unwrap()
        }
    };
    let endpoint = api(
        reqwest::Method::POST,
        "/api/v1/vendor/webhooks".into(),
        json!({"url": "http://127.0.0.1:9/hook", "events": ["order.paid"]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    post_order(server, &order(server, &version, "4242424242424242", "after.hook@example.org")).await;
    let mut delivery = String::new();
    for _ in 0..100 {
        let log =
            api(reqwest::Method::GET, format!("/api/v1/vendor/webhooks/{endpoint}/deliveries"), Value::Null).await;
        if let Some(id) = log["deliveries"][0]["id"].as_str() {
            delivery = id.to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!delivery.is_empty(), "a delivery to name");
    let owner_a = creds[&P::OwnerA].clone();
    let spare_key_page = client()
        .post(server.url("/vendor/keys"))
        .header(COOKIE, &owner_a.cookie)
        .form(&[("csrf", owner_a.csrf.as_str()), ("label", "spare")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key_id: String = spare_key_page[spare_key_page.find("/vendor/keys/vak_").unwrap() + "/vendor/keys/".len()..]
        .chars()
        .take(36)
        .collect();
    invite("spare.member@northwind.example").await;
    let members = html(server, "/vendor/members", &owner_a.cookie).await;
    let spare_member: String = members
        .match_indices("/vendor/members/vus_")
        .map(|(i, _)| members[i + "/vendor/members/".len()..].chars().take(36).collect::<String>())
        .last()
        .unwrap();
    // An invoice and a credit note of customer A's to name (numbered in
    // the background): a second order of A's, refunded by support.
    let (_, refunded) = post_order(server, &order(server, &version, "4242424242424242", &email)).await;
    let support = creds[&P::Support].clone();
    let action = format!("/staff/orders/{}/action", refunded["id"].as_str().unwrap());
    let form = [("csrf", support.csrf.as_str()), ("action", "refund"), ("reason", "asked")];
    client().post(server.url(&action)).header(COOKIE, &support.cookie).form(&form).send().await.unwrap();
    let number_of = |page: &str, prefix: &str| {
        page.find(prefix).map(|i| page[i + prefix.len()..].chars().take_while(char::is_ascii_digit).collect::<String>())
    };
    let (mut invoice, mut credit_note) = (None, None);
    for _ in 0..100 {
        let page = html(server, "/account", &creds[&P::CustomerA].cookie).await;
        (invoice, credit_note) = (number_of(&page, "/account/invoices/"), number_of(&page, "/account/credit-notes/"));
        if invoice.is_some() && credit_note.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (invoice, credit_note) = (invoice.expect("an invoice of A"), credit_note.expect("a credit note of A"));
    let product = demo["vendors"][0]["products"][0]["id"].as_str().unwrap().to_owned();
    let order_id = a_order["id"].as_str().unwrap().to_owned();
    let params = BTreeMap::from([
        ("{id}", String::new()),
        ("{token}", "not-a-real-token".to_owned()),
        ("{slug}", "northwind".to_owned()),
        ("{number}", invoice),
        ("credit_note", credit_note),
        ("{delivery}", delivery.clone()),
        ("{delivery_id}", delivery),
        ("order", order_id),
        ("product", product),
        ("endpoint", endpoint),
        ("key", key_id),
        ("member", spare_member),
    ]);
    let buyers = vec![email, "customer.b@example.org".to_owned(), "after.hook@example.org".to_owned()];
    Fixture { creds, params, buyers }
}

impl Fixture {
    /// The path with its parameters naming vendor A's or customer A's things.
    fn concrete(&self, path: &str) -> String {
        let id = if path.contains("/products/") {
            &self.params["product"]
        } else if path.contains("/webhooks/") {
            &self.params["endpoint"]
        } else if path.contains("/keys/") {
            &self.params["key"]
        } else if path.contains("/members/") {
            &self.params["member"]
        } else {
            &self.params["order"]
        };
        let mut out = path.replace("{id}", id);
        if path.contains("/credit-notes/") {
            out = out.replace("{number}", &self.params["credit_note"]);
        }
        for (name, value) in &self.params {
            if name.starts_with('{') {
                out = out.replace(name, value);
            }
        }
        out
    }
}

/// Whether an answer is a refusal by the guard. A 404 is one only on a
/// path that names someone's thing (elsewhere it says the thing is not
/// there, to someone who may ask).
fn refused(who: Who, status: StatusCode, location: Option<&str>, body: &str) -> bool {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => true,
        StatusCode::NOT_FOUND => who.scoped(),
        // Sent to a realm's sign-in.
        StatusCode::SEE_OTHER => matches!(location, Some("/account" | "/staff" | "/vendor")),
        // A realm's home shows its sign-in form to whoever is not its.
        StatusCode::OK => body.contains("name=\"form_token\"") && body.contains("sign-in"),
        _ => false,
    }
}

async fn call(
    server: &TestServer,
    fixture: &Fixture,
    p: P,
    method: &str,
    path: &str,
) -> (StatusCode, Option<String>, String) {
    let creds = &fixture.creds[&p];
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    // An upload names its file.
    let path = if method == reqwest::Method::PUT { format!("{path}?name=probe.bin") } else { path.to_owned() };
    let mut request = client().request(method.clone(), server.url(&path));
    if !creds.cookie.is_empty() {
        request = request.header(COOKIE, &creds.cookie);
    }
    if !creds.key.is_empty() {
        request = request.header(AUTHORIZATION, format!("Bearer {}", creds.key));
    }
    if path.starts_with("/api/") && method != reqwest::Method::GET {
        request = request.header(CONTENT_TYPE, "application/json").body("{}");
    } else if path.ends_with("/file") && method == reqwest::Method::POST {
        // The upload form is multipart: its token, no file.
        let body = format!("--X\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n--X--\r\n", creds.csrf);
        request = request.header(CONTENT_TYPE, "multipart/form-data; boundary=X").body(body);
    } else if method == reqwest::Method::POST {
        // A form with the principal's own token and harmless values: a
        // reinstate of an active vendor, an empty label, no action.
        request = request.form(&[("csrf", creds.csrf.as_str()), ("action", "reinstate")]);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, location, response.text().await.unwrap_or_default())
}

/// The paths that change what the rest of the matrix needs (a session or
/// a key ended, an account deleted) run last, and sign-outs are called
/// without credentials.
fn disruptive(method: &str, path: &str) -> bool {
    method != "GET" && disruptive_path(path) || method == "DELETE"
}

fn disruptive_path(path: &str) -> bool {
    path.ends_with("/sign-out")
        || path.ends_with("/sign-out-everywhere")
        || path.ends_with("/revoke")
        || path.ends_with("/remove")
        || path == "/account/delete"
        || path == "/account/password"
        || path.ends_with("/delete")
}

async fn every_route_refuses_everyone_the_table_does_not_name(backend: TestBackend) {
    // The table covers exactly the routed paths.
    let routed: std::collections::BTreeSet<String> =
        coffer_web::routed_paths().into_iter().filter(|p| !p.contains("__private__")).collect();
    let tabled: std::collections::BTreeSet<String> = TABLE.iter().map(|(_, p, _)| (*p).to_owned()).collect();
    let missing: Vec<_> = routed.difference(&tabled).collect();
    assert!(missing.is_empty(), "routes with no line in the access table: {missing:?}");
    let stale: Vec<_> = tabled.difference(&routed).collect();
    assert!(stale.is_empty(), "table lines of no route: {stale:?}");

    // Many form posts from one address: the per-address limit is not what is tested.
    let env = [("COFFER_WEBHOOKS__ALLOW_PRIVATE", "true"), ("COFFER_HTTP__SIGN_IN_PER_MINUTE", "1000000")];
    let server = TestServer::start_with(crate::BIN, backend, &env).await;
    let fixture = fixture(&server).await;
    // Every method a path answers is in the table (405 otherwise).
    for path in &routed {
        let concrete = fixture.concrete(path);
        for method in METHODS {
            if TABLE.iter().any(|(m, p, _)| *m == method && p == path) {
                continue;
            }
            let (status, _, _) = call(&server, &fixture, P::Anonymous, method, &concrete).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} answers but has no line in the table");
        }
    }
    let mut failures = Vec::new();
    let mut most_buyers = 0;
    let ordered: Vec<_> = TABLE
        .iter()
        .filter(|(m, p, _)| !disruptive(m, p))
        .chain(TABLE.iter().filter(|(m, p, _)| disruptive(m, p)))
        .collect();
    for (method, path, who) in ordered {
        let concrete = fixture.concrete(path);
        for p in EVERYONE {
            if disruptive(method, path) && who.allows(p) && !matches!(who, Who::Anyone) {
                // Calling it would end what later calls need; that the
                // right principal passes is the feature tests' part. Its
                // refusals are checked here.
                continue;
            }
            if path.ends_with("/sign-out") && p != P::Anonymous {
                continue;
            }
            let (status, location, body) = call(&server, &fixture, p, method, &concrete).await;
            assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{p:?} {method} {path}: 500");
            if matches!(who, Who::Anyone) {
                // Public: nothing to refuse (a bad token is the page's own answer).
                continue;
            }
            // Purpose limitation (P2, P4): no vendor answer names more than
            // one buyer; lists name none.
            let vendor_side = path.starts_with("/vendor") || path.starts_with("/api/v1/vendor");
            if vendor_side && *method == "GET" {
                let buyers = fixture.buyers.iter().filter(|b| body.contains(b.as_str())).count();
                assert!(buyers <= 1, "{p:?} GET {path} names {buyers} buyers");
                let list = !path.contains("{id}");
                assert!(!(list && buyers > 0), "{p:?} GET {path} is a list that names a buyer");
                most_buyers = most_buyers.max(buyers);
            }
            let was_refused = refused(*who, status, location.as_deref(), &body);
            if who.allows(p) && was_refused {
                failures.push(format!("{p:?} refused at {method} {path}: {status} {location:?}"));
            }
            if !who.allows(p) && !was_refused {
                failures.push(format!("{p:?} let through at {method} {path}: {status} {location:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(most_buyers, 1, "an order's detail names its one buyer (the check above saw one)");
}

mod every_route_refuses_everyone_the_table_does_not_name {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::every_route_refuses_everyone_the_table_does_not_name(coffer_testkit::TestBackend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::every_route_refuses_everyone_the_table_does_not_name(coffer_testkit::TestBackend::Postgres).await;
    }
}
