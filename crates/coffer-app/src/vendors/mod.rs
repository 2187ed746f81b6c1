//! The vendor side, one service for every vendor principal (a portal user,
//! an API key) and for the admins who onboard and suspend vendors. Every
//! method takes the request context and finds the vendor it may act for
//! from the principal (`Principal::vendor`), never from the caller's input,
//! so one vendor can never name another's order, product or key: those
//! answer `NotFound`, exactly as a missing one.
//!
//! - [`orders`]: a vendor's orders and, on one order's detail only, its buyer;
//! - [`admin`]: onboarding, the list, suspension and reinstatement;
//! - [`keys`]: API keys (shown once, stored hashed) and their check;
//! - [`products`]: a vendor's own products;
//! - [`terms`]: the data-processing terms and the vendor's privacy contact.

pub mod admin;
pub mod keys;
pub mod orders;
pub mod products;
pub mod statement;
pub mod terms;
pub mod webhooks;

pub use admin::{NewVendorOnboarded, VendorListing};
pub use coffer_store::{VendorOrderQuery, WebhookDelivery, WebhookEndpoint};
pub use keys::{ApiKeyCheck, CreatedApiKey};
pub use orders::{VendorBuyer, VendorLine, VendorOrder, VendorOrderSummary, vendor_may_see_buyer};
pub use terms::{TERMS_TEXT, terms_version};

use crate::accounts::vendor_users::VendorUserService;
use crate::privacy::Vault;
use crate::{AppError, CatalogService};
use coffer_domain::Clock;
use coffer_store::Db;
use std::sync::Arc;

/// Why a vendor operation was refused: each with a stable code and, where
/// one input is at fault, its field.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VendorError {
    #[error("a vendor with this slug exists")]
    SlugTaken,
    #[error("this address already belongs to a vendor user")]
    EmailTaken,
    #[error("there is no vendor with this slug")]
    UnknownVendor,
    #[error("a vendor keeps at least one owner")]
    LastOwner,
    #[error("the vendor is already {0}")]
    AlreadyInState(&'static str),
    #[error("the label must be 1 to 60 characters on one line")]
    InvalidLabel,
    #[error("the privacy contact must be 1 to 200 characters on one line, with an email address")]
    InvalidPrivacyContact,
    #[error("the data-processing terms changed; read them again and accept the current version")]
    StaleTerms,
    #[error(transparent)]
    WebhookUrl(crate::webhooks::sender::UrlProblem),
    #[error(
        "choose at least one of order.paid, order.fulfilled, order.on_hold, order.refunded, order.cancelled and license.revoked"
    )]
    UnknownEvent,
    #[error("a vendor has at most 10 webhook endpoints; delete one first")]
    TooManyEndpoints,
    #[error("give the period as from and to dates (YYYY-MM-DD), from not after to, at most 366 days")]
    InvalidPeriod,
    #[error("the file is empty")]
    EmptyFile,
    #[error("the file is larger than {0} bytes")]
    FileTooLarge(usize),
}

impl VendorError {
    pub fn code(&self) -> &'static str {
        match self {
            VendorError::SlugTaken => "slug_taken",
            VendorError::EmailTaken => "email_taken",
            VendorError::UnknownVendor => "unknown_vendor",
            VendorError::LastOwner => "last_owner",
            VendorError::AlreadyInState(_) => "wrong_status",
            VendorError::InvalidLabel => "invalid_label",
            VendorError::InvalidPrivacyContact => "invalid_privacy_contact",
            VendorError::StaleTerms => "stale_terms",
            VendorError::WebhookUrl(problem) => problem.code(),
            VendorError::UnknownEvent => "invalid_events",
            VendorError::TooManyEndpoints => "too_many_endpoints",
            VendorError::InvalidPeriod => "invalid_period",
            VendorError::EmptyFile => "empty_file",
            VendorError::FileTooLarge(_) => "file_too_large",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            VendorError::SlugTaken => Some("slug"),
            VendorError::EmailTaken => Some("email"),
            VendorError::InvalidLabel => Some("label"),
            VendorError::InvalidPrivacyContact => Some("privacy_contact"),
            VendorError::WebhookUrl(_) => Some("url"),
            VendorError::UnknownEvent => Some("events"),
            VendorError::EmptyFile | VendorError::FileTooLarge(_) => Some("file"),
            _ => None,
        }
    }

    /// Whether the refusal is a clash with what exists (409) rather than a
    /// bad input (422).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            VendorError::SlugTaken
                | VendorError::EmailTaken
                | VendorError::AlreadyInState(_)
                | VendorError::LastOwner
                | VendorError::TooManyEndpoints
        )
    }
}

impl From<VendorError> for AppError {
    fn from(e: VendorError) -> Self {
        AppError::Vendor(e)
    }
}

/// The operator's fee on a vendor's sales when configuration names none:
/// 10 % of the net price.
pub const DEFAULT_FEE_BASIS_POINTS: i64 = 1_000;

/// What the vendor side is set up with.
pub struct VendorSettings {
    /// Sends webhook deliveries (its settings say whether private
    /// destinations are allowed).
    pub sender: crate::webhooks::sender::WebhookSender,
    /// The operator's fees.
    pub fees: crate::config::VendorsConfig,
    /// Where vendor users' notifications go out.
    pub outbox: crate::mail::Outbox,
    /// Where people reach the server (links in notifications).
    pub base_url: String,
    /// Stores download files through the file store.
    pub fulfilment: crate::checkout::Fulfilment,
}

#[derive(Clone)]
pub struct VendorService {
    db: Db,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    catalog: CatalogService,
    users: VendorUserService,
    settings: Arc<VendorSettings>,
}

impl VendorService {
    pub fn new(
        db: Db,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        catalog: CatalogService,
        users: VendorUserService,
        settings: VendorSettings,
    ) -> Self {
        VendorService { db, vault, clock, catalog, users, settings: Arc::new(settings) }
    }

    /// The time on the service's clock (a statement's default period).
    pub fn now(&self) -> coffer_domain::Millis {
        self.clock.now()
    }

    /// The portal users' realm (sign-in, enrolment, members).
    pub fn users(&self) -> &VendorUserService {
        &self.users
    }
}
