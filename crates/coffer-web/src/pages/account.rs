//! The customer's account pages: sign in, one-time links, set password,
//! the overview, sign out. Forms work without JavaScript. Every POST is
//! checked for a same-origin request; forms of a signed-in session also
//! carry its CSRF token.

use super::render;
pub(super) use super::sign_in::{
    CsrfForm, RealmPages, RealmText, cookie_value, end_sessions, failure, guard_post, retry_seconds, same_origin,
    see_other, sign_in_page, too_many_attempts, with_cookie,
};
use crate::AppState;
use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, OptionalFromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coffer_app::AppError;
use coffer_app::accounts::signin::SignIn;
use coffer_app::request::RequestContext;
use coffer_domain::CustomerId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;

const SESSION_COOKIE: &str = crate::cookies::SESSION.name;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(super::sign_in::routes::<CustomerRealm>())
        .route("/account", get(account))
        .route("/account/link", post(request_link))
        .route("/account/link/{token}", get(set_password_page).post(set_password))
        .route("/account/sign-out-everywhere", post(sign_out_everywhere))
        .route("/account/totp/start", post(totp_start))
        .route("/account/totp/enable", post(totp_enable))
        .route("/account/totp/disable", post(totp_disable))
        .route("/account/details", post(update_details))
        .route("/account/password", post(change_password))
        .route("/account/data", get(data_page))
        .route("/account/data.json", get(data_json))
        .route("/account/delete", get(delete_page).post(delete_account))
        .route("/account/invoices/{number}", get(invoice_page))
        .route("/account/credit-notes/{number}", get(credit_note_page))
        .route("/privacy/request", get(privacy_request_page).post(privacy_request))
        .route("/privacy/request/confirm/{token}", get(privacy_confirm_page).post(privacy_confirm))
        .layer(axum::middleware::map_response(no_store))
}

/// Account pages hold personal data and secrets: never kept by a cache.
pub(super) async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The customer realm's sign-in pages: optional second factor, emailed links.
pub(super) struct CustomerRealm;

impl RealmPages for CustomerRealm {
    type Directory = coffer_app::accounts::service::Customers;
    const TEXT: &'static RealmText = &RealmText {
        home: "/account",
        title: "Sign in",
        heading: "Your account",
        lead: "Orders, license keys, downloads and your data, in one place.",
        email_label: "Email address",
        button: "Sign in",
        emailed_links: true,
        footnote: "",
        code_title: "Enter your code",
        code_lead: "Open your authenticator app and type the 6-digit code for Coffer, or one of your recovery codes.",
    };
    const COOKIE: &'static str = SESSION_COOKIE;

    fn service(state: &AppState) -> &SignIn<Self::Directory> {
        state.accounts.sign_in_service()
    }

    fn forbidden() -> Response {
        forbidden()
    }
}

#[derive(Template)]
#[template(path = "account_message.html")]
pub(super) struct MessagePage {
    pub(super) title: &'static str,
    pub(super) message: String,
}

#[derive(Template)]
#[template(path = "account_set_password.html")]
struct SetPasswordPage {
    message: Option<String>,
    /// The account has two-step sign-in on: the link asks for a code too.
    needs_code: bool,
}

/// An order as the account page lists it.
struct OrderSummary {
    id: String,
    status: String,
    total: String,
    lines: Vec<String>,
    /// (product name, license key)
    keys: Vec<(String, String)>,
    /// (product name, signed download link)
    downloads: Vec<(String, String)>,
    invoice: Option<i64>,
    /// (number, amount credited)
    credit_notes: Vec<(i64, String)>,
    /// A transfer still awaited: its reference, the amount and the last day.
    transfer: Option<AwaitedTransfer>,
}

/// What a buyer needs to pay a bank transfer.
struct AwaitedTransfer {
    reference: String,
    amount: String,
    pay_by: String,
    bank: Option<coffer_domain::BankAccount>,
}

