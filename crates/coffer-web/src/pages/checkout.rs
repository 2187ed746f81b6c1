//! The cart and the checkout pages, without JavaScript: the cart lives in
//! a cookie of product ids and quantities (no personal data); the details
//! form leads to a review page that shows price, tax and total before the
//! card is asked for; paying leads to the confirmation with the keys and
//! downloads. Forms are checked for a same-origin request.

use super::account::{same_origin, see_other, with_cookie};
use super::{render, sentence};
use crate::AppState;
use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use coffer_app::AppError;
use coffer_app::checkout::{AgeInput, CardInput, Channel, OrderRequest};
use coffer_domain::{CustomerDetails, PaymentMethod, ProductId};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;

const CART_COOKIE: &str = crate::cookies::CART.name;
/// The most distinct products a cart holds.
const CART_MAX: usize = 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cart", post(add_to_cart))
        .route("/cart/remove", post(remove_from_cart))
        .route("/checkout", get(checkout_page))
        .route("/checkout/review", post(review))
        .route("/checkout/pay", post(pay))
        .layer(axum::middleware::map_response(super::account::no_store))
}

/// The cart cookie: `prd_…:2|prd_…:1`. Anything unreadable is dropped.
fn cart(state: &AppState, headers: &HeaderMap) -> Vec<(ProductId, i64)> {
    let raw = super::account::cookie_value(state, headers, CART_COOKIE).unwrap_or_default();
    raw.split('|')
        .filter_map(|item| {
            let (id, quantity) = item.split_once(':')?;
            let quantity: i64 =
                quantity.parse().ok().filter(|q| (1..=coffer_domain::order::MAX_QUANTITY).contains(q))?;
            Some((ProductId::parse(id).ok()?, quantity))
        })
        .take(CART_MAX)
        .collect()
}

fn cart_cookie(state: &AppState, items: &[(ProductId, i64)]) -> String {
    if items.is_empty() {
        return state.cookie_rule.clear_cookie(CART_COOKIE);
    }
    let value: Vec<String> = items.iter().map(|(id, q)| format!("{id}:{q}")).collect();
    state.cookie_rule.set_cookie(CART_COOKIE, &value.join("|"))
}

#[derive(Deserialize)]
struct CartForm {
    product_id: String,
    #[serde(default)]
    quantity: Option<String>,
    #[serde(default)]
    form_token: String,
}

async fn add_to_cart(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CartForm>) -> Response {
    if !same_origin(&headers) || !super::forms::form_token_ok(&form.form_token) {
        return super::account::forbidden();
    }
    let quantity: i64 = form.quantity.as_deref().unwrap_or("1").trim().parse().unwrap_or(0);
    let Ok(id) = ProductId::parse(&form.product_id) else { return see_other("/checkout") };
    if !(1..=coffer_domain::order::MAX_QUANTITY).contains(&quantity) || state.catalog.product(&id).await.is_err() {
        return see_other("/checkout");
    }
    let mut items = cart(&state, &headers);
    match items.iter().position(|(p, _)| *p == id) {
        Some(at) => items[at].1 = (items[at].1 + quantity).min(coffer_domain::order::MAX_QUANTITY),
        None if items.len() < CART_MAX => items.push((id, quantity)),
        None => {}
    }
    with_cookie(see_other("/checkout"), &cart_cookie(&state, &items))
}

async fn remove_from_cart(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CartForm>) -> Response {
    if !same_origin(&headers) || !super::forms::form_token_ok(&form.form_token) {
        return super::account::forbidden();
    }
    let items: Vec<_> = cart(&state, &headers).into_iter().filter(|(p, _)| p.as_str() != form.product_id).collect();
    with_cookie(see_other("/checkout"), &cart_cookie(&state, &items))
}

/// Every field of the details form (and, when paying, the card).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct CheckoutForm {
    currency: String,
    name: String,
    email: String,
    phone: String,
    #[serde(flatten)]
    address: super::AddressFields,
    payment_method: String,
    age: String,
    guardian_name: String,
    guardian_consents: String,
    consent: String,
    /// Only ever handed to the gateway; redacted in `Debug`, wiped on drop.
    card_number: Option<SecretString>,
    exp_month: String,
    exp_year: String,
    cvc: Option<SecretString>,
    /// One-time token of the review page: the order's idempotency key, so
    /// a second submit of the same review (a double click, a reload)
    /// answers with the first order instead of paying again.
    review_token: String,
    /// The details form's anti-forgery token (see `forms`).
    form_token: String,
}

