//! The rules of Coffer, free of I/O and async: identifiers, money and tax,
//! the catalog (vendors and products) with their validation, the customer
//! record, the order state machine, refund apportionment, fraud screening,
//! password rules, staff roles, privacy requests, the data inventory of
//! every personal field, the audit entry, and the clock abstraction every
//! timestamp comes from. Nothing in this crate
//! talks to a database, the network or the system clock, so every rule can be
//! tested on its own.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod clock;
pub mod country;
pub mod customer;
pub mod fraud;
pub mod id;
pub mod inventory;
pub mod money;
pub mod order;
pub mod password;
pub mod realm;
pub mod requests;
pub mod staff;
pub mod tax;
pub mod vendor;

pub use access::{Permission, Principal, role_permissions, vendor_permissions};
pub use audit::{Actor, AuditAction, AuditEntry};
pub use catalog::{CatalogError, Delivery, NewProduct, NewVendor, Product, Vendor, VendorSlug};
pub use clock::{Clock, ManualClock, Millis};
pub use customer::{CustomerDetails, CustomerError, MailingAddress};
pub use id::{
    AuditEntryId, CustomerId, DataKeyId, DisclosureId, EmailId, IdError, JobId, LedgerEntryId, OrderId,
    PrivacyRequestId, ProductId, StaffId, VendorApiKeyId, VendorId, VendorUserId, WebhookDeliveryId, WebhookEndpointId,
};
pub use money::{Currency, Money, MoneyError, Prices};
pub use order::{BankAccount, CardSummary, OrderError, OrderStatus, PaymentMethod, Totals};
pub use password::{PasswordError, check_new_password};
pub use realm::Realm;
pub use requests::{Jurisdiction, RequestKind};
pub use staff::{StaffRole, staff_email};
pub use tax::{TaxRateRow, TaxTable};
pub use vendor::{StatementPeriod, VendorRole, VendorStatus, suspension_reason, vendor_user_email};