#[derive(Template)]
#[template(path = "account_overview.html")]
struct OverviewPage {
    message: Option<String>,
    orders: Vec<OrderSummary>,
    name: String,
    email: String,
    phone: String,
    address: super::AddressFields,
    totp_on: bool,
    csrf: String,
}

#[derive(Template)]
#[template(path = "account_totp.html")]
struct TotpPage {
    message: Option<String>,
    secret: String,
    uri: String,
    csrf: String,
    codes: Vec<String>,
}

#[derive(Template)]
#[template(path = "privacy_request.html")]
struct PrivacyRequestPage {
    message: Option<String>,
}

#[derive(Template)]
#[template(path = "privacy_confirm.html")]
struct PrivacyConfirmPage;

#[derive(Template)]
#[template(path = "account_delete.html")]
struct DeletePage {
    message: Option<String>,
    csrf: String,
}

/// The signed-in customer acting on their own account, in this request.
fn own(customer: &CustomerId) -> RequestContext {
    RequestContext::new(coffer_domain::Principal::Customer(customer.to_string()))
}

/// The overview of a signed-in customer, with an optional notice.
async fn overview(
    state: &AppState,
    customer: &CustomerId,
    token: &str,
    message: Option<String>,
) -> Result<Response, AppError> {
    let record = state.accounts.own_record(&own(customer)).await?;
    let details = record.details;
    Ok(render(&OverviewPage {
        message,
        orders: order_summaries(state, customer).await?,
        name: details.name,
        email: details.email,
        phone: details.phone.unwrap_or_default(),
        address: super::AddressFields::of(details.address),
        totp_on: state.accounts.has_totp(&own(customer)).await?,
        csrf: state.accounts.csrf_token(token),
    }))
}

/// The customer's orders for the overview, with product names and fresh
/// download links for delivered orders.
async fn order_summaries(state: &AppState, customer: &CustomerId) -> Result<Vec<OrderSummary>, AppError> {
    // Product id → (name, delivers a download).
    let mut products: std::collections::HashMap<String, (String, bool)> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for order in state.accounts.own_orders(&own(customer)).await? {
        let currency = coffer_domain::Currency::parse(&order.currency)?;
        let mut product = async |id: &coffer_domain::ProductId| -> Result<(String, bool), AppError> {
            if let Some(known) = products.get(id.as_str()) {
                return Ok(known.clone());
            }
            let found = match state.catalog.product(id).await {
                Ok(p) => (p.name, p.delivery.has_download()),
                Err(AppError::NotFound) => (id.to_string(), false),
                Err(e) => return Err(e),
            };
            products.insert(id.to_string(), found.clone());
            Ok(found)
        };
        let delivered = order.status == "fulfilled";
        let mut lines = Vec::new();
        let mut downloads = Vec::new();
        for line in &order.lines {
            let (name, download) = product(&line.product_id).await?;
            lines.push(format!("{} × {name}, {}", line.quantity, currency.amount(line.line_total)));
            if delivered && download {
                downloads.push((name, state.checkout.download_link(&order.id, line.line_no).await?));
            }
        }
        let mut keys = Vec::new();
        for key in &order.license_keys {
            keys.push((product(&key.product_id).await?.0, key.key.clone()));
        }
        out.push(OrderSummary {
            id: order.id.to_string(),
            status: order.status.replace('_', " "),
            total: currency.amount(order.total),
            lines,
            keys,
            downloads,
            invoice: state.accounts.invoice_number_of(&order.id).await?,
            credit_notes: state
                .checkout
                .credit_notes_of(&order.id)
                .await?
                .iter()
                .map(|n| (n.number, currency.amount(n.total)))
                .collect(),
            transfer: order.payment_reference.clone().filter(|_| order.status == "pending").map(|reference| {
                let placement = state.checkout.placement();
                AwaitedTransfer {
                    reference,
                    amount: currency.amount(order.total),
                    pay_by: placement.pay_by(coffer_domain::Millis(order.placed_at_ms)),
                    bank: placement.bank_account().cloned(),
                }
            }),
        });
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct InvoicePage {
    /// Where its PDF is.
    pdf_href: String,
    doc: coffer_app::invoice_pdf::InvoiceDocument,
}

/// One of the signed-in customer's invoices, as a page or (`12.pdf`) as
/// its PDF; anyone else's is not found, exactly as one that does not exist.
async fn invoice_page(State(state): State<AppState>, customer: Customer, Path(number): Path<String>) -> Response {
    document_page(&state, &customer, &number, "invoices", "invoice").await
}

/// One of the signed-in customer's credit notes, as [`invoice_page`].
async fn credit_note_page(State(state): State<AppState>, customer: Customer, Path(number): Path<String>) -> Response {
    document_page(&state, &customer, &number, "credit-notes", "credit-note").await
}

async fn document_page(state: &AppState, customer: &Customer, asked: &str, path: &str, file: &str) -> Response {
    let not_found = || super::error_page(StatusCode::NOT_FOUND);
    let (number, pdf) = match asked.strip_suffix(".pdf") {
        Some(number) => (number, true),
        None => (asked, false),
    };
    let Ok(number) = number.parse::<i64>() else { return not_found() };
    let found = if path == "invoices" {
        state.checkout.own_invoice_document(&own(&customer.id), number).await
    } else {
        state.checkout.own_credit_note_document(&own(&customer.id), number).await
    };
    match found {
        Ok(Some(doc)) if pdf => (
            [
                (axum::http::header::CONTENT_TYPE, "application/pdf".to_owned()),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"coffer-{file}-{number}.pdf\""),
                ),
            ],
            coffer_app::invoice_pdf::render_pdf(&doc),
        )
            .into_response(),
        Ok(Some(doc)) => render(&InvoicePage { pdf_href: format!("/account/{path}/{number}.pdf"), doc }),
        Ok(None) => not_found(),
        Err(e) => failure(e),
    }
}

