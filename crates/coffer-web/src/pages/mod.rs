//! Server-rendered HTML pages. They need no JavaScript; the one stylesheet
//! is served from this binary.

mod account;
mod checkout;
pub mod forms;
mod identity;
mod sign_in;
mod staff;
mod vendor;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::middleware::is_api_path;
use askama::Template;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use coffer_app::AppError;
use coffer_app::ProductQuery;
use coffer_domain::{MailingAddress, Product, ProductId};

const STYLESHEET: &str = include_str!("../../static/style.css");
/// A 32 px coin with a C, as browsers ask for it at `/favicon.ico`.
const FAVICON: &[u8] = include_bytes!("../../static/favicon.ico");

/// Pages that take uploads larger than the usual body limit.
pub fn upload_routes() -> Router<AppState> {
    identity::routes()
}

/// The vendor portal's download-file upload, under the vendors' own limit.
pub fn file_upload_routes() -> Router<AppState> {
    vendor::file_routes()
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(account::routes())
        .merge(checkout::routes())
        .merge(staff::routes())
        .merge(vendor::routes())
        .route("/", get(storefront))
        .route("/products/{id}", get(product_page))
        .route("/static/style.css", get(stylesheet))
        .route("/favicon.ico", get(favicon))
        .route("/privacy", get(privacy_policy))
        .route("/privacy/cookies", get(cookie_list))
        .route("/downloads/{token}", get(download))
}

/// Every country by name, for an address form's select: (ISO code, name,
/// whether it is `selected`). The list is sorted once.
pub(crate) fn country_options(selected: &str) -> Vec<(&'static str, &'static str, bool)> {
    static COUNTRIES: std::sync::LazyLock<Vec<(&'static str, &'static str)>> =
        std::sync::LazyLock::new(coffer_domain::country::all_by_name);
    COUNTRIES.iter().map(|(code, name)| (*code, *name, code.eq_ignore_ascii_case(selected.trim()))).collect()
}

#[derive(Template)]
#[template(path = "privacy_policy.html")]
struct PolicyPage<'a> {
    /// Its date and short version (see `PrivacyPolicy::name`).
    name: String,
    version: &'a str,
    body: &'a str,
}

async fn privacy_policy(State(state): State<AppState>) -> Response {
    render(&PolicyPage { name: state.policy.name(), version: &state.policy.version, body: &state.policy.html })
}

#[derive(Template)]
#[template(path = "privacy_cookies.html")]
struct CookiePage {
    /// Made from the registry the code sets cookies through.
    cookies: &'static [crate::cookies::CookieSpec],
}

async fn cookie_list() -> Response {
    render(&CookiePage { cookies: crate::cookies::COOKIES })
}

/// Streams the file behind a signed download link (never whole in memory).
async fn download(State(state): State<AppState>, ApiPath(token): ApiPath) -> Response {
    use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH};
    use coffer_app::checkout::DownloadRefused;
    let refused = |status: StatusCode, title: &'static str, message: &'static str| {
        (status, render(&ErrorPage { status: status.as_u16(), title, message })).into_response()
    };
    match state.checkout.fulfilment().open_download(&token).await {
        Ok(Ok(file)) => {
            let name: String =
                file.file_name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).collect();
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file.reader));
            (
                [
                    (CONTENT_TYPE, file.content_type),
                    (CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
                    (CONTENT_LENGTH, file.size_bytes.to_string()),
                    (CACHE_CONTROL, "no-store".to_owned()),
                ],
                body,
            )
                .into_response()
        }
        Ok(Err(DownloadRefused::Invalid)) => {
            refused(StatusCode::NOT_FOUND, "Download not found", "This download link is not valid.")
        }
        Ok(Err(DownloadRefused::Expired)) => refused(
            StatusCode::GONE,
            "Download link expired",
            "This link has expired. Sign in to your account for a fresh one.",
        ),
        Ok(Err(DownloadRefused::LimitReached)) => refused(
            StatusCode::GONE,
            "Download limit reached",
            "This file was downloaded as often as a link allows. Contact support if you need it again.",
        ),
        Ok(Err(DownloadRefused::NotDelivered)) => refused(
            StatusCode::FORBIDDEN,
            "Not available",
            "This order is not delivered (it may be on hold or refunded), so its files cannot be downloaded.",
        ),
        Ok(Err(DownloadRefused::NoFile)) => refused(
            StatusCode::NOT_FOUND,
            "File not available yet",
            "The vendor has not provided this file yet. Try again later.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "download failed");
            refused(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Please try again in a moment.")
        }
    }
}

/// A product prepared for display.
struct ProductCard {
    id: String,
    name: String,
    vendor_name: String,
    summary: String,
    paragraphs: Vec<String>,
    prices: Vec<PriceLine>,
    /// The storefront's price: in the currency checkout starts in.
    headline_price: String,
    delivery: &'static str,
}

struct PriceLine {
    currency: &'static str,
    amount: String,
}

