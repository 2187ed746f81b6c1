//! The staff console over HTTP: enrolment from `coffer staff add`, sign-in
//! that always asks for the TOTP code, and every page refusing everyone its
//! role does not name.

use crate::accounts::{field_value, unix_now};
use crate::{client, on_both_backends};
use coffer_testkit::TestServer;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};

on_both_backends!(
    staff_add_prints_a_link_that_enrols_with_totp,
    staff_pages_refuse_everyone_else,
    audit_entries_carry_the_request_id,
);

fn staff_cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get(SET_COOKIE).expect("a staff session cookie").to_str().unwrap().to_owned();
    assert!(set.starts_with("coffer_staff=") && set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");
    set.split(';').next().unwrap().to_owned()
}

async fn get(server: &TestServer, path: &str, cookie: &str) -> reqwest::Response {
    client().get(server.url(path)).header(COOKIE, cookie).send().await.unwrap()
}

/// Signs a demo staff member in with password and TOTP; the cookie.
pub(crate) async fn demo_staff_session(server: &TestServer, role: &str) -> String {
    let creds = server.demo_credentials();
    let member = creds["staff"].as_array().unwrap().iter().find(|s| s["role"] == role).unwrap().clone();
    let pass = crate::form_pass(server, "/staff").await;
    let step_one = client()
        .post(server.url("/staff/sign-in"))
        .header(COOKIE, &pass.cookie)
        .form(&[
            ("email", member["email"].as_str().unwrap()),
            ("password", member["password"].as_str().unwrap()),
            ("form_token", &pass.token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(step_one.status(), StatusCode::OK);
    assert!(step_one.headers().get(SET_COOKIE).is_none(), "no session before the code");
    let ticket = field_value(&step_one.text().await.unwrap(), "ticket");
    let secret = coffer_crypto::totp_secret_from_base32(member["totp_secret"].as_str().unwrap()).unwrap();
    let code = coffer_crypto::totp_code(&secret, unix_now()).unwrap();
    let done = client()
        .post(server.url("/staff/sign-in/code"))
        .form(&[("ticket", ticket.as_str()), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "{role}");
    staff_cookie(&done)
}

async fn staff_add_prints_a_link_that_enrols_with_totp(server: TestServer) {
    let out = server.cli(&["staff", "add", "--email", "nina.ops@example.org", "--role", "reviewer"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let link = stdout.lines().find(|l| l.contains("/staff/enrol/")).expect("an enrolment link").trim().to_owned();
    let path = &link[link.find("/staff/enrol/").unwrap()..];
    // Bad input is refused with a message and a non-zero exit.
    let bad = server.cli(&["staff", "add", "--email", "not-an-address", "--role", "reviewer"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid email address"));
    let role = server.cli(&["staff", "add", "--email", "x@example.org", "--role", "root"]);
    assert!(!role.status.success());

    let page = get(&server, path, "").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let secret_text = field_value(&html, "secret");
    assert!(html.contains("otpauth://totp/Coffer"), "{html}");
    let secret = coffer_crypto::totp_secret_from_base32(&secret_text).unwrap();
    let code = coffer_crypto::totp_code(&secret, unix_now()).unwrap();
    let enrol = |password: &'static str, code: String| {
        let url = server.url(path);
        let secret_text = secret_text.clone();
        async move {
            client()
                .post(url)
                .form(&[("password", password), ("secret", secret_text.as_str()), ("code", code.as_str())])
                .send()
                .await
                .unwrap()
        }
    };
    let weak = enrol("password", code.clone()).await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(weak.text().await.unwrap().contains(&secret_text), "the same key is shown again");
    let done = enrol("nina reviews harbor lights", code.clone()).await;
    assert_eq!(done.status(), StatusCode::OK);
    let cookie = staff_cookie(&done);
    let shown = done.text().await.unwrap();
    assert_eq!(shown.matches("<li><code>").count(), 10, "ten recovery codes: {shown}");
    assert!(get(&server, "/staff", &cookie).await.text().await.unwrap().contains("Fraud reviewer"));
    // The link works once.
    assert_eq!(get(&server, path, "").await.status(), StatusCode::GONE);
    assert_eq!(enrol("nina reviews harbor lights", code).await.status(), StatusCode::GONE);
    // A reviewer opens neither the DPO's nor the admin's pages.
    assert_eq!(get(&server, "/staff/requests", &cookie).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(get(&server, "/staff/members", &cookie).await.status(), StatusCode::FORBIDDEN);
    // Listed for the admin, enrolled.
    let list = server.cli(&["staff", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(listed.lines().any(|l| l.contains("nina.ops@example.org") && l.ends_with("enrolled")), "{listed}");
}

async fn staff_pages_refuse_everyone_else(server: TestServer) {
    // Nobody signed in: sent to the staff sign-in.
    for path in ["/staff/requests", "/staff/members"] {
        let r = get(&server, path, "").await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()[LOCATION], "/staff");
    }
    // A customer session is no staff session, under either cookie name.
    let (email, password) = crate::accounts::demo_customer(&server);
    let customer = crate::accounts::sign_in(&server, &email, &password).await;
    let customer_cookie = customer.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let customer_token = customer_cookie.split_once('=').unwrap().1.to_owned();
    for cookie in [customer_cookie.clone(), format!("coffer_staff={customer_token}")] {
        assert_eq!(get(&server, "/staff/requests", &cookie).await.status(), StatusCode::SEE_OTHER, "{cookie}");
    }
    // A wrong password and a foreign origin are refused.
    let pass = crate::form_pass(&server, "/staff").await;
    let wrong = client()
        .post(server.url("/staff/sign-in"))
        .header(COOKIE, &pass.cookie)
        .form(&[
            ("email", "dpo@demo.coffer.test"),
            ("password", "not the password at all"),
            ("form_token", &pass.token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let foreign = client()
        .post(server.url("/staff/sign-in"))
        .header(ORIGIN, "https://evil.example")
        .form(&[("email", "dpo@demo.coffer.test"), ("password", "whatever")])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);

    let dpo = demo_staff_session(&server, "dpo").await;
    assert_eq!(get(&server, "/staff/requests", &dpo).await.status(), StatusCode::OK);
    assert_eq!(get(&server, "/staff/members", &dpo).await.status(), StatusCode::FORBIDDEN);
    // A staff session is no customer session either.
    let dpo_token = dpo.split_once('=').unwrap().1;
    let account = get(&server, "/account", &format!("coffer_session={dpo_token}")).await.text().await.unwrap();
    assert!(account.contains("<title>Sign in · Coffer</title>"), "{account}");
    let admin = demo_staff_session(&server, "admin").await;
    let members = get(&server, "/staff/members", &admin).await;
    assert_eq!(members.status(), StatusCode::OK);
    let members = members.text().await.unwrap();
    for role in ["support", "reviewer", "dpo", "admin"] {
        assert!(members.contains(&format!("{role}@demo.coffer.test")), "{members}");
    }
    assert_eq!(get(&server, "/staff/requests", &admin).await.status(), StatusCode::OK, "admins open every page");
    // Sign-out needs the session's CSRF token, then ends the session.
    let no_token = client().post(server.url("/staff/sign-out")).header(COOKIE, &dpo).form(&[("csrf", "")]).send();
    assert_eq!(no_token.await.unwrap().status(), StatusCode::FORBIDDEN);
    let home = get(&server, "/staff", &dpo).await.text().await.unwrap();
    let csrf = field_value(&home, "csrf");
    let out = client().post(server.url("/staff/sign-out")).header(COOKIE, &dpo).form(&[("csrf", csrf.as_str())]);
    assert_eq!(out.send().await.unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(get(&server, "/staff/requests", &dpo).await.status(), StatusCode::SEE_OTHER, "the session ended");
}

/// P11: with `http.staff_networks` set, staff pages and the staff API
/// answer only inside those networks (after trusted-proxy handling); the
/// rest of the site is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p11_staff_networks_refuse_everyone_outside() {
    let outside = TestServer::start_with(
        crate::BIN,
        coffer_testkit::TestBackend::Sqlite,
        &[("COFFER_HTTP__STAFF_NETWORKS", "10.0.0.0/8")],
    )
    .await;
    for path in ["/staff", "/staff/reviews", "/staff/enrol/anything", "/api/v1/staff/anything"] {
        let r = client().get(outside.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path} from 127.0.0.1");
    }
    let post = client().post(outside.url("/staff/sign-in")).form(&[("email", "a@b.c"), ("password", "x")]).send();
    assert_eq!(post.await.unwrap().status(), StatusCode::NOT_FOUND);
    let unknown = client().get(outside.url("/no/such/page")).send().await.unwrap().text().await.unwrap();
    let staff = client().get(outside.url("/staff")).send().await.unwrap().text().await.unwrap();
    assert_eq!(staff, unknown, "exactly the answer of a page that does not exist");
    assert_eq!(client().get(outside.url("/")).send().await.unwrap().status(), StatusCode::OK, "the shop is open");
    // A forged X-Forwarded-For from an untrusted peer changes nothing.
    let forged = client().get(outside.url("/staff")).header("x-forwarded-for", "10.1.2.3").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);

    let inside = TestServer::start_with(
        crate::BIN,
        coffer_testkit::TestBackend::Sqlite,
        &[("COFFER_HTTP__STAFF_NETWORKS", "10.0.0.0/8, 127.0.0.0/8"), ("COFFER_HTTP__TRUSTED_PROXIES", "127.0.0.2")],
    )
    .await;
    assert_eq!(client().get(inside.url("/staff")).send().await.unwrap().status(), StatusCode::OK);

    // Behind a trusted proxy the client it names decides; the proxy's own
    // address (no client named) is never let in.
    let proxied = TestServer::start_with(
        crate::BIN,
        coffer_testkit::TestBackend::Sqlite,
        &[("COFFER_HTTP__STAFF_NETWORKS", "10.0.0.0/8, 127.0.0.0/8"), ("COFFER_HTTP__TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await;
    for (forwarded, expected) in [
        (Some("10.1.2.3"), StatusCode::OK),
        (Some("198.51.100.1"), StatusCode::NOT_FOUND),
        (None, StatusCode::NOT_FOUND),
    ] {
        let mut request = client().get(proxied.url("/staff"));
        if let Some(ip) = forwarded {
            request = request.header("x-forwarded-for", ip);
        }
        assert_eq!(request.send().await.unwrap().status(), expected, "forwarded for {forwarded:?}");
    }
}

/// Issue 13: an audit entry names the request that caused it. A support
/// member's view of an order (an audited read of the buyer) is recorded
/// with the `x-request-id` of that page's answer; an entry made outside a
/// request (the command line) carries none.
async fn audit_entries_carry_the_request_id(server: TestServer) {
    let version = crate::checkout::policy_version(&server).await;
    let body = crate::checkout::order(&server, &version, "4242424242424242", "traced@example.org");
    let (status, placed) = crate::checkout::post_order(&server, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let cookie = demo_staff_session(&server, "support").await;
    let page = get(&server, &format!("/staff/orders/{}", placed["id"].as_str().unwrap()), &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    let request_id = page.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
    let pool = crate::checkout::raw_pool(&server).await;
    let (recorded,): (Option<String>,) = sqlx::query_as(
        "SELECT request_id FROM audit_log WHERE action = 'customer.read' AND actor LIKE 'staff:%' \
         ORDER BY at DESC, id DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recorded.as_deref(), Some(request_id.as_str()), "the staff read names its request");
    let (placed_with,): (Option<String>,) =
        sqlx::query_as("SELECT request_id FROM audit_log WHERE action = 'order.placed' ORDER BY at DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(placed_with.is_some_and(|id| id != request_id), "the order placement names its own request");
    assert!(server.cli(&["export", "--email", "traced@example.org"]).status.success());
    let (exported,): (Option<String>,) =
        sqlx::query_as("SELECT request_id FROM audit_log WHERE action = 'customer.exported' ORDER BY at DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(exported, None, "the command line is no request");
}
