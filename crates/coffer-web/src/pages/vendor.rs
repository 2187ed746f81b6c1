//! The vendor portal (`/vendor`): sign-in (password, then a TOTP or
//! recovery code: vendor users always have the second factor), enrolment
//! by the one-time link an admin or an owner gives, and the vendor's pages:
//! orders (a buyer only on one order's detail, audited), products, API
//! keys, members, and the data-processing terms with the privacy contact.
//! Who may open a page is the `VendorPortal<R>` extractor's job; what a
//! user may do is checked again by the service.

use super::account::failure;
use super::sign_in::{
    RealmPages, RealmText, cookie_value, guard_post, same_origin, see_other, sign_in_page, with_cookie,
};
use super::{render, sentence};
use crate::AppState;
use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coffer_app::AppError;
use coffer_app::accounts::VendorUser;
use coffer_app::accounts::signin::SignIn;
use coffer_app::request::RequestContext;
use coffer_app::vendors::products::{ProductInput, parse_prices};
use coffer_domain::{Delivery, OrderId, Product, ProductId, VendorApiKeyId, VendorRole, VendorUserId};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::marker::PhantomData;
use std::net::SocketAddr;

const VENDOR_COOKIE: &str = crate::cookies::VENDOR.name;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(super::sign_in::routes::<VendorRealm>())
        .route("/vendor", get(home))
        .route("/vendor/enrol/{token}", get(enrol_page).post(enrol))
        .route("/vendor/orders", get(orders))
        .route("/vendor/orders/{id}", get(order))
        .route("/vendor/products", get(products).post(create_product))
        .route("/vendor/products/{id}", get(product).post(change_product))
        .route("/vendor/keys", get(keys).post(create_key))
        .route("/vendor/keys/{id}/revoke", post(revoke_key))
        .route("/vendor/members", get(members).post(invite_member))
        .route("/vendor/members/{id}/remove", post(remove_member))
        .route("/vendor/webhooks", get(webhooks).post(create_webhook))
        .route("/vendor/webhooks/{id}", get(webhook))
        .route("/vendor/webhooks/{id}/delete", post(delete_webhook))
        .route("/vendor/webhooks/{id}/deliveries/{delivery}/replay", post(replay_delivery))
        .route("/vendor/statement", get(statement))
        .route("/vendor/statement.csv", get(statement_csv))
        .route("/vendor/terms", get(terms).post(accept_terms))
        .route("/vendor/privacy-contact", post(privacy_contact))
        .layer(axum::middleware::map_response(super::account::no_store))
}

/// The download-file upload: a larger body than other forms.
pub fn file_routes() -> Router<AppState> {
    Router::new()
        .route("/vendor/products/{id}/file", post(upload_file))
        .layer(axum::middleware::map_response(super::account::no_store))
}

/// Which vendor role a page needs.
pub trait RequiredRole {
    const OWNER_ONLY: bool;
}

/// Any signed-in user of a vendor.
pub struct AnyUser;
impl RequiredRole for AnyUser {
    const OWNER_ONLY: bool = false;
}

/// Owners only: keys, members, terms.
pub struct Owner;
impl RequiredRole for Owner {
    const OWNER_ONLY: bool = true;
}

/// A signed-in user of an active vendor whose role opens the page; anyone
/// else is sent to the portal's sign-in, or refused with 403 (a member on
/// an owner's page).
pub struct VendorPortal<R> {
    user: VendorUser,
    token: String,
    role: PhantomData<R>,
}

impl<R> VendorPortal<R> {
    fn ctx(&self) -> RequestContext {
        self.user.ctx()
    }

    /// Whether a form was sent from another site or without this
    /// session's token.
    fn forged(&self, state: &AppState, headers: &HeaderMap, csrf: &str) -> bool {
        !same_origin(headers) || !state.accounts.csrf_matches(&self.token, csrf)
    }
}

impl<R: RequiredRole> OptionalFromRequestParts<AppState> for VendorPortal<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Response> {
        let Some(token) = cookie_value(state, &parts.headers, VENDOR_COOKIE) else { return Ok(None) };
        let Some(user) = state.vendors.users().session(&token).await.map_err(failure)? else { return Ok(None) };
        if R::OWNER_ONLY && user.role != VendorRole::Owner {
            let page = MessagePage { title: "For owners", message: "This page is for the vendor's owners.".into() };
            return Err((StatusCode::FORBIDDEN, render(&page)).into_response());
        }
        Ok(Some(VendorPortal { user, token, role: PhantomData }))
    }
}

impl<R: RequiredRole> FromRequestParts<AppState> for VendorPortal<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match <Self as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state).await? {
            Some(user) => Ok(user),
            None => Err(see_other("/vendor")),
        }
    }
}

#[derive(Template)]
#[template(path = "vendor_message.html")]
struct MessagePage {
    title: &'static str,
    message: String,
}

fn forbidden() -> Response {
    let page = MessagePage {
        title: "Request refused",
        message: "This form was sent from another site or an old page. Go back, reload the page and try again.".into(),
    };
    (StatusCode::FORBIDDEN, render(&page)).into_response()
}

