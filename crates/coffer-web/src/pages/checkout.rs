//! The cart and the checkout pages, without JavaScript. The cart lives in
//! a cookie of product ids and quantities (no personal data). What the
//! buyer types is kept on our side, sealed, as a draft found by a cookie
//! token (`coffer_app::checkout` drafts): the one checkout form (cart
//! quantities, currency, details) is posted, saved and answered with a
//! redirect, so nothing typed is lost and every page can be reloaded. The
//! review page shows price, tax and total before the card is asked for;
//! paying redirects to the confirmation at its own address. Every error is
//! shown at once, beside its field, with a summary at the top.

use super::account::{same_origin, see_other, with_cookie};
use super::{render, sentence};
use crate::AppState;
use askama::Template;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use coffer_app::AppError;
use coffer_app::checkout::{AgeInput, CardInput, Channel, OrderRequest};
use coffer_domain::{CustomerDetails, OrderError, PaymentMethod, ProductId};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

const CART_COOKIE: &str = crate::cookies::CART.name;
const DRAFT_COOKIE: &str = crate::cookies::CHECKOUT.name;
/// The most distinct products a cart holds.
const CART_MAX: usize = 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/cart", post(add_to_cart))
        .route("/checkout", get(checkout_page).post(checkout_post))
        .route("/checkout/review", get(review_get))
        .route("/checkout/pay", post(pay))
        .route("/checkout/done/{token}", get(done_get))
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

/// "Add to cart" on a product page.
async fn add_to_cart(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CartForm>) -> Response {
    if !same_origin(&headers) || !super::forms::form_token_ok(&form.form_token) {
        return super::account::forbidden();
    }
    let quantity: i64 = form.quantity.as_deref().unwrap_or("1").trim().parse().unwrap_or(0);
    let Ok(id) = ProductId::parse(&form.product_id) else { return see_other("/checkout") };
    if !(1..=coffer_domain::order::MAX_QUANTITY).contains(&quantity) || state.catalog.listed_product(&id).await.is_err()
    {
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

/// What the buyer typed, kept between pages (sealed on our side, see the
/// module): never the card number or security code.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Draft {
    currency: String,
    name: String,
    email: String,
    phone: String,
    address: super::AddressFields,
    payment_method: String,
    age: String,
    guardian_name: String,
    guardian_consents: String,
    consent: String,
    /// The card's expiry, kept after a card error (the number and code never are).
    exp_month: String,
    exp_year: String,
    /// What to show on the next page: (form field, message).
    problems: Vec<(String, String)>,
    /// A message at the top of the next page (a declined card, a cart change).
    notice: Option<String>,
}

impl Draft {
    fn payment_method(&self) -> PaymentMethod {
        PaymentMethod::parse(&self.payment_method).unwrap_or(PaymentMethod::Card)
    }

    /// The details as an order request; `card` only when paying by card.
    fn request(
        &self,
        items: &[(ProductId, i64)],
        card: Option<CardInput>,
        ip: Option<std::net::IpAddr>,
    ) -> OrderRequest {
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
            card: card.filter(|_| self.payment_method() == PaymentMethod::Card),
            consent: (!self.consent.is_empty()).then(|| (self.consent.clone(), true)),
            age,
            client_ip: ip,
        }
    }

    /// What a payment is bound to with the cart (see `pay`): the details,
    /// without the problems and notices of earlier pages.
    fn details_only(&self) -> Draft {
        Draft { problems: Vec::new(), notice: None, exp_month: String::new(), exp_year: String::new(), ..self.clone() }
    }

    fn problem(&self, field: &str) -> Option<String> {
        self.problems.iter().find(|(f, _)| f == field).map(|(_, m)| m.clone())
    }
}

