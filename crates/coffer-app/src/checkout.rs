//! Checkout: one order from a validated request, paid through a gateway,
//! stored with its sealed copy of the customer's details, and delivered
//! (license keys signed with the vendor's key). The card number and CVC
//! reach the gateway and nothing else: no row, log, error or message.

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
use coffer_store::{AuditWriter, CatalogReader, Db, NewOrder, OrderLine, SealedOrderFields};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

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

/// What a staff member does to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaffAction {
    /// Reviewer: the held order proceeds and is delivered.
    Approve,
    /// Reviewer: the held order is refused and its payment voided.
    Reject,
    /// Support: the bank transfer arrived; the order is delivered.
    TransferReceived,
    /// Support: the whole order is refunded.
    Refund,
}

/// An order for the staff console: the stored order, the buyer as staff
/// may see them (empty once erased), the lines by name and the events.
pub struct StaffOrderView {
    pub order: coffer_store::StoredOrder,
    pub name: String,
    pub email: String,
    pub country: String,
    pub lines: Vec<StaffLine>,
    pub events: Vec<coffer_store::OrderEvent>,
}

/// A line as staff see it.
pub struct StaffLine {
    pub line_no: i64,
    /// The product and its vendor.
    pub name: String,
    pub quantity: i64,
    pub total: i64,
    /// Minor units refunded (0 when not).
    pub refunded: i64,
}

/// What delivering an order produced.
#[derive(Default)]
struct Delivery {
    license_keys: Vec<(ProductId, String)>,
    sealed_keys: Vec<(i64, coffer_crypto::Sealed)>,
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
    pub license_keys: Vec<(ProductId, String)>,
    pub downloads: Vec<(ProductId, String)>,
}

/// What the gateway says about a card payment.
#[derive(Debug, PartialEq, Eq)]
pub enum GatewayAnswer {
    /// Approved; `review` asks for a fraud review before delivery.
    Approved {
        token: String,
        review: bool,
    },
    Declined,
}

/// A card payment for the gateway: the only place the number and CVC go.
pub struct CardPayment<'a> {
    pub digits: &'a str,
    pub exp_month: u8,
    pub exp_year: u16,
    pub cvc: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
}

pub type GatewayFuture<'a> = Pin<Box<dyn Future<Output = Result<GatewayAnswer, AppError>> + Send + 'a>>;

pub type GiveBackFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AppError>> + Send + 'a>>;

/// A payment processor. Implementations must not log or store the card.
pub trait PaymentGateway: Send + Sync {
    fn authorize<'a>(&'a self, payment: CardPayment<'a>) -> GatewayFuture<'a>;
    /// Voids an authorisation or refunds a capture, by the gateway's token.
    fn give_back<'a>(&'a self, token: &'a str, amount_minor: i64, currency: &'a str) -> GiveBackFuture<'a>;
}

/// The built-in simulated processor of CONTRACT.md's test cards:
/// 4000 0000 0000 0002 is declined, 4000 0000 0000 9235 approved but
/// flagged for review, every other (Luhn-valid) number approved.
pub struct SimulatedGateway;

pub const DECLINED_TEST_CARD: &str = "4000000000000002";
pub const REVIEW_TEST_CARD: &str = "4000000000009235";
/// CONTRACT.md's test cards: the fraud screen leaves them alone, so they
/// always behave as documented.
pub const DOCUMENTED_TEST_CARDS: [&str; 3] = ["4242424242424242", DECLINED_TEST_CARD, REVIEW_TEST_CARD];

impl PaymentGateway for SimulatedGateway {
    fn authorize<'a>(&'a self, payment: CardPayment<'a>) -> GatewayFuture<'a> {
        Box::pin(async move {
            if payment.digits == DECLINED_TEST_CARD {
                return Ok(GatewayAnswer::Declined);
            }
            let token = format!("sim_{}", hex::encode(coffer_crypto::random_bytes::<12>()?));
            Ok(GatewayAnswer::Approved { token, review: payment.digits == REVIEW_TEST_CARD })
        })
    }

    fn give_back<'a>(&'a self, token: &'a str, _amount_minor: i64, _currency: &'a str) -> GiveBackFuture<'a> {
        Box::pin(async move {
            if token.starts_with("sim_") {
                Ok(())
            } else {
                Err(AppError::Refused("the payment gateway does not know this payment".into()))
            }
        })
    }
}

struct OrderEmail<'a> {
    name: &'a str,
    id: &'a OrderId,
    status: OrderStatus,
    currency: Currency,
    lines: &'a [PricedLine],
    totals: &'a coffer_domain::Totals,
    license_keys: &'a [(ProductId, String)],
    downloads: &'a [(ProductId, String)],
    payment_reference: Option<&'a str>,
    invitation: Option<&'a str>,
    /// For a held order: where to upload proof of identity.
    identity: Option<&'a str>,
    operator: &'a str,
}

/// The order confirmation: what was bought, what it cost, and what comes
/// next (keys and downloads, a check, or the bank transfer).
fn order_email_body(mail: &OrderEmail<'_>) -> String {
    let money = |minor: i64| mail.currency.amount(minor);
    let name_of = |product: &ProductId| {
        mail.lines.iter().find(|l| &l.line.product_id == product).map(|l| l.name.as_str()).unwrap_or_default()
    };
    let mut out = format!("Hello {},\n\nThank you for your order {}.\n\n", mail.name, mail.id);
    for line in mail.lines {
        out.push_str(&format!("{} × {}: {}\n", line.line.quantity, line.name, money(line.line.line_total)));
    }
    out.push_str(&format!(
        "Subtotal: {}\nTax: {}\nTotal: {}\n\n",
        money(mail.totals.subtotal),
        money(mail.totals.tax),
        money(mail.totals.total)
    ));
    match mail.status {
        OrderStatus::Fulfilled => {
            for (product, key) in mail.license_keys {
                out.push_str(&format!("Your license key for {}:\n{key}\n\n", name_of(product)));
            }
            for (product, link) in mail.downloads {
                out.push_str(&format!("Download {} (the link works for 7 days):\n{link}\n\n", name_of(product)));
            }
        }
        OrderStatus::OnHold => {
            out.push_str(
                "Your payment is approved. Before we deliver, we check the order. You can speed this up by \
                 uploading a photo or scan of an identity document (JPEG, PNG or PDF, up to 8 MB); it is \
                 encrypted, seen only by our reviewers and deleted 30 days after the decision.\n\n",
            );
            if let Some(link) = mail.identity {
                out.push_str(&format!("Upload it here within 7 days:\n{link}\n\n"));
            }
            out.push_str("We write to you as soon as the check is done.\n\n");
        }
        OrderStatus::Pending => out.push_str(&format!(
            "Please transfer {} quoting the reference {}. We deliver as soon as the money arrives.\n\n",
            money(mail.totals.total),
            mail.payment_reference.unwrap_or_default()
        )),
        _ => {}
    }
    if let Some(link) = mail.invitation {
        out.push_str(&format!(
            "Your purchases are also in your Coffer account. Open this link within 7 days to set your password:\n{link}\n\n"
        ));
    }
    out.push_str(&format!("The seller is {}, merchant of record for this order.\n\nCoffer\n", mail.operator));
    out
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
    /// The seller on every invoice, named in the order email.
    pub operator_name: String,
    pub taxes: TaxTable,
    /// The privacy policy version an order must consent to.
    pub policy_version: String,
    /// Where people reach this server, for download links.
    pub base_url: String,
}