/// Spends one of the client's sign-in attempts; `Some` is the 429 answer.
pub(super) fn over_limit(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Option<Response> {
    let ip = crate::client_ip::client_ip(peer.ip(), headers, &state.trusted_proxies);
    let seconds = crate::limits::spend_address(&state.sign_in_limit, ip).err()?;
    Some(network_limited(seconds))
}

/// A request that spends one of the client address's guessing attempts
/// (a password confirmed in a session); the 429 page when they are spent.
pub(super) struct GuessAttempt;

impl FromRequestParts<AppState> for GuessAttempt {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        match over_limit(state, peer, &parts.headers) {
            Some(limited) => Err(limited),
            None => Ok(GuessAttempt),
        }
    }
}

/// The 429 page for a client address over one of its limits.
pub(super) fn network_limited(seconds: u64) -> Response {
    let page = MessagePage {
        title: "Too many attempts",
        message: format!("Too many attempts from your network. Try again in {seconds} seconds."),
    };
    too_many_attempts(seconds, &page)
}

pub(super) fn forbidden() -> Response {
    let page = MessagePage {
        title: "Request refused",
        message: "This form was sent from another site or an old page. Go back, reload the page and try again.".into(),
    };
    (StatusCode::FORBIDDEN, render(&page)).into_response()
}

fn session_cookie(state: &AppState, headers: &HeaderMap) -> Option<String> {
    cookie_value(state, headers, SESSION_COOKIE)
}

/// The signed-in customer and their session token, if any.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<(CustomerId, String)>, AppError> {
    let Some(token) = session_cookie(state, headers) else { return Ok(None) };
    Ok(state.accounts.session(&token).await?.map(|customer| (customer, token)))
}

async fn account(State(state): State<AppState>, customer: Option<Customer>) -> Response {
    match customer {
        Some(Customer { id, token }) => overview(&state, &id, &token, None).await.unwrap_or_else(failure),
        None => sign_in_page::<CustomerRealm>(None, String::new()).into_response(),
    }
}

#[derive(Deserialize)]
struct LinkForm {
    email: String,
    #[serde(default)]
    form_token: String,
}