/// The one checkout form: the cart's quantities, the currency, the
/// details, and which button was pressed.
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
    /// `review` (also the Enter key), `update` (the cart) or `prices`
    /// (the currency).
    action: String,
    /// A line's Remove button: its product id.
    remove: String,
    /// The details form's anti-forgery token (see `forms`).
    form_token: String,
    /// The rest: `qty_<product id>` quantities.
    #[serde(flatten)]
    rest: BTreeMap<String, String>,
}

/// A field as kept in a draft: no longer than any form field may be (the
/// checks that follow say what is wrong with it), so a draft stays small.
fn clip(text: String) -> String {
    if text.chars().count() <= 300 { text } else { text.chars().take(300).collect() }
}

impl CheckoutForm {
    fn into_draft(self, earlier: &Draft) -> Draft {
        let a = self.address;
        Draft {
            currency: clip(self.currency),
            name: clip(self.name),
            email: clip(self.email),
            phone: clip(self.phone),
            address: super::AddressFields {
                line1: clip(a.line1),
                line2: clip(a.line2),
                city: clip(a.city),
                region: clip(a.region),
                postal_code: clip(a.postal_code),
                country: clip(a.country),
            },
            payment_method: clip(self.payment_method),
            age: clip(self.age),
            guardian_name: clip(self.guardian_name),
            guardian_consents: clip(self.guardian_consents),
            consent: clip(self.consent),
            exp_month: earlier.exp_month.clone(),
            exp_year: earlier.exp_year.clone(),
            problems: Vec::new(),
            notice: None,
        }
    }
}

/// The pay form: the review's token and, for a card, the card.
#[derive(Default, Deserialize)]
#[serde(default)]
struct PayForm {
    /// Only ever handed to the gateway; redacted in `Debug`, wiped on drop.
    card_number: Option<SecretString>,
    exp_month: String,
    exp_year: String,
    cvc: Option<SecretString>,
    /// One-time token of the review page: the order's idempotency key, so
    /// a second submit of the same review (a double click, a reload)
    /// answers with the first order instead of paying again, and the
    /// address of its confirmation.
    review_token: String,
    /// The digest of what the review showed (`reviewed_digest`).
    reviewed: String,
}

/// What a payment is bound to: the details and the cart as reviewed.
fn reviewed_body(draft: &Draft, items: &[(ProductId, i64)]) -> Vec<u8> {
    let cart_lines: Vec<(String, i64)> = items.iter().map(|(id, q)| (id.to_string(), *q)).collect();
    serde_json::to_vec(&(draft.details_only(), cart_lines)).unwrap_or_default()
}

/// The buyer's draft token: from the cookie, or a new one (and the cookie to set).
fn draft_token(state: &AppState, headers: &HeaderMap) -> Result<(String, Option<String>), AppError> {
    match super::account::cookie_value(state, headers, DRAFT_COOKIE).filter(|t| t.len() == 43) {
        Some(token) => Ok((token, None)),
        None => {
            let token = state.checkout.placement().new_draft_token()?;
            let cookie = state.cookie_rule.set_cookie(DRAFT_COOKIE, &token);
            Ok((token, Some(cookie)))
        }
    }
}

async fn load_draft(state: &AppState, headers: &HeaderMap) -> Result<Option<Draft>, AppError> {
    let Some(token) = super::account::cookie_value(state, headers, DRAFT_COOKIE) else { return Ok(None) };
    let Some(json) = state.checkout.placement().load_draft(&token).await? else { return Ok(None) };
    Ok(serde_json::from_slice(&json).ok())
}

async fn save_draft(state: &AppState, token: &str, draft: &Draft) -> Result<(), AppError> {
    let json = serde_json::to_vec(draft).map_err(|_| AppError::Internal("a checkout draft could not be encoded"))?;
    state.checkout.placement().save_draft(token, &json).await
}

/// A redirect that also sets the cookies given.
fn redirect(to: &str, cookies: &[Option<String>]) -> Response {
    cookies.iter().flatten().fold(see_other(to), |response, cookie| with_cookie(response, cookie))
}