impl From<Product> for ProductCard {
    fn from(p: Product) -> Self {
        let delivery = match (p.delivery.has_license_key(), p.delivery.has_download()) {
            (true, true) => "License key and download",
            (true, false) => "License key",
            _ => "Download",
        };
        let paragraphs: Vec<String> =
            p.description.split('\n').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        let currencies: Vec<coffer_domain::Currency> = p.prices.iter().map(|m| m.currency()).collect();
        let shown = coffer_app::preferred_currency(&currencies);
        let headline_price =
            p.prices.iter().find(|m| Some(m.currency()) == shown).map(|m| m.to_string()).unwrap_or_default();
        ProductCard {
            headline_price,
            id: p.id.to_string(),
            name: p.name,
            vendor_name: p.vendor_name,
            summary: paragraphs.first().cloned().unwrap_or_default(),
            paragraphs,
            prices: p
                .prices
                .iter()
                .map(|m| PriceLine { currency: m.currency().code(), amount: m.to_string() })
                .collect(),
            delivery,
        }
    }
}

#[derive(Template)]
#[template(path = "storefront.html")]
struct StorefrontPage {
    products: Vec<ProductCard>,
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    product: ProductCard,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    title: &'static str,
    message: &'static str,
}

/// A service's message as a sentence for a page: capital first, one full stop.
pub(crate) fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str().trim_end_matches('.')),
        None => String::new(),
    }
}

pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            error_page(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// An error as a page, for every non-API path.
pub fn error_page(status: StatusCode) -> Response {
    let (title, message) = match status {
        StatusCode::NOT_FOUND => {
            ("Page not found", "There is nothing at this address. It may have moved or never existed.")
        }
        StatusCode::METHOD_NOT_ALLOWED => ("Not allowed", "This page cannot be used that way."),
        StatusCode::PAYLOAD_TOO_LARGE => ("Too much data", "What you sent is larger than this page accepts."),
        StatusCode::REQUEST_TIMEOUT => ("That took too long", "Please try again in a moment."),
        StatusCode::SERVICE_UNAVAILABLE => ("Temporarily unavailable", "Please try again in a moment."),
        s if s.is_client_error() => ("That did not work", "The address or the form data is not valid."),
        _ => ("Something went wrong", "The problem is on our side and has been logged. Please try again later."),
    };
    let page = ErrorPage { status: status.as_u16(), title, message };
    let html = page.render().unwrap_or_else(|_| format!("<!doctype html><title>{title}</title><h1>{title}</h1>"));
    (status, Html(html)).into_response()
}

fn page_error(e: AppError) -> Response {
    let status = ApiError::from(e).status;
    error_page(status)
}

/// The storefront holds nothing of the visitor, so it is rendered once per
/// catalog cache period and served as it is (a render per request kept it
/// at a third of a bare handler's rate).
async fn storefront(State(state): State<AppState>) -> Response {
    let query = ProductQuery { limit: 100, ..ProductQuery::default() };
    let rendered = state
        .catalog
        .rendered_products(&query, "storefront-html", |page| {
            let products = page.products.iter().cloned().map(ProductCard::from).collect();
            StorefrontPage { products }.render().map(String::into_bytes).map_err(|e| {
                tracing::error!(error = %e, "template failed to render");
                coffer_app::AppError::Internal("the storefront could not be rendered")
            })
        })
        .await;
    match rendered {
        Ok(html) => Html(axum::body::Body::from(bytes::Bytes::from_owner(html))).into_response(),
        Err(e) => page_error(e),
    }
}

async fn product_page(State(state): State<AppState>, path: Result<ApiPath, ApiError>) -> Response {
    let Some(id) = path.ok().and_then(|ApiPath(id)| ProductId::parse(&id).ok()) else {
        return error_page(StatusCode::NOT_FOUND);
    };
    match state.catalog.listed_product(&id).await {
        Ok(product) => render(&ProductPage { product: product.into() }),
        Err(e) => page_error(e),
    }
}

async fn stylesheet() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/css; charset=utf-8"), (CACHE_CONTROL, "public, max-age=3600")], STYLESHEET)
}

async fn favicon() -> impl IntoResponse {
    ([(CONTENT_TYPE, "image/x-icon"), (CACHE_CONTROL, "public, max-age=86400")], FAVICON)
}

/// Unknown routes: JSON under the API, a page elsewhere.
pub async fn not_found(request: Request) -> Response {
    if is_api_path(request.uri().path()) {
        ApiError::not_found().into_response()
    } else {
        error_page(StatusCode::NOT_FOUND)
    }
}

/// The address fields of the account and checkout forms, as typed; the
/// domain validates them when they become a [`MailingAddress`].
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub(super) struct AddressFields {
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
}

impl AddressFields {
    /// The fields of an address on file (empty when none is).
    fn of(address: Option<MailingAddress>) -> Self {
        address.map_or_else(AddressFields::default, |a| AddressFields {
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
        })
    }

    /// Whether any of the required parts was filled in.
    fn given(&self) -> bool {
        [&self.line1, &self.city, &self.country].iter().any(|v| !v.trim().is_empty())
    }

    fn address(&self) -> MailingAddress {
        MailingAddress {
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country: self.country.clone(),
        }
    }
}