/// What a refused form says, or the failure page for our own faults.
#[allow(clippy::result_large_err)]
pub(super) fn refusal(e: AppError) -> Result<String, Response> {
    match e {
        AppError::Vendor(e) => Ok(sentence(&e.to_string())),
        AppError::Catalog(e) => Ok(sentence(&e.to_string())),
        AppError::Money(e) => Ok(sentence(&e.to_string())),
        AppError::Customer(e) => Ok(sentence(&format!("the {} {}", e.field.replace(['_', '.'], " "), e.reason))),
        AppError::NotFound => Err(super::error_page(StatusCode::NOT_FOUND)),
        AppError::Forbidden(_) => Err(forbidden()),
        other => Err(failure(other)),
    }
}

/// The portal realm's sign-in pages: the second factor every time.
pub(super) struct VendorRealm;

impl RealmPages for VendorRealm {
    type Directory = coffer_app::accounts::vendor_users::VendorUserDirectory;
    const TEXT: &'static RealmText = &RealmText {
        home: "/vendor",
        title: "Vendor sign-in",
        heading: "Vendor portal",
        lead: "For the vendors who sell through Coffer: your products, orders, API keys and webhooks. Sign-in needs \
               your password and a code from your authenticator app.",
        email_label: "Work email address",
        button: "Continue",
        emailed_links: false,
        footnote: "New vendor users enrol with the one-time link their owner or our team gives them.",
        code_title: "Vendor sign-in: code",
        code_lead: "Type the 6-digit code your authenticator app shows for the Coffer vendor portal, or one of your \
                    recovery codes.",
    };
    const COOKIE: &'static str = VENDOR_COOKIE;

    fn service(state: &AppState) -> &SignIn<Self::Directory> {
        state.vendors.users().sign_in_service()
    }

    fn forbidden() -> Response {
        forbidden()
    }
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn utc(at: coffer_domain::Millis) -> String {
    coffer_domain::order::rfc3339_utc(at).replace('T', " ").chars().take(16).collect()
}

fn money(minor: i64, currency: &str) -> String {
    coffer_domain::Currency::parse(currency).map(|c| c.amount(minor)).unwrap_or_default()
}

#[derive(Template)]
#[template(path = "vendor_home.html")]
struct HomePage {
    vendor: String,
    email: String,
    owner: bool,
    terms_accepted: bool,
    license_key: String,
    contact: String,
    csrf: String,
}

async fn home(user: Option<VendorPortal<AnyUser>>, State(state): State<AppState>) -> Response {
    let Some(user) = user else { return sign_in_page::<VendorRealm>(None, String::new()).into_response() };
    let page = async {
        let record = state.vendors.own_record(&user.ctx()).await?;
        let email = state.vendors.users().email_of(&user.user.id).await?;
        let license_key = state.checkout.fulfilment().license_signer(&record.id).await?.public_key_base64();
        let contact = state.vendors.privacy_contact(&record.id).await?.map(|c| c.contact).unwrap_or_default();
        Ok::<_, AppError>(HomePage {
            vendor: record.name,
            email,
            owner: user.user.role == VendorRole::Owner,
            terms_accepted: record.terms_accepted_at.is_some(),
            license_key,
            contact,
            csrf: state.accounts.csrf_token(&user.token),
        })
    };
    match page.await {
        Ok(page) => render(&page),
        Err(e) => failure(e),
    }
}

#[derive(Template)]
#[template(path = "vendor_enrol.html")]
struct EnrolPage {
    message: Option<String>,
    secret: String,
    uri: String,
    codes: Vec<String>,
}

fn link_gone(message: String) -> Response {
    (StatusCode::GONE, render(&MessagePage { title: "Enrolment link not valid", message })).into_response()
}