impl CheckoutForm {
    /// The fields carried from the review page to payment, never the card.
    fn hidden(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("currency", self.currency.clone()),
            ("name", self.name.clone()),
            ("email", self.email.clone()),
            ("phone", self.phone.clone()),
        ];
        fields.extend(self.address.named());
        fields.extend([
            ("payment_method", self.payment_method.clone()),
            ("age", self.age.clone()),
            ("guardian_name", self.guardian_name.clone()),
            ("guardian_consents", self.guardian_consents.clone()),
            ("consent", self.consent.clone()),
        ]);
        fields
    }

    fn payment_method(&self) -> PaymentMethod {
        PaymentMethod::parse(&self.payment_method).unwrap_or(PaymentMethod::Card)
    }

    fn request(
        &self,
        items: &[(ProductId, i64)],
        with_card: bool,
        client_ip: Option<std::net::IpAddr>,
    ) -> OrderRequest {
        let secret = |s: &Option<SecretString>| {
            SecretString::from(s.as_ref().map(|s| s.expose_secret().trim().to_owned()).unwrap_or_default())
        };
        let card = (with_card && self.payment_method() == PaymentMethod::Card).then(|| CardInput {
            number: secret(&self.card_number),
            exp_month: self.exp_month.trim().parse().unwrap_or(0),
            exp_year: self.exp_year.trim().parse().unwrap_or(0),
            cvc: secret(&self.cvc),
        });
        let age = match self.age.as_str() {
            "adult" => Some(AgeInput { adult: true, guardian_name: None, guardian_consents: false }),
            "guardian" => Some(AgeInput {
                adult: false,
                guardian_name: Some(self.guardian_name.clone()),
                guardian_consents: self.guardian_consents == "yes",
            }),
            _ => None,
        };
        OrderRequest {
            currency: self.currency.clone(),
            items: items.iter().map(|(id, q)| (id.to_string(), *q)).collect(),
            customer: CustomerDetails {
                name: self.name.clone(),
                email: self.email.clone(),
                phone: Some(self.phone.clone()).filter(|p| !p.trim().is_empty()),
                address: Some(self.address.address()),
            },
            payment_method: self.payment_method(),
            card,
            consent: (!self.consent.is_empty()).then(|| (self.consent.clone(), true)),
            age,
            client_ip,
        }
    }
}

struct FieldView {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    autocomplete: &'static str,
    max: u32,
    value: String,
    required: bool,
    error: Option<String>,
}

struct CartLine {
    product_id: String,
    name: String,
    vendor: String,
    quantity: i64,
    price: String,
}

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage {
    message: Option<String>,
    cart: Vec<CartLine>,
    /// (code, selected)
    currencies: Vec<(String, bool)>,
    form: CheckoutForm,
    fields: Vec<FieldView>,
    policy_version: String,
    /// Whether bank transfer is offered (an account is configured).
    bank_offered: bool,
    age_error: Option<String>,
    consent_error: Option<String>,
}

struct ReviewLine {
    name: String,
    quantity: i64,
    price: String,
}