#[derive(Clone)]
pub struct CheckoutService {
    db: Db,
    catalog: crate::CatalogService,
    vault: Arc<Vault>,
    customers: CustomerService,
    gateway: Arc<dyn PaymentGateway>,
    clock: Arc<dyn Clock>,
    taxes: TaxTable,
    policy_version: Arc<str>,
    signers: Arc<Mutex<HashMap<VendorId, Arc<LicenseSigningKey>>>>,
    files: Arc<dyn FileStore>,
    base_url: Arc<str>,
    outbox: Outbox,
    operator_name: Arc<str>,
    fraud: Arc<coffer_domain::fraud::FraudSettings>,
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

/// The largest proof-of-identity document accepted.
pub const ID_DOCUMENT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Documents are deleted this long after the review decision.
pub const ID_DOCUMENT_RETENTION_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// The type of an identity document by its first bytes.
pub fn id_document_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    }
}

/// A download link lives 7 days…
pub const DOWNLOAD_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// …and works this many times per order line.
pub const DOWNLOAD_MAX_USES: i64 = 5;

/// A file being downloaded: what to call it and the stream of its bytes.
pub struct Download {
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub reader: FileReader,
}

/// Why a download link gives no file.
#[derive(Debug, PartialEq, Eq)]
pub enum DownloadRefused {
    /// Not a link we signed.
    Invalid,
    Expired,
    /// The order is not (or no longer) delivered: on hold, refunded…
    NotDelivered,
    LimitReached,
    /// The vendor has not uploaded the file yet.
    NoFile,
}

impl CheckoutService {
    pub fn new(deps: CheckoutDeps, settings: CheckoutSettings) -> Self {
        let CheckoutDeps { db, catalog, vault, customers, outbox, gateway, files, clock } = deps;
        CheckoutService {
            db,
            catalog,
            vault,
            customers,
            outbox,
            gateway,
            clock,
            taxes: settings.taxes,
            policy_version: settings.policy_version.into(),
            signers: Arc::default(),
            files,
            base_url: settings.base_url.trim_end_matches('/').into(),
            operator_name: settings.operator_name.into(),
            fraud: Arc::new(settings.fraud),
        }
    }

    async fn link_key(&self) -> Result<Arc<zeroize::Zeroizing<Vec<u8>>>, AppError> {
        self.vault.named_secret("download-links").await
    }

    /// A signed download link for one order line, valid 7 days from now.
    pub async fn download_link(&self, order: &OrderId, line_no: i64) -> Result<String, AppError> {
        let expires = (self.clock.now().0 + DOWNLOAD_TTL_MS) / 1000;
        let payload = format!("{order}.{line_no}.{expires}");
        let signature = coffer_crypto::sign_link(&self.link_key().await?, &payload);
        Ok(format!("{}/downloads/{payload}.{signature}", self.base_url))
    }

    /// Opens the file behind a download link: signature, expiry, the
    /// order's state and the use count are checked, in that order.
    pub async fn open_download(&self, token: &str) -> Result<Result<Download, DownloadRefused>, AppError> {
        let parts: Vec<&str> = token.split('.').collect();
        let [order, line_no, expires, signature] = parts.as_slice() else { return Ok(Err(DownloadRefused::Invalid)) };
        let payload = format!("{order}.{line_no}.{expires}");
        if !coffer_crypto::link_matches(&self.link_key().await?, &payload, signature) {
            return Ok(Err(DownloadRefused::Invalid));
        }
        let (Ok(order), Ok(line_no), Ok(expires)) =
            (OrderId::parse(order), line_no.parse::<i64>(), expires.parse::<i64>())
        else {
            return Ok(Err(DownloadRefused::Invalid));
        };
        if expires.saturating_mul(1000) <= self.clock.now().0 {
            return Ok(Err(DownloadRefused::Expired));
        }
        let Some(stored) = self.db.order(&order).await? else { return Ok(Err(DownloadRefused::Invalid)) };
        if stored.status != OrderStatus::Fulfilled {
            return Ok(Err(DownloadRefused::NotDelivered));
        }
        let Some(line) = stored.lines.iter().find(|l| l.line_no == line_no) else {
            return Ok(Err(DownloadRefused::Invalid));
        };
        if line.refunded_amount > 0 {
            return Ok(Err(DownloadRefused::NotDelivered));
        }
        let Some(file) = self.db.product_file(&line.product_id).await? else { return Ok(Err(DownloadRefused::NoFile)) };
        let Some(reader) = self.files.open(&file.file_key).await? else { return Ok(Err(DownloadRefused::NoFile)) };
        if !self.db.use_download(&order, line_no, DOWNLOAD_MAX_USES).await? {
            return Ok(Err(DownloadRefused::LimitReached));
        }
        Ok(Ok(Download {
            file_name: file.file_name,
            content_type: file.content_type,
            size_bytes: file.size_bytes,
            reader,
        }))
    }

