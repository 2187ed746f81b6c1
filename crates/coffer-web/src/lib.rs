//! Coffer's HTTP edge: the axum router with the JSON API under `/api` (and
//! its OpenAPI document generated from the handlers), the server-rendered
//! HTML pages, and the middleware every request passes through: request ids,
//! PII-free tracing, security headers, body-size, time and concurrency
//! limits, and one error model (`{"error": {"code", "message", "field"}}` for
//! the API, an error page otherwise). Handlers stay thin: parse, call one
//! service, render.

mod api;
mod client_ip;
mod cookies;
mod error;
mod extract;
mod limits;
mod middleware;
mod pages;
mod policy;

pub use api::openapi_document;
pub use cookies::{COOKIES, CookieRule, CookieSpec, CookieValue};
pub use error::ApiError;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use coffer_app::accounts::{AccountService, StaffService};
use coffer_app::checkout::CheckoutService;
use coffer_app::{CatalogService, HttpConfig};
pub use policy::{PrivacyPolicy, privacy_policy};
use std::sync::Arc;
use std::time::Duration;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// What handlers share. Cloned for every request and layer, so one `Arc`:
/// cloning the services themselves (dozens of `Arc`s each) halved the
/// requests a server answered per second.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The services, policy, limits and settings behind [`AppState`].
pub struct SharedState {
    pub catalog: CatalogService,
    pub health: coffer_app::HealthCheck,
    pub accounts: AccountService,
    pub staff: StaffService,
    pub checkout: CheckoutService,
    pub vendors: coffer_app::vendors::VendorService,
    pub policy: Arc<PrivacyPolicy>,
    /// The seller on every invoice (merchant of record).
    pub operator_name: Arc<str>,
    pub cookie_rule: CookieRule,
    pub(crate) sign_in_limit: Arc<limits::KeyedLimit<std::net::IpAddr>>,
    /// `None` when `http.orders_per_minute` is 0.
    pub(crate) order_limit: Option<Arc<limits::KeyedLimit<std::net::IpAddr>>>,
    pub(crate) vendor_api_limit: Arc<limits::KeyedLimit<coffer_domain::VendorApiKeyId>>,
    /// `None` when `http.license_verify_per_minute` is 0.
    pub(crate) license_verify_limit: Option<Arc<limits::KeyedLimit<std::net::IpAddr>>>,
    pub(crate) trusted_proxies: Arc<[std::net::IpAddr]>,
    /// Where staff pages answer from; empty = everywhere.
    pub(crate) staff_networks: Arc<[ipnet::IpNet]>,
    openapi_json: Arc<str>,
}

/// The application services the handlers call.
pub struct Services {
    pub catalog: CatalogService,
    pub accounts: AccountService,
    pub staff: StaffService,
    pub checkout: CheckoutService,
    pub vendors: coffer_app::vendors::VendorService,
}

impl AppState {
    pub fn new(
        services: Services,
        health: coffer_app::HealthCheck,
        policy: PrivacyPolicy,
        cookie_rule: CookieRule,
        http: &HttpConfig,
    ) -> Self {
        let openapi_json = serde_json::to_string(&openapi_document()).unwrap_or_else(|_| "{}".into());
        // Configuration refuses 0 for these two; 1 stands in all the same.
        let at_least_one = |n: u32| std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN);
        let sign_in_limit = Arc::new(limits::KeyedLimit::new(at_least_one(http.sign_in_per_minute)));
        let vendor_api_limit = Arc::new(limits::KeyedLimit::new(at_least_one(http.vendor_api_per_minute)));
        let Services { catalog, accounts, staff, checkout, vendors } = services;
        AppState(Arc::new(SharedState {
            catalog,
            health,
            accounts,
            staff,
            checkout,
            vendors,
            operator_name: policy.operator_name.clone().into(),
            policy: Arc::new(policy),
            cookie_rule,
            sign_in_limit,
            order_limit: limits::KeyedLimit::per_minute(http.orders_per_minute).map(Arc::new),
            vendor_api_limit,
            license_verify_limit: limits::KeyedLimit::per_minute(http.license_verify_per_minute).map(Arc::new),
            trusted_proxies: http.trusted_proxies.clone().into(),
            staff_networks: http.staff_networks.clone().into(),
            openapi_json: openapi_json.into(),
        }))
    }
}

/// Every path the application routes (`/api/v1/orders/{id}`, `/vendor`…),
/// read from the router itself, so a test can hold every route to the
/// access table and none can be added without it. (axum names a router's
/// paths only in its `Debug` output.)
pub fn routed_paths() -> std::collections::BTreeSet<String> {
    let (api, _) = api::routes().split_for_parts();
    let (file_api, _) = api::upload_routes().split_for_parts();
    let all: Router<AppState> = Router::new()
        .merge(api)
        .merge(file_api)
        .merge(pages::routes())
        .merge(pages::upload_routes())
        .merge(pages::file_upload_routes());
    let shown = format!("{all:?}");
    let mut paths = std::collections::BTreeSet::new();
    // Each path is shown as `RouteId(n): "/…"` in the node's map.
    for part in shown.split("): \"").skip(1) {
        if let Some(path) = part.split('"').next().filter(|p| p.starts_with('/')) {
            paths.insert(path.to_owned());
        }
    }
    paths
}

/// The whole application: routes plus the middleware stack.
pub fn router(state: AppState, limits: &HttpConfig) -> Router {
    let secure_transport = state.cookie_rule.secure_transport;
    let (api, _) = api::routes().split_for_parts();
    // The body limit sits closest to the handlers; uploads have their own.
    let limited = Router::new()
        .merge(api)
        .merge(pages::routes().layer(axum::middleware::from_fn_with_state(state.clone(), pages::forms::form_cookie)))
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(limits.body_limit_bytes));
    let upload_limit = coffer_app::checkout::ID_DOCUMENT_MAX_BYTES + 64 * 1024;
    let uploads = pages::upload_routes()
        .layer(DefaultBodyLimit::max(upload_limit))
        .layer(RequestBodyLimitLayer::new(upload_limit));
    // A vendor's download file: the vendors' own, larger limit.
    let file_limit = state.vendors.max_upload_bytes() + 64 * 1024;
    let (file_api, _) = api::upload_routes().split_for_parts();
    let files = file_api
        .merge(pages::file_upload_routes())
        .layer(DefaultBodyLimit::max(file_limit))
        .layer(RequestBodyLimitLayer::new(file_limit));
    Router::new()
        .merge(limited)
        .merge(uploads)
        .merge(files)
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::staff_networks_only))
        .with_state(state)
        .layer(GlobalConcurrencyLimitLayer::new(limits.concurrency_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(limits.request_timeout_ms),
        ))
        .layer(axum::middleware::from_fn_with_state(secure_transport, middleware::every_request))
}

#[cfg(test)]
mod route_tests {
    #[test]
    fn the_routed_paths_are_read_from_the_router() {
        let paths = super::routed_paths();
        for known in
            ["/", "/api/v1/orders", "/vendor", "/vendor/products/{id}/file", "/api/v1/vendor/products/{id}/file"]
        {
            assert!(paths.contains(known), "{known} in {paths:?}");
        }
        assert!(paths.iter().all(|p| p.starts_with('/')));
        assert!(paths.len() > 60, "{}", paths.len());
        if std::env::var("PRINT_ROUTES").is_ok() {
            println!("{}", paths.iter().cloned().collect::<Vec<_>>().join("\n"));
        }
    }
}
