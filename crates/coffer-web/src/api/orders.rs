//! Checkout over JSON: `POST /api/v1/orders` and the policy it needs.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::parse_json;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_app::checkout::{AgeInput, CardInput, Channel, OrderRequest, PlacedOrder};
use coffer_domain::{CustomerDetails, MailingAddress, PaymentMethod};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    #[schema(example = "USD")]
    currency: String,
    items: Vec<ItemBody>,
    customer: CustomerBody,
    /// `card` (the default) or `bank_transfer` (then send no `card`).
    #[serde(default)]
    payment_method: Option<String>,
    #[serde(default)]
    card: Option<CardBody>,
    #[serde(default)]
    consent: Option<ConsentBody>,
    #[serde(default)]
    age: Option<AgeBody>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    product_id: String,
    quantity: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CustomerBody {
    name: String,
    email: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    address: Option<AddressBody>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddressBody {
    line1: String,
    #[serde(default)]
    line2: String,
    city: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    postal_code: String,
    /// ISO 3166-1 alpha-2.
    country: String,
}

/// Goes to the payment gateway only; never stored, logged or echoed.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CardBody {
    #[schema(value_type = String, example = "4242 4242 4242 4242")]
    number: SecretString,
    exp_month: i64,
    exp_year: i64,
    #[schema(value_type = String, example = "123")]
    cvc: SecretString,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    /// The `version` of `GET /api/v1/privacy-policy`.
    privacy_policy_version: String,
    accepted: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AgeBody {
    adult: bool,
    #[serde(default)]
    guardian_name: Option<String>,
    /// The guardian is present, consents, and takes responsibility for the data.
    #[serde(default)]
    guardian_consents: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LicenseKeyView {
    product_id: String,
    key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DownloadView {
    product_id: String,
    url: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderView {
    #[schema(example = "ord_0193c0de5a6b7c8d9e0f1a2b3c4d5e6f")]
    id: String,
    /// `fulfilled`, `on_hold`, `pending` (bank transfer) or `paid`.
    status: &'static str,
    currency: String,
    subtotal: i64,
    tax: i64,
    total: i64,
    /// For a bank transfer: the reference to quote with the payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_reference: Option<String>,
    /// For a bank transfer: the operator's account to pay into.
    #[serde(skip_serializing_if = "Option::is_none")]
    bank_account: Option<BankAccountView>,
    /// For a bank transfer: the last day to pay (`11 December 2026`, UTC);
    /// the order is cancelled after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pay_by: Option<String>,
    license_keys: Vec<LicenseKeyView>,
    downloads: Vec<DownloadView>,
}

/// Where a bank transfer is paid to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BankAccountView {
    holder: String,
    /// Paper format, in groups of four.
    #[schema(example = "DE89 3704 0044 0532 0130 00")]
    iban: String,
    #[schema(example = "COBADEFFXXX")]
    bic: String,
}

/// Places an order (no sign-in needed). Card details go to the payment
/// gateway only; what is kept is the gateway's token, the brand, the last
/// four digits and the expiry, encrypted. With an `Idempotency-Key` header
/// a repeat of the same request answers as the first did (one order), and
/// the same key with another body is `422 idempotency_key_reused`.
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "checkout",
    request_body = OrderBody,
    responses(
        (status = 201, description = "The order, with license keys when delivered", body = OrderView),
        (status = 400, description = "`invalid_json`: the body is not JSON", body = ErrorBody),
        (status = 402, description = "`card_declined`", body = ErrorBody),
        (status = 409, description = "`idempotency_in_progress`: the same key is still being processed", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send `application/json`", body = ErrorBody),
        (status = 422, description = "`consent_required`, `age_attestation_required`, `unknown_product`, \
            `currency_not_offered`, `card_invalid`, `card_expired`, `card_not_allowed`, `payment_method_unavailable`, `invalid_customer`, ...",
            body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many orders from this address \
            (`http.orders_per_minute`), or too many failed payments from this address, email or card; \
            `Retry-After` says when to try again", body = ErrorBody)
    )
)]
pub async fn create_order(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let client_ip = crate::client_ip::client_ip(peer.ip(), &headers, &state.trusted_proxies);
    if let Some(limit) = &state.order_limit
        && let Err(seconds) = crate::limits::spend_address(limit, client_ip)
    {
        return ApiError::too_many_attempts(i64::try_from(seconds).unwrap_or(60) * 1000).into_response();
    }
    let body: OrderBody = match parse_json(&headers, &raw) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let request = match payment_method(body.payment_method.as_deref()) {
        Ok(method) => body.into_request(method, client_ip),
        Err(e) => return e.into_response(),
    };
    match place(&state, &headers, &raw, request).await {
        Ok(order) => (StatusCode::CREATED, Json(OrderView::from(order))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The payment method named in the body; a card when none is.
fn payment_method(named: Option<&str>) -> Result<PaymentMethod, ApiError> {
    let Some(named) = named else { return Ok(PaymentMethod::Card) };
    PaymentMethod::parse(named).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payment_method",
            "payment_method is card or bank_transfer",
        )
        .with_field("payment_method")
    })
}

impl OrderBody {
    /// The order as checkout takes it.
    fn into_request(self, payment_method: PaymentMethod, client_ip: std::net::IpAddr) -> OrderRequest {
        OrderRequest {
            currency: self.currency,
            items: self.items.into_iter().map(|i| (i.product_id, i.quantity)).collect(),
            customer: CustomerDetails {
                name: self.customer.name,
                email: self.customer.email,
                phone: self.customer.phone.filter(|p| !p.trim().is_empty()),
                address: self.customer.address.map(|a| MailingAddress {
                    line1: a.line1,
                    line2: a.line2,
                    city: a.city,
                    region: a.region,
                    postal_code: a.postal_code,
                    country: a.country,
                }),
            },
            payment_method,
            card: self.card.map(|c| CardInput {
                number: c.number,
                exp_month: c.exp_month,
                exp_year: c.exp_year,
                cvc: c.cvc,
            }),
            consent: self.consent.map(|c| (c.privacy_policy_version, c.accepted)),
            age: self.age.map(|a| AgeInput {
                adult: a.adult,
                guardian_name: a.guardian_name,
                guardian_consents: a.guardian_consents,
            }),
            client_ip: Some(client_ip),
        }
    }
}

/// Places the order, at most once per `Idempotency-Key` when one is sent.
async fn place(
    state: &AppState,
    headers: &HeaderMap,
    raw: &[u8],
    request: OrderRequest,
) -> Result<PlacedOrder, ApiError> {
    let placement = state.checkout.placement();
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(placement.place(request, Channel::Api).await?);
    };
    let Ok(key) = key.to_str() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "the key must be printable ASCII",
        )
        .with_field("Idempotency-Key"));
    };
    Ok(placement.place_once(key, &body_without_card(raw), request, Channel::Api).await?)
}

