//! The harness Coffer's test suites share: a fresh database per test on
//! SQLite or PostgreSQL (so tests run in parallel), the real `coffer` binary
//! started on 127.0.0.1 with a random port, headless Chromium driven over
//! WebDriver, and a real SMTP server (aiosmtpd). PostgreSQL, Chromium and
//! aiosmtpd are never skipped silently: when one is missing the test fails
//! and says how to get it (`scripts/test` installs and starts them).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a harness fails loudly by design

mod browser;
mod database;
mod server;
mod smtp;

pub use browser::Browser;
pub use database::{TestBackend, TestDatabase};
pub use server::TestServer;
pub use smtp::SmtpServer;

/// A builder for an HTTP client of the tests. reqwest's rustls backend is
/// compiled without a built-in crypto provider (the workspace uses *ring*,
/// not aws-lc-rs; `coffer-app`'s webhook sender brings its own rustls
/// configuration), so a plain `reqwest::Client::new()` in a test would
/// panic: this installs *ring* as the process default first.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    // Err only when a provider is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// An HTTP client for the tests (see [`http_client_builder`]).
pub fn http_client() -> reqwest::Client {
    http_client_builder().build().expect("an HTTP client for the tests")
}

/// Runs each named async test body twice, as `<name>::sqlite` and
/// `<name>::postgres`, on what `$fixture(backend)` (a function of the
/// calling module) makes for that backend.
#[macro_export]
macro_rules! on_both_backends_with {
    ($fixture:ident; $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::$fixture($crate::TestBackend::Sqlite).await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::$fixture($crate::TestBackend::Postgres).await).await;
            }
        }
    )*};
}
