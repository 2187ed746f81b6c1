//! Checkout: one order from a validated request, paid through a gateway,
//! stored with its sealed copy of the customer's details, and delivered
//! (license keys signed with the vendor's key). The card number and CVC
//! reach the gateway and nothing else: no row, log, error or message.
//!
//! Four services by responsibility, each holding only what it needs beside
//! the small [`CheckoutContext`] they share (database, vault, clock):
//! [`OrderPlacement`] (quote, place, the pay page's review tokens),
//! [`StaffOrders`] (moves, refunds, queues, the staff view),
//! [`Fulfilment`] (license keys and their status, download links and files) and
//! [`IdentityReview`] (proof of identity for held orders).
//! [`CheckoutService`] holds the four for the web layer and the binary.

use crate::AppError;
use crate::files::{FileReader, FileStore};
use crate::mail::{Letter, Outbox};
use crate::privacy::{CustomerService, Vault};
use coffer_crypto::{FieldContext, LicenseSigningKey, seal_field};
use coffer_domain::order::{MAX_LINES, MAX_QUANTITY, check_card, totals, year_month};
use coffer_domain::{
    Actor, AuditAction, AuditEntry, Clock, Currency, CustomerDetails, Millis, OrderError, OrderId, OrderStatus,
    PaymentMethod, ProductId, TaxTable, VendorId,
};
use coffer_store::prelude::*;
use coffer_store::{AuditWriter, CatalogReader, Db, NewOrder, OrderLine, SealedOrderFields};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

mod downloads;
mod drafts;
mod email;
mod fulfilment;
mod gateway;
mod give_back;
mod identity;
mod invoices;
mod licenses;
pub mod limits;
mod payments;
mod placement;
mod staff;

pub use downloads::{DOWNLOAD_MAX_USES, DOWNLOAD_TTL_MS, Download, DownloadRefused};
pub use drafts::DRAFT_TTL_MS;
use email::{OrderEmail, order_email_body};
pub use fulfilment::Fulfilment;
pub use gateway::{
    CardPayment, DECLINED_TEST_CARD, DOCUMENTED_TEST_CARDS, GatewayAnswer, GatewayFuture, GiveBackFuture,
    PaymentGateway, REVIEW_TEST_CARD, SimulatedGateway,
};
pub use give_back::GIVE_BACK_JOB;
pub use identity::{ID_DOCUMENT_MAX_BYTES, IdentityReview, id_document_type};
pub use invoices::Seller;
pub use licenses::{LicenseCheck, LicenseStatus, MAX_LICENSE_KEY_LEN};
pub use placement::OrderPlacement;

pub use coffer_store::QueuedOrder;
pub use staff::{HOLD_EXPIRY_MS, StaffAction, StaffLine, StaffOrderView, StaffOrders};

/// The card as typed; only ever borrowed by the gateway.
pub struct CardInput {
    pub number: SecretString,
    pub exp_month: i64,
    pub exp_year: i64,
    pub cvc: SecretString,
}

impl std::fmt::Debug for CardInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardInput(<redacted>)")
    }
}

/// The age attestation: an adult, or a guardian present who consents.
#[derive(Clone, Debug)]
pub struct AgeInput {
    pub adult: bool,
    pub guardian_name: Option<String>,
    pub guardian_consents: bool,
}

/// Where the order came from, recorded with the consent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Web,
    Api,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Api => "api",
        }
    }
}

/// An order as the form or the API sends it.
#[derive(Debug)]
pub struct OrderRequest {
    pub currency: String,
    pub items: Vec<(String, i64)>,
    pub customer: CustomerDetails,
    pub payment_method: PaymentMethod,
    pub card: Option<CardInput>,
    /// The policy version consented to, and whether it was accepted.
    pub consent: Option<(String, bool)>,
    pub age: Option<AgeInput>,
    /// The client's address (from a trusted proxy's header at most), for
    /// the fraud screen's velocity and country checks.
    pub client_ip: Option<std::net::IpAddr>,
}

/// What delivering an order produced.
#[derive(Default)]
struct Delivery {
    license_keys: Vec<(ProductId, String)>,
    sealed_keys: Vec<coffer_store::IssuedKey>,
    downloads: Vec<(ProductId, String)>,
}

