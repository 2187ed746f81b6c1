//! Placing orders: the quote the checkout page shows, the fraud screen,
//! payment, and the order recorded with its sealed copy of the buyer's
//! details, its delivery and its confirmation email, in one unit.

use super::*;
use coffer_domain::fraud::FraudVerdict;
use coffer_domain::order::CardSummary;
use coffer_domain::{CustomerId, DataKeyId, MailingAddress};

/// Places orders: quote, place (at most once per idempotency key) and the
/// checkout page's review tokens.
#[derive(Clone)]
pub struct OrderPlacement {
    pub(super) ctx: CheckoutContext,
    /// Products are read through the catalog's short-lived cache.
    pub(super) catalog: crate::CatalogService,
    pub(super) customers: CustomerService,
    pub(super) gateway: Arc<dyn PaymentGateway>,
    pub(super) outbox: Outbox,
    /// Delivers an order paid at once.
    pub(super) fulfilment: Fulfilment,
    /// The upload link a held order's email carries.
    pub(super) identity: IdentityReview,
    pub(super) taxes: TaxTable,
    /// Where bank transfers go; `None`: the method is not offered.
    pub(super) bank: Option<Arc<coffer_domain::BankAccount>>,
    pub(super) transfer_expiry_ms: i64,
    pub(super) policy_version: Arc<str>,
    /// Where people reach this server, for the account invitation.
    pub(super) base_url: Arc<str>,
    /// The seller, named in the order email.
    pub(super) operator_name: Arc<str>,
    pub(super) fraud: Arc<coffer_domain::fraud::FraudSettings>,
    pub(super) failed_payments: Arc<limits::FailedPaymentLimit>,
}

/// How an order is paid, once the gateway (or the choice of a bank
/// transfer) has answered.
struct Payment {
    status: OrderStatus,
    /// The card's summary and the gateway's token, for a card payment.
    card: Option<(CardSummary, String)>,
    /// The reference a bank transfer quotes.
    reference: Option<String>,
    /// Why the order has its status, recorded with its first event.
    reason: &'static str,
    verdict: Option<FraudVerdict>,
}

/// One order being placed: what was asked, priced and paid.
struct Placing<'a> {
    request: &'a OrderRequest,
    channel: Channel,
    quote: &'a Quote,
    address: &'a MailingAddress,
    payment: &'a Payment,
    now: Millis,
}

/// Whom an order is for: the customer record, their data key, and whether
/// they have a password (without one, the order email invites them).
struct Buyer {
    id: CustomerId,
    key_id: DataKeyId,
    key: coffer_crypto::DataKey,
    has_password: bool,
    /// A first order's buyer, written in the order's own unit.
    new: Option<NewBuyer>,
}

struct NewBuyer {
    row: coffer_store::NewSealedCustomer,
    audit: coffer_domain::AuditEntry,
    usable_until: Millis,
}

/// Why recording an order starts again, once.
enum Again {
    /// A first order from this address committed a moment ago: the buyer
    /// is that customer now.
    EmailTaken,
    /// The new buyer's spare key is past its hand-out window (a very slow
    /// placement): sealed again under a fresh one.
    KeyWindowPassed,
}

/// A card goes only with the card method, and the card method needs one.
fn check_payment_method(method: PaymentMethod, has_card: bool) -> Result<(), AppError> {
    match (method, has_card) {
        (PaymentMethod::BankTransfer, true) => {
            Err(bad("card_not_allowed", "card", "a bank transfer takes no card details"))
        }
        (PaymentMethod::Card, false) => Err(bad("card_invalid", "card", "card details are required")),
        _ => Ok(()),
    }
}

/// A card the gateway approved: held when the fraud screen or the gateway
/// asks for a review, delivered otherwise.
fn approved_card_outcome(
    mut verdict: Option<FraudVerdict>,
    gateway_review: bool,
) -> (Option<FraudVerdict>, OrderStatus, &'static str) {
    if gateway_review {
        let v = verdict.get_or_insert(FraudVerdict { score: 0, reasons: Vec::new(), hold: true });
        v.reasons.push("gateway_review");
        v.hold = true;
    }
    if verdict.as_ref().is_some_and(|v| v.hold) {
        (verdict, OrderStatus::OnHold, "payment approved; held for a fraud review")
    } else {
        (verdict, OrderStatus::Fulfilled, "payment approved; delivered")
    }
}