/// The form input an order problem belongs to, and its label.
fn input_of(field: &str) -> &'static str {
    match field.rsplit('.').next().unwrap_or_default() {
        "guardian_name" => "guardian_name",
        "name" => "name",
        "email" => "email",
        "phone" => "phone",
        "address" | "line1" => "line1",
        "line2" => "line2",
        "city" => "city",
        "region" => "region",
        "postal_code" => "postal_code",
        "country" => "country",
        "payment_method" => "payment_method",
        "number" | "card" => "card_number",
        "exp_month" => "exp_month",
        "exp_year" => "exp_year",
        "cvc" => "cvc",
        "currency" | "items" => "cart",
        _ if field.starts_with("age") => "age",
        _ if field.starts_with("consent") => "consent",
        _ => "cart",
    }
}

fn problem_of(e: &OrderError) -> (String, String) {
    let field = e.field.as_deref().unwrap_or_default();
    (input_of(field).to_owned(), sentence(&e.message))
}

/// An error of the services as a problem of the form; `None` for one that
/// is not the buyer's to fix.
fn form_problem(error: &AppError) -> Option<(String, String)> {
    match error {
        AppError::Customer(e) => Some((input_of(e.field).to_owned(), sentence(&format!("this {}", e.reason)))),
        AppError::Order(e) => Some(problem_of(e)),
        _ => None,
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
    total: String,
}

/// One entry of the error summary: the field's id and what is wrong.
struct SummaryEntry {
    target: String,
    text: String,
}

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage {
    notice: Option<String>,
    summary: Vec<SummaryEntry>,
    cart: Vec<CartLine>,
    subtotal: String,
    cart_error: Option<String>,
    /// (code, selected)
    currencies: Vec<(String, bool)>,
    draft: Draft,
    fields: Vec<FieldView>,
    policy_version: String,
    /// The policy as people name it: its date and short version.
    policy_name: String,
    /// Whether bank transfer is offered (an account is configured).
    bank_offered: bool,
    payment_error: Option<String>,
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
    notice: Option<String>,
    summary: Vec<SummaryEntry>,
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
    review_token: String,
    /// What this page showed, as a keyed digest (see `pay`).
    reviewed: String,
    card: bool,
    exp_month: String,
    exp_year: String,
    card_number_error: Option<String>,
    exp_error: Option<String>,
    cvc_error: Option<String>,
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

fn failure(e: AppError) -> Response {
    tracing::error!(error = %e, "checkout page failed");
    super::error_page(StatusCode::INTERNAL_SERVER_ERROR)
}

#[derive(Deserialize)]
struct CurrencyQuery {
    #[serde(default)]
    currency: String,
}

/// Labels of the inputs, for the error summary.
fn label_of(input: &str) -> &'static str {
    match input {
        "name" => "Full name",
        "email" => "Email address",
        "phone" => "Phone number",
        "line1" => "Address",
        "line2" => "Address, second line",
        "city" => "City",
        "region" => "State or region",
        "postal_code" => "Postal code",
        "country" => "Country",
        "payment_method" => "Payment",
        "age" | "guardian_name" => "Age",
        "consent" => "Privacy policy",
        "card_number" => "Card number",
        "exp_month" | "exp_year" => "Expiry",
        "cvc" => "Security code",
        _ => "Cart",
    }
}

fn summary_of(problems: &[(String, String)]) -> Vec<SummaryEntry> {
    problems
        .iter()
        .map(|(input, message)| SummaryEntry {
            target: match input.as_str() {
                "age" => "age-adult".to_owned(),
                "payment_method" => "payment-card".to_owned(),
                "cart" => "cart-heading".to_owned(),
                other => other.to_owned(),
            },
            text: format!("{}: {message}", label_of(input)),
        })
        .collect()
}

async fn checkout_form(
    state: &AppState,
    items: &[(ProductId, i64)],
    mut draft: Draft,
) -> Result<CheckoutPage, AppError> {
    let priced = state.catalog.cart(items, &draft.currency).await?;
    draft.currency = priced.currency.map(|c| c.code().to_owned()).unwrap_or_default();
    let mut subtotal = Some(0i64);
    let cart = priced
        .lines
        .iter()
        .map(|(product, quantity)| {
            let price = priced.price(product);
            let line = price.map(|m| m.minor().saturating_mul(*quantity));
            subtotal = subtotal.zip(line).map(|(sum, line)| sum.saturating_add(line));
            CartLine {
                product_id: product.id.to_string(),
                name: product.name.clone(),
                vendor: product.vendor_name.clone(),
                quantity: *quantity,
                price: price.map_or_else(|| "not sold in this currency".into(), |m| m.to_string()),
                total: priced.currency.zip(line).map(|(c, l)| c.amount(l)).unwrap_or_default(),
            }
        })
        .collect();
    let field = |name, label, kind, autocomplete, max, value: &str, required| FieldView {
        name,
        label,
        kind,
        autocomplete,
        max,
        value: value.to_owned(),
        required,
        error: draft.problem(name),
    };
    let fields = vec![
        field("name", "Full name", "text", "name", 200, &draft.name, true),
        field("email", "Email address", "email", "email", 254, &draft.email, true),
        field("phone", "Phone number (optional)", "tel", "tel", 32, &draft.phone, false),
        field("line1", "Address", "text", "address-line1", 200, &draft.address.line1, true),
        field("line2", "Address, second line (optional)", "text", "address-line2", 200, &draft.address.line2, false),
        field("city", "City", "text", "address-level2", 100, &draft.address.city, true),
        field("region", "State or region (optional)", "text", "address-level1", 100, &draft.address.region, false),
        field("postal_code", "Postal code", "text", "postal-code", 20, &draft.address.postal_code, false),
        field("country", "Country", "country", "country", 2, &draft.address.country, true),
    ];
    let currencies = priced.currencies.iter().map(|c| (c.code().to_owned(), Some(*c) == priced.currency)).collect();
    Ok(CheckoutPage {
        notice: draft.notice.clone(),
        summary: summary_of(&draft.problems),
        cart,
        subtotal: priced.currency.zip(subtotal).map(|(c, s)| c.amount(s)).unwrap_or_default(),
        cart_error: draft.problem("cart"),
        currencies,
        fields,
        policy_version: state.checkout.placement().policy_version().to_owned(),
        policy_name: state.policy.name(),
        bank_offered: state.checkout.placement().bank_account().is_some(),
        payment_error: draft.problem("payment_method"),
        age_error: draft.problem("age").or_else(|| draft.problem("guardian_name")),
        consent_error: draft.problem("consent"),
        draft,
    })
}

/// The cart and the details form, as the draft left them.
async fn checkout_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CurrencyQuery>,
) -> Response {
    let items = cart(&state, &headers);
    let mut draft = match load_draft(&state, &headers).await {
        Ok(draft) => draft.unwrap_or_default(),
        Err(e) => return failure(e),
    };
    // A currency picked on the storefront (`?currency=EUR`) wins.
    if !query.currency.is_empty() {
        draft.currency = query.currency;
    }
    // No age answer is chosen for the buyer (P16): the form is refused until
    // they pick one themselves.
    match checkout_form(&state, &items, draft).await {
        Ok(page) => render(&page),
        Err(e) => failure(e),
    }
}

