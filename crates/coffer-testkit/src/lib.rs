//! The harness Coffer's test suites share: a fresh database per test on
//! SQLite or PostgreSQL (so tests run in parallel), the real `coffer` binary
//! started on 127.0.0.1 with a random port, and headless Chromium driven over
//! WebDriver. PostgreSQL and Chromium are never skipped silently: when one is
//! missing the test fails and says how to get it (`scripts/test` installs and
//! starts both).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a harness fails loudly by design

mod browser;
mod database;
mod server;

pub use browser::Browser;
pub use database::{TestBackend, TestDatabase};
pub use server::TestServer;