async fn request_link(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LinkForm>,
) -> Response {
    if let Some(refused) = guard_post(&state, peer, &headers, forbidden) {
        return refused;
    }
    if !super::forms::form_token_ok(&form.form_token) {
        return forbidden();
    }
    if form.email.len() <= 254 {
        state.accounts.request_sign_in_link_after_answer(form.email);
    }
    // The same answer whether or not the address has an account.
    render(&MessagePage {
        title: "Check your email",
        message: "If an account exists for that address, we have sent it a link. It works once, for 15 minutes.".into(),
    })
}

async fn set_password_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.accounts.link_needs_code(&token).await {
        Ok(Some(needs_code)) => render(&SetPasswordPage { message: None, needs_code }),
        Ok(None) => link_gone(),
        Err(e) => failure(e),
    }
}

/// A used, expired or unknown link: said on the first page, with no form
/// to fill in for nothing.
fn link_gone() -> Response {
    let page = MessagePage {
        title: "Link not valid",
        message: "This link has expired or was already used. Ask for a new one on the sign-in page (Account, then \
                  \u{201c}Email me a link\u{201d})."
            .into(),
    };
    (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response()
}

#[derive(Deserialize)]
struct PasswordForm {
    password: String,
    #[serde(default)]
    code: Option<String>,
}

async fn set_password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Response {
    if let Some(refused) = guard_post(&state, peer, &headers, forbidden) {
        return refused;
    }
    let code = form.code.as_deref().filter(|c| c.len() <= 64);
    match state.accounts.set_password_with_link(&token, SecretString::from(form.password), code).await {
        Ok(session) => super::sign_in::signed_in::<CustomerRealm>(&state, &session.token),
        Err(AppError::Account(refused)) => {
            let needs_code = matches!(state.accounts.link_needs_code(&token).await, Ok(Some(true)));
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                render(&SetPasswordPage { message: Some(super::sentence(&refused.to_string())), needs_code }),
            )
                .into_response()
        }
        Err(AppError::TooManyAttempts { retry_after_ms }) => {
            let seconds = retry_seconds(retry_after_ms);
            let page = SetPasswordPage {
                message: Some(format!("Too many wrong codes. Try again in {seconds} seconds.")),
                needs_code: true,
            };
            too_many_attempts(seconds, &page)
        }
        Err(AppError::LinkGone(_) | AppError::Erased | AppError::NotFound) => link_gone(),
        Err(e) => failure(e),
    }
}

/// A signed-in customer: the id and the session token (for the CSRF token
/// of the page's forms). Without a live session the page answers with the
/// sign-in (a redirect to `/account`).
pub(super) struct Customer {
    id: CustomerId,
    token: String,
}

impl OptionalFromRequestParts<AppState> for Customer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Response> {
        let session = signed_in(state, &parts.headers).await.map_err(failure)?;
        Ok(session.map(|(id, token)| Customer { id, token }))
    }
}

impl FromRequestParts<AppState> for Customer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        <Self as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state)
            .await?
            .ok_or_else(|| see_other("/account"))
    }
}

/// A form whose `csrf` field carries the session's CSRF token.
pub(super) trait CarriesCsrf {
    fn csrf(&self) -> &str;
}

/// A signed-in customer's form post: same origin, a live session, and the
/// session's CSRF token in the form; otherwise 403 (or the sign-in).
pub(super) struct CustomerPost<T> {
    customer: Customer,
    form: T,
}

impl<T> FromRequest<AppState> for CustomerPost<T>
where
    T: serde::de::DeserializeOwned + CarriesCsrf + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        if !same_origin(&parts.headers) {
            return Err(forbidden());
        }
        let customer = <Customer as FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await?;
        let Form(form) = Form::<T>::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !state.accounts.csrf_matches(&customer.token, form.csrf()) {
            return Err(forbidden());
        }
        Ok(CustomerPost { customer, form })
    }
}

macro_rules! carries_csrf {
    ($($form:ty),*) => {$(
        impl CarriesCsrf for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )*};
}