async fn enrol_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.vendors.users().start_enrolment(&token, None).await {
        Ok((setup, _)) => render(&EnrolPage {
            message: None,
            secret: setup.secret.expose_secret().to_owned(),
            uri: setup.uri.expose_secret().to_owned(),
            codes: Vec::new(),
        }),
        Err(AppError::LinkGone(message)) => link_gone(sentence(message)),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct EnrolForm {
    password: String,
    secret: String,
    code: String,
}

async fn enrol(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<EnrolForm>,
) -> Response {
    if let Some(refused) = guard_post(&state, peer, &headers, forbidden) {
        return refused;
    }
    if form.password.len() > 1024 || form.secret.len() > 128 || form.code.len() > 64 {
        return link_gone("That is longer than anything this form accepts.".into());
    }
    let users = state.vendors.users();
    match users.enrol(&token, SecretString::from(form.password), &form.secret, &form.code).await {
        Ok(enrolled) => with_cookie(
            render(&EnrolPage {
                message: None,
                secret: String::new(),
                uri: String::new(),
                codes: enrolled.recovery_codes,
            }),
            &state.cookie_rule.set_cookie(VENDOR_COOKIE, enrolled.session.token.expose_secret()),
        ),
        Err(AppError::LinkGone(message)) => link_gone(sentence(message)),
        Err(AppError::Account(refused)) => {
            // The same secret again, so the app entry already made still works.
            let (setup, _) = match users.start_enrolment(&token, Some(&form.secret)).await {
                Ok(setup) => setup,
                Err(AppError::LinkGone(again)) => return link_gone(sentence(again)),
                Err(e) => return failure(e),
            };
            let page = EnrolPage {
                message: Some(sentence(&refused.to_string())),
                secret: setup.secret.expose_secret().to_owned(),
                uri: setup.uri.expose_secret().to_owned(),
                codes: Vec::new(),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response()
        }
        Err(e) => failure(e),
    }
}

struct OrderLine {
    id: String,
    placed: String,
    status: String,
    lines: String,
    amount: String,
}

#[derive(Template)]
#[template(path = "vendor_orders.html")]
struct OrdersPage {
    orders: Vec<OrderLine>,
    /// The next page's cursor.
    next: Option<String>,
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    after: Option<String>,
}

/// A product's name for a page, else its id.
async fn product_name(state: &AppState, id: &str) -> String {
    match ProductId::parse(id) {
        Ok(pid) => state.catalog.product(&pid).await.map(|p| p.name).unwrap_or_else(|_| id.to_owned()),
        Err(_) => id.to_owned(),
    }
}

async fn orders(
    user: VendorPortal<AnyUser>,
    State(state): State<AppState>,
    axum::extract::Query(page): axum::extract::Query<PageQuery>,
) -> Response {
    let after = page.after.as_deref().and_then(|a| OrderId::parse(a).ok());
    let query = coffer_app::vendors::VendorOrderQuery { after, limit: 50, ..Default::default() };
    let (list, next) = match state.vendors.orders(&user.ctx(), &query).await {
        Ok(found) => found,
        Err(e) => return failure(e),
    };
    let mut orders = Vec::with_capacity(list.len());
    for o in list {
        let mut names = Vec::new();
        for line in &o.lines {
            names.push(format!("{} × {}", line.quantity, product_name(&state, &line.product_id).await));
        }
        orders.push(OrderLine {
            placed: o.placed_at.replace('T', " ").chars().take(16).collect(),
            status: o.status.replace('_', " "),
            lines: names.join(", "),
            amount: money(o.vendor_subtotal, &o.currency),
            id: o.id,
        });
    }
    render(&OrdersPage { orders, next })
}

#[derive(Template)]
#[template(path = "vendor_order.html")]
struct OrderPage {
    order: OrderLine,
    buyer: Option<coffer_app::vendors::VendorBuyer>,
    address: Vec<String>,
    terms_accepted: bool,
}

async fn order(user: VendorPortal<AnyUser>, State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = OrderId::parse(&id) else { return super::error_page(StatusCode::NOT_FOUND) };
    let ctx = user.ctx();
    let (found, record) = match (state.vendors.order(&ctx, &id).await, state.vendors.own_record(&ctx).await) {
        (Ok(found), Ok(record)) => (found, record),
        (Err(e), _) | (_, Err(e)) => return failure(e),
    };
    let Some(found) = found else { return super::error_page(StatusCode::NOT_FOUND) };
    let o = found.summary;
    let mut names = Vec::new();
    for line in &o.lines {
        let refunded = if line.refunded > 0 {
            format!(" (refunded {})", money(line.refunded, &o.currency))
        } else {
            String::new()
        };
        names.push(format!(
            "{} × {} at {}{refunded}",
            line.quantity,
            product_name(&state, &line.product_id).await,
            money(line.unit_price, &o.currency)
        ));
    }
    let address = found
        .buyer
        .as_ref()
        .and_then(|b| serde_json::from_value::<coffer_domain::MailingAddress>(b.address.clone()).ok())
        .map(|a| a.lines())
        .unwrap_or_default();
    render(&OrderPage {
        order: OrderLine {
            placed: o.placed_at.replace('T', " ").chars().take(16).collect(),
            status: o.status.replace('_', " "),
            lines: names.join("; "),
            amount: money(o.vendor_subtotal, &o.currency),
            id: o.id,
        },
        buyer: found.buyer,
        address,
        terms_accepted: record.terms_accepted_at.is_some(),
    })
}

struct ProductLine {
    id: String,
    name: String,
    prices: String,
    delivery: &'static str,
    state: &'static str,
}

impl From<&Product> for ProductLine {
    fn from(p: &Product) -> Self {
        ProductLine {
            id: p.id.to_string(),
            name: p.name.clone(),
            prices: p.prices.iter().map(|m| m.currency().amount(m.minor())).collect::<Vec<_>>().join(", "),
            delivery: delivery_label(p.delivery),
            state: match (p.published, p.listed) {
                (true, true) => "On sale",
                (true, false) => "Published, not on sale (download file missing or vendor suspended)",
                (false, _) => "Draft (not on sale)",
            },
        }
    }
}

fn delivery_label(d: Delivery) -> &'static str {
    match d {
        Delivery::LicenseKey => "License key",
        Delivery::Download => "Download",
        Delivery::Both => "License key and download",
    }
}

/// The product form as typed, kept when it comes back with a problem.
#[derive(Default, Deserialize)]
struct ProductForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    /// `USD 19.99, EUR 18.99` or minor units: `USD 1999`.
    #[serde(default)]
    prices: String,
    #[serde(default)]
    delivery: String,
    #[serde(default)]
    published: Option<String>,
    /// `publish` or `unpublish` from the product page's buttons.
    #[serde(default)]
    action: String,
}

#[derive(Template)]
#[template(path = "vendor_products.html")]
struct ProductsPage {
    products: Vec<ProductLine>,
    form: ProductForm,
    message: Option<String>,
    csrf: String,
}