    /// License keys (signed, and sealed for storage) and download links for
    /// an order's lines.
    async fn deliver(
        &self,
        id: &OrderId,
        customer: &coffer_domain::CustomerId,
        key_id: &coffer_domain::DataKeyId,
        key: &coffer_crypto::DataKey,
        lines: &[PricedLine],
    ) -> Result<Delivery, AppError> {
        let mut delivery = Delivery::default();
        let issued_at = coffer_domain::order::rfc3339_utc(self.clock.now());
        for priced in lines {
            let line = &priced.line;
            if priced.license_key {
                let payload = serde_json::json!({
                    "order_id": id.as_str(),
                    "product_id": line.product_id.as_str(),
                    "licensee": self.vault.blind_index().licensee(customer.as_str(), line.vendor_id.as_str()),
                    "seats": line.quantity,
                    "issued_at": issued_at,
                });
                let signer = self.license_signer(&line.vendor_id).await?;
                let license = signer.sign(payload.to_string().as_bytes());
                let key_ctx = FieldContext {
                    table: "license_keys",
                    column: "license_key",
                    row_id: &format!("{}:{}", id.as_str(), line.line_no),
                    data_key_id: key_id.as_str(),
                };
                delivery.sealed_keys.push((line.line_no, seal_field(key, &key_ctx, license.as_bytes())?));
                delivery.license_keys.push((line.product_id.clone(), license));
            }
            if priced.download {
                delivery.downloads.push((line.product_id.clone(), self.download_link(id, line.line_no).await?));
            }
        }
        Ok(delivery)
    }