/// The confirmation email's subject for an order's status.
fn confirmation_subject(id: &OrderId, status: OrderStatus) -> String {
    match status {
        OrderStatus::Fulfilled => format!("Your order {id}: your software is ready"),
        OrderStatus::OnHold => format!("Your order {id} is being checked"),
        OrderStatus::Pending => format!("Your order {id}: waiting for your bank transfer"),
        _ => format!("Your order {id}"),
    }
}

impl OrderPlacement {
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
                                .map_err(|_| AppError::Internal("an order's answer could not be encoded"))?;
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
                        .map_err(|_| AppError::Internal("a stored order answer could not be read"));
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

    /// A keyed digest of what a review page showed (the details and the
    /// cart), carried by its pay form: a payment whose cart or details
    /// changed since (in another tab) is sent back to a fresh review
    /// instead of paying for what the buyer did not see.
    pub async fn reviewed_digest(&self, reviewed: &[u8]) -> Result<String, AppError> {
        let secret = self.vault.named_secret("review-tokens").await?;
        Ok(hex::encode(coffer_crypto::keyed_hash(&secret, "reviewed", reviewed)))
    }

    /// Whether a review token is one [`Self::new_review_token`] made.
    pub async fn review_token_issued_here(&self, token: &str) -> Result<bool, AppError> {
        let Some((random, signature)) = token.split_once('.') else { return Ok(false) };
        let secret = self.vault.named_secret("review-tokens").await?;
        Ok(coffer_crypto::link_matches(&secret, &format!("review.{random}"), signature))
    }

    /// Where bank transfers are paid to, when the method is offered.
    pub fn bank_account(&self) -> Option<&coffer_domain::BankAccount> {
        self.bank.as_deref()
    }

    /// The last day to pay a transfer for an order placed at `placed`, as
    /// people write it (`11 December 2026`).
    pub fn pay_by(&self, placed: Millis) -> String {
        coffer_domain::order::long_day_utc(Millis(placed.0 + self.transfer_expiry_ms))
    }

    pub fn policy_version(&self) -> &str {
        &self.policy_version
    }

    /// Everything wrong with an order's form at once, in the form's order
    /// (details, payment, age, consent), each with the field it belongs
    /// to, so a page marks every field in error. The card is checked only
    /// when the request carries one. Empty does not promise a placed order:
    /// the products, the currency and the gateway are checked when quoting
    /// and paying.
    pub fn problems(&self, request: &OrderRequest) -> Vec<OrderError> {
        let mut problems: Vec<OrderError> = request
            .customer
            .problems()
            .into_iter()
            .map(|e| OrderError::new("invalid_customer", Some(e.field), format!("this {}", e.reason)))
            .collect();
        if request.customer.address.is_none() {
            problems.push(OrderError::new("invalid_customer", Some("customer.address"), "the address is required"));
        }
        if let Err(AppError::Order(e)) = self.check_payment_offered(request) {
            problems.push(e);
        }
        if let Some(card) = &request.card {
            let today = coffer_domain::order::year_month(self.clock.now());
            problems.extend(coffer_domain::order::card_problems(
                card.number.expose_secret(),
                card.exp_month,
                card.exp_year,
                card.cvc.expose_secret(),
                today,
            ));
        }
        for check in [self.check_age(request).map(drop), self.check_consent(request)] {
            if let Err(AppError::Order(e)) = check {
                problems.push(e);
            }
        }
        problems
    }

    fn check_payment_offered(&self, request: &OrderRequest) -> Result<(), AppError> {
        if request.payment_method == PaymentMethod::BankTransfer && self.bank.is_none() {
            return Err(bad(
                "payment_method_unavailable",
                "payment_method",
                "bank transfer is not offered by this shop; please pay by card",
            ));
        }
        Ok(())
    }

