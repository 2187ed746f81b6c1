//! End-to-end tests: the real `coffer` binary on 127.0.0.1 with a random
//! port, on SQLite and on PostgreSQL (`<test>::sqlite`, `<test>::postgres`),
//! spoken to over HTTP, and driven in headless Chromium. One test binary, so
//! linking happens once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod accounts;
mod api;
mod bad_input;
mod browser;
mod checkout;
mod cli;
mod crash;
mod licenses;
mod limits;
mod privacy;
mod shutdown;
mod staff;
mod tls;
mod vendors;

use coffer_testkit::{TestBackend, TestServer};

pub const BIN: &str = env!("CARGO_BIN_EXE_coffer");

pub async fn server(backend: TestBackend) -> TestServer {
    TestServer::start(BIN, backend).await
}

pub fn client() -> reqwest::Client {
    coffer_testkit::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Runs an async test body against a freshly started server on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::server(coffer_testkit::TestBackend::Sqlite).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::server(coffer_testkit::TestBackend::Postgres).await).await;
            }
        }
    )*};
}

/// What a browser holds to send a form used before sign-in: the form
/// cookie (`name=value`) and the page's anti-forgery token.
pub struct FormPass {
    pub cookie: String,
    pub token: String,
}

/// Opens `page` as a browser would and takes its form pass.
pub async fn form_pass(server: &TestServer, page: &str) -> FormPass {
    let r = client().get(server.url(page)).send().await.unwrap();
    let cookie = r
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("coffer_form=") || c.starts_with("__Host-coffer_form="))
        .unwrap_or_else(|| panic!("{page} sets the form cookie"))
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = r.text().await.unwrap();
    FormPass { cookie, token: accounts::field_value(&html, "form_token") }
}