/// A placed order, as the confirmation shows it.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlacedOrder {
    pub id: OrderId,
    pub status: OrderStatus,
    pub currency: String,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub payment_reference: Option<String>,
    /// Where a bank transfer is paid to (with `payment_reference`).
    #[serde(default)]
    pub bank_account: Option<coffer_domain::BankAccount>,
    /// The last day to pay a transfer (UTC, `11 December 2026`); the
    /// order is cancelled after it.
    #[serde(default)]
    pub pay_by: Option<String>,
    pub license_keys: Vec<(ProductId, String)>,
    pub downloads: Vec<(ProductId, String)>,
}

/// One sealed field of an order as text; `None` when absent or when the
/// key is gone (erased).
pub(crate) fn open_order_field(
    key: Option<&coffer_crypto::DataKey>,
    order: &coffer_store::StoredOrder,
    column: &'static str,
    sealed: Option<&coffer_crypto::Sealed>,
) -> Result<Option<String>, AppError> {
    let (Some(key), Some(sealed)) = (key, sealed) else { return Ok(None) };
    let ctx =
        FieldContext { table: "orders", column, row_id: order.id.as_str(), data_key_id: order.data_key_id.as_str() };
    Ok(Some(String::from_utf8_lossy(&coffer_crypto::open_field(key, &ctx, sealed)?).into_owned()))
}

/// A policy text's version: the first 16 hex digits of its SHA-256.
pub fn policy_version(html: &str) -> String {
    hex::encode(&coffer_crypto::token_hash(html)[..8])
}

fn bad(code: &'static str, field: &str, message: impl Into<String>) -> AppError {
    AppError::Order(OrderError::new(code, Some(field), message))
}

/// The services checkout works with.
pub struct CheckoutDeps {
    pub db: Db,
    /// Products are read through the catalog's short-lived cache.
    pub catalog: crate::CatalogService,
    pub vault: Arc<Vault>,
    pub customers: CustomerService,
    pub outbox: Outbox,
    pub gateway: Arc<dyn PaymentGateway>,
    pub files: Arc<dyn FileStore>,
    pub clock: Arc<dyn Clock>,
}

/// What checkout takes from configuration.
pub struct CheckoutSettings {
    pub fraud: coffer_domain::fraud::FraudSettings,
    /// The seller on every invoice (its name is in every order email).
    pub seller: Seller,
    pub taxes: TaxTable,
    /// Where bank transfers are paid to; none: bank transfer is not offered.
    pub bank: Option<coffer_domain::BankAccount>,
    /// How long an order waits for its transfer before it is cancelled.
    pub transfer_expiry_ms: i64,
    /// The privacy policy version an order must consent to.
    pub policy_version: String,
    /// Where people reach this server, for download links.
    pub base_url: String,
}

/// What every checkout service works with. Each service dereferences to
/// it, so `self.db`, `self.vault` and `self.clock` read as its own.
#[derive(Clone)]
pub struct CheckoutContext {
    db: Db,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
}

/// Lets a service read the shared context's fields as its own.
macro_rules! shares_context {
    ($($service:ty),+) => {$(
        impl std::ops::Deref for $service {
            type Target = CheckoutContext;
            fn deref(&self) -> &CheckoutContext {
                &self.ctx
            }
        }
    )+};
}
shares_context!(OrderPlacement, StaffOrders, Fulfilment, IdentityReview);

impl CheckoutContext {
    /// The secret download and identity links are signed with.
    async fn link_key(&self) -> Result<Arc<zeroize::Zeroizing<Vec<u8>>>, AppError> {
        self.vault.named_secret("download-links").await
    }
}

/// The checkout services together, as the web layer and the binary hold
/// them; each part is reached by its accessor (`checkout.staff()`).
#[derive(Clone)]
pub struct CheckoutService {
    placement: OrderPlacement,
    staff: StaffOrders,
    fulfilment: Fulfilment,
    identity: IdentityReview,
    /// For the retention job, which spans the parts.
    files: Arc<dyn FileStore>,
    outbox: Outbox,
    /// The seller on every invoice.
    seller: Arc<Seller>,
}

/// One priced line of an order.
pub struct PricedLine {
    pub line: OrderLine,
    pub name: String,
    pub license_key: bool,
    pub download: bool,
}