carries_csrf!(CsrfForm, DetailsForm, ChangePasswordForm, DeleteForm, TotpEnableForm, PasswordConfirmForm);

async fn sign_out_everywhere(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    end_sessions::<CustomerRealm>(&state, &headers, &form.csrf, true).await
}

#[derive(Deserialize)]
struct DetailsForm {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(flatten)]
    address: super::AddressFields,
}

async fn update_details(State(state): State<AppState>, post: CustomerPost<DetailsForm>) -> Response {
    let CustomerPost { customer: Customer { id: customer, token }, form } = post;
    let current = match state.accounts.own_record(&own(&customer)).await {
        Ok(record) => record.details,
        Err(e) => return failure(e),
    };
    let details = coffer_domain::CustomerDetails {
        name: form.name,
        // The email address is the sign-in name; it changes by another route.
        email: current.email,
        phone: Some(form.phone),
        address: form.address.given().then(|| form.address.address()),
    };
    let message = match state.accounts.update_own_details(&own(&customer), &details).await {
        Ok(()) => "Your details are saved.".to_owned(),
        Err(AppError::Customer(e)) => format!("Not saved: {} {}.", field_label(e.field), e.reason),
        Err(e) => return failure(e),
    };
    let status = if message.starts_with("Not saved") { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    match overview(&state, &customer, &token, Some(message)).await {
        Ok(page) => (status, page).into_response(),
        Err(e) => failure(e),
    }
}

/// A person's name for a form field.
fn field_label(field: &str) -> &'static str {
    match field {
        "customer.name" => "the name",
        "customer.phone" => "the phone number",
        "customer.address.line1" => "the address",
        "customer.address.city" => "the city",
        "customer.address.country" => "the country",
        "customer.address.postal_code" => "the postal code",
        _ => "a field",
    }
}

#[derive(Deserialize)]
struct ChangePasswordForm {
    #[serde(default)]
    csrf: String,
    current: String,
    new: String,
}

async fn change_password(
    State(state): State<AppState>,
    // A wrong current password is a guess like any other.
    _attempt: GuessAttempt,
    post: CustomerPost<ChangePasswordForm>,
) -> Response {
    let CustomerPost { customer: Customer { id: customer, token }, form } = post;
    if form.current.len() > 1024 || form.new.len() > 1024 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            overview(&state, &customer, &token, Some("That password is too long.".into()))
                .await
                .unwrap_or_else(failure),
        )
            .into_response();
    }
    match state
        .accounts
        .change_password(&own(&customer), SecretString::from(form.current), SecretString::from(form.new))
        .await
    {
        Ok(session) => super::sign_in::signed_in::<CustomerRealm>(&state, &session.token),
        Err(AppError::Account(refused)) => {
            let page = overview(&state, &customer, &token, Some(format!("Password not changed: {refused}.")))
                .await
                .unwrap_or_else(failure);
            (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
        }
        Err(AppError::TooManyAttempts { retry_after_ms }) => account_locked(retry_after_ms),
        Err(e) => failure(e),
    }
}

/// One personal field on the data page, in words.
struct DataField {
    label: &'static str,
    /// The value, one line each (an address in its usual order).
    value: Vec<String>,
    purpose: &'static str,
    basis: String,
    recipients: String,
}

/// One order on the data page.
struct DataOrder {
    id: String,
    placed: String,
    status: String,
    total: String,
    payment: String,
    lines: Vec<String>,
    billed: Vec<String>,
    keys: Vec<(String, String)>,
    consent: String,
}

/// One kept message on the data page.
struct DataMessage {
    sent: String,
    subject: String,
    body: String,
}

#[derive(Template)]
#[template(path = "account_data.html")]
struct DataPage {
    customer_id: String,
    fields: Vec<DataField>,
    password_set: bool,
    second_factor: bool,
    orders: Vec<DataOrder>,
    messages: Vec<DataMessage>,
    requests: Vec<String>,
    disclosures: Vec<String>,
}

/// A serialised code (`legitimate_interest`) in words.
fn in_words<T: serde::Serialize>(code: &T) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(code)) => code.replace('_', " "),
        _ => String::new(),
    }
}

