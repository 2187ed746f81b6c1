//! Customer sign-in over HTTP and in the browser.

use crate::{client, on_both_backends};
use coffer_store::prelude::*;
use coffer_testkit::{Browser, TestServer};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, RETRY_AFTER, SET_COOKIE};

on_both_backends!(
    sign_in_sets_a_fresh_session_and_sign_out_ends_it,
    foreign_origin_and_missing_csrf_token_are_refused,
    wrong_passwords_lock_the_address_with_retry_after,
    link_request_answers_the_same_for_unknown_addresses,
    edit_download_change_password_and_delete,
    two_step_sign_in_with_totp_and_recovery_codes,
    written_request_is_confirmed_from_the_inbox_with_its_deadline,
    p08_second_step_ticket_never_sets_a_password,
    p08_emailed_links_ask_for_the_code_and_die_with_a_new_password_or_factor,
    p08_wrong_current_passwords_in_a_session_lock_the_account,
);

pub(crate) fn demo_customer(server: &TestServer) -> (String, String) {
    let creds = server.demo_credentials();
    (
        creds["customer"]["email"].as_str().unwrap().to_owned(),
        creds["customer"]["password"].as_str().unwrap().to_owned(),
    )
}

/// Signs in; returns the `name=value` of the session cookie.
/// Signs in through the sign-in form, as a browser would.
pub(crate) async fn sign_in(server: &TestServer, email: &str, password: &str) -> reqwest::Response {
    let pass = crate::form_pass(server, "/account").await;
    client()
        .post(server.url("/account/sign-in"))
        .header(COOKIE, &pass.cookie)
        .form(&[("email", email), ("password", password), ("form_token", &pass.token)])
        .send()
        .await
        .unwrap()
}

pub(crate) fn session_cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get(SET_COOKIE).expect("a session cookie").to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

pub(crate) fn csrf_from(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[start..].chars().take_while(|c| *c != '"').collect()
}