/// Prices as a person types them: `USD 19.99, EUR 18.99`, in major units
/// with the currency's own decimals.
fn typed_prices(text: &str) -> Result<coffer_domain::Prices, String> {
    let mut pairs = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut words = part.split_whitespace();
        let (Some(code), Some(amount), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "Write each price as a currency code and an amount, like “USD 19.99”; “{part}” is not."
            ));
        };
        let code = code.to_ascii_uppercase();
        let currency =
            coffer_domain::Currency::parse(&code).map_err(|_| format!("{code} is not a currency we know."))?;
        let minor =
            minor_units(amount, currency.exponent()).ok_or_else(|| format!("{amount} is not an amount in {code}."))?;
        pairs.push((code, minor));
    }
    parse_prices(&pairs).map_err(|(_, e)| sentence(&e.to_string()))
}

fn minor_units(amount: &str, exponent: u32) -> Option<i64> {
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fraction.len() > usize::try_from(exponent).unwrap_or(0) {
        return None;
    }
    let scale = 10i64.checked_pow(exponent)?;
    let padded = format!("{fraction:0<width$}", width = usize::try_from(exponent).unwrap_or(0));
    let fraction: i64 = if padded.is_empty() { 0 } else { padded.parse().ok()? };
    whole.parse::<i64>().ok()?.checked_mul(scale)?.checked_add(fraction)
}

fn product_input(form: &ProductForm) -> Result<(ProductInput, coffer_domain::Prices), String> {
    let delivery = Delivery::parse(&form.delivery).map_err(|_| "Choose how the product is delivered.".to_owned())?;
    let prices = typed_prices(&form.prices)?;
    Ok((ProductInput { name: form.name.clone(), description: form.description.clone(), delivery }, prices))
}

async fn products_page(
    state: &AppState,
    user: &VendorPortal<AnyUser>,
    form: ProductForm,
    message: Option<String>,
) -> Response {
    match state.vendors.own_products(&user.ctx(), None, 100).await {
        Ok(page) => render(&ProductsPage {
            products: page.products.iter().map(ProductLine::from).collect(),
            form,
            message,
            csrf: state.accounts.csrf_token(&user.token),
        }),
        Err(e) => failure(e),
    }
}

async fn products(user: VendorPortal<AnyUser>, State(state): State<AppState>) -> Response {
    let form = ProductForm { delivery: "license_key".into(), published: Some("on".into()), ..ProductForm::default() };
    products_page(&state, &user, form, None).await
}

async fn create_product(
    user: VendorPortal<AnyUser>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ProductForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    let problem = match product_input(&form) {
        Ok((input, prices)) => {
            match state.vendors.create_own_product(&user.ctx(), &input, prices, form.published.is_some()).await {
                Ok(product) => return see_other(&format!("/vendor/products/{}", product.id)),
                Err(e) => match refusal(e) {
                    Ok(message) => message,
                    Err(page) => return page,
                },
            }
        }
        Err(message) => message,
    };
    let page = products_page(&state, &user, form, Some(problem)).await;
    (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
}

#[derive(Template)]
#[template(path = "vendor_product.html")]
struct ProductPage {
    product: ProductLine,
    /// Whether it delivers a download, and its file if uploaded.
    download: bool,
    file: Option<coffer_app::vendors::products::UploadedFile>,
    max_upload_mb: usize,
    published: bool,
    form: ProductForm,
    message: Option<String>,
    saved: bool,
    csrf: String,
}

fn form_of(p: &Product) -> ProductForm {
    ProductForm {
        name: p.name.clone(),
        description: p.description.clone(),
        prices: p
            .prices
            .iter()
            .map(|m| {
                let amount = m.currency().amount(m.minor());
                // `amount` reads "19.99 USD"; the form takes "USD 19.99".
                let number = amount.split_whitespace().next().unwrap_or_default().replace(',', "");
                format!("{} {number}", m.currency().code())
            })
            .collect::<Vec<_>>()
            .join(", "),
        delivery: p.delivery.as_str().to_owned(),
        ..ProductForm::default()
    }
}

async fn product_page(
    state: &AppState,
    user: &VendorPortal<AnyUser>,
    p: &Product,
    form: Option<ProductForm>,
    message: Option<String>,
    saved: bool,
) -> Response {
    let file = match state.vendors.own_file(&user.ctx(), &p.id).await {
        Ok(file) => file,
        Err(e) => return failure(e),
    };
    render(&ProductPage {
        product: ProductLine::from(p),
        download: p.delivery.has_download(),
        file,
        max_upload_mb: state.vendors.max_upload_bytes() / (1024 * 1024),
        published: p.published,
        form: form.unwrap_or_else(|| form_of(p)),
        message,
        saved,
        csrf: state.accounts.csrf_token(&user.token),
    })
}

async fn product(user: VendorPortal<AnyUser>, State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = ProductId::parse(&id) else { return super::error_page(StatusCode::NOT_FOUND) };
    match state.vendors.own_product(&user.ctx(), &id).await {
        Ok(p) => product_page(&state, &user, &p, None, None, false).await,
        Err(AppError::NotFound) => super::error_page(StatusCode::NOT_FOUND),
        Err(e) => failure(e),
    }
}

async fn change_product(
    user: VendorPortal<AnyUser>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ProductForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    let Ok(id) = ProductId::parse(&id) else { return super::error_page(StatusCode::NOT_FOUND) };
    let ctx = user.ctx();
    let done = match form.action.as_str() {
        "publish" | "unpublish" => state.vendors.publish_own_product(&ctx, &id, form.action == "publish").await,
        _ => match product_input(&form) {
            Ok((input, prices)) => state.vendors.edit_own_product(&ctx, &id, &input, prices).await,
            Err(message) => {
                return match state.vendors.own_product(&ctx, &id).await {
                    Ok(p) => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        product_page(&state, &user, &p, Some(form), Some(message), false).await,
                    )
                        .into_response(),
                    Err(e) => refusal(e).err().unwrap_or_else(|| super::error_page(StatusCode::NOT_FOUND)),
                };
            }
        },
    };
    match done {
        Ok(p) => product_page(&state, &user, &p, None, None, true).await,
        Err(e) => match refusal(e) {
            Ok(message) => match state.vendors.own_product(&ctx, &id).await {
                Ok(p) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    product_page(&state, &user, &p, Some(form), Some(message), false).await,
                )
                    .into_response(),
                Err(e) => failure(e),
            },
            Err(page) => page,
        },
    }
}