/// A day as people write it.
fn day(ms: i64) -> String {
    coffer_domain::order::long_day_utc(coffer_domain::Millis(ms))
}

/// A stored value as lines of text: an address in its usual order.
fn value_lines(value: &serde_json::Value) -> Vec<String> {
    if let Ok(address) = serde_json::from_value::<coffer_domain::MailingAddress>(value.clone()) {
        return address.lines();
    }
    match value {
        serde_json::Value::Null => vec!["(not given)".into()],
        serde_json::Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    }
}

/// The signed-in customer's own data, as a page of the site: in words,
/// amounts with their currency, products by name. Not audited: their own
/// read, as the policy says.
async fn data_page(State(state): State<AppState>, customer: Customer) -> Response {
    let export = match state.accounts.own_export(&own(&customer.id)).await {
        Ok(export) => export,
        Err(e) => return failure(e),
    };
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut orders = Vec::new();
    for o in &export.orders {
        let currency = coffer_domain::Currency::parse(&o.currency).ok();
        let money = |minor: i64| currency.map_or_else(|| format!("{minor} {}", o.currency), |c| c.amount(minor));
        let mut lines = Vec::new();
        let mut keys = Vec::new();
        for product in o.lines.iter().map(|l| &l.product_id).chain(o.license_keys.iter().map(|k| &k.product_id)) {
            if !names.contains_key(product.as_str()) {
                let name = state.catalog.product(product).await.map(|p| p.name).unwrap_or_else(|_| product.to_string());
                names.insert(product.to_string(), name);
            }
        }
        let name_of = |product: &coffer_domain::ProductId| names.get(product.as_str()).cloned().unwrap_or_default();
        for l in &o.lines {
            lines.push(format!("{} × {}: {}", l.quantity, name_of(&l.product_id), money(l.line_total)));
        }
        lines.push(format!("Tax: {}", money(o.tax)));
        for k in &o.license_keys {
            keys.push((name_of(&k.product_id), k.key.clone()));
        }
        let details = &o.details;
        let mut billed: Vec<String> =
            [&details.name, &details.email, &details.phone].into_iter().flatten().cloned().collect();
        if let Some(a) = &details.address {
            billed.extend(value_lines(&serde_json::to_value(a).unwrap_or_default()));
        }
        if let Some(card) = &details.card {
            billed.push(format!(
                "{} ending {} (expires {:02}/{})",
                coffer_domain::order::brand_name(&card.brand),
                card.last4,
                card.exp_month,
                card.exp_year
            ));
        }
        orders.push(DataOrder {
            id: o.id.to_string(),
            placed: day(o.placed_at_ms),
            status: o.status.replace('_', " "),
            total: money(o.total),
            payment: o.payment_method.replace('_', " "),
            lines,
            billed,
            keys,
            consent: format!(
                "{} on {} ({})",
                o.consent.privacy_policy_version,
                day(o.consent.at_ms),
                o.consent.channel
            ),
        });
    }
    let page = DataPage {
        customer_id: export.customer_id.to_string(),
        fields: export
            .personal_data
            .iter()
            .map(|f| DataField {
                label: f.label,
                value: value_lines(&f.value),
                purpose: f.purpose,
                basis: in_words(&f.legal_basis),
                recipients: f.recipients.iter().map(in_words).collect::<Vec<_>>().join(", "),
            })
            .collect(),
        password_set: export.account.password_set,
        second_factor: export.account.second_factor,
        orders,
        messages: export
            .messages
            .iter()
            .map(|m| DataMessage {
                sent: day(m.created_at_ms),
                subject: m.subject.clone().unwrap_or_else(|| "(no subject)".into()),
                body: m.body.clone().unwrap_or_default(),
            })
            .collect(),
        requests: export
            .privacy_requests
            .iter()
            .map(|r| {
                format!(
                    "{} request ({}), received {}: {}",
                    r.kind,
                    r.jurisdiction,
                    day(r.received_at_ms),
                    r.status.replace('_', " ")
                )
            })
            .collect(),
        disclosures: export
            .disclosures
            .iter()
            .map(|d| {
                let fields: Vec<String> = d
                    .fields
                    .iter()
                    .map(|field| {
                        let (table, column) = field.split_once('.').unwrap_or((field, ""));
                        coffer_domain::inventory::INVENTORY
                            .iter()
                            .find(|f| f.table == table && f.column == column)
                            .map_or_else(|| field.clone(), |f| f.label.to_lowercase())
                    })
                    .collect();
                let contact =
                    d.privacy_contact.as_ref().map(|c| format!(". Their privacy contact: {c}")).unwrap_or_default();
                format!(
                    "{}: {} {} received your {}, for {} ({}){contact}",
                    day(d.disclosed_at_ms),
                    d.recipient_kind.replace('_', " "),
                    d.recipient_name.as_deref().unwrap_or(&d.recipient),
                    fields.join("; "),
                    d.purpose,
                    d.legal_basis.replace('_', " ")
                )
            })
            .collect(),
    };
    render(&page)
}

