//! Coffer's storage: one SQL implementation, through sqlx's `Any` driver,
//! serving both the embedded SQLite default and PostgreSQL, chosen by the
//! database URL. Reads go through per-aggregate reader traits; every write is
//! a *unit of work* handed to [`Db::write`]: on SQLite one writer task runs
//! queued units together in one transaction, each in its own savepoint, and
//! answers callers only after the commit (group commit); on PostgreSQL each
//! unit is its own transaction. Schema migrations for both backends live in
//! `migrations/sqlite` and `migrations/postgres` at the workspace root.
//! The key store ([`KeyStore`]) is a second database of its own, with its
//! migrations in `migrations/keystore-*`.

mod accounts;
mod audit;
mod batch;
mod catalog;
mod customers;
mod db;
mod direct;
mod error;
mod keystore;
mod migrations;
mod orders;
mod outbox;
mod requests;
mod staff;

pub use accounts::{CredentialWriter, LinkPurpose, LinkUse, SessionRow, StoredCredentials, Subject};
pub use audit::{AuditWriter, SealedAuditEntry};
pub use batch::WriteCommands;
pub use catalog::{CatalogReader, CatalogWriter, ProductPage, ProductQuery};
pub use customers::{CustomerReader, CustomerWriter, Erasure, NewSealedCustomer, SealedFields, StoredCustomer};
pub use db::{Backend, Db, DbOptions, UnitFuture, WriteHold, WriteTx, WriterStats};
pub use error::StoreError;
pub use keystore::{KeyStore, MasterKeyRecord, MasterKeyState, SignedAuditHead, WrapKind, WrappedSecret};
pub use orders::{
    IdDocumentRow, IdempotencyClaim, Invoice, LineRefund, NewLink, NewOrder, OrderEvent, OrderLine, ProductFile,
    QueuedOrder, SealedOrderFields, StoredOrder, claim_payment_move, insert_license_keys, insert_vendor_api_key,
    order_placement, publish_policy, put_id_document, refund_line, release_payment_move, schedule_id_document_deletion,
    set_product_file, transition_order,
};
pub use outbox::{ClaimedEmail, Delivery, NewEmail, OutboxWriter, StoredEmail};
pub use requests::{NewPrivacyRequest, PrivacyRequestRow, confirm_privacy_request, insert_privacy_request};
pub use staff::{Disclosure, NewStaffMember, StaffRow, insert_disclosure, insert_staff_member, mark_staff_enrolled};