#[derive(Template)]
#[template(path = "checkout_review.html")]
struct ReviewPage {
    message: Option<String>,
    lines: Vec<ReviewLine>,
    subtotal: String,
    tax_label: String,
    tax: String,
    total: String,
    /// The buyer's name, email and address lines, to check before paying.
    billed_name: String,
    billed_email: String,
    billed_address: Vec<String>,
    operator: String,
    hidden: Vec<(&'static str, String)>,
    review_token: String,
    card: bool,
}

#[derive(Template)]
#[template(path = "checkout_done.html")]
struct DonePage {
    id: String,
    total: String,
    status_text: &'static str,
    payment_reference: Option<String>,
    bank_account: Option<coffer_domain::BankAccount>,
    pay_by: Option<String>,
    keys: Vec<(String, String)>,
    downloads: Vec<(String, String)>,
}

/// What went wrong, placed where the person will look: beside the field,
/// or at the top of the form.
#[derive(Default)]
struct Problems {
    message: Option<String>,
    field: Option<(String, String)>,
    age: Option<String>,
    consent: Option<String>,
}

fn problems(error: &AppError) -> Problems {
    match error {
        AppError::Customer(e) => {
            let input = e.field.rsplit('.').next().unwrap_or_default();
            let input = if input == "address" { "line1" } else { input };
            Problems { field: Some((input.to_owned(), format!("This {}.", e.reason))), ..Problems::default() }
        }
        AppError::Order(e) => {
            let field = e.field.clone().unwrap_or_default();
            let text = sentence(&e.message);
            if field.starts_with("age") {
                Problems { age: Some(text), ..Problems::default() }
            } else if field.starts_with("consent") {
                Problems { consent: Some(text), ..Problems::default() }
            } else {
                Problems { message: Some(text), ..Problems::default() }
            }
        }
        _ => Problems { message: Some("Something went wrong; please try again.".into()), ..Problems::default() },
    }
}

async fn checkout_form(
    state: &AppState,
    items: &[(ProductId, i64)],
    mut form: CheckoutForm,
    problems: Problems,
) -> Result<CheckoutPage, AppError> {
    let priced = state.catalog.cart(items, &form.currency).await?;
    form.currency = priced.currency.map(|c| c.code().to_owned()).unwrap_or_default();
    let cart = priced
        .lines
        .iter()
        .map(|(product, quantity)| CartLine {
            product_id: product.id.to_string(),
            name: product.name.clone(),
            vendor: product.vendor_name.clone(),
            quantity: *quantity,
            price: priced.price(product).map_or_else(|| "not sold in this currency".into(), |m| m.to_string()),
        })
        .collect();
    let error_for = |name: &str| problems.field.as_ref().filter(|(f, _)| f == name).map(|(_, e)| e.clone());
    let field = |name, label, kind, autocomplete, max, value: &str, required| FieldView {
        name,
        label,
        kind,
        autocomplete,
        max,
        value: value.to_owned(),
        required,
        error: error_for(name),
    };
    let fields = vec![
        field("name", "Full name", "text", "name", 200, &form.name, true),
        field("email", "Email address", "email", "email", 254, &form.email, true),
        field("phone", "Phone number (optional)", "tel", "tel", 32, &form.phone, false),
        field("line1", "Address", "text", "address-line1", 200, &form.address.line1, true),
        field("line2", "Address, second line (optional)", "text", "address-line2", 200, &form.address.line2, false),
        field("city", "City", "text", "address-level2", 100, &form.address.city, true),
        field("region", "State or region (optional)", "text", "address-level1", 100, &form.address.region, false),
        field("postal_code", "Postal code", "text", "postal-code", 20, &form.address.postal_code, false),
        field("country", "Country", "country", "country", 2, &form.address.country, true),
    ];
    let currencies = priced.currencies.iter().map(|c| (c.code().to_owned(), Some(*c) == priced.currency)).collect();
    Ok(CheckoutPage {
        message: problems.message,
        cart,
        currencies,
        form,
        fields,
        policy_version: state.checkout.placement().policy_version().to_owned(),
        bank_offered: state.checkout.placement().bank_account().is_some(),
        age_error: problems.age,
        consent_error: problems.consent,
    })
}

fn failure(e: AppError) -> Response {
    tracing::error!(error = %e, "checkout page failed");
    super::error_page(StatusCode::INTERNAL_SERVER_ERROR)
}

#[derive(Deserialize)]
struct CurrencyQuery {
    #[serde(default)]
    currency: String,
}

async fn checkout_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CurrencyQuery>,
) -> Response {
    let items = cart(&state, &headers);
    // No age answer is chosen for the buyer (P16): the form is refused until
    // they pick one themselves.
    let form = CheckoutForm { currency: query.currency, ..CheckoutForm::default() };
    match checkout_form(&state, &items, form, Problems::default()).await {
        Ok(page) => render(&page),
        Err(e) => failure(e),
    }
}