/// The cart's quantities as sent: each line's new quantity, and a message
/// for each one refused (kept at its old quantity). 0 removes the line.
fn apply_quantities(
    items: &mut Vec<(ProductId, i64)>,
    sent: &BTreeMap<String, String>,
    names: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut refused = Vec::new();
    for (id, quantity) in items.iter_mut() {
        let Some(text) = sent.get(&format!("qty_{id}")) else { continue };
        let name = names.get(id.as_str()).cloned().unwrap_or_else(|| "this product".into());
        match text.trim().parse::<i64>() {
            Ok(q) if (0..=coffer_domain::order::MAX_QUANTITY).contains(&q) => *quantity = q,
            Ok(q) if q > coffer_domain::order::MAX_QUANTITY => refused.push(format!(
                "{q} × {name} is more than one order takes; the most is {}, so the quantity stays {quantity}.",
                coffer_domain::order::MAX_QUANTITY
            )),
            _ => refused.push(format!(
                "\u{201c}{}\u{201d} is not a quantity for {name}; the quantity stays {quantity}.",
                text.trim().chars().take(20).collect::<String>()
            )),
        }
    }
    items.retain(|(_, q)| *q > 0);
    refused
}

/// The one checkout form: saves what was typed and the cart, then goes to
/// the review (when everything is in order), or back to the form.
async fn checkout_post(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CheckoutForm>) -> Response {
    if !same_origin(&headers) || !super::forms::form_token_ok(&form.form_token) {
        return super::account::forbidden();
    }
    let (token, new_cookie) = match draft_token(&state, &headers) {
        Ok(found) => found,
        Err(e) => return failure(e),
    };
    let earlier = match load_draft(&state, &headers).await {
        Ok(draft) => draft.unwrap_or_default(),
        Err(e) => return failure(e),
    };
    let mut items = cart(&state, &headers);
    let mut names = BTreeMap::new();
    for (id, _) in &items {
        if let Ok(product) = state.catalog.product(id).await {
            names.insert(id.to_string(), product.name);
        }
    }
    let refused = apply_quantities(&mut items, &form.rest, &names);
    let (action, remove) = (form.action.clone(), form.remove.clone());
    items.retain(|(id, _)| id.as_str() != remove);
    let cart_cookie = Some(cart_cookie(&state, &items));
    if items.is_empty() {
        // The draft lives as long as the cart.
        if let Err(e) = state.checkout.placement().forget_draft(&token).await {
            return failure(e);
        }
        return redirect("/checkout", &[cart_cookie]);
    }
    let mut draft = form.into_draft(&earlier);
    if !refused.is_empty() {
        draft.notice = Some(refused.join(" "));
    }
    let reviewing = (action.is_empty() || action == "review") && remove.is_empty() && refused.is_empty();
    let to = if reviewing {
        let request = draft.request(&items, None, None);
        let mut problems: Vec<(String, String)> =
            state.checkout.placement().problems(&request).iter().map(problem_of).collect();
        if problems.is_empty() {
            match state.checkout.placement().quote(&request).await {
                Ok(_) => {}
                Err(e) => match form_problem(&e) {
                    Some(problem) => problems.push(problem),
                    None => return failure(e),
                },
            }
        }
        draft.problems = problems;
        if draft.problems.is_empty() { "/checkout/review" } else { "/checkout#problems" }
    } else {
        "/checkout"
    };
    match save_draft(&state, &token, &draft).await {
        Ok(()) => redirect(to, &[new_cookie, cart_cookie]),
        Err(e) => failure(e),
    }
}