struct KeyLine {
    id: String,
    prefix: String,
    label: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "vendor_keys.html")]
struct KeysPage {
    keys: Vec<KeyLine>,
    /// A key just made: shown this once.
    new_key: Option<String>,
    message: Option<String>,
    csrf: String,
}

async fn keys_page(
    state: &AppState,
    user: &VendorPortal<Owner>,
    new_key: Option<String>,
    message: Option<String>,
) -> Response {
    match state.vendors.api_keys(&user.ctx()).await {
        Ok(rows) => render(&KeysPage {
            keys: rows
                .into_iter()
                .map(|k| KeyLine {
                    id: k.id.to_string(),
                    prefix: k.prefix,
                    label: k.label,
                    created: utc(k.created_at),
                    last_used: k.last_used_at.map_or_else(|| "never".to_owned(), utc),
                    revoked: k.revoked_at.map(utc),
                })
                .collect(),
            new_key,
            message,
            csrf: state.accounts.csrf_token(&user.token),
        }),
        Err(e) => failure(e),
    }
}

async fn keys(user: VendorPortal<Owner>, State(state): State<AppState>) -> Response {
    keys_page(&state, &user, None, None).await
}

#[derive(Deserialize)]
struct LabelForm {
    csrf: String,
    #[serde(default)]
    label: String,
}

