//! Coffer's storage: one SQL implementation, through sqlx's `Any` driver,
//! serving both the embedded SQLite default and PostgreSQL, chosen by the
//! database URL. Every write is a *unit of work* handed to [`Db::write`]
//! (written with [`unit!`]): on SQLite one writer task runs queued units
//! together in one transaction, each in its own savepoint, and answers
//! callers only after the commit (group commit); on PostgreSQL each unit is
//! its own transaction. The hottest SQLite paths (placing an order, invoice
//! numbering, checkout's customer lookup) run on rusqlite connections of
//! their own (`direct`), behind the same traits. Schema migrations for both
//! backends live in `migrations/sqlite` and `migrations/postgres` at the
//! workspace root.
//!
//! One module per aggregate, each with its traits (all in [`prelude`]):
//! `…Reader` on [`Db`] reads; `…Store` on [`Db`] reads and also runs
//! operations that are a unit of work of their own; `…Writer` on [`WriteTx`]
//! writes inside the caller's unit.
//!
//! | module | holds | traits |
//! | --- | --- | --- |
//! | `catalog` | vendors, products, prices | [`CatalogReader`], [`CatalogWriter`] |
//! | `customers` | sealed customer rows, the erasure ledger | [`CustomerReader`], [`CustomerWriter`] |
//! | `accounts`, `staff` | passwords, TOTP, links, sessions, staff members | [`AccountWriter`] and `Db` methods |
//! | `orders` | orders, lines, license keys, events; placing ([`order_placement`]) | [`OrderReader`], [`OrderWriter`] |
//! | `licenses` | license keys by hash, revocation, vendors' revoked keys | [`LicenseReader`], [`LicenseWriter`] |
//! | `policies` | published privacy policies | [`PolicyReader`], [`PolicyWriter`] |
//! | `downloads` | product files, download uses | [`DownloadStore`], [`DownloadWriter`] |
//! | `idempotency` | idempotency keys and sealed answers | [`IdempotencyStore`] |
//! | `invoices` | the invoice queue, numbering, invoices | [`InvoiceStore`] |
//! | `fraud_attempts` | velocity records of the fraud screen | [`FraudAttemptStore`] |
//! | `id_documents` | proofs of identity of held orders | [`IdDocumentStore`], [`IdDocumentWriter`] |
//! | `vendors` | vendors' standing and terms, portal users, API keys (hashes) | `Db` and `WriteTx` methods |
//! | `payment_moves` | one money move per order at a time | [`PaymentMoveWriter`] |
//! | `retention` | deletes of what outlived its period | [`RetentionStore`] |
//! | `relay` | the order events' relay, the vendors' ledger, webhook endpoints and deliveries | `Db` and `WriteTx` methods |
//! | `jobs` | the job queue: email delivery, money back through the gateway | [`JobStore`], [`JobWriter`] |
//! | `requests` | written privacy requests | [`PrivacyRequestReader`], [`PrivacyRequestWriter`] |
//! | `audit` | the audit log and its sealed chain | [`AuditStore`], [`AuditWriter`] |
//! | `outbox` | emails waiting to be sent | [`OutboxWriter`] and `Db` methods |
//!
//! The key store ([`KeyStore`]) is a second database of its own, with its
//! migrations in `migrations/keystore-*`. Its connection is a
//! [`Database`] of another kind than [`Db`], and its units write through a
//! transaction type of their own, so none of the traits above reach it.

mod accounts;
mod audit;
mod batch;
mod catalog;
mod credit_notes;
mod customers;
mod db;
mod direct;
mod downloads;
mod drafts;
mod error;
mod fraud_attempts;
mod id_documents;
mod idempotency;
mod invoices;
mod jobs;
mod keystore;
mod licenses;
mod migrations;
mod orders;
mod outbox;
mod payment_moves;
mod policies;
mod relay;
mod requests;
mod retention;
mod staff;
mod vendors;

pub use accounts::{CredentialWriter, LinkPurpose, LinkUse, SessionRow, StoredCredentials, Subject};
pub use audit::{AuditStore, AuditWriter, SealedAuditEntry};
pub use batch::WriteCommands;
pub use catalog::{CatalogReader, CatalogWriter, MAX_PAGE, ProductPage, ProductQuery};
pub use credit_notes::{CreditNote, CreditNoteStore, CreditNoteWriter};
pub use customers::{
    CustomerReader, CustomerWriter, Erasure, NewSealedCustomer, SealedFields, StoredCustomer, is_email_taken,
};
pub use db::{Backend, Data, Database, Db, DbOptions, UnitFuture, WriteHold, WriteTx, WriterStats};
pub use downloads::{DownloadStore, DownloadWriter, ProductFile};
pub use drafts::DraftStore;
pub use error::StoreError;
pub use fraud_attempts::FraudAttemptStore;
pub use id_documents::{IdDocumentRow, IdDocumentStore, IdDocumentWriter};
pub use idempotency::{IdempotencyClaim, IdempotencyStore};
pub use invoices::{Invoice, InvoiceMailWriter, InvoiceStore};
pub use jobs::{ClaimedJob, FailedJob, JobClaim, JobOutcome, JobStore, JobWriter, NewJob};
pub use keystore::{KeyStore, MasterKeyRecord, MasterKeyState, SignedAuditHead, WrapKind, WrappedSecret};
pub use licenses::{LicenseReader, LicenseRecord, LicenseWriter, RevokedKey};
pub use orders::{
    IssuedKey, LineRefund, NewLink, NewOrder, OrderEvent, OrderLine, OrderReader, OrderWriter, QueuedOrder,
    SealedOrderFields, StoredOrder, VendorOrderQuery, VendorOrderRow, order_placement,
};
pub use outbox::{ClaimedEmail, Delivery, EMAIL_JOB, NewEmail, OutboxWriter, StoredEmail};
pub use payment_moves::PaymentMoveWriter;
pub use policies::{PolicyReader, PolicyWriter};
pub use relay::{
    DeliveryAttempt, LedgerEntry, NewDelivery, NewLedgerEntry, RelayEvent, RelayOrder, WebhookDelivery,
    WebhookEndpoint, delivery_outcomes, relay_batch,
};
pub use requests::{NewPrivacyRequest, PrivacyRequestReader, PrivacyRequestRow, PrivacyRequestWriter};
pub use retention::RetentionStore;
pub use staff::{Disclosure, NewStaffMember, StaffRow, insert_disclosure, insert_staff_member, mark_staff_enrolled};
pub use vendors::{LiveApiKey, NewVendorApiKey, NewVendorUser, VendorApiKeyRow, VendorRecord, VendorUserRow};

/// Every reader and writer trait, and [`unit!`]: `use coffer_store::prelude::*;`
/// is all a caller needs to call the store's methods.
pub mod prelude {
    pub use crate::unit;
    pub use crate::{
        AuditStore, AuditWriter, CatalogReader, CatalogWriter, CredentialWriter, CreditNoteStore, CreditNoteWriter,
        CustomerReader, CustomerWriter, DownloadStore, DownloadWriter, DraftStore, FraudAttemptStore, IdDocumentStore,
        IdDocumentWriter, IdempotencyStore, InvoiceMailWriter, InvoiceStore, JobStore, JobWriter, LicenseReader,
        LicenseWriter, OrderReader, OrderWriter, OutboxWriter, PaymentMoveWriter, PolicyReader, PolicyWriter,
        PrivacyRequestReader, PrivacyRequestWriter, RetentionStore,
    };
}