async fn review_page(
    state: &AppState,
    items: &[(ProductId, i64)],
    form: &CheckoutForm,
    message: Option<String>,
) -> Result<Result<ReviewPage, AppError>, AppError> {
    let quote = match state.checkout.placement().quote(&form.request(items, false, None)).await {
        Ok(quote) => quote,
        Err(e @ (AppError::Customer(_) | AppError::Order(_))) => return Ok(Err(e)),
        Err(e) => return Err(e),
    };
    let mut lines = Vec::new();
    for priced in &quote.lines {
        let name = priced.name.clone();
        lines.push(ReviewLine {
            name,
            quantity: priced.line.quantity,
            price: quote.currency.amount(priced.line.line_total),
        });
    }
    let country = quote.details.address.as_ref().map(|a| a.country.as_str()).unwrap_or_default();
    let tax_label = super::tax_label(country, quote.tax_rate);
    Ok(Ok(ReviewPage {
        message,
        lines,
        subtotal: quote.currency.amount(quote.totals.subtotal),
        tax_label,
        tax: quote.currency.amount(quote.totals.tax),
        total: quote.currency.amount(quote.totals.total),
        billed_name: quote.details.name.clone(),
        billed_email: quote.details.email.clone(),
        billed_address: quote.details.address.as_ref().map(coffer_domain::MailingAddress::lines).unwrap_or_default(),
        operator: state.operator_name.to_string(),
        hidden: form.hidden(),
        review_token: state.checkout.placement().new_review_token().await?,
        card: form.payment_method() == PaymentMethod::Card,
    }))
}