async fn create_key(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LabelForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    match state.vendors.create_api_key(&user.ctx(), &form.label).await {
        Ok(created) => keys_page(&state, &user, Some(created.key.expose_secret().to_owned()), None).await,
        Err(e) => match refusal(e) {
            Ok(message) => {
                (StatusCode::UNPROCESSABLE_ENTITY, keys_page(&state, &user, None, Some(message)).await).into_response()
            }
            Err(page) => page,
        },
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn revoke_key(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    let Ok(id) = VendorApiKeyId::parse(&id) else { return super::error_page(StatusCode::NOT_FOUND) };
    match state.vendors.revoke_api_key(&user.ctx(), &id).await {
        Ok(()) => see_other("/vendor/keys"),
        Err(e) => refusal(e).err().unwrap_or_else(|| see_other("/vendor/keys")),
    }
}

struct MemberLine {
    id: String,
    email: String,
    role: &'static str,
    enrolled: bool,
    me: bool,
}

#[derive(Template)]
#[template(path = "vendor_members.html")]
struct MembersPage {
    members: Vec<MemberLine>,
    /// An enrolment link just made: shown this once.
    link: Option<String>,
    message: Option<String>,
    csrf: String,
}

async fn members_page(
    state: &AppState,
    user: &VendorPortal<Owner>,
    link: Option<String>,
    message: Option<String>,
) -> Response {
    match state.vendors.users().list(&user.ctx()).await {
        Ok(rows) => render(&MembersPage {
            members: rows
                .into_iter()
                .map(|m| MemberLine {
                    me: m.id == user.user.id,
                    id: m.id.to_string(),
                    email: m.email,
                    role: m.role.label(),
                    enrolled: m.enrolled,
                })
                .collect(),
            link,
            message,
            csrf: state.accounts.csrf_token(&user.token),
        }),
        Err(e) => failure(e),
    }
}

async fn members(user: VendorPortal<Owner>, State(state): State<AppState>) -> Response {
    members_page(&state, &user, None, None).await
}

#[derive(Deserialize)]
struct InviteForm {
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

async fn invite_member(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<InviteForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    let role = VendorRole::parse(&form.role).unwrap_or(VendorRole::Member);
    match state.vendors.users().invite(&user.user.vendor, &form.email, role, &user.ctx()).await {
        Ok(link) => members_page(&state, &user, Some(link.expose_secret().to_owned()), None).await,
        Err(e) => match refusal(e) {
            Ok(message) => (StatusCode::UNPROCESSABLE_ENTITY, members_page(&state, &user, None, Some(message)).await)
                .into_response(),
            Err(page) => page,
        },
    }
}

async fn remove_member(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    let Ok(id) = VendorUserId::parse(&id) else { return super::error_page(StatusCode::NOT_FOUND) };
    match state.vendors.users().remove(&id, &user.ctx()).await {
        Ok(()) => see_other("/vendor/members"),
        Err(e) => match refusal(e) {
            Ok(message) => (StatusCode::UNPROCESSABLE_ENTITY, members_page(&state, &user, None, Some(message)).await)
                .into_response(),
            Err(page) => page,
        },
    }
}

/// The terms as a page shows them: a title, the opening paragraphs, and
/// the numbered items (each a bold lead-in and its text).
struct TermsText {
    title: String,
    paragraphs: Vec<String>,
    items: Vec<(String, String)>,
}

/// The rest of a `N. …` line.
fn numbered(line: &str) -> Option<&str> {
    let (number, rest) = line.trim().split_once(". ")?;
    (!number.is_empty() && number.chars().all(|c| c.is_ascii_digit())).then(|| rest.trim())
}

/// Reads the terms' plain markdown: `# title`, paragraphs, `N. **Lead.** text`.
fn terms_text(markdown: &str) -> TermsText {
    let mut text = TermsText { title: String::new(), paragraphs: Vec::new(), items: Vec::new() };
    for block in markdown.split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
        if let Some(title) = block.strip_prefix("# ") {
            text.title = title.to_owned();
        } else if numbered(block).is_some() {
            for line in block.lines() {
                match numbered(line) {
                    Some(rest) => match rest.strip_prefix("**").and_then(|r| r.split_once("**")) {
                        Some((lead, tail)) => text.items.push((lead.to_owned(), tail.trim().to_owned())),
                        None => text.items.push((String::new(), rest.to_owned())),
                    },
                    // A line that goes on the item before.
                    None => {
                        if let Some(last) = text.items.last_mut() {
                            last.1 = format!("{} {}", last.1, line.trim());
                        }
                    }
                }
            }
        } else {
            text.paragraphs.push(block.replace('\n', " "));
        }
    }
    text
}

#[derive(Template)]
#[template(path = "vendor_terms.html")]
struct TermsPage {
    terms: TermsText,
    version: String,
    accepted: Option<String>,
    owner: bool,
    contact: String,
    named_contact: String,
    message: Option<String>,
    csrf: String,
}

async fn terms_page(state: &AppState, user: &VendorPortal<AnyUser>, message: Option<String>) -> Response {
    let page = async {
        let record = state.vendors.own_record(&user.ctx()).await?;
        let contact = state.vendors.privacy_contact(&record.id).await?;
        Ok::<_, AppError>(TermsPage {
            terms: terms_text(coffer_app::vendors::TERMS_TEXT),
            version: coffer_app::vendors::terms_version(),
            accepted: record
                .terms_accepted_at
                .map(|at| format!("version {} on {}", record.terms_version.unwrap_or_default(), utc(at))),
            owner: user.user.role == VendorRole::Owner,
            contact: contact.as_ref().map(|c| c.contact.clone()).unwrap_or_default(),
            named_contact: record.privacy_contact.unwrap_or_default(),
            message,
            csrf: state.accounts.csrf_token(&user.token),
        })
    };
    match page.await {
        Ok(page) => render(&page),
        Err(e) => failure(e),
    }
}

async fn terms(user: VendorPortal<AnyUser>, State(state): State<AppState>) -> Response {
    terms_page(&state, &user, None).await
}

#[derive(Deserialize)]
struct AcceptForm {
    csrf: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    accept: Option<String>,
}

async fn accept_terms(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AcceptForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    let as_any = VendorPortal::<AnyUser> { user: user.user.clone(), token: user.token.clone(), role: PhantomData };
    if form.accept.is_none() {
        let message = Some("Tick the box to accept the terms.".to_owned());
        return (StatusCode::UNPROCESSABLE_ENTITY, terms_page(&state, &as_any, message).await).into_response();
    }
    match state.vendors.accept_terms(&user.ctx(), &form.version).await {
        Ok(()) => see_other("/vendor/terms"),
        Err(e) => match refusal(e) {
            Ok(message) => {
                (StatusCode::UNPROCESSABLE_ENTITY, terms_page(&state, &as_any, Some(message)).await).into_response()
            }
            Err(page) => page,
        },
    }
}

#[derive(Deserialize)]
struct ContactForm {
    csrf: String,
    #[serde(default)]
    contact: String,
}

async fn privacy_contact(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ContactForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    let as_any = VendorPortal::<AnyUser> { user: user.user.clone(), token: user.token.clone(), role: PhantomData };
    match state.vendors.set_privacy_contact(&user.ctx(), Some(&form.contact)).await {
        Ok(()) => see_other("/vendor/terms"),
        Err(e) => match refusal(e) {
            Ok(message) => {
                (StatusCode::UNPROCESSABLE_ENTITY, terms_page(&state, &as_any, Some(message)).await).into_response()
            }
            Err(page) => page,
        },
    }
}

async fn upload_file(
    user: VendorPortal<AnyUser>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    mut form: axum::extract::Multipart,
) -> Response {
    let Ok(id) = ProductId::parse(&id) else { return super::error_page(StatusCode::NOT_FOUND) };
    let ctx = user.ctx();
    let product = match state.vendors.own_product(&ctx, &id).await {
        Ok(p) => p,
        Err(e) => return refusal(e).err().unwrap_or_else(|| super::error_page(StatusCode::NOT_FOUND)),
    };
    let again = |message: String| async {
        (StatusCode::UNPROCESSABLE_ENTITY, product_page(&state, &user, &product, None, Some(message), false).await)
            .into_response()
    };
    if !same_origin(&headers) {
        return forbidden();
    }
    let (mut csrf, mut file) = (String::new(), None);
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("csrf") => csrf = field.text().await.unwrap_or_default(),
            Ok(Some(field)) if field.name() == Some("file") => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let kind = field.content_type().unwrap_or_default().to_owned();
                match field.bytes().await {
                    Ok(bytes) => file = Some((name, kind, bytes)),
                    Err(_) => {
                        return again(format!(
                            "The file could not be read; it may be larger than {} MB.",
                            state.vendors.max_upload_bytes() / (1024 * 1024)
                        ))
                        .await;
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return again("The upload could not be read.".into()).await,
        }
    }
    if !state.accounts.csrf_matches(&user.token, &csrf) {
        return forbidden();
    }
    let Some((name, kind, bytes)) = file else { return again("Choose a file to upload.".into()).await };
    match state.vendors.upload_own_file(&ctx, &id, &name, &kind, &bytes).await {
        Ok(_) => see_other(&format!("/vendor/products/{id}")),
        Err(e) => match refusal(e) {
            Ok(message) => again(message).await,
            Err(page) => page,
        },
    }
}

struct EndpointLine {
    id: String,
    url: String,
    events: String,
    created: String,
}

impl From<coffer_app::vendors::WebhookEndpoint> for EndpointLine {
    fn from(e: coffer_app::vendors::WebhookEndpoint) -> Self {
        EndpointLine { id: e.id.to_string(), url: e.url, events: e.events.join(", "), created: utc(e.created_at) }
    }
}

#[derive(Template)]
#[template(path = "vendor_webhooks.html")]
struct WebhooksPage {
    endpoints: Vec<EndpointLine>,
    events: &'static [&'static str],
    /// An endpoint just made and its secret, shown this once.
    created: Option<(String, String)>,
    url: String,
    message: Option<String>,
    csrf: String,
}

async fn webhooks_page(
    state: &AppState,
    user: &VendorPortal<Owner>,
    created: Option<(String, String)>,
    url: String,
    message: Option<String>,
) -> Response {
    match state.vendors.endpoints(&user.ctx()).await {
        Ok(list) => render(&WebhooksPage {
            endpoints: list.into_iter().map(EndpointLine::from).collect(),
            events: &coffer_app::vendors::webhooks::EVENTS,
            created,
            url,
            message,
            csrf: state.accounts.csrf_token(&user.token),
        }),
        Err(e) => failure(e),
    }
}

async fn webhooks(user: VendorPortal<Owner>, State(state): State<AppState>) -> Response {
    webhooks_page(&state, &user, None, String::new(), None).await
}

async fn create_webhook(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawForm(raw): axum::extract::RawForm,
) -> Response {
    // Several `events` fields: read as pairs, not a struct.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&raw).unwrap_or_default();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    if user.forged(&state, &headers, &field("csrf")) {
        return forbidden();
    }
    let events: Vec<String> = pairs.iter().filter(|(k, _)| k == "events").map(|(_, v)| v.clone()).collect();
    let url = field("url");
    match state.vendors.create_endpoint(&user.ctx(), &url, &events).await {
        Ok(created) => {
            let shown = (created.endpoint.url.clone(), created.secret.expose_secret().to_owned());
            webhooks_page(&state, &user, Some(shown), String::new(), None).await
        }
        Err(e) => match refusal(e) {
            Ok(message) => {
                (StatusCode::UNPROCESSABLE_ENTITY, webhooks_page(&state, &user, None, url, Some(message)).await)
                    .into_response()
            }
            Err(page) => page,
        },
    }
}

