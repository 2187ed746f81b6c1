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
use coffer_store::prelude::*;
use coffer_store::{AuditWriter, CatalogReader, Db, NewOrder, OrderLine, SealedOrderFields};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

mod downloads;
mod email;
mod gateway;
mod identity;
pub mod limits;
mod staff;

pub use downloads::{DOWNLOAD_MAX_USES, DOWNLOAD_TTL_MS, Download, DownloadRefused};
use email::{OrderEmail, order_email_body};
pub use gateway::{
    CardPayment, DECLINED_TEST_CARD, DOCUMENTED_TEST_CARDS, GatewayAnswer, GatewayFuture, GiveBackFuture,
    PaymentGateway, REVIEW_TEST_CARD, SimulatedGateway,
};
pub use identity::{ID_DOCUMENT_MAX_BYTES, id_document_type};
pub(crate) use staff::require;
pub use staff::{HOLD_EXPIRY_MS, StaffAction, StaffLine, StaffOrderView};

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
    failed_payments: Arc<limits::FailedPaymentLimit>,
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
        let failed_payments = Arc::new(limits::FailedPaymentLimit::new(
            settings.fraud.failed_payments_max,
            settings.fraud.failed_payments_window_ms,
        )?);
        Ok(CheckoutService {
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
            failed_payments,
        })
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

    /// Runs the retention job (see `crate::retention`).
    pub async fn run_retention(&self) -> Result<crate::retention::RetentionReport, AppError> {
        // Expired holds first: a cancelled order's document is then due by
        // the decision's clock, an undecided one's by its upload.
        let expired_holds = self.expire_holds().await?;
        let report = crate::retention::run(&self.db, self.files.as_ref(), Some(&self.outbox), self.clock.now()).await?;
        Ok(crate::retention::RetentionReport { expired_holds, ..report })
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
            let ip = limits::limit_address(ip);
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
    /// the same body and the same card number answers as the first time, even
    /// when both arrive at once; another body or another card is refused with
    /// `idempotency_key_reused`, so a replay never hands the first order's
    /// keys to someone holding only the key. A request that fails frees its
    /// key. The card number enters only a keyed hash, never storage.
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
        let mut bound = body_without_card.to_vec();
        if let Some(card) = &request.card {
            let digits = coffer_domain::order::card_digits(card.number.expose_secret()).unwrap_or_default();
            bound.extend_from_slice(&coffer_crypto::keyed_hash(&secret, "order-card", digits.as_bytes()));
        }
        let fingerprint = coffer_crypto::keyed_hash(&secret, "order-body", &bound);
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

    /// A one-time token for a review page, used as the idempotency key of
    /// the payment it leads to (see [`Self::place_once`]): a random part and
    /// its signature under a secret of this operator, so a payment names a
    /// review this server showed.
    pub async fn new_review_token(&self) -> Result<String, AppError> {
        let (random, _) = coffer_crypto::new_token()?;
        let secret = self.vault.named_secret("review-tokens").await?;
        Ok(format!("{random}.{}", coffer_crypto::sign_link(&secret, &format!("review.{random}"))))
    }

    /// Whether a review token is one [`Self::new_review_token`] made.
    pub async fn review_token_issued_here(&self, token: &str) -> Result<bool, AppError> {
        let Some((random, signature)) = token.split_once('.') else { return Ok(false) };
        let secret = self.vault.named_secret("review-tokens").await?;
        Ok(coffer_crypto::link_matches(&secret, &format!("review.{random}"), signature))
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

    /// Places an order, under the limit on failed payments: a client
    /// address, email or card with too many declined, invalid or expired
    /// cards lately is refused before the gateway is asked again.
    pub async fn place(&self, request: OrderRequest, channel: Channel) -> Result<PlacedOrder, AppError> {
        let digits = request.card.as_ref().and_then(|c| coffer_domain::order::card_digits(c.number.expose_secret()));
        let keys = self.failed_payments.keys(request.client_ip, &request.customer.email, digits.as_deref());
        let attempt = match self.failed_payments.reserve(keys, self.clock.now()) {
            Ok(attempt) => attempt,
            Err(retry_after_ms) => return Err(AppError::TooManyAttempts { retry_after_ms }),
        };
        let placed = self.place_unlimited(request, channel).await;
        let failed_payment = matches!(&placed, Err(AppError::Order(e))
            if matches!(e.code, "card_declined" | "card_invalid" | "card_expired"));
        attempt.finish(failed_payment, self.clock.now());
        placed
    }

    async fn place_unlimited(&self, request: OrderRequest, channel: Channel) -> Result<PlacedOrder, AppError> {
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

        // From here on an approved card is voided if the order is not
        // recorded: no payment without its order.
        let approved_token = card_summary.as_ref().map(|(_, token)| token.clone());
        let recorded: Result<PlacedOrder, AppError> = async {
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
                payment_token: match &approved_token {
                    Some(token) => Some(self.seal_payment_token(&id, token).await?),
                    None => None,
                },
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
        .await;
        if recorded.is_err()
            && let Some(token) = &approved_token
            && let Err(e) = self.gateway.give_back(token, sums.total, currency.code()).await
        {
            tracing::error!(error = %e, "an approved payment of an order that was not recorded could not be voided");
        }
        recorded
    }
}