async fn sign_in_sets_a_fresh_session_and_sign_out_ends_it(server: TestServer) {
    let (email, password) = demo_customer(&server);
    // A cookie planted before sign-in (session fixation) is not kept.
    let planted = "coffer_session=planted-by-an-attacker";
    let pass = crate::form_pass(&server, "/account").await;
    let response = client()
        .post(server.url("/account/sign-in"))
        .header(COOKIE, format!("{planted}; {}", pass.cookie))
        .form(&[("email", email.as_str()), ("password", password.as_str()), ("form_token", pass.token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/account");
    let cookie = session_cookie(&response);
    assert_ne!(cookie, planted);
    assert!(!cookie.contains(&email) && !cookie.to_lowercase().contains("dana"), "no personal data in cookies");
    let response = client().get(server.url("/account")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store", "account pages are never cached");
    let page = response.text().await.unwrap();
    assert!(page.contains("Hello, Dana Demo"), "{page}");
    let planted_page =
        client().get(server.url("/account")).header(COOKIE, planted).send().await.unwrap().text().await.unwrap();
    assert!(planted_page.contains("Sign in") && !planted_page.contains("Dana"));
    // Sign out; the old cookie (a replay) no longer works.
    let csrf = csrf_from(&page);
    let out = client()
        .post(server.url("/account/sign-out"))
        .header(COOKIE, &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(out.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let replay =
        client().get(server.url("/account")).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    assert!(!replay.contains("Dana"), "a signed-out session is dead");
}

async fn foreign_origin_and_missing_csrf_token_are_refused(server: TestServer) {
    let (email, password) = demo_customer(&server);
    let foreign = client()
        .post(server.url("/account/sign-in"))
        .header(ORIGIN, "https://evil.example")
        .form(&[("email", email.as_str()), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let cross_site = client()
        .post(server.url("/account/link"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("email", email.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let null_origin = client()
        .post(server.url("/account/sign-in"))
        .header(ORIGIN, "null")
        .form(&[("email", email.as_str()), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(null_origin.status(), StatusCode::FORBIDDEN, "an opaque origin without Sec-Fetch-Site");
    // Finding 14: the forms used before sign-in carry a token tied to the
    // browser's form cookie: none, a made-up one, or another browser's is refused.
    let mine = crate::form_pass(&server, "/account").await;
    let theirs = crate::form_pass(&server, "/account").await;
    assert_ne!(mine.token, theirs.token);
    for (what, cookie, token) in [
        ("no token", mine.cookie.as_str(), ""),
        ("a made-up token", mine.cookie.as_str(), "forged-token"),
        ("another browser's token", mine.cookie.as_str(), theirs.token.as_str()),
        ("no cookie", "", mine.token.as_str()),
    ] {
        for (path, form) in [
            ("/account/sign-in", vec![("email", email.as_str()), ("password", password.as_str())]),
            ("/account/link", vec![("email", email.as_str())]),
            ("/privacy/request", vec![("email", email.as_str()), ("kind", "access"), ("jurisdiction", "eu")]),
        ] {
            let mut form = form;
            form.push(("form_token", token));
            let r = client().post(server.url(path)).header(COOKIE, cookie).form(&form).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path} with {what}");
            assert!(r.headers().get(SET_COOKIE).is_none(), "{path} with {what}: no session");
        }
    }
    let cookie = session_cookie(&sign_in(&server, &email, &password).await);
    for csrf in ["", "forged-token"] {
        let out = client()
            .post(server.url("/account/sign-out-everywhere"))
            .header(COOKIE, &cookie)
            .form(&[("csrf", csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::FORBIDDEN, "csrf {csrf:?}");
    }
    let page = client().get(server.url("/account")).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Hello, Dana Demo"), "the refused requests changed nothing");
}

async fn wrong_passwords_lock_the_address_with_retry_after(server: TestServer) {
    let (email, _) = demo_customer(&server);
    for _ in 0..4 {
        let r = sign_in(&server, &email, "not the password at all").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.text().await.unwrap().contains("email address or password is not right"));
    }
    let locked = sign_in(&server, &email, "not the password at all").await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().contains_key(RETRY_AFTER));
    // An unknown address answers exactly the same way.
    let unknown = sign_in(&server, "nobody@example.org", "not the password at all").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let overlong = sign_in(&server, &"a".repeat(300), "x").await;
    assert_eq!(overlong.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn link_request_answers_the_same_for_unknown_addresses(server: TestServer) {
    let (email, _) = demo_customer(&server);
    let pass = crate::form_pass(&server, "/account").await;
    let link = |address: &str| {
        let form = [("email", address), ("form_token", pass.token.as_str())];
        client().post(server.url("/account/link")).header(COOKIE, &pass.cookie).form(&form).send()
    };
    let known = link(email.as_str()).await.unwrap();
    let unknown = link("nobody@example.org").await.unwrap();
    assert_eq!((known.status(), unknown.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());
    // The link arrives as a file in the data directory's mail folder.
    let mail = server.data_dir.join("mail");
    let mut waited = 0;
    while std::fs::read_dir(&mail).map(|d| d.count()).unwrap_or(0) == 0 && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(std::fs::read_dir(&mail).unwrap().count(), 1, "one message, to the known address only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_and_out_in_the_browser() {
    let server = crate::server(coffer_testkit::TestBackend::Sqlite).await;
    let (email, password) = demo_customer(&server);
    let browser = Browser::start().await;
    browser.goto(&server.url("/")).await;
    browser.click(&browser.find("nav a[href='/account']").await).await;
    browser.wait_for_title("Sign in · Coffer").await;
    browser.fill(&browser.find("#email").await, &email).await;
    browser.fill(&browser.find("#password").await, &password).await;
    browser.click(&browser.find("form[action='/account/sign-in'] button").await).await;
    browser.wait_for_title("Your account · Coffer").await;
    let heading = browser.text(&browser.find("h1").await).await;
    assert_eq!(heading, "Hello, Dana Demo");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    browser.screenshot(&dir.join("account.png")).await;
    browser.click(&browser.find("form[action='/account/totp/start'] button").await).await;
    browser.wait_for_title("Two-step sign-in · Coffer").await;
    assert_eq!(browser.text(&browser.find("#totp-secret").await).await.len(), 32, "the key, in base32");
    browser.screenshot(&dir.join("totp-setup.png")).await;
    browser.goto(&server.url("/account")).await;
    browser.wait_for_title("Your account · Coffer").await;
    browser.click(&browser.find("form[action='/account/sign-out'] button").await).await;
    browser.wait_for_title("Sign in · Coffer").await;
    assert!(browser.cookies().await.iter().all(|c| c["name"] != "coffer_session"), "the cookie is gone");
    browser.screenshot(&dir.join("sign-in.png")).await;
}

async fn post_form(server: &TestServer, path: &str, cookie: &str, form: &[(&str, &str)]) -> reqwest::Response {
    client().post(server.url(path)).header(COOKIE, cookie).form(form).send().await.unwrap()
}

async fn page(server: &TestServer, path: &str, cookie: &str) -> String {
    client().get(server.url(path)).header(COOKIE, cookie).send().await.unwrap().text().await.unwrap()
}

async fn edit_download_change_password_and_delete(server: TestServer) {
    let (email, password) = demo_customer(&server);
    let cookie = session_cookie(&sign_in(&server, &email, &password).await);
    let csrf = csrf_from(&page(&server, "/account", &cookie).await);
    // Edit details.
    let edit = [
        ("csrf", csrf.as_str()),
        ("name", "Dana Renamed"),
        ("phone", ""),
        ("line1", "2 Demo Street"),
        ("line2", ""),
        ("city", "Springfield"),
        ("region", ""),
        ("postal_code", "62701"),
        ("country", "us"),
    ];
    let saved = post_form(&server, "/account/details", &cookie, &edit).await;
    assert_eq!(saved.status(), StatusCode::OK);
    assert!(saved.text().await.unwrap().contains("Your details are saved."));
    let bad = [("csrf", csrf.as_str()), ("name", " "), ("line1", ""), ("city", ""), ("country", "")];
    let refused = post_form(&server, "/account/details", &cookie, &bad).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.text().await.unwrap().contains("Not saved: the name is required."));
    // Download my data: JSON and page, only with a session.
    let json: serde_json::Value = serde_json::from_str(&page(&server, "/account/data.json", &cookie).await).unwrap();
    let fields = json["personal_data"].as_array().unwrap();
    assert!(fields.iter().any(|f| f["field"] == "customers.name" && f["value"] == "Dana Renamed"));
    assert!(fields.iter().any(|f| f["field"] == "customers.address" && f["value"]["country"] == "US"));
    assert!(page(&server, "/account/data", &cookie).await.contains("Dana Renamed"));
    let anonymous = client().get(server.url("/account/data.json")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER, "no session, no data");
    // Change password: the wrong current one is refused; the change ends the old session.
    let wrong = [("csrf", csrf.as_str()), ("current", "not it at all"), ("new", "a brand new lantern 99")];
    assert_eq!(
        post_form(&server, "/account/password", &cookie, &wrong).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let change = [("csrf", csrf.as_str()), ("current", password.as_str()), ("new", "a brand new lantern 99")];
    let changed = post_form(&server, "/account/password", &cookie, &change).await;
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    let new_cookie = session_cookie(&changed);
    assert!(!page(&server, "/account", &cookie).await.contains("Dana"), "the old session ended");
    assert!(page(&server, "/account", &new_cookie).await.contains("Hello, Dana Renamed"));
    assert_eq!(sign_in(&server, &email, &password).await.status(), StatusCode::UNAUTHORIZED);
    // Delete: the password confirms; afterwards nothing signs in and the data is gone.
    let csrf = csrf_from(&page(&server, "/account/delete", &new_cookie).await);
    let no =
        post_form(&server, "/account/delete", &new_cookie, &[("csrf", &csrf), ("password", "wrong wrong wrong")]).await;
    assert_eq!(no.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let gone =
        post_form(&server, "/account/delete", &new_cookie, &[("csrf", &csrf), ("password", "a brand new lantern 99")])
            .await;
    assert_eq!(gone.status(), StatusCode::OK);
    assert!(gone.text().await.unwrap().contains("Your account is deleted"));
    assert_eq!(sign_in(&server, &email, "a brand new lantern 99").await.status(), StatusCode::UNAUTHORIZED);
    assert!(!page(&server, "/account", &new_cookie).await.contains("Dana"));
    // The confirmation goes out (file transport), then its one-off key is destroyed.
    let mail = server.data_dir.join("mail");
    let mut confirmation = None;
    for _ in 0..100 {
        confirmation = std::fs::read_dir(&mail)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .find(|m| m.contains("Your Coffer account is deleted"));
        if confirmation.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let confirmation = confirmation.expect("a deletion confirmation");
    assert!(confirmation.contains(&email), "sent to the address on file");
}

/// Per-IP limit on sign-in, links and passwords; a client cannot escape it
/// by writing its own `X-Forwarded-For`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_answers_429_and_ignores_forged_forwarded_for() {
    let server = TestServer::start_with(
        crate::BIN,
        coffer_testkit::TestBackend::Sqlite,
        &[("COFFER_HTTP__SIGN_IN_PER_MINUTE", "3")],
    )
    .await;
    let pass = crate::form_pass(&server, "/account").await;
    for n in 0..3 {
        let ok = client()
            .post(server.url("/account/link"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .header(COOKIE, &pass.cookie)
            .form(&[("email", "nobody@example.org"), ("form_token", pass.token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
    let limited = client()
        .post(server.url("/account/sign-in"))
        .header("x-forwarded-for", "203.0.113.99")
        .form(&[("email", "nobody@example.org"), ("password", "whatever it is")])
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Reading pages is not limited.
    assert_eq!(client().get(server.url("/account")).send().await.unwrap().status(), StatusCode::OK);
}

pub(crate) fn field_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("a {name} field in {html}")) + marker.len();
    html[start..].chars().take_while(|c| *c != '"').collect()
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

async fn two_step_sign_in_with_totp_and_recovery_codes(server: TestServer) {
    let (email, password) = demo_customer(&server);
    let cookie = session_cookie(&sign_in(&server, &email, &password).await);
    let csrf = csrf_from(&page(&server, "/account", &cookie).await);
    let setup = post_form(&server, "/account/totp/start", &cookie, &[("csrf", &csrf)]).await.text().await.unwrap();
    let secret_text = field_value(&setup, "secret");
    assert!(setup.contains("otpauth://totp/Coffer"), "{setup}");
    let secret = coffer_crypto::totp_secret_from_base32(&secret_text).unwrap();
    let wrong = post_form(
        &server,
        "/account/totp/enable",
        &cookie,
        &[("csrf", &csrf), ("secret", &secret_text), ("code", "000000"), ("password", &password)],
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let code = coffer_crypto::totp_code(&secret, unix_now()).unwrap();
    // A session alone does not turn it on: the password confirms it.
    let no_password = post_form(
        &server,
        "/account/totp/enable",
        &cookie,
        &[("csrf", &csrf), ("secret", &secret_text), ("code", &code), ("password", "not my password at all")],
    )
    .await;
    assert_eq!(no_password.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(no_password.text().await.unwrap().contains("password is not right"));
    let enabled = post_form(
        &server,
        "/account/totp/enable",
        &cookie,
        &[("csrf", &csrf), ("secret", &secret_text), ("code", &code), ("password", &password)],
    )
    .await;
    assert_eq!(enabled.status(), StatusCode::OK);
    let shown = enabled.text().await.unwrap();
    let recovery: Vec<String> =
        shown.split("<li><code>").skip(1).map(|rest| rest.chars().take_while(|c| *c != '<').collect()).collect();
    assert_eq!(recovery.len(), 10, "{shown}");
    // Nor can a session swap the factor once it is on.
    let other = coffer_crypto::totp_base32(&coffer_crypto::new_totp_secret().unwrap());
    let swap = post_form(
        &server,
        "/account/totp/enable",
        &cookie,
        &[("csrf", &csrf), ("secret", &other), ("code", "123456"), ("password", &password)],
    )
    .await;
    assert_eq!(swap.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(swap.text().await.unwrap().contains("already on"));

    // A right password now asks for a code; no session cookie yet.
    let step_one = sign_in(&server, &email, &password).await;
    assert_eq!(step_one.status(), StatusCode::OK);
    assert!(step_one.headers().get(SET_COOKIE).is_none());
    let ticket = field_value(&step_one.text().await.unwrap(), "ticket");
    // The code used to turn it on cannot be replayed.
    let replay = client()
        .post(server.url("/account/sign-in/code"))
        .form(&[("ticket", ticket.as_str()), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED, "a TOTP code is accepted once");
    let next = coffer_crypto::totp_code(&secret, unix_now() + 30).unwrap();
    let done = client()
        .post(server.url("/account/sign-in/code"))
        .form(&[("ticket", ticket.as_str()), ("code", next.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let session = session_cookie(&done);
    assert!(page(&server, "/account", &session).await.contains("Hello, Dana Demo"));
    // The ticket is spent.
    let again = client()
        .post(server.url("/account/sign-in/code"))
        .form(&[("ticket", ticket.as_str()), ("code", recovery[0].as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);

    // A recovery code works once.
    for (attempt, expected) in [(0, StatusCode::SEE_OTHER), (1, StatusCode::UNAUTHORIZED)] {
        let ticket = field_value(&sign_in(&server, &email, &password).await.text().await.unwrap(), "ticket");
        let r = client()
            .post(server.url("/account/sign-in/code"))
            .form(&[("ticket", ticket.as_str()), ("code", recovery[0].to_uppercase().as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected, "recovery attempt {attempt}");
    }
    // Turning it off needs the password.
    let csrf = csrf_from(&page(&server, "/account", &session).await);
    let off = post_form(&server, "/account/totp/disable", &session, &[("csrf", &csrf), ("password", &password)]).await;
    assert!(off.text().await.unwrap().contains("Two-step sign-in is off."));
    assert_eq!(sign_in(&server, &email, &password).await.status(), StatusCode::SEE_OTHER);
}

/// The text of the newest message in the server's mail folder that
/// contains `needle`, with quoted-printable soft breaks undone.
pub(crate) async fn mail_containing(server: &TestServer, needle: &str) -> String {
    mail_containing_all(server, &[needle]).await
}

/// The text of a message in the server's mail folder that contains every
/// one of `needles` (headers fold long lines, so match body text).
pub(crate) async fn mail_containing_all(server: &TestServer, needles: &[&str]) -> String {
    for _ in 0..100 {
        let found = std::fs::read_dir(server.data_dir.join("mail"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|m| m.replace("=\r\n", "").replace("=\n", ""))
            .find(|m| needles.iter().all(|n| m.contains(n)));
        if let Some(message) = found {
            return message;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no message containing {needles:?}");
}

async fn written_request_is_confirmed_from_the_inbox_with_its_deadline(server: TestServer) {
    let (email, _) = demo_customer(&server);
    let form = |address: &str| {
        vec![("email", address.to_owned()), ("kind", "erasure".to_owned()), ("jurisdiction", "br".to_owned())]
    };
    let pass = crate::form_pass(&server, "/privacy/request").await;
    let send = |fields: Vec<(&'static str, String)>| {
        let mut fields = fields;
        fields.push(("form_token", pass.token.clone()));
        client().post(server.url("/privacy/request")).header(COOKIE, &pass.cookie).form(&fields).send()
    };
    let known = send(form(&email)).await.unwrap();
    let unknown = send(form("nobody@example.org")).await.unwrap();
    assert_eq!((known.status(), unknown.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap(), "the same answer either way");
    let bad = client()
        .post(server.url("/privacy/request"))
        .header(COOKIE, &pass.cookie)
        .form(&[
            ("email", email.as_str()),
            ("kind", "sell-my-data"),
            ("jurisdiction", "br"),
            ("form_token", &pass.token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let message = mail_containing(&server, "/privacy/request/confirm/").await;
    assert!(message.contains("the erasure of your data"), "{message}");
    let start = message.find("/privacy/request/confirm/").unwrap();
    let path: String = message[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    // Opening the link changes nothing; the button does.
    let shown = client().get(server.url(&path)).send().await.unwrap().text().await.unwrap();
    assert!(shown.contains("Yes, I made this request"));
    let confirmed = client().post(server.url(&path)).send().await.unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
    assert!(confirmed.text().await.unwrap().contains("within 15 days"), "LGPD's deadline");
    let again = client().post(server.url(&path)).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY, "a challenge answers once");
    // Opened again, the used link says so at once, with no button to press.
    let used = client().get(server.url(&path)).send().await.unwrap();
    assert_eq!(used.status(), StatusCode::GONE);
    let used = used.text().await.unwrap();
    assert!(used.contains("already used") && !used.contains("Yes, I made this request"), "{used}");
    let unknown = client().get(server.url("/privacy/request/confirm/not-a-token")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::GONE);
    // Recorded for the DPO, with its deadline; the unknown address left no trace.
    let db = coffer_store::Db::open(&server.database_url(), &coffer_store::DbOptions::default()).await.unwrap();
    let open = db.open_privacy_requests().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].kind.as_str(), open[0].jurisdiction.as_str(), open[0].status.as_str()),
        ("erasure", "br", "confirmed")
    );
    let deadline = open[0].deadline_at.unwrap().0 - open[0].received_at.0;
    assert!((15 * 86_400_000 - 60_000..=15 * 86_400_000 + 60_000).contains(&deadline), "{deadline}");
    // Nothing was erased by the request itself: the DPO answers it.
    let export = server.cli(&["export", "--email", &email]);
    assert!(export.status.success(), "the customer still exists");
}

/// The path of the first link in a message that starts with `prefix`.
fn link_in(message: &str, prefix: &str) -> String {
    let start = message.find(prefix).unwrap_or_else(|| panic!("a {prefix} link in {message}"));
    message[start..].chars().take_while(|c| !c.is_whitespace()).collect()
}

/// The whole customer path in a real browser, reading the emails as the
/// customer would: emailed link → set password → sign in → turn on TOTP →
/// sign in with TOTP → download data → delete the account → sign-in fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_customer_path_in_the_browser() {
    let server = crate::server(coffer_testkit::TestBackend::Sqlite).await;
    let (email, _) = demo_customer(&server);
    let password = "copper kettle sunrise 88";
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let browser = Browser::start().await;

    // A link by email, and the password it sets.
    browser.goto(&server.url("/account")).await;
    browser.wait_for_title("Sign in · Coffer").await;
    browser.fill(&browser.find("#link-email").await, &email).await;
    browser.click(&browser.find("form[action='/account/link'] button").await).await;
    browser.wait_for_title("Check your email · Coffer").await;
    let link = link_in(&mail_containing(&server, "/account/link/").await, "/account/link/");
    browser.goto(&server.url(&link)).await;
    browser.wait_for_title("Set your password · Coffer").await;
    browser.fill(&browser.find("#password").await, password).await;
    browser.click(&browser.find("form button").await).await;
    browser.wait_for_title("Your account · Coffer").await;

    // Sign out, and in again with the new password.
    browser.click(&browser.find("form[action='/account/sign-out'] button").await).await;
    browser.wait_for_title("Sign in · Coffer").await;
    browser.fill(&browser.find("#email").await, &email).await;
    browser.fill(&browser.find("#password").await, password).await;
    browser.click(&browser.find("form[action='/account/sign-in'] button").await).await;
    browser.wait_for_title("Your account · Coffer").await;

    // Two-step sign-in on, with a code computed as the phone app would.
    browser.click(&browser.find("form[action='/account/totp/start'] button").await).await;
    browser.wait_for_title("Two-step sign-in · Coffer").await;
    let secret =
        coffer_crypto::totp_secret_from_base32(&browser.text(&browser.find("#totp-secret").await).await).unwrap();
    browser.fill(&browser.find("#code").await, &coffer_crypto::totp_code(&secret, unix_now()).unwrap()).await;
    browser.fill(&browser.find("#totp-password").await, password).await;
    browser.click(&browser.find("form[action='/account/totp/enable'] button").await).await;
    // The same title comes back, now with the codes.
    browser.wait_for("ul.codes li").await;
    assert_eq!(browser.count("ul.codes li").await, 10, "ten recovery codes shown once");
    browser.screenshot(&dir.join("path-recovery-codes.png")).await;
    browser.goto(&server.url("/account")).await;
    browser.wait_for_title("Your account · Coffer").await;
    browser.click(&browser.find("form[action='/account/sign-out'] button").await).await;
    browser.wait_for_title("Sign in · Coffer").await;
    browser.fill(&browser.find("#email").await, &email).await;
    browser.fill(&browser.find("#password").await, password).await;
    browser.click(&browser.find("form[action='/account/sign-in'] button").await).await;
    browser.wait_for_title("Enter your code · Coffer").await;
    // The next step's code: the one that turned TOTP on is spent.
    browser.fill(&browser.find("#code").await, &coffer_crypto::totp_code(&secret, unix_now() + 30).unwrap()).await;
    browser.click(&browser.find("form[action='/account/sign-in/code'] button").await).await;
    browser.wait_for_title("Your account · Coffer").await;

    // Download my data: the readable page.
    browser.goto(&server.url("/account/data")).await;
    browser.wait_for_title("Your data · Coffer").await;
    let body = browser.text(&browser.find("body").await).await;
    assert!(body.contains(&email) && body.contains("two-step sign-in on"), "{body}");
    assert!(body.contains("Your Coffer sign-in link"), "the kept message is listed: {body}");
    // A page of the site (its stylesheet loads under the CSP), in words.
    assert_eq!(browser.css(&browser.find(".brand").await, "font-weight").await, "700", "the site's stylesheet");
    assert!(!browser.css(&browser.find("h1").await, "font-family").await.contains("Times"));
    assert!(!body.contains("minor units") && !body.contains('{') && !body.contains("prd_"), "{body}");
    browser.screenshot(&dir.join("path-my-data.png")).await;

    // Delete the account with the password; the confirmation arrives.
    browser.goto(&server.url("/account/delete")).await;
    browser.wait_for_title("Delete your account · Coffer").await;
    browser.fill(&browser.find("#password").await, password).await;
    browser.click(&browser.find("form[action='/account/delete'] button").await).await;
    let deleted = mail_containing(&server, "have been deleted").await;
    assert!(deleted.contains("Invoices stay"), "{deleted}");
    assert!(browser.cookies().await.iter().all(|c| c["name"] != "coffer_session"), "signed out");

    // Signing in no longer works, with the same answer as for any wrong password.
    browser.goto(&server.url("/account")).await;
    browser.wait_for_title("Sign in · Coffer").await;
    browser.fill(&browser.find("#email").await, &email).await;
    browser.fill(&browser.find("#password").await, password).await;
    browser.click(&browser.find("form[action='/account/sign-in'] button").await).await;
    // The answer is the sign-in page again, now with the notice.
    let notice = browser.text(&browser.wait_for(".notice").await).await;
    assert_eq!(notice, "The email address or password is not right.");
    browser.screenshot(&dir.join("path-after-deletion.png")).await;
}

/// Turns two-step sign-in on for a signed-in customer; returns the secret.
async fn turn_on_totp(server: &TestServer, cookie: &str, password: &str) -> Vec<u8> {
    let csrf = csrf_from(&page(server, "/account", cookie).await);
    let setup = post_form(server, "/account/totp/start", cookie, &[("csrf", &csrf)]).await.text().await.unwrap();
    let secret_text = field_value(&setup, "secret");
    let secret = coffer_crypto::totp_secret_from_base32(&secret_text).unwrap();
    let code = coffer_crypto::totp_code(&secret, unix_now()).unwrap();
    let enabled = post_form(
        server,
        "/account/totp/enable",
        cookie,
        &[("csrf", &csrf), ("secret", &secret_text), ("code", &code), ("password", password)],
    )
    .await;
    assert_eq!(enabled.status(), StatusCode::OK);
    secret.to_vec()
}

/// Every `/account/link/…` path in the server's mail folder.
fn account_links(server: &TestServer) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(server.data_dir.join("mail"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|m| m.replace("=\r\n", "").replace("=\n", ""))
        .filter(|m| m.contains("/account/link/"))
        .map(|m| link_in(&m, "/account/link/"))
        .collect()
}

/// Asks for a sign-in link and waits for the new one to be mailed.
pub(crate) async fn fresh_link(server: &TestServer, email: &str) -> String {
    let before = account_links(server);
    let pass = crate::form_pass(server, "/account").await;
    let form = [("email", email), ("form_token", pass.token.as_str())];
    let asked =
        client().post(server.url("/account/link")).header(COOKIE, &pass.cookie).form(&form).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::OK);
    for _ in 0..100 {
        if let Some(new) = account_links(server).difference(&before).next() {
            return new.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no new sign-in link was mailed");
}

/// Finding 1 of the security review: the ticket between the password and
/// the code is a one-time link of its own purpose; sent to the password
/// link route it sets nothing and signs nobody in.
async fn p08_second_step_ticket_never_sets_a_password(server: TestServer) {
    let (email, password) = demo_customer(&server);
    let cookie = session_cookie(&sign_in(&server, &email, &password).await);
    let secret = turn_on_totp(&server, &cookie, &password).await;
    let step_one = sign_in(&server, &email, &password).await;
    let ticket = field_value(&step_one.text().await.unwrap(), "ticket");
    let shown = client().get(server.url(&format!("/account/link/{ticket}"))).send().await.unwrap();
    assert_eq!(shown.status(), StatusCode::UNPROCESSABLE_ENTITY, "a ticket is no link");
    let shown = shown.text().await.unwrap();
    assert!(shown.contains("expired or was already used") && !shown.contains("type=\"password\""), "{shown}");
    let attack = client()
        .post(server.url(&format!("/account/link/{ticket}")))
        .form(&[("password", "attacker chosen password 1")])
        .send()
        .await
        .unwrap();
    assert_eq!(attack.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(attack.headers().get(SET_COOKIE).is_none(), "no session for the attacker");
    assert!(attack.text().await.unwrap().contains("expired or was already used"));
    // The password is unchanged and the ticket still serves its own purpose.
    let wrong = sign_in(&server, &email, "attacker chosen password 1").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let code = coffer_crypto::totp_code(&secret, unix_now() + 30).unwrap();
    let done = client()
        .post(server.url("/account/sign-in/code"))
        .form(&[("ticket", ticket.as_str()), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "the ticket was not spent by the attack");
}

/// Finding 2: with two-step sign-in on, an emailed link needs the code as
/// well; turning the factor on or changing the password spends every
/// link already sent.
async fn p08_emailed_links_ask_for_the_code_and_die_with_a_new_password_or_factor(server: TestServer) {
    let (email, password) = demo_customer(&server);
    let before_factor = fresh_link(&server, &email).await;
    let cookie = session_cookie(&sign_in(&server, &email, &password).await);
    let secret = turn_on_totp(&server, &cookie, &password).await;
    // Spent, not merely asking for the code now.
    let gone = client().get(server.url(&before_factor)).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::UNPROCESSABLE_ENTITY, "turning the factor on spent the link");
    let stale = client()
        .post(server.url(&before_factor))
        .form(&[("password", "a new password for dana")])
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::UNPROCESSABLE_ENTITY, "turning the factor on spent the link");
    assert!(stale.headers().get(SET_COOKIE).is_none());

    let link = fresh_link(&server, &email).await;
    let shown = client().get(server.url(&link)).send().await.unwrap().text().await.unwrap();
    assert!(shown.contains("name=\"code\""), "the link's page asks for the code: {shown}");
    for code in [None, Some("000000")] {
        let mut form = vec![("password", "a new password for dana")];
        form.extend(code.map(|c| ("code", c)));
        let refused = client().post(server.url(&link)).form(&form).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "code {code:?}");
        assert!(refused.headers().get(SET_COOKIE).is_none(), "no session without the code");
        assert!(refused.text().await.unwrap().contains("name=\"code\""));
    }
    assert_eq!(
        sign_in(&server, &email, "a new password for dana").await.status(),
        StatusCode::UNAUTHORIZED,
        "no password was set without the code"
    );
    let code = coffer_crypto::totp_code(&secret, unix_now() + 30).unwrap();
    let done = client()
        .post(server.url(&link))
        .form(&[("password", "a new password for dana"), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "link and code together sign in");
    let session = session_cookie(&done);

    // A link sent before a password change dies with it.
    let pending = fresh_link(&server, &email).await;
    let csrf = csrf_from(&page(&server, "/account", &session).await);
    let changed = post_form(
        &server,
        "/account/password",
        &session,
        &[("csrf", &csrf), ("current", "a new password for dana"), ("new", "another new password for dana")],
    )
    .await;
    assert!(changed.status().is_success() || changed.status().is_redirection(), "{}", changed.status());
    let code = coffer_crypto::totp_code(&secret, unix_now() + 60).unwrap();
    let late = client()
        .post(server.url(&pending))
        .form(&[("password", "a third password for dana"), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::UNPROCESSABLE_ENTITY, "a password change spent the link");
}

/// Finding 12: a session is no licence to guess the password. Wrong
/// current passwords at the password change, turning two-step sign-in off
/// and deleting the account all count towards the account's lock-out.
async fn p08_wrong_current_passwords_in_a_session_lock_the_account(server: TestServer) {
    let (email, password) = demo_customer(&server);
    let cookie = session_cookie(&sign_in(&server, &email, &password).await);
    let csrf = csrf_from(&page(&server, "/account", &cookie).await);
    let guesses: [(&str, Vec<(&str, &str)>); 4] = [
        ("/account/password", vec![("current", "guess number one"), ("new", "a brand new password")]),
        ("/account/delete", vec![("password", "guess number two")]),
        ("/account/totp/disable", vec![("password", "guess number three")]),
        ("/account/password", vec![("current", "guess number four"), ("new", "a brand new password")]),
    ];
    for (path, fields) in &guesses {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields.iter().copied());
        let r = post_form(&server, path, &cookie, &form).await;
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{path}: not locked yet");
        assert!(!r.status().is_redirection(), "{path}: a wrong password changes nothing");
    }
    let fifth = post_form(&server, "/account/delete", &cookie, &[("csrf", &csrf), ("password", "guess five")]).await;
    assert_eq!(fifth.status(), StatusCode::TOO_MANY_REQUESTS, "the fifth wrong password locks the account");
    assert!(fifth.headers().contains_key(RETRY_AFTER));
    // Locked means locked: the right password is refused too, here and at sign-in.
    let right =
        post_form(&server, "/account/delete", &cookie, &[("csrf", &csrf), ("password", password.as_str())]).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sign_in(&server, &email, &password).await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page(&server, "/account", &cookie).await.contains("Dana"), "the account was not deleted");
}

/// Finding 13: whether an address has an account must not show in how
/// long the answer takes. The work (seal, store, queue the mail) happens
/// after the answer: with the tables it writes locked by another session,
/// a known address is still answered at once, and the mail follows once
/// the lock goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_link_and_written_request_answer_before_the_work() {
    let server = crate::server(coffer_testkit::TestBackend::Postgres).await;
    let (email, _) = demo_customer(&server);
    let pool = sqlx::postgres::PgPool::connect(&server.database_url()).await.unwrap();
    for (table, path, form) in [
        ("sign_in_links", "/account/link", vec![("email", email.clone())]),
        (
            "privacy_requests",
            "/privacy/request",
            vec![("email", email.clone()), ("kind", "access".into()), ("jurisdiction", "eu".into())],
        ),
    ] {
        let mut lock = pool.begin().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")))
            .execute(&mut *lock)
            .await
            .unwrap();
        let pass = crate::form_pass(&server, "/account").await;
        let mut form = form;
        form.push(("form_token", pass.token.clone()));
        let request = client().post(server.url(path)).header(COOKIE, &pass.cookie).form(&form).send();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), request)
            .await
            .unwrap_or_else(|_| panic!("{path} waited for the work on {table}"))
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        lock.commit().await.unwrap();
    }
    // The work was done after the answers.
    mail_containing(&server, "/account/link/").await;
    mail_containing(&server, "/privacy/request/confirm/").await;
}