/// The review page: what the order costs, the billing address, then the
/// card (or the bank transfer), from the saved draft.
async fn review_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let items = cart(&state, &headers);
    let draft = match load_draft(&state, &headers).await {
        Ok(Some(draft)) if !items.is_empty() => draft,
        Ok(_) => return see_other("/checkout"),
        Err(e) => return failure(e),
    };
    let placement = state.checkout.placement();
    let quote = match placement.quote(&draft.request(&items, None, None)).await {
        Ok(quote) => quote,
        // The details or the cart changed since (another tab): back to the form.
        Err(e @ (AppError::Customer(_) | AppError::Order(_))) => {
            let (token, new_cookie) = match draft_token(&state, &headers) {
                Ok(found) => found,
                Err(e) => return failure(e),
            };
            let mut draft = draft;
            draft.problems = form_problem(&e).into_iter().collect();
            return match save_draft(&state, &token, &draft).await {
                Ok(()) => redirect("/checkout#problems", &[new_cookie]),
                Err(e) => failure(e),
            };
        }
        Err(e) => return failure(e),
    };
    let review_token = match placement.new_review_token().await {
        Ok(token) => token,
        Err(e) => return failure(e),
    };
    let reviewed = match placement.reviewed_digest(&reviewed_body(&draft, &items)).await {
        Ok(digest) => digest,
        Err(e) => return failure(e),
    };
    let lines = quote
        .lines
        .iter()
        .map(|priced| ReviewLine {
            name: priced.name.clone(),
            quantity: priced.line.quantity,
            price: quote.currency.amount(priced.line.line_total),
        })
        .collect();
    let country = quote.details.address.as_ref().map(|a| a.country.as_str()).unwrap_or_default();
    render(&ReviewPage {
        notice: draft.notice.clone(),
        summary: summary_of(&draft.problems),
        lines,
        subtotal: quote.currency.amount(quote.totals.subtotal),
        tax_label: coffer_domain::tax::tax_label(country, quote.tax_rate),
        tax: quote.currency.amount(quote.totals.tax),
        total: quote.currency.amount(quote.totals.total),
        billed_name: quote.details.name.clone(),
        billed_email: quote.details.email.clone(),
        billed_address: quote.details.address.as_ref().map(coffer_domain::MailingAddress::lines).unwrap_or_default(),
        operator: state.operator_name.to_string(),
        review_token,
        reviewed,
        card: draft.payment_method() == PaymentMethod::Card,
        card_number_error: draft.problem("card_number"),
        exp_error: draft.problem("exp_month").or_else(|| draft.problem("exp_year")),
        cvc_error: draft.problem("cvc"),
        exp_month: draft.exp_month,
        exp_year: draft.exp_year,
    })
}

