//! Coffer's services: the use cases that HTTP handlers and CLI commands call.
//! A service validates with `coffer-domain`, reads through the store's reader
//! traits and writes through units of work, so each state change commits as a
//! whole. The services: catalog, checkout (payments, fulfilment, identity
//! review, staff moves, the failed-payment limit), accounts (customers and
//! staff), the privacy core (vault, customers, audit), vendors, the mail
//! outbox and retention. This crate also holds the configuration type, the
//! system clock and the demo data.

pub mod accounts;
mod app;
mod cache;
mod catalog;
pub mod checkout;
pub mod config;
pub mod demo;
mod error;
pub mod files;
pub mod invoice_pdf;
pub mod mail;
pub mod memory;
pub mod privacy;
pub mod request;
pub mod retention;
pub mod supervisor;
pub mod vendors;
pub mod webhooks;

pub use app::{App, Surroundings, create_private_dir, destroy_expired_versions};
pub use catalog::{CatalogService, ProductPage, ProductQuery, preferred_currency};

/// Whether the data database and the key store answer (`GET /health`).
#[derive(Clone)]
pub struct HealthCheck {
    db: coffer_store::Db,
    key_store: coffer_store::KeyStore,
}

impl HealthCheck {
    pub fn new(db: coffer_store::Db, key_store: coffer_store::KeyStore) -> Self {
        HealthCheck { db, key_store }
    }

    pub async fn answers(&self) -> bool {
        self.db.ping().await && self.key_store.ping().await
    }
}
pub use config::{Config, ConfigError, HttpConfig, LogFormat};
pub use error::AppError;

use coffer_domain::{Clock, Millis};

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}