/// The body an idempotency key is bound to: the JSON without its card, so
/// a retry compares equal without the card ever being hashed or kept here.
fn body_without_card(raw: &[u8]) -> Vec<u8> {
    let mut without_card: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
    if let Some(object) = without_card.as_object_mut() {
        object.remove("card");
    }
    serde_json::to_vec(&without_card).unwrap_or_default()
}

impl From<PlacedOrder> for OrderView {
    fn from(order: PlacedOrder) -> Self {
        OrderView {
            id: order.id.to_string(),
            status: order.status.as_str(),
            currency: order.currency,
            subtotal: order.subtotal,
            tax: order.tax,
            total: order.total,
            payment_reference: order.payment_reference,
            bank_account: order.bank_account.map(|b| BankAccountView { holder: b.holder, iban: b.iban, bic: b.bic }),
            pay_by: order.pay_by,
            license_keys: order
                .license_keys
                .into_iter()
                .map(|(product, key)| LicenseKeyView { product_id: product.to_string(), key })
                .collect(),
            downloads: order
                .downloads
                .into_iter()
                .map(|(product, url)| DownloadView { product_id: product.to_string(), url })
                .collect(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    /// Send this as `consent.privacy_policy_version` with an order.
    version: String,
    html: String,
}

/// The current privacy policy.
#[utoipa::path(
    get,
    path = "/api/v1/privacy-policy",
    tag = "checkout",
    responses((status = 200, description = "The current version and its text", body = PolicyView))
)]
pub async fn privacy_policy(State(state): State<AppState>) -> Json<PolicyView> {
    Json(PolicyView { version: state.policy.version.clone(), html: state.policy.html.clone() })
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn a_card_unless_another_method_is_named() {
        assert_eq!(payment_method(None).unwrap(), PaymentMethod::Card);
        assert_eq!(payment_method(Some("bank_transfer")).unwrap(), PaymentMethod::BankTransfer);
        let refused = payment_method(Some("cash")).unwrap_err();
        assert_eq!((refused.status, refused.code), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_payment_method"));
        assert_eq!(refused.field.as_deref(), Some("payment_method"));
    }

    #[test]
    fn the_idempotency_body_leaves_the_card_out() {
        let with_card = br#"{"currency":"USD","card":{"number":"4242424242424242"},"items":[]}"#;
        let without = br#"{"currency":"USD","items":[]}"#;
        assert_eq!(body_without_card(with_card), body_without_card(without));
        assert!(!String::from_utf8(body_without_card(with_card)).unwrap().contains("4242"));
        assert_eq!(body_without_card(b"not json"), b"null");
    }
}