struct DeliveryLine {
    id: String,
    event: String,
    order: String,
    status: String,
    attempts: i64,
    answer: String,
    last: String,
}

#[derive(Template)]
#[template(path = "vendor_webhook.html")]
struct WebhookPage {
    endpoint: EndpointLine,
    deliveries: Vec<DeliveryLine>,
    next: Option<String>,
    csrf: String,
}

#[derive(Deserialize)]
struct BeforeQuery {
    #[serde(default)]
    before: Option<String>,
}

async fn webhook(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    axum::extract::Query(page): axum::extract::Query<BeforeQuery>,
) -> Response {
    let Ok(id) = coffer_domain::WebhookEndpointId::parse(&id) else { return super::error_page(StatusCode::NOT_FOUND) };
    let ctx = user.ctx();
    let endpoint = match state.vendors.own_endpoint(&ctx, &id).await {
        Ok(e) => e,
        Err(e) => return refusal(e).err().unwrap_or_else(|| super::error_page(StatusCode::NOT_FOUND)),
    };
    let before = page.before.as_deref().and_then(|b| coffer_domain::WebhookDeliveryId::parse(b).ok());
    match state.vendors.deliveries(&ctx, &id, before.as_ref(), 50).await {
        Ok(list) => {
            let next = (list.len() == 50).then(|| list.last().map(|d| d.id.to_string())).flatten();
            render(&WebhookPage {
                endpoint: endpoint.into(),
                deliveries: list
                    .into_iter()
                    .map(|d| DeliveryLine {
                        answer: match (d.last_status_code, &d.last_error) {
                            (Some(code), _) => format!("HTTP {code}"),
                            (None, Some(error)) => error.replace('_', " "),
                            (None, None) => "not tried yet".into(),
                        },
                        last: d.last_attempt_at.map(utc).unwrap_or_default(),
                        id: d.id.to_string(),
                        event: d.event_type,
                        order: d.order_id,
                        status: d.status,
                        attempts: d.attempts,
                    })
                    .collect(),
                next,
                csrf: state.accounts.csrf_token(&user.token),
            })
        }
        Err(e) => failure(e),
    }
}