async fn data_json(State(state): State<AppState>, customer: Customer) -> Response {
    match state.accounts.own_export(&own(&customer.id)).await {
        Ok(export) => (
            [
                (axum::http::header::CONTENT_TYPE, "application/json"),
                (axum::http::header::CONTENT_DISPOSITION, "attachment; filename=\"coffer-my-data.json\""),
            ],
            serde_json::to_string_pretty(&export).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

async fn delete_page(State(state): State<AppState>, customer: Customer) -> Response {
    render(&DeletePage { message: None, csrf: state.accounts.csrf_token(&customer.token) })
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    csrf: String,
    password: String,
}

async fn delete_account(
    State(state): State<AppState>,
    // A wrong current password is a guess like any other.
    _attempt: GuessAttempt,
    post: CustomerPost<DeleteForm>,
) -> Response {
    let CustomerPost { customer: Customer { id: customer, token }, form } = post;
    match state.accounts.delete_account(&own(&customer), SecretString::from(form.password)).await {
        Ok(()) => {
            let page = MessagePage {
                title: "Your account is deleted",
                message:
                    "Your personal data can no longer be read. A confirmation is on its way to your email address."
                        .into(),
            };
            with_cookie(render(&page), &state.cookie_rule.clear_cookie(SESSION_COOKIE))
        }
        Err(AppError::Account(refused)) => {
            let page = DeletePage {
                message: Some(format!("Not deleted: {refused}.")),
                csrf: state.accounts.csrf_token(&token),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response()
        }
        Err(AppError::TooManyAttempts { retry_after_ms }) => account_locked(retry_after_ms),
        Err(e) => failure(e),
    }
}

/// 429: too many wrong passwords for this account.
fn account_locked(retry_after_ms: i64) -> Response {
    let seconds = retry_seconds(retry_after_ms);
    let page = MessagePage {
        title: "Too many attempts",
        message: format!("Too many wrong passwords for this account. Try again in {seconds} seconds."),
    };
    too_many_attempts(seconds, &page)
}

async fn totp_start(State(state): State<AppState>, post: CustomerPost<CsrfForm>) -> Response {
    let CustomerPost { customer: Customer { id: customer, token }, .. } = post;
    match state.accounts.start_totp(&own(&customer)).await {
        Ok(setup) => render(&TotpPage {
            message: None,
            secret: setup.secret.expose_secret().to_owned(),
            uri: setup.uri.expose_secret().to_owned(),
            csrf: state.accounts.csrf_token(&token),
            codes: Vec::new(),
        }),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct TotpEnableForm {
    #[serde(default)]
    csrf: String,
    secret: String,
    code: String,
    #[serde(default)]
    password: String,
}

async fn totp_enable(
    State(state): State<AppState>,
    // The password confirms it: a stolen session must not lock the owner out.
    _attempt: GuessAttempt,
    post: CustomerPost<TotpEnableForm>,
) -> Response {
    let CustomerPost { customer: Customer { id: customer, token }, form } = post;
    let password = SecretString::from(form.password);
    match state.accounts.enable_totp(&own(&customer), &form.secret, &form.code, password).await {
        Ok(codes) => {
            render(&TotpPage { message: None, secret: String::new(), uri: String::new(), csrf: String::new(), codes })
        }
        Err(AppError::Account(refused)) => {
            let secret = form.secret.chars().filter(char::is_ascii_alphanumeric).take(64).collect::<String>();
            let uri = format!("otpauth://totp/Coffer?secret={secret}&issuer=Coffer");
            let page = TotpPage {
                message: Some(format!("Not turned on: {refused}.")),
                secret,
                uri,
                csrf: state.accounts.csrf_token(&token),
                codes: Vec::new(),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response()
        }
        Err(AppError::TooManyAttempts { retry_after_ms }) => account_locked(retry_after_ms),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct PasswordConfirmForm {
    #[serde(default)]
    csrf: String,
    password: String,
}

async fn totp_disable(
    State(state): State<AppState>,
    // A wrong current password is a guess like any other.
    _attempt: GuessAttempt,
    post: CustomerPost<PasswordConfirmForm>,
) -> Response {
    let CustomerPost { customer: Customer { id: customer, token }, form } = post;
    let message = match state.accounts.disable_totp(&own(&customer), SecretString::from(form.password)).await {
        Ok(()) => "Two-step sign-in is off.".to_owned(),
        Err(AppError::Account(refused)) => format!("Still on: {refused}."),
        Err(AppError::TooManyAttempts { retry_after_ms }) => return account_locked(retry_after_ms),
        Err(e) => return failure(e),
    };
    overview(&state, &customer, &token, Some(message)).await.unwrap_or_else(failure)
}

async fn privacy_request_page() -> Response {
    render(&PrivacyRequestPage { message: None })
}

#[derive(Deserialize)]
struct PrivacyRequestForm {
    email: String,
    kind: String,
    jurisdiction: String,
    #[serde(default)]
    form_token: String,
}

async fn privacy_request(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<PrivacyRequestForm>,
) -> Response {
    if let Some(refused) = guard_post(&state, peer, &headers, forbidden) {
        return refused;
    }
    if !super::forms::form_token_ok(&form.form_token) {
        return forbidden();
    }
    let (Some(kind), Some(jurisdiction)) =
        (coffer_domain::RequestKind::parse(&form.kind), coffer_domain::Jurisdiction::parse(&form.jurisdiction))
    else {
        let page = PrivacyRequestPage { message: Some("Choose what you would like and where you live.".into()) };
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
    };
    if form.email.len() <= 254 {
        state.accounts.submit_privacy_request_after_answer(form.email, kind, jurisdiction);
    }
    // The same answer whether or not we hold data about the address.
    render(&MessagePage {
        title: "Check your email",
        message: "If we hold data about that address, we have emailed it a link to confirm the request. \
                  Nothing happens until you open it."
            .into(),
    })
}

/// GET shows a button; only the POST confirms (a GET never changes state).
/// The confirmation link's page: a button (so that a mail scanner opening
/// the link confirms nothing), or at once, a link that no longer works.
async fn privacy_confirm_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.accounts.privacy_request_awaits(&token).await {
        Ok(true) => render(&PrivacyConfirmPage),
        Ok(false) => (
            StatusCode::GONE,
            render(&MessagePage {
                title: "Link not valid",
                message: "This confirmation link has expired, was already used, or is not one of ours. If you \
                          still want to make a request, send it again from the data request page."
                    .into(),
            }),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

async fn privacy_confirm(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    match state.accounts.confirm_privacy_request(&token).await {
        Ok(days) => render(&MessagePage {
            title: "Request confirmed",
            message: format!("Thank you. We answer by email within {days} days."),
        }),
        Err(AppError::Account(refused)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&MessagePage { title: "Link not valid", message: super::sentence(&refused.to_string()) }),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}