/// Pays for the reviewed order: the details come from the draft, the card
/// from this form. Placed: the draft and the cart go, and the buyer is
/// sent to the confirmation's own address. Refused: back to the review
/// (card problems, the expiry kept) or to the form (the details).
async fn pay(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<PayForm>,
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
    let placement = state.checkout.placement();
    // A second click of a review already paid: its confirmation.
    let done = format!("/checkout/done/{}", form.review_token);
    if matches!(placement.placed_from_review(&form.review_token).await, Ok(Some(_))) {
        return see_other(&done);
    }
    let (token, new_cookie) = match draft_token(&state, &headers) {
        Ok(found) => found,
        Err(e) => return failure(e),
    };
    let mut draft = match load_draft(&state, &headers).await {
        Ok(Some(draft)) if !items.is_empty() => draft,
        Ok(_) => return see_other("/checkout"),
        Err(e) => return failure(e),
    };
    let issued_here = form.review_token.len() <= 200
        && matches!(placement.review_token_issued_here(&form.review_token).await, Ok(true));
    // The review's details and the cart make the body the token is bound to.
    let body = reviewed_body(&draft, &items);
    let as_reviewed = matches!(placement.reviewed_digest(&body).await, Ok(digest) if digest == form.reviewed);
    if !issued_here || !as_reviewed {
        // Payment comes only from a review page, which carries the token,
        // and only for what that page showed.
        draft.notice = Some(if issued_here {
            "Your cart or details changed since this page was shown; check the order again, then pay.".into()
        } else {
            "Check your order, then pay.".into()
        });
        draft.problems.clear();
        return match save_draft(&state, &token, &draft).await {
            Ok(()) => redirect("/checkout/review", &[new_cookie]),
            Err(e) => failure(e),
        };
    }
    let secret = |s: &Option<SecretString>| {
        SecretString::from(s.as_ref().map(|s| s.expose_secret().trim().to_owned()).unwrap_or_default())
    };
    let card = CardInput {
        number: secret(&form.card_number),
        exp_month: form.exp_month.trim().parse().unwrap_or(0),
        exp_year: form.exp_year.trim().parse().unwrap_or(0),
        cvc: secret(&form.cvc),
    };
    let request = draft.request(&items, Some(card), Some(ip));
    draft.exp_month = form.exp_month.trim().chars().take(2).collect();
    draft.exp_year = form.exp_year.trim().chars().take(4).collect();
    // Every card problem at once, before the gateway is asked.
    let problems: Vec<(String, String)> = placement.problems(&request).iter().map(problem_of).collect();
    if !problems.is_empty() {
        let to = if problems.iter().all(|(f, _)| ["card_number", "exp_month", "exp_year", "cvc"].contains(&f.as_str()))
        {
            "/checkout/review"
        } else {
            "/checkout#problems"
        };
        draft.problems = problems;
        draft.notice = None;
        return match save_draft(&state, &token, &draft).await {
            Ok(()) => redirect(to, &[new_cookie]),
            Err(e) => failure(e),
        };
    }
    let key = format!("review:{}", form.review_token);
    match placement.place_once(&key, &body, request, Channel::Web).await {
        Ok(_) => {
            // The order holds the details now; the draft goes with the cart.
            if let Err(e) = placement.forget_draft(&token).await {
                tracing::warn!(error = %e, "a checkout draft could not be forgotten; it expires in a day");
            }
            redirect(&done, &[Some(cart_cookie(&state, &[])), Some(state.cookie_rule.clear_cookie(DRAFT_COOKIE))])
        }
        Err(e) => payment_refused(&state, &token, new_cookie, draft, e).await,
    }
}