async fn delete_webhook(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    let Ok(id) = coffer_domain::WebhookEndpointId::parse(&id) else { return super::error_page(StatusCode::NOT_FOUND) };
    match state.vendors.delete_endpoint(&user.ctx(), &id).await {
        Ok(()) => see_other("/vendor/webhooks"),
        Err(e) => refusal(e).err().unwrap_or_else(|| see_other("/vendor/webhooks")),
    }
}

async fn replay_delivery(
    user: VendorPortal<Owner>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, delivery)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if user.forged(&state, &headers, &form.csrf) {
        return forbidden();
    }
    let (Ok(endpoint), Ok(delivery)) =
        (coffer_domain::WebhookEndpointId::parse(&id), coffer_domain::WebhookDeliveryId::parse(&delivery))
    else {
        return super::error_page(StatusCode::NOT_FOUND);
    };
    match state.vendors.replay(&user.ctx(), &endpoint, &delivery).await {
        Ok(_) => see_other(&format!("/vendor/webhooks/{endpoint}")),
        Err(e) => refusal(e).err().unwrap_or_else(|| super::error_page(StatusCode::NOT_FOUND)),
    }
}

#[derive(Deserialize)]
struct PeriodQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

struct TotalsLine {
    currency: String,
    sales: String,
    refunds: String,
    fees: String,
    net: String,
}

struct EntryLine {
    at: String,
    order: String,
    kind: &'static str,
    amount: String,
}

#[derive(Template)]
#[template(path = "vendor_statement.html")]
struct StatementPage {
    from: String,
    to: String,
    totals: Vec<TotalsLine>,
    entries: Vec<EntryLine>,
    message: Option<String>,
}

/// The period asked for, else this month so far (UTC).
fn period_of(query: &PeriodQuery, now: coffer_domain::Millis) -> (String, String) {
    let today: String = coffer_domain::order::rfc3339_utc(now).chars().take(10).collect();
    let first = format!("{}-01", &today[..7.min(today.len())]);
    (query.from.clone().unwrap_or(first), query.to.clone().unwrap_or(today))
}

async fn statement(
    user: VendorPortal<AnyUser>,
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<PeriodQuery>,
) -> Response {
    let (from, to) = period_of(&query, state.vendors.now());
    let kind = |k: &str| match k {
        "sale" => "Sale",
        "fee" => "Fee",
        "refund" => "Refund",
        "fee_refund" => "Fee given back",
        _ => "Other",
    };
    match state.vendors.statement(&user.ctx(), &from, &to).await {
        Ok(s) => render(&StatementPage {
            totals: s
                .currencies
                .iter()
                .map(|t| TotalsLine {
                    currency: t.currency.clone(),
                    sales: money(t.sales, &t.currency),
                    refunds: money(t.refunds, &t.currency),
                    fees: money(t.fees, &t.currency),
                    net: money(t.net, &t.currency),
                })
                .collect(),
            entries: s
                .entries
                .iter()
                .map(|e| EntryLine {
                    at: e.at.replace('T', " ").chars().take(16).collect(),
                    order: e.order_id.clone(),
                    kind: kind(&e.kind),
                    amount: money(e.amount, &e.currency),
                })
                .collect(),
            from: s.from,
            to: s.to,
            message: None,
        }),
        Err(AppError::Vendor(e)) => {
            let page = StatementPage {
                from,
                to,
                totals: Vec::new(),
                entries: Vec::new(),
                message: Some(sentence(&e.to_string())),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response()
        }
        Err(e) => failure(e),
    }
}

async fn statement_csv(
    user: VendorPortal<AnyUser>,
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<PeriodQuery>,
) -> Response {
    let (from, to) = period_of(&query, state.vendors.now());
    match state.vendors.statement(&user.ctx(), &from, &to).await {
        Ok(s) => {
            let disposition = format!("attachment; filename=\"statement-{}-{}.csv\"", s.from, s.to);
            (
                [
                    (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (axum::http::header::CONTENT_DISPOSITION, disposition),
                ],
                s.csv(),
            )
                .into_response()
        }
        Err(AppError::Vendor(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&MessagePage { title: "Statement", message: sentence(&e.to_string()) }),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terms_read_as_a_title_paragraphs_and_numbered_items() {
        let text = terms_text(coffer_app::vendors::TERMS_TEXT);
        assert_eq!(text.title, "Data-processing terms for vendors");
        assert_eq!(text.paragraphs.len(), 1);
        assert_eq!(text.items.len(), 8);
        assert_eq!(text.items[0].0, "What you receive.");
        assert!(text.items.iter().all(|(lead, rest)| !lead.is_empty() && !rest.contains("**")));
    }

    #[test]
    fn prices_are_typed_in_major_units() {
        let p = typed_prices("USD 19.99, eur 18").unwrap();
        let usd = coffer_domain::Currency::parse("USD").unwrap();
        let eur = coffer_domain::Currency::parse("EUR").unwrap();
        assert_eq!(p.get(usd).map(|m| m.minor()), Some(1999));
        assert_eq!(p.get(eur).map(|m| m.minor()), Some(1800));
        assert_eq!(typed_prices("JPY 500").unwrap().iter().next().map(|m| m.minor()), Some(500));
        assert!(typed_prices("JPY 5.5").is_err(), "yen have no decimals");
        assert!(typed_prices("USD 1.999").is_err());
        assert!(typed_prices("XXQ 5").unwrap_err().contains("XXQ"));
        assert!(typed_prices("USD").is_err());
        assert!(typed_prices("USD -1").is_err());
        assert!(typed_prices("").is_err(), "at least one price");
    }
}
