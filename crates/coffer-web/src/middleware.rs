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

/// Everything every request passes through, in one layer (one boxed
/// future per request, not five):
/// - a fresh request id (never taken from the client, so logs cannot be
///   fed arbitrary text); the request is served under it (audit entries
///   record it, see `coffer_app::request`) and answered with it;
/// - one log line per request with the route *template*, never the raw
///   path or query, which may carry personal data;
/// - a query string whose percent-decoded bytes are not UTF-8 is refused
///   before any handler sees it (form decoding would silently replace them);
/// - bodiless error answers get a body in the right form ([`with_error_body`]);
/// - a strict CSP without inline script, and the other headers that keep a
///   page from being framed, sniffed or leaking its URL; and
///   `Strict-Transport-Security` (two years, subdomains included) when
///   clients reach us over TLS (built in, or at a trusted proxy).
pub(crate) async fn every_request(
    axum::extract::State(secure_transport): axum::extract::State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let id = uuid::Uuid::now_v7().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("(unmatched)", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route = %route);
    let started = Instant::now();
    let json = is_api_path(request.uri().path());
    let valid_query =
        request.uri().query().is_none_or(|q| percent_encoding::percent_decode_str(q).decode_utf8().is_ok());
    let response = if valid_query {
        coffer_app::request::serving(id.clone(), next.run(request)).instrument(span.clone()).await
    } else {
        non_utf8_query_refusal(json)
    };
    let mut response = with_error_body(json, response);
    let status = response.status().as_u16();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| tracing::info!(status, micros, "request finished"));
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    if secure_transport {
        headers.insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(HeaderName::from_static("x-request-id"), value);
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

/// Gives bodiless error answers from the framework or a layer (404, 405,
/// 408, 413, …) a body in the right form: the JSON error model under the API,
/// an error page elsewhere. Headers such as `Allow` are kept.
fn with_error_body(json: bool, response: Response) -> Response {
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

/// The answer to a query string that is not UTF-8 (see [`every_request`]).
fn non_utf8_query_refusal(json: bool) -> Response {
    if json {
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