/// An order checked and priced, before payment.
pub struct Quote {
    /// Basis points of the customer's country (1900 = 19%).
    pub tax_rate: u32,
    pub details: CustomerDetails,
    pub guardian: Option<String>,
    pub currency: Currency,
    pub lines: Vec<PricedLine>,
    pub totals: coffer_domain::Totals,
}

impl CheckoutService {
    pub fn new(deps: CheckoutDeps, settings: CheckoutSettings) -> Result<Self, AppError> {
        let CheckoutDeps { db, catalog, vault, customers, outbox, gateway, files, clock } = deps;
        let ctx = CheckoutContext { db, vault, clock };
        let base_url: Arc<str> = settings.base_url.trim_end_matches('/').into();
        let operator_name: Arc<str> = settings.seller.name.clone().into();
        let fulfilment =
            Fulfilment { ctx: ctx.clone(), files: files.clone(), base_url: base_url.clone(), signers: Arc::default() };
        let identity = IdentityReview { ctx: ctx.clone(), files: files.clone(), base_url: base_url.clone() };
        let staff = StaffOrders {
            ctx: ctx.clone(),
            gateway: gateway.clone(),
            outbox: outbox.clone(),
            operator_name: operator_name.clone(),
            fulfilment: fulfilment.clone(),
            transfer_expiry_ms: settings.transfer_expiry_ms,
        };
        let failed_payments = Arc::new(limits::FailedPaymentLimit::new(
            settings.fraud.failed_payments_max,
            settings.fraud.failed_payments_window_ms,
        )?);
        let placement = OrderPlacement {
            ctx,
            catalog,
            customers,
            gateway,
            outbox: outbox.clone(),
            fulfilment: fulfilment.clone(),
            identity: identity.clone(),
            taxes: settings.taxes,
            bank: settings.bank.map(Arc::new),
            transfer_expiry_ms: settings.transfer_expiry_ms,
            policy_version: settings.policy_version.into(),
            base_url,
            operator_name,
            fraud: Arc::new(settings.fraud),
            failed_payments,
        };
        Ok(CheckoutService { placement, staff, fulfilment, identity, files, outbox, seller: Arc::new(settings.seller) })
    }

    /// Placing orders: quote, place, the pay page's review tokens.
    pub fn placement(&self) -> &OrderPlacement {
        &self.placement
    }

    /// Order operations by staff: moves, refunds, queues, the staff view.
    pub fn staff(&self) -> &StaffOrders {
        &self.staff
    }

    /// Fulfilment: license keys, download links and files.
    pub fn fulfilment(&self) -> &Fulfilment {
        &self.fulfilment
    }

    /// Identity review: proof of identity for held orders.
    pub fn identity(&self) -> &IdentityReview {
        &self.identity
    }

    /// A signed download link (see [`Fulfilment::download_link`]).
    pub async fn download_link(&self, order: &OrderId, line_no: i64) -> Result<String, AppError> {
        self.fulfilment.download_link(order, line_no).await
    }

    /// Runs the retention job (see `crate::retention`).
    pub async fn run_retention(&self) -> Result<crate::retention::RetentionReport, AppError> {
        self.run_retention_until(&crate::supervisor::CancellationToken::new()).await
    }

    /// As [`CheckoutService::run_retention`]; once `stop` fires, no further
    /// expired hold is cancelled (each is a unit of its own) and the rest
    /// waits for the next run.
    pub async fn run_retention_until(
        &self,
        stop: &crate::supervisor::CancellationToken,
    ) -> Result<crate::retention::RetentionReport, AppError> {
        // Expired holds first: a cancelled order's document is then due by
        // the decision's clock, an undecided one's by its upload.
        let expired_holds = self.staff.expire_holds(stop).await?;
        if stop.is_cancelled() {
            return Ok(crate::retention::RetentionReport { expired_holds, ..Default::default() });
        }
        let expired_transfers = self.staff.expire_transfers(stop).await?;
        if stop.is_cancelled() {
            return Ok(crate::retention::RetentionReport { expired_holds, expired_transfers, ..Default::default() });
        }
        let ctx = &self.staff.ctx;
        let report = crate::retention::run(
            &ctx.db,
            ctx.vault.key_store(),
            self.files.as_ref(),
            Some(&self.outbox),
            ctx.clock.now(),
        )
        .await?;
        Ok(crate::retention::RetentionReport { expired_holds, expired_transfers, ..report })
    }
}
