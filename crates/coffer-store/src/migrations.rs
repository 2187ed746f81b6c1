//! The schema migrations, embedded in the binary.
//!
//! sqlx's `migrate!` macro would do this at compile time, but its proc-macro
//! builds both database drivers (and SQLite's C source) a second time for the
//! host, which doubled the build on our 2-core CI. Listing the files here
//! keeps the same checksums and the same `_sqlx_migrations` table.

use futures::future::BoxFuture;
use sqlx::SqlSafeStr;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType};
use std::borrow::Cow;

/// One migration file: version, description, SQL.
type Embedded = (i64, &'static str, &'static str);

pub(crate) const SQLITE: &[Embedded] = &[
    (1, "catalog", include_str!("../../../migrations/sqlite/0001_catalog.sql")),
    (2, "privacy", include_str!("../../../migrations/sqlite/0002_privacy.sql")),
    (3, "outbox", include_str!("../../../migrations/sqlite/0003_outbox.sql")),
    (4, "accounts", include_str!("../../../migrations/sqlite/0004_accounts.sql")),
    (5, "privacy_requests", include_str!("../../../migrations/sqlite/0005_privacy_requests.sql")),
    (6, "staff_and_disclosures", include_str!("../../../migrations/sqlite/0006_staff_and_disclosures.sql")),
    (7, "orders", include_str!("../../../migrations/sqlite/0007_orders.sql")),
    (8, "downloads_and_idempotency", include_str!("../../../migrations/sqlite/0008_downloads_and_idempotency.sql")),
    (9, "invoices_and_fraud", include_str!("../../../migrations/sqlite/0009_invoices_and_fraud.sql")),
    (10, "identity_documents", include_str!("../../../migrations/sqlite/0010_identity_documents.sql")),
    (11, "line_refunds", include_str!("../../../migrations/sqlite/0011_line_refunds.sql")),
    (12, "vendor_api_keys", include_str!("../../../migrations/sqlite/0012_vendor_api_keys.sql")),
    (13, "invoice_queue", include_str!("../../../migrations/sqlite/0013_invoice_queue.sql")),
    (14, "retention_indexes", include_str!("../../../migrations/sqlite/0014_retention_indexes.sql")),
    (15, "payment_moves", include_str!("../../../migrations/sqlite/0015_payment_moves.sql")),
    (16, "jobs", include_str!("../../../migrations/sqlite/0016_jobs.sql")),
    (17, "credentials", include_str!("../../../migrations/sqlite/0017_credentials.sql")),
    (18, "transfer_references", include_str!("../../../migrations/sqlite/0018_transfer_references.sql")),
    (19, "checkout_drafts", include_str!("../../../migrations/sqlite/0019_checkout_drafts.sql")),
    (20, "email_attachments", include_str!("../../../migrations/sqlite/0020_email_attachments.sql")),
    (21, "credit_notes", include_str!("../../../migrations/sqlite/0021_credit_notes.sql")),
    (22, "vendor_side", include_str!("../../../migrations/sqlite/0022_vendor_side.sql")),
    (23, "license_status", include_str!("../../../migrations/sqlite/0023_license_status.sql")),
    (24, "webhooks_and_ledger", include_str!("../../../migrations/sqlite/0024_webhooks_and_ledger.sql")),
    (25, "ledger_add_only", include_str!("../../../migrations/sqlite/0025_ledger_add_only.sql")),
];

pub(crate) const POSTGRES: &[Embedded] = &[
    (1, "catalog", include_str!("../../../migrations/postgres/0001_catalog.sql")),
    (2, "privacy", include_str!("../../../migrations/postgres/0002_privacy.sql")),
    (3, "outbox", include_str!("../../../migrations/postgres/0003_outbox.sql")),
    (4, "accounts", include_str!("../../../migrations/postgres/0004_accounts.sql")),
    (5, "privacy_requests", include_str!("../../../migrations/postgres/0005_privacy_requests.sql")),
    (6, "staff_and_disclosures", include_str!("../../../migrations/postgres/0006_staff_and_disclosures.sql")),
    (7, "orders", include_str!("../../../migrations/postgres/0007_orders.sql")),
    (8, "downloads_and_idempotency", include_str!("../../../migrations/postgres/0008_downloads_and_idempotency.sql")),
    (9, "invoices_and_fraud", include_str!("../../../migrations/postgres/0009_invoices_and_fraud.sql")),
    (10, "identity_documents", include_str!("../../../migrations/postgres/0010_identity_documents.sql")),
    (11, "line_refunds", include_str!("../../../migrations/postgres/0011_line_refunds.sql")),
    (12, "vendor_api_keys", include_str!("../../../migrations/postgres/0012_vendor_api_keys.sql")),
    (13, "invoice_queue", include_str!("../../../migrations/postgres/0013_invoice_queue.sql")),
    (14, "retention_indexes", include_str!("../../../migrations/postgres/0014_retention_indexes.sql")),
    (15, "payment_moves", include_str!("../../../migrations/postgres/0015_payment_moves.sql")),
    (16, "jobs", include_str!("../../../migrations/postgres/0016_jobs.sql")),
    (17, "credentials", include_str!("../../../migrations/postgres/0017_credentials.sql")),
    (18, "transfer_references", include_str!("../../../migrations/postgres/0018_transfer_references.sql")),
    (19, "checkout_drafts", include_str!("../../../migrations/postgres/0019_checkout_drafts.sql")),
    (20, "email_attachments", include_str!("../../../migrations/postgres/0020_email_attachments.sql")),
    (21, "credit_notes", include_str!("../../../migrations/postgres/0021_credit_notes.sql")),
    (22, "vendor_side", include_str!("../../../migrations/postgres/0022_vendor_side.sql")),
    (23, "license_status", include_str!("../../../migrations/postgres/0023_license_status.sql")),
    (24, "webhooks_and_ledger", include_str!("../../../migrations/postgres/0024_webhooks_and_ledger.sql")),
    (25, "ledger_add_only", include_str!("../../../migrations/postgres/0025_ledger_add_only.sql")),
];

pub(crate) const KEYSTORE_SQLITE: &[Embedded] = &[
    (1, "keystore", include_str!("../../../migrations/keystore-sqlite/0001_keystore.sql")),
    (2, "spare_data_keys", include_str!("../../../migrations/keystore-sqlite/0002_spare_data_keys.sql")),
];

pub(crate) const KEYSTORE_POSTGRES: &[Embedded] = &[
    (1, "keystore", include_str!("../../../migrations/keystore-postgres/0001_keystore.sql")),
    (2, "data_keys_fillfactor", include_str!("../../../migrations/keystore-postgres/0002_data_keys_fillfactor.sql")),
    (3, "spare_data_keys", include_str!("../../../migrations/keystore-postgres/0003_spare_data_keys.sql")),
];

/// A [`MigrationSource`] over one of the lists above.
#[derive(Debug)]
pub(crate) struct EmbeddedMigrations(pub(crate) &'static [Embedded]);

impl MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file in the migration folders is listed, in version order, on
    /// both backends, so a new file cannot be forgotten.
    #[test]
    fn every_migration_file_is_embedded() {
        for (folder, list) in [
            ("sqlite", SQLITE),
            ("postgres", POSTGRES),
            ("keystore-sqlite", KEYSTORE_SQLITE),
            ("keystore-postgres", KEYSTORE_POSTGRES),
        ] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(folder);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let listed: Vec<String> = list.iter().map(|(v, d, _)| format!("{v:04}_{d}.sql")).collect();
            assert_eq!(files, listed, "migrations/{folder}");
        }
    }
}