/// The answer to a payment that placed no order: card problems back on the
/// review page (the expiry kept, never the number or code), mistakes in the
/// details back on the form, a repeat or a spent limit on a page of its own.
async fn payment_refused(
    state: &AppState,
    token: &str,
    new_cookie: Option<String>,
    mut draft: Draft,
    error: AppError,
) -> Response {
    let back_to = match &error {
        AppError::Order(e) if e.field.as_deref().is_some_and(|f| f.starts_with("card")) => {
            draft.notice = Some(sentence(&e.message));
            draft.problems = vec![problem_of(e)];
            "/checkout/review"
        }
        // The same review sent again with other details or another card.
        AppError::Order(e) if e.code == "idempotency_key_reused" => {
            let page = super::account::MessagePage {
                title: "Order already placed",
                message: "This order was already placed from this page; its confirmation is in your email. \
                          To buy again, start from the cart."
                    .into(),
            };
            return (StatusCode::CONFLICT, render(&page)).into_response();
        }
        AppError::TooManyAttempts { retry_after_ms } => {
            let seconds = super::account::retry_seconds(*retry_after_ms);
            let page = super::account::MessagePage {
                title: "Too many failed payments",
                message: format!(
                    "Too many payments failed lately from your network, this email address or this card. \
                     Try again in {} minutes.",
                    seconds.div_ceil(60)
                ),
            };
            return super::account::too_many_attempts(seconds, &page);
        }
        // A repeat of a review whose buyer has since been erased: the first
        // order cannot be shown again.
        AppError::Erased => {
            let page = super::account::MessagePage {
                title: "Order already placed",
                message: "This order was already placed and can no longer be shown here.".into(),
            };
            return (StatusCode::GONE, render(&page)).into_response();
        }
        e @ (AppError::Customer(_) | AppError::Order(_)) => {
            draft.problems = form_problem(e).into_iter().collect();
            "/checkout#problems"
        }
        _ => return failure(error),
    };
    match save_draft(state, token, &draft).await {
        Ok(()) => redirect(back_to, &[new_cookie]),
        Err(e) => failure(e),
    }
}