async fn back_to_form(state: &AppState, items: &[(ProductId, i64)], form: CheckoutForm, error: &AppError) -> Response {
    let mut form = form;
    form.card_number = None;
    form.cvc = None;
    match checkout_form(state, items, form, problems(error)).await {
        Ok(page) => (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response(),
        Err(e) => failure(e),
    }
}

async fn review(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CheckoutForm>) -> Response {
    if !same_origin(&headers) || !super::forms::form_token_ok(&form.form_token) {
        return super::account::forbidden();
    }
    let items = cart(&state, &headers);
    if items.is_empty() {
        return see_other("/checkout");
    }
    match review_page(&state, &items, &form, None).await {
        Ok(Ok(page)) => render(&page),
        Ok(Err(e)) => back_to_form(&state, &items, form, &e).await,
        Err(e) => failure(e),
    }
}

async fn pay(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<CheckoutForm>,
) -> Response {
    if !same_origin(&headers) {
        return super::account::forbidden();
    }
    // Order attempts per client address, as on the API.
    let ip = crate::client_ip::client_ip(peer.ip(), &headers, &state.trusted_proxies);
    if let Some(limit) = &state.order_limit
        && let Err(seconds) = crate::limits::spend_address(limit, ip)
    {
        return super::account::network_limited(seconds);
    }
    let items = cart(&state, &headers);
    if items.is_empty() {
        return see_other("/checkout");
    }
    let issued_here = form.review_token.len() <= 200
        && matches!(state.checkout.placement().review_token_issued_here(&form.review_token).await, Ok(true));
    if !issued_here {
        // Payment comes only from a review page, which carries the token.
        return match review_page(&state, &items, &form, Some("Check your order, then pay.".into())).await {
            Ok(Ok(page)) => (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response(),
            Ok(Err(e)) => back_to_form(&state, &items, form, &e).await,
            Err(e) => failure(e),
        };
    }
    // The review's fields and the cart make the body the token is bound to.
    let cart_lines: Vec<(String, i64)> = items.iter().map(|(id, q)| (id.to_string(), *q)).collect();
    let body = serde_json::to_vec(&(form.hidden(), cart_lines)).unwrap_or_default();
    let key = format!("review:{}", form.review_token);
    let request = form.request(&items, true, Some(ip));
    match state.checkout.placement().place_once(&key, &body, request, Channel::Web).await {
        Ok(order) => with_cookie(render(&done_page(&state, order).await), &cart_cookie(&state, &[])),
        Err(e) => payment_refused(&state, &items, form, e).await,
    }
}

/// What the buyer sees once the order is placed.
async fn done_page(state: &AppState, order: coffer_app::checkout::PlacedOrder) -> DonePage {
    let currency = coffer_domain::Currency::parse(&order.currency).ok();
    let mut named = Vec::new();
    for (product, value) in order.license_keys.iter().chain(order.downloads.iter()) {
        let name = state.catalog.product(product).await.map(|p| p.name).unwrap_or_default();
        named.push((name, value.clone()));
    }
    let downloads = named.split_off(order.license_keys.len());
    DonePage {
        id: order.id.to_string(),
        total: currency.map(|c| c.amount(order.total)).unwrap_or_default(),
        status_text: placed_status_text(order.status),
        payment_reference: order.payment_reference,
        bank_account: order.bank_account,
        pay_by: order.pay_by,
        keys: named,
        downloads,
    }
}

/// What happens next with a placed order, in words.
fn placed_status_text(status: coffer_domain::OrderStatus) -> &'static str {
    match status {
        coffer_domain::OrderStatus::Fulfilled => "Paid and delivered. A confirmation is on its way by email.",
        coffer_domain::OrderStatus::OnHold => {
            "Paid, and held for a short check before delivery. We email you as soon as it is done."
        }
        coffer_domain::OrderStatus::Pending => "Waiting for your bank transfer.",
        _ => "Received.",
    }
}

/// The answer to a payment that placed no order: card problems back on the
/// review page, mistakes in the details back on the form, a repeat or a
/// spent limit on a page of its own.
async fn payment_refused(
    state: &AppState,
    items: &[(ProductId, i64)],
    form: CheckoutForm,
    error: AppError,
) -> Response {
    match error {
        // Card problems: back to the review page, the card fields empty.
        AppError::Order(e) if e.field.as_deref().is_some_and(|f| f.starts_with("card")) => {
            let status =
                if e.code == "card_declined" { StatusCode::PAYMENT_REQUIRED } else { StatusCode::UNPROCESSABLE_ENTITY };
            match review_page(state, items, &form, Some(sentence(&e.message))).await {
                Ok(Ok(page)) => (status, render(&page)).into_response(),
                Ok(Err(e)) => back_to_form(state, items, form, &e).await,
                Err(e) => failure(e),
            }
        }
        // The same review sent again with other details or another card.
        AppError::Order(e) if e.code == "idempotency_key_reused" => {
            let page = super::account::MessagePage {
                title: "Order already placed",
                message: "This order was already placed from this page; its confirmation is in your email. \
                          To buy again, start from the cart."
                    .into(),
            };
            (StatusCode::CONFLICT, render(&page)).into_response()
        }
        AppError::TooManyAttempts { retry_after_ms } => {
            let seconds = super::account::retry_seconds(retry_after_ms);
            let page = super::account::MessagePage {
                title: "Too many failed payments",
                message: format!(
                    "Too many payments failed lately from your network, this email address or this card. \
                     Try again in {} minutes.",
                    seconds.div_ceil(60)
                ),
            };
            super::account::too_many_attempts(seconds, &page)
        }
        // A repeat of a review whose buyer has since been erased: the first
        // order cannot be shown again.
        AppError::Erased => {
            let page = super::account::MessagePage {
                title: "Order already placed",
                message: "This order was already placed and can no longer be shown here.".into(),
            };
            (StatusCode::GONE, render(&page)).into_response()
        }
        e @ (AppError::Customer(_) | AppError::Order(_)) => back_to_form(state, items, form, &e).await,
        e => failure(e),
    }
}

#[cfg(test)]
mod pay_tests {
    use super::*;
    use coffer_domain::OrderStatus;

    #[test]
    fn the_done_page_says_what_comes_next() {
        assert!(placed_status_text(OrderStatus::Fulfilled).starts_with("Paid and delivered"));
        assert!(placed_status_text(OrderStatus::OnHold).starts_with("Paid, and held"));
        assert_eq!(placed_status_text(OrderStatus::Pending), "Waiting for your bank transfer.");
        assert_eq!(placed_status_text(OrderStatus::Paid), "Received.");
    }

    #[tokio::test]
    async fn the_form_reads_its_address_and_carries_it_on_without_the_card() {
        use axum::extract::FromRequest;
        let body = "currency=EUR&name=Ada&email=ada%40example.org&line1=1+Main+St&city=Berlin&country=DE\
                    &postal_code=10115&card_number=4242424242424242&cvc=123&exp_month=12&consent=v1";
        let request = axum::http::Request::post("/checkout/review")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body))
            .unwrap();
        let axum::Form(form) = axum::Form::<CheckoutForm>::from_request(request, &()).await.unwrap();
        assert_eq!((form.address.line1.as_str(), form.address.country.as_str()), ("1 Main St", "DE"));
        assert_eq!(form.address.line2, "", "a field not sent is empty");
        assert_eq!(form.card_number.as_ref().map(|c| c.expose_secret().len()), Some(16));
        let hidden = form.hidden();
        assert!(hidden.contains(&("postal_code", "10115".to_owned())) && hidden.contains(&("city", "Berlin".into())));
        assert!(hidden.iter().all(|(name, _)| !["card_number", "cvc"].contains(name)), "never the card");
        let address = form.request(&[], true, None).customer.address.unwrap();
        assert_eq!((address.city.as_str(), address.postal_code.as_str()), ("Berlin", "10115"));
    }
}