    /// A staff member moves an order on: a reviewer approves (delivered at
    /// once) or rejects (payment voided) a held order; support marks a bank
    /// transfer received (delivered at once) or refunds a paid order. The
    /// move, its event, the audit entry and the customer's email are one
    /// unit; an order already moved by someone else is refused.
    pub async fn staff_action(
        &self,
        order_id: &OrderId,
        action: StaffAction,
        actor: &Actor,
        reason: &str,
    ) -> Result<OrderStatus, AppError> {
        let reason = reason.trim();
        if reason.chars().count() > 500 || reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad("invalid_reason", "reason", "the reason must be at most 500 characters"));
        }
        if matches!(action, StaffAction::Reject | StaffAction::Refund) && reason.is_empty() {
            return Err(bad("reason_required", "reason", "say why; the customer is told"));
        }
        let order = self.db.order(order_id).await?.ok_or(AppError::NotFound)?;
        let (from, steps): (OrderStatus, &[OrderStatus]) = match action {
            StaffAction::Approve => (OrderStatus::OnHold, &[OrderStatus::Paid, OrderStatus::Fulfilled]),
            StaffAction::Reject => (OrderStatus::OnHold, &[OrderStatus::Rejected]),
            StaffAction::TransferReceived => (OrderStatus::Pending, &[OrderStatus::Paid, OrderStatus::Fulfilled]),
            StaffAction::Refund => (order.status, &[OrderStatus::Refunded]),
        };
        if order.status != from || !from.can_become(steps[0]) {
            return Err(bad(
                "wrong_status",
                "status",
                format!("this order is {}", order.status.as_str().replace('_', " ")),
            ));
        }
        if matches!(action, StaffAction::TransferReceived) && order.payment_method != "bank_transfer" {
            return Err(bad("wrong_status", "status", "this order is not paid by bank transfer"));
        }
        let key = self.vault.data_key(&order.data_key_id).await?.ok_or(AppError::Erased)?;
        let open = |column: &'static str, sealed: &Option<coffer_crypto::Sealed>| {
            open_order_field(Some(&key), &order, column, sealed.as_ref()).map(Option::unwrap_or_default)
        };
        let (name, email) = (open("name", &order.name)?, open("email", &order.email)?);
        // Money back through the gateway first: a refused refund changes nothing.
        if matches!(action, StaffAction::Reject | StaffAction::Refund) && order.payment_method == "card" {
            let card: serde_json::Value = serde_json::from_str(&open("card", &order.card)?).unwrap_or_default();
            let token = card["token"].as_str().unwrap_or_default();
            self.gateway.give_back(token, order.total, &order.currency).await?;
        }
        let currency = Currency::parse(&order.currency)?;
        let mut lines = Vec::new();
        for line in &order.lines {
            let product = self.db.product(&line.product_id).await?;
            lines.push(PricedLine {
                name: product.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
                license_key: product.as_ref().is_some_and(|p| p.delivery.has_license_key()),
                download: product.as_ref().is_some_and(|p| p.delivery.has_download()),
                line: line.clone(),
            });
        }
        let last = *steps.last().unwrap_or(&from);
        let delivery = if last == OrderStatus::Fulfilled {
            self.deliver(&order.id, &order.customer_id, &order.data_key_id, &key, &lines).await?
        } else {
            Delivery::default()
        };
        let totals = coffer_domain::Totals { subtotal: order.subtotal, tax: order.tax, total: order.total };
        let (subject, body) = match last {
            OrderStatus::Fulfilled => (
                format!("Your order {}: your software is ready", order.id),
                order_email_body(&OrderEmail {
                    name: &name,
                    id: &order.id,
                    status: last,
                    currency,
                    lines: &lines,
                    totals: &totals,
                    license_keys: &delivery.license_keys,
                    downloads: &delivery.downloads,
                    payment_reference: None,
                    invitation: None,
                    identity: None,
                    operator: &self.operator_name,
                }),
            ),
            OrderStatus::Rejected => (
                format!("Your order {} could not be accepted", order.id),
                format!(
                    "Hello {name},\n\nWe could not accept your order {}: {reason}.\n\nThe payment was voided; nothing \
                     was charged.\n\nCoffer\n",
                    order.id
                ),
            ),
            _ => (
                format!("Your order {} is refunded", order.id),
                format!(
                    "Hello {name},\n\nYour order {} is refunded ({reason}). {} goes back to the way you paid; \
                     license keys and downloads of the order stop working.\n\nCoffer\n",
                    order.id,
                    currency.amount(order.total)
                ),
            ),
        };
        let letter = Letter { kind: "order_status", to: &email, subject: &subject, body: &body };
        let mail = self.outbox.seal(&letter, &key, &order.data_key_id, false)?;
        let now = self.clock.now();
        let (id, lines_stored, sealed_keys) = (order.id.clone(), order.lines.clone(), delivery.sealed_keys);
        let (actor_text, reason) = (actor.render(), reason.to_owned());
        let entry = AuditEntry::new(
            now,
            actor,
            AuditAction::OrderStatusChanged,
            Some(format!("{id} {}>{}", from.as_str(), last.as_str())),
        );
        let steps = steps.to_vec();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    use coffer_store::OutboxWriter;
                    let mut at = from;
                    for step in steps {
                        if !coffer_store::transition_order(tx, &id, at, step, now, &actor_text, &reason).await? {
                            return Err(bad("wrong_status", "status", "someone else moved this order first"));
                        }
                        at = step;
                    }
                    coffer_store::insert_license_keys(tx, &id, &lines_stored, &sealed_keys, now).await?;
                    if from == OrderStatus::OnHold {
                        let delete_after = coffer_domain::Millis(now.0 + ID_DOCUMENT_RETENTION_MS);
                        coffer_store::schedule_id_document_deletion(tx, &id, delete_after).await?;
                    }
                    tx.append_audit(&entry).await?;
                    tx.enqueue_email(&mail).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(last)
    }

    /// An order as staff see it, with the buyer's name, email and country.
    /// The read is audited before the data is handed out.
    pub async fn staff_view(&self, order_id: &OrderId, actor: &Actor) -> Result<StaffOrderView, AppError> {
        let order = self.db.order(order_id).await?.ok_or(AppError::NotFound)?;
        let key = self.vault.data_key(&order.data_key_id).await?;
        let open = |column: &'static str, sealed: &Option<coffer_crypto::Sealed>| {
            open_order_field(key.as_ref(), &order, column, sealed.as_ref()).map(Option::unwrap_or_default)
        };
        let entry =
            AuditEntry::new(self.clock.now(), actor, AuditAction::CustomerRead, Some(order.customer_id.to_string()));
        self.db.write(move |tx| Box::pin(async move { tx.append_audit(&entry).await.map_err(AppError::from) })).await?;
        let mut lines = Vec::new();
        for line in &order.lines {
            let name = self.db.product(&line.product_id).await?.map(|p| format!("{} ({})", p.name, p.vendor_name));
            lines.push(StaffLine {
                line_no: line.line_no,
                name: name.unwrap_or_default(),
                quantity: line.quantity,
                total: line.line_total,
                refunded: line.refunded_amount,
            });
        }
        let address: serde_json::Value = serde_json::from_str(&open("address", &order.address)?).unwrap_or_default();
        Ok(StaffOrderView {
            name: open("name", &order.name)?,
            email: open("email", &order.email)?,
            country: address["country"].as_str().unwrap_or_default().to_owned(),
            events: self.db.order_events(&order.id).await?,
            lines,
            order,
        })
    }

    /// The signed link a held order's buyer uses to upload proof of
    /// identity (7 days).
    pub async fn identity_link(&self, order: &OrderId) -> Result<String, AppError> {
        let expires = (self.clock.now().0 + DOWNLOAD_TTL_MS) / 1000;
        let payload = format!("identity.{order}.{expires}");
        let signature = coffer_crypto::sign_link(&self.link_key().await?, &payload);
        Ok(format!("{}/identity/{order}.{expires}.{signature}", self.base_url))
    }

    /// The held order a live identity link is for.
    pub async fn identity_link_order(&self, token: &str) -> Result<Option<OrderId>, AppError> {
        let parts: Vec<&str> = token.split('.').collect();
        let [order, expires, signature] = parts.as_slice() else { return Ok(None) };
        let payload = format!("identity.{order}.{expires}");
        if !coffer_crypto::link_matches(&self.link_key().await?, &payload, signature) {
            return Ok(None);
        }
        let (Ok(order), Ok(expires)) = (OrderId::parse(order), expires.parse::<i64>()) else { return Ok(None) };
        if expires.saturating_mul(1000) <= self.clock.now().0 {
            return Ok(None);
        }
        Ok(self.db.order(&order).await?.filter(|o| o.status == OrderStatus::OnHold).map(|o| o.id))
    }

    /// Stores a proof-of-identity document for a held order: JPEG, PNG or
    /// PDF by its content (not its name), at most `ID_DOCUMENT_MAX_BYTES`,
    /// encrypted under the customer's key before it reaches the file store.
    pub async fn upload_identity(&self, token: &str, document: &[u8]) -> Result<(), AppError> {
        let Some(order_id) = self.identity_link_order(token).await? else {
            return Err(bad("link_invalid", "link", "this upload link has expired or the order is no longer held"));
        };
        if document.len() > ID_DOCUMENT_MAX_BYTES {
            return Err(bad("document_too_large", "document", "the file is larger than 8 MB"));
        }
        let Some(content_type) = id_document_type(document) else {
            return Err(bad("document_type", "document", "the file must be a JPEG or PNG photo or a PDF"));
        };
        let order = self.db.order(&order_id).await?.ok_or(AppError::NotFound)?;
        let key = self.vault.data_key(&order.data_key_id).await?.ok_or(AppError::Erased)?;
        let ctx = |column: &'static str| FieldContext {
            table: "id_documents",
            column,
            row_id: order.id.as_str(),
            data_key_id: order.data_key_id.as_str(),
        };
        let sealed = seal_field(&key, &ctx("document"), document)?;
        let digest = seal_field(&key, &ctx("sealed_digest"), &coffer_crypto::digest(document))?;
        let file_key = format!("{}.identity", order.id);
        self.files.put(&file_key, sealed.as_bytes()).await?;
        let row = coffer_store::IdDocumentRow {
            file_key,
            content_type: content_type.to_owned(),
            size_bytes: i64::try_from(document.len()).unwrap_or(i64::MAX),
            sealed_digest: digest,
            uploaded_at: self.clock.now(),
        };
        let id = order.id.clone();
        self.db
            .write(move |tx| {
                Box::pin(async move { coffer_store::put_id_document(tx, &id, &row).await.map_err(AppError::from) })
            })
            .await
    }

    /// A held order's document for the reviewer: (content type, bytes). The
    /// read is audited before the bytes are handed out.
    pub async fn identity_document(
        &self,
        order_id: &OrderId,
        actor: &Actor,
    ) -> Result<Option<(String, Vec<u8>)>, AppError> {
        let Some(row) = self.db.id_document(order_id).await? else { return Ok(None) };
        let order = self.db.order(order_id).await?.ok_or(AppError::NotFound)?;
        let Some(key) = self.vault.data_key(&order.data_key_id).await? else { return Ok(None) };
        let Some(mut reader) = self.files.open(&row.file_key).await? else { return Ok(None) };
        let mut sealed = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut sealed)
            .await
            .map_err(|e| AppError::Refused(format!("file store: {}", e.kind())))?;
        let ctx = FieldContext {
            table: "id_documents",
            column: "document",
            row_id: order.id.as_str(),
            data_key_id: order.data_key_id.as_str(),
        };
        let entry =
            AuditEntry::new(self.clock.now(), actor, AuditAction::CustomerRead, Some(order.customer_id.to_string()));
        self.db.write(move |tx| Box::pin(async move { tx.append_audit(&entry).await.map_err(AppError::from) })).await?;
        let plain = coffer_crypto::open_field(&key, &ctx, &coffer_crypto::Sealed::from_stored(sealed))?;
        Ok(Some((row.content_type, plain.to_vec())))
    }

    /// Runs the retention job (see `crate::retention`).
    pub async fn run_retention(&self) -> Result<crate::retention::RetentionReport, AppError> {
        crate::retention::run(&self.db, self.files.as_ref(), self.clock.now()).await
    }

    /// Support refunds one line of a paid order: its price and its share of
    /// the tax go back through the gateway, the line's downloads stop, the
    /// customer is told. When every line is refunded the order is
    /// `refunded`. One unit, like every other move.
    pub async fn refund_line(
        &self,
        order_id: &OrderId,
        line_no: i64,
        actor: &Actor,
        reason: &str,
    ) -> Result<OrderStatus, AppError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(bad("reason_required", "reason", "say why; the customer is told"));
        }
        if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(bad("invalid_reason", "reason", "the reason must be at most 500 characters"));
        }
        let order = self.db.order(order_id).await?.ok_or(AppError::NotFound)?;
        if !matches!(order.status, OrderStatus::Paid | OrderStatus::Fulfilled) {
            return Err(bad(
                "wrong_status",
                "status",
                format!("this order is {}", order.status.as_str().replace('_', " ")),
            ));
        }
        let Some(line) = order.lines.iter().find(|l| l.line_no == line_no) else {
            return Err(bad("unknown_line", "line", "the order has no such line"));
        };
        if line.refunded_amount > 0 {
            return Err(bad("wrong_status", "line", "this line is refunded already"));
        }
        let open_lines: Vec<&OrderLine> = order.lines.iter().filter(|l| l.refunded_amount == 0).collect();
        let last = open_lines.len() == 1;
        // The tax share: proportional, and the last line takes what is left,
        // so the refunds add up to the total exactly.
        let tax_refunded_before: i64 =
            order.lines.iter().filter(|l| l.refunded_amount > 0).map(|l| l.refunded_amount - l.line_total).sum();
        let tax_share = if last {
            order.tax - tax_refunded_before
        } else if order.subtotal > 0 {
            i64::try_from(i128::from(order.tax) * i128::from(line.line_total) / i128::from(order.subtotal)).unwrap_or(0)
        } else {
            0
        };
        let amount = line.line_total + tax_share;
        let key = self.vault.data_key(&order.data_key_id).await?.ok_or(AppError::Erased)?;
        let open = |column: &'static str, sealed: &Option<coffer_crypto::Sealed>| {
            open_order_field(Some(&key), &order, column, sealed.as_ref()).map(Option::unwrap_or_default)
        };
        if order.payment_method == "card" {
            let card: serde_json::Value = serde_json::from_str(&open("card", &order.card)?).unwrap_or_default();
            self.gateway.give_back(card["token"].as_str().unwrap_or_default(), amount, &order.currency).await?;
        }
        let currency = Currency::parse(&order.currency)?;
        let product = self.db.product(&line.product_id).await?.map(|p| p.name).unwrap_or_default();
        let money = |minor: i64| currency.amount(minor);
        let body = format!(
            "Hello {},\n\nWe refunded {} × {product} from your order {} ({reason}). {} goes back to the way you \
             paid; that item's license key and download stop working.\n\nCoffer\n",
            open("name", &order.name)?,
            line.quantity,
            order.id,
            money(amount)
        );
        let email = open("email", &order.email)?;
        let subject = format!("Part of your order {} is refunded", order.id);
        let letter = Letter { kind: "order_status", to: &email, subject: &subject, body: &body };
        let mail = self.outbox.seal(&letter, &key, &order.data_key_id, false)?;
        let now = self.clock.now();
        let status = order.status;
        let next = if last { OrderStatus::Refunded } else { status };
        let entry = AuditEntry::new(
            now,
            actor,
            AuditAction::OrderStatusChanged,
            Some(format!("{} line {line_no} refunded", order.id)),
        );
        let refund = coffer_store::LineRefund {
            order: order.id.clone(),
            line_no,
            amount,
            status,
            at: now,
            actor: actor.render(),
            reason: reason.to_owned(),
        };
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    use coffer_store::OutboxWriter;
                    if !coffer_store::refund_line(tx, &refund).await? {
                        return Err(bad("wrong_status", "line", "this line is refunded already"));
                    }
                    let (id, actor, reason) = (&refund.order, &refund.actor, &refund.reason);
                    if last && !coffer_store::transition_order(tx, id, status, next, now, actor, reason).await? {
                        return Err(bad("wrong_status", "status", "someone else moved this order first"));
                    }
                    tx.append_audit(&entry).await?;
                    tx.enqueue_email(&mail).await?;
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(next)
    }

    /// Screens an order: counts and records the attempt under keyed hashes
    /// (the documented test cards are neither counted nor recorded), then
    /// weighs the signals. `None` for a test card.
    async fn screen(
        &self,
        request: &OrderRequest,
        details: &CustomerDetails,
        address: &coffer_domain::MailingAddress,
        card_digits: Option<&str>,
        amount_minor: i64,
    ) -> Result<Option<coffer_domain::fraud::FraudVerdict>, AppError> {
        use coffer_domain::fraud;
        if card_digits.is_some_and(|d| DOCUMENTED_TEST_CARDS.contains(&d)) {
            return Ok(None);
        }
        let secret = self.vault.named_secret("fraud-velocity").await?;
        let email = coffer_crypto::normalise_email(&details.email);
        let mut keys = vec![("email", coffer_crypto::keyed_hash(&secret, "email", email.as_bytes()))];
        if let Some(digits) = card_digits {
            keys.push(("card", coffer_crypto::keyed_hash(&secret, "card", digits.as_bytes())));
        }
        if let Some(ip) = request.client_ip {
            keys.push(("ip", coffer_crypto::keyed_hash(&secret, "ip", ip.to_string().as_bytes())));
        }
        let now = self.clock.now();
        let kinds: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        let counts = self.db.count_and_record_attempts(keys, Millis(now.0 - self.fraud.window_ms), now).await?;
        let count_of = |kind: &str| kinds.iter().position(|k| *k == kind).map_or(0, |i| counts[i]);
        let signals = fraud::FraudSignals {
            attempts_by_email: count_of("email"),
            attempts_by_card: count_of("card"),
            attempts_by_ip: count_of("ip"),
            billing_country: address.country.clone(),
            card_country: card_digits.and_then(fraud::card_country).map(str::to_owned),
            ip_country: request.client_ip.and_then(|ip| fraud::ip_country(ip, &self.fraud)),
            amount_minor,
            email_domain: email.rsplit('@').next().unwrap_or_default().to_owned(),
        };
        Ok(Some(fraud::screen(&signals, &self.fraud)))
    }

    /// Places an order at most once per `Idempotency-Key`: the same key with
    /// the same body (compared without its card fields) answers as the first
    /// time, even when both arrive at once; another body is refused with
    /// `idempotency_key_reused`. A request that fails frees its key.
    pub async fn place_once(
        &self,
        idempotency_key: &str,
        body_without_card: &[u8],
        request: OrderRequest,
        channel: Channel,
    ) -> Result<PlacedOrder, AppError> {
        use coffer_store::IdempotencyClaim;
        if idempotency_key.is_empty() || idempotency_key.len() > 255 {
            return Err(bad("invalid_idempotency_key", "Idempotency-Key", "the key must be 1 to 255 characters"));
        }
        let secret = self.vault.named_secret("idempotency").await?;
        let key_hash = coffer_crypto::keyed_hash(&secret, "idempotency-key", idempotency_key.as_bytes());
        let fingerprint = coffer_crypto::keyed_hash(&secret, "order-body", body_without_card);
        let ctx_row = hex::encode(key_hash);
        // A request still in progress under the same key is waited for.
        for _ in 0..100 {
            match self.db.claim_idempotency_key(key_hash, fingerprint, self.clock.now()).await? {
                IdempotencyClaim::Claimed => {
                    return match self.place(request, channel).await {
                        Ok(placed) => {
                            let customer = self.db.order(&placed.id).await?.ok_or(AppError::NotFound)?;
                            let key = self.vault.data_key(&customer.data_key_id).await?.ok_or(AppError::Erased)?;
                            let ctx = FieldContext {
                                table: "idempotency_keys",
                                column: "response",
                                row_id: &ctx_row,
                                data_key_id: customer.data_key_id.as_str(),
                            };
                            let json = serde_json::to_vec(&placed)
                                .map_err(|_| AppError::Refused("the answer could not be encoded".into()))?;
                            let sealed = seal_field(&key, &ctx, &json)?;
                            self.db.answer_idempotency_key(key_hash, customer.data_key_id, sealed).await?;
                            Ok(placed)
                        }
                        Err(e) => {
                            self.db.release_idempotency_key(key_hash).await?;
                            Err(e)
                        }
                    };
                }
                IdempotencyClaim::OtherBody => {
                    return Err(bad(
                        "idempotency_key_reused",
                        "Idempotency-Key",
                        "this Idempotency-Key was used with a different request",
                    ));
                }
                IdempotencyClaim::Answered { data_key_id, response } => {
                    let key = self.vault.data_key(&data_key_id).await?.ok_or(AppError::Erased)?;
                    let ctx = FieldContext {
                        table: "idempotency_keys",
                        column: "response",
                        row_id: &ctx_row,
                        data_key_id: data_key_id.as_str(),
                    };
                    let json = coffer_crypto::open_field(&key, &ctx, &response)?;
                    return serde_json::from_slice(&json)
                        .map_err(|_| AppError::Refused("a stored answer could not be read".into()));
                }
                IdempotencyClaim::InProgress => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        Err(bad("idempotency_in_progress", "Idempotency-Key", "a request with this key is still being processed"))
    }

    /// Stores a product's download file (vendor upload; demo seeding).
    pub async fn put_product_file(
        &self,
        product: &ProductId,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<(), AppError> {
        let key = format!("{product}.download");
        self.files.put(&key, bytes).await?;
        let file = coffer_store::ProductFile {
            product_id: product.clone(),
            file_key: key,
            file_name: file_name.to_owned(),
            content_type: content_type.to_owned(),
            size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        };
        let now = self.clock.now();
        self.db
            .write(move |tx| {
                Box::pin(async move { coffer_store::set_product_file(tx, &file, now).await.map_err(AppError::from) })
            })
            .await
    }

    pub fn policy_version(&self) -> &str {
        &self.policy_version
    }

    /// A vendor's license signing key, made on first use and kept sealed
    /// under the master key.
    pub async fn license_signer(&self, vendor: &VendorId) -> Result<Arc<LicenseSigningKey>, AppError> {
        if let Some(signer) =
            self.signers.lock().map_err(|_| AppError::Keys("signer cache poisoned".into()))?.get(vendor)
        {
            return Ok(signer.clone());
        }
        let seed = self.vault.named_secret(&format!("license-signing:{vendor}")).await?;
        let signer = Arc::new(LicenseSigningKey::from_seed(&seed)?);
        if let Ok(mut cache) = self.signers.lock() {
            cache.insert(vendor.clone(), signer.clone());
        }
        Ok(signer)
    }

    fn check_consent_and_age(&self, request: &OrderRequest) -> Result<Option<String>, AppError> {
        match &request.consent {
            Some((version, true)) if version.as_str() == &*self.policy_version => {}
            Some((_, true)) => {
                return Err(bad(
                    "consent_required",
                    "consent.privacy_policy_version",
                    format!("consent to the current privacy policy (version {}) is required", self.policy_version),
                ));
            }
            _ => return Err(bad("consent_required", "consent", "consent to the privacy policy is required")),
        }
        let Some(age) = &request.age else {
            return Err(bad("age_attestation_required", "age", "say whether you are 18 or older"));
        };
        if age.adult {
            return Ok(None);
        }
        let guardian = age.guardian_name.as_deref().map(str::trim).unwrap_or_default();
        if guardian.is_empty() || guardian.chars().count() > 200 || guardian.chars().any(char::is_control) {
            return Err(bad("age_attestation_required", "age.guardian_name", "a legal guardian's name is required"));
        }
        if !age.guardian_consents {
            return Err(bad(
                "age_attestation_required",
                "age.guardian_consents",
                "the guardian must be present, consent and take responsibility for the data",
            ));
        }
        Ok(Some(guardian.to_owned()))
    }

    async fn price_lines(&self, request: &OrderRequest, currency: Currency) -> Result<Vec<PricedLine>, AppError> {
        if request.items.is_empty() || request.items.len() > MAX_LINES {
            return Err(bad("invalid_items", "items", format!("an order has 1 to {MAX_LINES} lines")));
        }
        let mut lines = Vec::new();
        for (n, (product_id, quantity)) in request.items.iter().enumerate() {
            let field = |name: &str| format!("items[{n}].{name}");
            if !(1..=MAX_QUANTITY).contains(quantity) {
                return Err(bad(
                    "invalid_quantity",
                    &field("quantity"),
                    format!("quantity must be 1 to {MAX_QUANTITY}"),
                ));
            }
            let unknown = || bad("unknown_product", &field("product_id"), "there is no such product");
            let id = ProductId::parse(product_id).map_err(|_| unknown())?;
            let product = match self.catalog.product(&id).await {
                Ok(product) => product,
                Err(AppError::NotFound) => return Err(unknown()),
                Err(e) => return Err(e),
            };
            let Some(price) = product.prices.get(currency) else {
                return Err(bad(
                    "currency_not_offered",
                    &field("product_id"),
                    format!("this product is not sold in {}", currency.code()),
                ));
            };
            lines.push(PricedLine {
                name: product.name.clone(),
                line: OrderLine {
                    line_no: i64::try_from(n + 1).unwrap_or(i64::MAX),
                    product_id: id,
                    vendor_id: product.vendor_id,
                    quantity: *quantity,
                    unit_price: price.minor(),
                    line_total: price.minor().saturating_mul(*quantity),
                    refunded_amount: 0,
                },
                license_key: product.delivery.has_license_key(),
                download: product.delivery.has_download(),
            });
        }
        Ok(lines)
    }

    /// Validates, pays, stores and delivers one order. Nothing is stored
    /// for a refused order.
    /// Everything but the card: consent, age, the customer's details, the
    /// items and the totals with the tax of the customer's country. The
    /// checkout page shows this before asking for payment.
    pub async fn quote(&self, request: &OrderRequest) -> Result<Quote, AppError> {
        let guardian = self.check_consent_and_age(request)?;
        let details = request.customer.validated()?;
        let Some(address) = &details.address else {
            return Err(AppError::Customer(coffer_domain::CustomerError {
                field: "customer.address",
                reason: "is required for the invoice",
            }));
        };
        let currency = Currency::parse(&request.currency)
            .map_err(|_| bad("invalid_currency", "currency", "not a currency code we know"))?;
        let lines = self.price_lines(request, currency).await?;
        let amounts: Vec<(i64, i64)> = lines.iter().map(|l| (l.line.unit_price, l.line.quantity)).collect();
        let totals = totals(&amounts, &address.country, &self.taxes);
        Ok(Quote { tax_rate: self.taxes.rate(&address.country), details, guardian, currency, lines, totals })
    }

    pub async fn place(&self, request: OrderRequest, channel: Channel) -> Result<PlacedOrder, AppError> {
        match (request.payment_method, &request.card) {
            (PaymentMethod::BankTransfer, Some(_)) => {
                return Err(bad("card_not_allowed", "card", "a bank transfer takes no card details"));
            }
            (PaymentMethod::Card, None) => return Err(bad("card_invalid", "card", "card details are required")),
            _ => {}
        }
        let Quote { details, guardian, currency, lines, totals: sums, tax_rate } = self.quote(&request).await?;
        let Some(address) = &details.address else { return Err(AppError::NotFound) };
        let now = self.clock.now();

        // Payment: the card goes to the gateway and nowhere else.
        let mut verdict: Option<coffer_domain::fraud::FraudVerdict>;
        let (status, card_summary, payment_reference, reason) = match (&request.card, request.payment_method) {
            (Some(card), PaymentMethod::Card) => {
                let summary = check_card(
                    card.number.expose_secret(),
                    card.exp_month,
                    card.exp_year,
                    card.cvc.expose_secret(),
                    year_month(now),
                )?;
                let digits = coffer_domain::order::card_digits(card.number.expose_secret()).unwrap_or_default();
                let digits = zeroize::Zeroizing::new(digits);
                verdict = self.screen(&request, &details, address, Some(&digits), sums.total).await?;
                let answer = self
                    .gateway
                    .authorize(CardPayment {
                        digits: &digits,
                        exp_month: summary.exp_month,
                        exp_year: summary.exp_year,
                        cvc: card.cvc.expose_secret(),
                        amount_minor: sums.total,
                        currency: currency.code(),
                    })
                    .await?;
                match answer {
                    GatewayAnswer::Declined => {
                        return Err(bad("card_declined", "card.number", "the card was declined; try another card"));
                    }
                    GatewayAnswer::Approved { token, review } => {
                        if review {
                            let v = verdict.get_or_insert(coffer_domain::fraud::FraudVerdict {
                                score: 0,
                                reasons: Vec::new(),
                                hold: true,
                            });
                            v.reasons.push("gateway_review");
                            v.hold = true;
                        }
                        if verdict.as_ref().is_some_and(|v| v.hold) {
                            (
                                OrderStatus::OnHold,
                                Some((summary, token)),
                                None,
                                "payment approved; held for a fraud review",
                            )
                        } else {
                            (OrderStatus::Fulfilled, Some((summary, token)), None, "payment approved; delivered")
                        }
                    }
                }
            }
            _ => {
                verdict = self.screen(&request, &details, address, None, sums.total).await?;
                let reference = format!("CF-{}", hex::encode(coffer_crypto::random_bytes::<5>()?).to_uppercase());
                (OrderStatus::Pending, None, Some(reference), "awaiting the bank transfer")
            }
        };

        // The customer: an existing account's history, or a new record. The
        // account's own details are never changed by an order.
        let index = self.vault.blind_index().email(&details.email);
        let (customer, key_id, has_password) = match self.db.checkout_customer(&index).await? {
            Some(found) => found,
            None => {
                match self.customers.create(&details, &Actor::System).await {
                    // Created by a concurrent order a moment ago: that one.
                    Ok(_) | Err(AppError::Conflict) => {}
                    Err(e) => return Err(e),
                }
                self.db.checkout_customer(&index).await?.ok_or(AppError::Conflict)?
            }
        };
        let key = self.vault.data_key(&key_id).await?.ok_or(AppError::Erased)?;
        let id = OrderId::generate();
        let ctx = |column: &'static str| FieldContext {
            table: "orders",
            column,
            row_id: id.as_str(),
            data_key_id: key_id.as_str(),
        };
        let address_json = serde_json::to_vec(&serde_json::json!({
            "line1": address.line1, "line2": address.line2, "city": address.city,
            "region": address.region, "postal_code": address.postal_code, "country": address.country,
        }))
        .map_err(|_| AppError::Refused("the address could not be encoded".into()))?;
        let card_json = card_summary.as_ref().map(|(s, token)| {
            serde_json::json!({"token": token, "brand": s.brand, "last4": s.last4,
                               "exp_month": s.exp_month, "exp_year": s.exp_year})
            .to_string()
        });
        let fields = SealedOrderFields {
            name: seal_field(&key, &ctx("name"), details.name.as_bytes())?,
            email: seal_field(&key, &ctx("email"), details.email.as_bytes())?,
            phone: details.phone.as_ref().map(|p| seal_field(&key, &ctx("phone"), p.as_bytes())).transpose()?,
            address: seal_field(&key, &ctx("address"), &address_json)?,
            card: card_json.map(|c| seal_field(&key, &ctx("card"), c.as_bytes())).transpose()?,
            guardian_name: guardian.map(|g| seal_field(&key, &ctx("guardian_name"), g.as_bytes())).transpose()?,
        };

        // Delivery: a signed license key per license-key line, a link per download.
        let delivery = if status == OrderStatus::Fulfilled {
            self.deliver(&id, &customer, &key_id, &key, &lines).await?
        } else {
            Delivery::default()
        };
        let Delivery { license_keys, sealed_keys, downloads } = delivery;
        // The first order of someone without a password invites them to
        // their account (the link lives 7 days, stored only hashed).
        let invitation = if !has_password {
            let (token, hash) = coffer_crypto::new_token()?;
            Some((format!("{}/account/link/{token}", self.base_url), hash))
        } else {
            None
        };
        let identity = if status == OrderStatus::OnHold { Some(self.identity_link(&id).await?) } else { None };
        let body = order_email_body(&OrderEmail {
            name: &details.name,
            id: &id,
            status,
            currency,
            lines: &lines,
            totals: &sums,
            license_keys: &license_keys,
            downloads: &downloads,
            payment_reference: payment_reference.as_deref(),
            invitation: invitation.as_ref().map(|(link, _)| link.as_str()),
            identity: identity.as_deref(),
            operator: &self.operator_name,
        });
        let subject = match status {
            OrderStatus::Fulfilled => format!("Your order {id}: your software is ready"),
            OrderStatus::OnHold => format!("Your order {id} is being checked"),
            OrderStatus::Pending => format!("Your order {id}: waiting for your bank transfer"),
            _ => format!("Your order {id}"),
        };
        let letter = Letter { kind: "order_placed", to: &details.email, subject: &subject, body: &body };
        let email = self.outbox.seal(&letter, &key, &key_id, false)?;
        let invitation_hash = invitation.map(|(_, hash)| (hash, customer.clone()));
        let order = NewOrder {
            id: id.clone(),
            customer_id: customer.clone(),
            data_key_id: key_id.clone(),
            status,
            currency: currency.code().to_owned(),
            subtotal: sums.subtotal,
            tax: sums.tax,
            total: sums.total,
            tax_country: address.country.clone(),
            tax_rate: i64::from(tax_rate),
            payment_method: request.payment_method.as_str(),
            payment_reference: payment_reference.clone(),
            fields,
            adult: request.age.as_ref().is_some_and(|a| a.adult),
            policy_version: self.policy_version.to_string(),
            consent_channel: channel.as_str(),
            fraud_score: i64::from(verdict.as_ref().map_or(0, |v| v.score)),
            fraud_reasons: verdict.as_ref().map(|v| v.reasons.join(",")).unwrap_or_default(),
            lines: lines.into_iter().map(|l| l.line).collect(),
            license_keys: sealed_keys,
            at: now,
            actor: format!("customer:{customer}"),
            reason: reason.to_owned(),
        };
        let entry = AuditEntry::new(
            now,
            &Actor::Customer(customer.to_string()),
            AuditAction::OrderPlaced,
            Some(format!("{id} {}", status.as_str())),
        );
        let invitation = invitation_hash.map(|(token_hash, customer)| coffer_store::NewLink {
            token_hash,
            customer,
            purpose: coffer_store::LinkPurpose::Invitation,
            at: now,
            expires_at: coffer_domain::Millis(now.0 + crate::accounts::service::INVITATION_TTL_MS),
        });
        let placement = coffer_store::order_placement(&order, &entry, &email, invitation.as_ref())?;
        self.db.write_commands(placement).await?;
        Ok(PlacedOrder {
            id,
            status,
            currency: currency.code().to_owned(),
            subtotal: sums.subtotal,
            tax: sums.tax,
            total: sums.total,
            payment_reference,
            license_keys,
            downloads,
        })
    }
}
