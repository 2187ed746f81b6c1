//! Customer sign-in over HTTP and in the browser.

use crate::{client, on_both_backends};
use coffer_testkit::{Browser, TestServer};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, RETRY_AFTER, SET_COOKIE};

on_both_backends!(
    sign_in_sets_a_fresh_session_and_sign_out_ends_it,
    foreign_origin_and_missing_csrf_token_are_refused,
    wrong_passwords_lock_the_address_with_retry_after,
    link_request_answers_the_same_for_unknown_addresses,
);

fn demo_customer(server: &TestServer) -> (String, String) {
    let creds = server.demo_credentials();
    (
        creds["customer"]["email"].as_str().unwrap().to_owned(),
        creds["customer"]["password"].as_str().unwrap().to_owned(),
    )
}

/// Signs in; returns the `name=value` of the session cookie.
async fn sign_in(server: &TestServer, email: &str, password: &str) -> reqwest::Response {
    client()
        .post(server.url("/account/sign-in"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
}

fn session_cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get(SET_COOKIE).expect("a session cookie").to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

fn csrf_from(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[start..].chars().take_while(|c| *c != '"').collect()
}

async fn sign_in_sets_a_fresh_session_and_sign_out_ends_it(server: TestServer) {
    let (email, password) = demo_customer(&server);
    // A cookie planted before sign-in (session fixation) is not kept.
    let planted = "coffer_session=planted-by-an-attacker";
    let response = client()
        .post(server.url("/account/sign-in"))
        .header(COOKIE, planted)
        .form(&[("email", email.as_str()), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/account");
    let cookie = session_cookie(&response);
    assert_ne!(cookie, planted);
    assert!(!cookie.contains(&email) && !cookie.to_lowercase().contains("dana"), "no personal data in cookies");
    let page = client().get(server.url("/account")).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
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
    let known = client().post(server.url("/account/link")).form(&[("email", email.as_str())]).send().await.unwrap();
    let unknown =
        client().post(server.url("/account/link")).form(&[("email", "nobody@example.org")]).send().await.unwrap();
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
    browser.click(&browser.find("form[action='/account/sign-out'] button").await).await;
    browser.wait_for_title("Sign in · Coffer").await;
    assert!(browser.cookies().await.iter().all(|c| c["name"] != "coffer_session"), "the cookie is gone");
    browser.screenshot(&dir.join("sign-in.png")).await;
}
