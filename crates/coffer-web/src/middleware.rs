//! Middleware every request passes through.

use crate::error::ApiError;
use crate::pages;
use axum::extract::{MatchedPath, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;
use tracing::Instrument;

/// Paths answered in JSON; everything else is a page.
pub fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/health"
}

/// Gives every request a fresh id (never taken from the client, so logs
/// cannot be fed arbitrary text), serves the request under it (audit
/// entries record it, see `coffer_app::request`), and logs one line per
/// request with the route *template*, never the raw path or query, which
/// may carry personal data.
pub async fn request_id_and_trace(request: Request, next: Next) -> Response {
    let id = uuid::Uuid::now_v7().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("(unmatched)", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route = %route);
    let started = Instant::now();
    let mut response = coffer_app::request::serving(id.clone(), next.run(request)).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| tracing::info!(status, micros, "request finished"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// A strict CSP without inline script, and the other headers that keep a
/// page from being framed, sniffed or leaking its URL.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response
}

/// Gives bodiless error answers from the framework or a layer (404, 405,
/// 408, 413, …) a body in the right form: the JSON error model under the API,
/// an error page elsewhere. Headers such as `Allow` are kept.
pub async fn error_bodies(request: Request, next: Next) -> Response {
    let json = is_api_path(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    // Our handlers answer errors as JSON or HTML; plain text comes from a
    // layer (e.g. the body limit's "length limit exceeded").
    let plain_or_none = response.headers().get(CONTENT_TYPE).is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !is_error || !plain_or_none {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut replaced = if json { ApiError::for_status(status).into_response() } else { pages::error_page(status) };
    for (name, value) in &parts.headers {
        if name != CONTENT_LENGTH && !replaced.headers().contains_key(name) {
            replaced.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replaced
}

/// A query string whose percent-decoded bytes are not UTF-8 is refused
/// before any handler sees it (form decoding would silently replace them).
pub async fn reject_non_utf8_query(request: Request, next: Next) -> Response {
    let valid = request.uri().query().is_none_or(|q| percent_encoding::percent_decode_str(q).decode_utf8().is_ok());
    if valid {
        return next.run(request).await;
    }
    if is_api_path(request.uri().path()) {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "the query string is not valid UTF-8").into_response()
    } else {
        StatusCode::BAD_REQUEST.into_response()
    }
}

/// Whether a path belongs to the staff console or the staff API.
pub(crate) fn is_staff_path(path: &str) -> bool {
    path == "/staff" || path.starts_with("/staff/") || path == "/api/v1/staff" || path.starts_with("/api/v1/staff/")
}

/// The staff firewall (P11): with `http.staff_networks` set, staff pages
/// and the staff API answer only to clients in those networks (the client
/// address after trusted-proxy handling); everyone else gets the same 404
/// as for a page that does not exist.
pub(crate) async fn staff_networks_only(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if state.staff_networks.is_empty() || !is_staff_path(request.uri().path()) {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let client =
        peer.map(|ip| crate::client_ip::client_ip(ip, request.headers(), &state.trusted_proxies).to_canonical());
    // A request that names no client behind a trusted proxy is the proxy's
    // own address, which says nothing about where the person is: refused.
    let allowed = client.is_some_and(|ip| {
        !crate::client_ip::is_trusted_proxy(ip, &state.trusted_proxies)
            && state.staff_networks.iter().any(|net| net.contains(&ip))
    });
    if allowed { next.run(request).await } else { crate::pages::not_found(request).await }
}

/// `Strict-Transport-Security` on every answer when clients reach us over
/// TLS (built in, or at a trusted proxy): two years, subdomains included.
pub(crate) async fn hsts(
    axum::extract::State(secure_transport): axum::extract::State<bool>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    if secure_transport {
        response.headers_mut().insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            axum::http::HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    response
}