    fn check_consent_and_age(&self, request: &OrderRequest) -> Result<Option<String>, AppError> {
        self.check_consent(request)?;
        self.check_age(request)
    }

    fn check_consent(&self, request: &OrderRequest) -> Result<(), AppError> {
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
        Ok(())
    }

    fn check_age(&self, request: &OrderRequest) -> Result<Option<String>, AppError> {
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
            let product = match self.catalog.listed_product(&id).await {
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

    /// Everything but the card: consent, age, the customer's details, the
    /// items and the totals with the tax of the customer's country. The
    /// checkout page shows this before asking for payment.
    pub async fn quote(&self, request: &OrderRequest) -> Result<Quote, AppError> {
        self.check_payment_offered(request)?;
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
        // The rate in force today; the order keeps it.
        let tax_rate = self.taxes.rate_on(&address.country, self.clock.now());
        let totals = totals(&amounts, tax_rate);
        Ok(Quote { tax_rate, details, guardian, currency, lines, totals })
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

    /// Validates, pays, stores and delivers one order. Nothing is stored
    /// for a refused order; an approved card whose order is not recorded
    /// is voided (no payment without its order).
    async fn place_unlimited(&self, request: OrderRequest, channel: Channel) -> Result<PlacedOrder, AppError> {
        check_payment_method(request.payment_method, request.card.is_some())?;
        let quote = self.quote(&request).await?;
        let Some(address) = &quote.details.address else { return Err(AppError::NotFound) };
        let now = self.clock.now();
        let payment = self.take_payment(&request, &quote, address, now).await?;
        let placing = Placing { request: &request, channel, quote: &quote, address, payment: &payment, now };
        let recorded = self.record(&placing).await;
        if recorded.is_err()
            && let Some((_, token)) = &payment.card
            && let Err(e) =
                self.gateway.give_back(token, quote.totals.total, quote.currency.code(), &format!("void:{token}")).await
        {
            tracing::error!(error = %e, "an approved payment of an order that was not recorded could not be voided");
        }
        recorded
    }

    /// Screens and pays: the card goes to the gateway and nowhere else; a
    /// bank transfer gets the reference its payer quotes.
    async fn take_payment(
        &self,
        request: &OrderRequest,
        quote: &Quote,
        address: &MailingAddress,
        now: Millis,
    ) -> Result<Payment, AppError> {
        let (Some(card), PaymentMethod::Card) = (&request.card, request.payment_method) else {
            let verdict = self.screen(request, &quote.details, address, None, quote.totals.total).await?;
            let reference = format!("CF-{}", hex::encode(coffer_crypto::random_bytes::<5>()?).to_uppercase());
            return Ok(Payment {
                status: OrderStatus::Pending,
                card: None,
                reference: Some(reference),
                reason: "awaiting the bank transfer",
                verdict,
            });
        };
        let (number, cvc) = (card.number.expose_secret(), card.cvc.expose_secret());
        let summary = check_card(number, card.exp_month, card.exp_year, cvc, year_month(now))?;
        let digits = zeroize::Zeroizing::new(coffer_domain::order::card_digits(number).unwrap_or_default());
        let verdict = self.screen(request, &quote.details, address, Some(&digits), quote.totals.total).await?;
        let answer = self
            .gateway
            .authorize(CardPayment {
                digits: &digits,
                exp_month: summary.exp_month,
                exp_year: summary.exp_year,
                cvc,
                amount_minor: quote.totals.total,
                currency: quote.currency.code(),
            })
            .await?;
        match answer {
            GatewayAnswer::Declined => {
                Err(bad("card_declined", "card.number", "the card was declined; try another card"))
            }
            GatewayAnswer::Approved { token, review } => {
                let (verdict, status, reason) = approved_card_outcome(verdict, review);
                Ok(Payment { status, card: Some((summary, token)), reference: None, reason, verdict })
            }
        }
    }

    /// Records a paid (or awaited) order: its buyer (a new one too), its
    /// sealed details, its delivery and its confirmation email, written as
    /// one unit. Nothing is written before that unit, so starting again
    /// (see [`Again`]) leaves nothing behind but an unused spare key.
    async fn record(&self, placing: &Placing<'_>) -> Result<PlacedOrder, AppError> {
        match self.record_once(placing).await? {
            Ok(placed) => Ok(placed),
            Err(_again) => match self.record_once(placing).await? {
                Ok(placed) => Ok(placed),
                Err(Again::EmailTaken) => Err(AppError::Conflict),
                Err(Again::KeyWindowPassed) => Err(AppError::Internal("a new customer's key expired twice")),
            },
        }
    }

    async fn record_once(&self, placing: &Placing<'_>) -> Result<Result<PlacedOrder, Again>, AppError> {
        let (quote, payment) = (placing.quote, placing.payment);
        let buyer = self.buyer(&quote.details).await?;
        let id = OrderId::generate();
        let fields = self.seal_order_fields(&id, &buyer, placing).await?;
        // Delivery: a signed license key per license-key line, a link per download.
        let delivery = if payment.status == OrderStatus::Fulfilled {
            self.fulfilment.deliver(&id, &buyer.id, &buyer.key_id, &buyer.key, &quote.lines).await?
        } else {
            Delivery::default()
        };
        // The first order of someone without a password invites them to
        // their account (the link lives 7 days, stored only hashed).
        let invitation = if buyer.has_password {
            None
        } else {
            let (token, hash) = coffer_crypto::new_token()?;
            Some((format!("{}/account/link/{token}", self.base_url), hash))
        };
        let email =
            self.confirmation_email(&id, &buyer, placing, &delivery, invitation.as_ref().map(|(l, _)| l)).await?;
        let Delivery { license_keys, sealed_keys, downloads } = delivery;
        let order = self.new_order(&id, &buyer, placing, fields, sealed_keys);
        let new_customer = buyer.new.as_ref().map(|n| (&n.row, &n.audit));
        if let Some(new) = &buyer.new
            && self.clock.now().0 >= new.usable_until.0
        {
            return Ok(Err(Again::KeyWindowPassed));
        }
        if let Err(again) = self.commit(new_customer, &order, &email, invitation.map(|(_, hash)| hash)).await? {
            return Ok(Err(again));
        }
        Ok(Ok(PlacedOrder {
            id,
            status: payment.status,
            currency: quote.currency.code().to_owned(),
            subtotal: quote.totals.subtotal,
            tax: quote.totals.tax,
            total: quote.totals.total,
            payment_reference: payment.reference.clone(),
            bank_account: payment.reference.as_ref().and(self.bank.as_deref().cloned()),
            pay_by: payment.reference.as_ref().map(|_| self.pay_by(self.clock.now())),
            license_keys,
            downloads,
        }))
    }

    /// The buyer: an existing account's history, or a new customer made
    /// here and written with the order. The account's own details are
    /// never changed by an order.
    async fn buyer(&self, details: &CustomerDetails) -> Result<Buyer, AppError> {
        let index = self.vault.blind_index().email(&details.email);
        if let Some((id, key_id, has_password)) = self.db.checkout_customer(&index).await? {
            let key = self.vault.data_key(&key_id).await?.ok_or(AppError::Erased)?;
            return Ok(Buyer { id, key_id, key, has_password, new: None });
        }
        let made = self.customers.new_customer(details, &Actor::System).await?;
        let (id, key_id) = (made.record.id, made.row.data_key_id.clone());
        let new = NewBuyer { row: made.row, audit: made.audit, usable_until: made.usable_until };
        Ok(Buyer { id, key_id, key: made.key, has_password: false, new: Some(new) })
    }

    /// The order's own copy of the buyer's details, sealed under their key;
    /// the gateway token under the operator's payments key.
    async fn seal_order_fields(
        &self,
        id: &OrderId,
        buyer: &Buyer,
        placing: &Placing<'_>,
    ) -> Result<SealedOrderFields, AppError> {
        let (details, address, key) = (&placing.quote.details, placing.address, &buyer.key);
        let ctx = |column: &'static str| FieldContext {
            table: "orders",
            column,
            row_id: id.as_str(),
            data_key_id: buyer.key_id.as_str(),
        };
        let seal = |column: &'static str, plain: &[u8]| seal_field(key, &ctx(column), plain);
        let address_json = serde_json::json!({
            "line1": address.line1, "line2": address.line2, "city": address.city,
            "region": address.region, "postal_code": address.postal_code, "country": address.country,
        })
        .to_string();
        let card = placing.payment.card.as_ref();
        let card_json = card.map(|(s, token)| {
            serde_json::json!({"token": token, "brand": s.brand, "last4": s.last4,
                               "exp_month": s.exp_month, "exp_year": s.exp_year})
            .to_string()
        });
        Ok(SealedOrderFields {
            name: seal("name", details.name.as_bytes())?,
            email: seal("email", details.email.as_bytes())?,
            phone: details.phone.as_ref().map(|p| seal("phone", p.as_bytes())).transpose()?,
            address: seal("address", address_json.as_bytes())?,
            card: card_json.map(|c| seal("card", c.as_bytes())).transpose()?,
            guardian_name: placing.quote.guardian.as_ref().map(|g| seal("guardian_name", g.as_bytes())).transpose()?,
            payment_token: match card {
                Some((_, token)) => Some(self.seal_payment_token(id, token).await?),
                None => None,
            },
        })
    }

    /// The confirmation email, sealed under the buyer's key: what was
    /// bought and what comes next (keys and downloads, the identity upload
    /// of a held order, the bank transfer), and the invitation if any.
    async fn confirmation_email(
        &self,
        id: &OrderId,
        buyer: &Buyer,
        placing: &Placing<'_>,
        delivery: &Delivery,
        invitation: Option<&String>,
    ) -> Result<coffer_store::NewEmail, AppError> {
        let (quote, payment) = (placing.quote, placing.payment);
        let identity = match payment.status {
            OrderStatus::OnHold => Some(self.identity.identity_link(id).await?),
            _ => None,
        };
        let body = order_email_body(&OrderEmail {
            name: &quote.details.name,
            id,
            status: payment.status,
            currency: quote.currency,
            lines: &quote.lines,
            totals: &quote.totals,
            license_keys: &delivery.license_keys,
            downloads: &delivery.downloads,
            payment_reference: payment.reference.as_deref(),
            bank: payment
                .reference
                .as_ref()
                .and(self.bank.as_deref())
                .map(|bank| (bank, self.pay_by(self.clock.now()))),
            invitation: invitation.map(String::as_str),
            identity: identity.as_deref(),
            operator: &self.operator_name,
        });
        let subject = confirmation_subject(id, payment.status);
        let letter = Letter { kind: "order_placed", to: &quote.details.email, subject: &subject, body: &body };
        self.outbox.seal(&letter, &buyer.key, &buyer.key_id, false)
    }

    /// The order row as the store writes it.
    fn new_order(
        &self,
        id: &OrderId,
        buyer: &Buyer,
        placing: &Placing<'_>,
        fields: SealedOrderFields,
        license_keys: Vec<coffer_store::IssuedKey>,
    ) -> NewOrder {
        let (request, quote, payment) = (placing.request, placing.quote, placing.payment);
        let verdict = payment.verdict.as_ref();
        NewOrder {
            id: id.clone(),
            customer_id: buyer.id.clone(),
            data_key_id: buyer.key_id.clone(),
            status: payment.status,
            currency: quote.currency.code().to_owned(),
            subtotal: quote.totals.subtotal,
            tax: quote.totals.tax,
            total: quote.totals.total,
            tax_country: placing.address.country.clone(),
            tax_rate: i64::from(quote.tax_rate),
            payment_method: request.payment_method.as_str(),
            payment_reference: payment.reference.clone(),
            fields,
            adult: request.age.as_ref().is_some_and(|a| a.adult),
            policy_version: self.policy_version.to_string(),
            consent_channel: placing.channel.as_str(),
            fraud_score: i64::from(verdict.map_or(0, |v| v.score)),
            fraud_reasons: verdict.map(|v| v.reasons.join(",")).unwrap_or_default(),
            lines: quote.lines.iter().map(|l| l.line.clone()).collect(),
            license_keys,
            at: placing.now,
            actor: format!("customer:{}", buyer.id),
            reason: payment.reason.to_owned(),
        }
    }

    /// Writes the order with its lines, keys and first event, the audit
    /// entry, the email and the invitation link (if any) in one unit.
    async fn commit(
        &self,
        new_customer: Option<(&coffer_store::NewSealedCustomer, &coffer_domain::AuditEntry)>,
        order: &NewOrder,
        email: &coffer_store::NewEmail,
        invitation: Option<[u8; 32]>,
    ) -> Result<Result<(), Again>, AppError> {
        let (id, customer, now) = (&order.id, &order.customer_id, order.at);
        let entry = crate::request::audit_entry(
            now,
            &Actor::Customer(customer.to_string()),
            AuditAction::OrderPlaced,
            Some(format!("{id} {}", order.status.as_str())),
        );
        let invitation = invitation.map(|token_hash| coffer_store::NewLink {
            token_hash,
            customer: customer.clone(),
            purpose: coffer_store::LinkPurpose::Invitation,
            at: now,
            expires_at: Millis(now.0 + crate::accounts::service::INVITATION_TTL_MS),
        });
        let is_new = new_customer.is_some();
        let placement = coffer_store::order_placement(new_customer, order, &entry, email, invitation.as_ref())?;
        match self.db.write_commands(placement).await {
            Ok(()) => Ok(Ok(())),
            Err(e) if is_new && coffer_store::is_email_taken(&e) => Ok(Err(Again::EmailTaken)),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_goes_only_with_the_card_method() {
        let code = |r: Result<(), AppError>| match r {
            Err(AppError::Order(e)) => Some((e.code, e.field)),
            Err(other) => panic!("{other:?}"),
            Ok(()) => None,
        };
        assert_eq!(code(check_payment_method(PaymentMethod::Card, true)), None);
        assert_eq!(code(check_payment_method(PaymentMethod::BankTransfer, false)), None);
        assert_eq!(
            code(check_payment_method(PaymentMethod::BankTransfer, true)),
            Some(("card_not_allowed", Some("card".into())))
        );
        assert_eq!(code(check_payment_method(PaymentMethod::Card, false)), Some(("card_invalid", Some("card".into()))));
    }

    #[test]
    fn an_approved_card_is_held_when_the_screen_or_the_gateway_asks() {
        let (verdict, status, _) = approved_card_outcome(None, false);
        assert_eq!((verdict, status), (None, OrderStatus::Fulfilled));
        let clean = FraudVerdict { score: 10, reasons: vec!["new_email"], hold: false };
        let (verdict, status, _) = approved_card_outcome(Some(clean.clone()), false);
        assert_eq!((verdict, status), (Some(clean.clone()), OrderStatus::Fulfilled));
        // The gateway's review holds even a clean verdict, and says why.
        let (verdict, status, reason) = approved_card_outcome(Some(clean), true);
        assert_eq!(status, OrderStatus::OnHold);
        assert_eq!(reason, "payment approved; held for a fraud review");
        assert_eq!(verdict, Some(FraudVerdict { score: 10, reasons: vec!["new_email", "gateway_review"], hold: true }));
        let (verdict, status, _) = approved_card_outcome(None, true);
        assert_eq!(status, OrderStatus::OnHold);
        assert_eq!(verdict, Some(FraudVerdict { score: 0, reasons: vec!["gateway_review"], hold: true }));
        let held = FraudVerdict { score: 90, reasons: vec!["velocity_card"], hold: true };
        assert_eq!(approved_card_outcome(Some(held), false).1, OrderStatus::OnHold);
    }

    #[test]
    fn the_subject_says_what_comes_next() {
        let id = OrderId::generate();
        assert_eq!(
            confirmation_subject(&id, OrderStatus::Fulfilled),
            format!("Your order {id}: your software is ready")
        );
        assert_eq!(confirmation_subject(&id, OrderStatus::OnHold), format!("Your order {id} is being checked"));
        assert_eq!(
            confirmation_subject(&id, OrderStatus::Pending),
            format!("Your order {id}: waiting for your bank transfer")
        );
        assert_eq!(confirmation_subject(&id, OrderStatus::Rejected), format!("Your order {id}"));
    }
}