/// The confirmation at its own address: the review's token, which only the
/// buyer's page held, finds the placed order (for a day; the account keeps
/// everything). Unknown tokens are not found, exactly as wrong ones.
async fn done_get(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.checkout.placement().placed_from_review(&token).await {
        Ok(Some(order)) => render(&done_page(&state, order).await),
        Ok(None) => {
            let page = super::account::MessagePage {
                title: "Confirmation not found",
                message: "This confirmation link is not known or has expired (they last a day). Your orders, \
                          license keys and downloads are always in your account."
                    .into(),
            };
            (StatusCode::NOT_FOUND, render(&page)).into_response()
        }
        Err(AppError::Erased) => {
            let page = super::account::MessagePage {
                title: "Order no longer shown",
                message: "This order's buyer was erased at their request, so it can no longer be shown.".into(),
            };
            (StatusCode::GONE, render(&page)).into_response()
        }
        Err(e) => failure(e),
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
    async fn the_form_reads_its_address_and_quantities_and_the_draft_never_holds_a_card() {
        use axum::extract::FromRequest;
        let body = "currency=EUR&name=Ada&email=ada%40example.org&line1=1+Main+St&city=Berlin&country=DE\
                    &postal_code=10115&card_number=4242424242424242&cvc=123&consent=v1&action=update\
                    &qty_prd_0193c0de5a6b7c8d9e0f1a2b3c4d5e6f=150";
        let request = axum::http::Request::post("/checkout")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body))
            .unwrap();
        let axum::Form(form) = axum::Form::<CheckoutForm>::from_request(request, &()).await.unwrap();
        assert_eq!((form.address.line1.as_str(), form.address.country.as_str()), ("1 Main St", "DE"));
        assert_eq!(form.address.line2, "", "a field not sent is empty");
        assert_eq!(form.action, "update");
        let id = ProductId::parse("prd_0193c0de5a6b7c8d9e0f1a2b3c4d5e6f").unwrap();
        let mut items = vec![(id, 2)];
        let names = BTreeMap::from([(items[0].0.to_string(), "Notes".to_owned())]);
        let refused = apply_quantities(&mut items, &form.rest, &names);
        assert_eq!(items[0].1, 2, "150 is refused, the old quantity stays");
        assert!(refused[0].contains("150 × Notes") && refused[0].contains("the most is 100"), "{refused:?}");
        let draft = form.into_draft(&Draft { exp_month: "12".into(), ..Draft::default() });
        let json = serde_json::to_string(&draft).unwrap();
        assert!(!json.contains("4242") && !json.contains("123\""), "never the card: {json}");
        assert_eq!(draft.exp_month, "12", "the expiry kept from before");
        let address = draft.request(&[], None, None).customer.address.unwrap();
        assert_eq!((address.city.as_str(), address.postal_code.as_str()), ("Berlin", "10115"));
    }

    #[test]
    fn a_quantity_of_zero_removes_the_line_and_words_are_refused() {
        let (a, b) = (
            ProductId::parse("prd_0193c0de5a6b7c8d9e0f1a2b3c4d5e6f").unwrap(),
            ProductId::parse("prd_0193c0de5a6b7c8d9e0f1a2b3c4d5e70").unwrap(),
        );
        let mut items = vec![(a.clone(), 1), (b.clone(), 3)];
        let sent = BTreeMap::from([(format!("qty_{a}"), "0".to_owned()), (format!("qty_{b}"), "lots".to_owned())]);
        let refused = apply_quantities(&mut items, &sent, &BTreeMap::new());
        assert_eq!(items, vec![(b, 3)]);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].contains("is not a quantity"), "{refused:?}");
    }

    #[test]
    fn problems_land_on_their_inputs() {
        for (field, input) in [
            ("customer.name", "name"),
            ("customer.address.line1", "line1"),
            ("customer.address", "line1"),
            ("customer.address.country", "country"),
            ("age.guardian_name", "guardian_name"),
            ("age", "age"),
            ("consent.privacy_policy_version", "consent"),
            ("card.number", "card_number"),
            ("card", "card_number"),
            ("card.exp_year", "exp_year"),
            ("payment_method", "payment_method"),
            ("items", "cart"),
        ] {
            assert_eq!(input_of(field), input, "{field}");
        }
    }
}
