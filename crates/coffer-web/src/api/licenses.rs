//! License status without sign-in: `POST /api/v1/licenses/verify` checks
//! one key online; `GET /api/v1/vendors/{slug}/revocations` is the vendor's
//! signed revocation list for programs that check offline
//! (`docs/license-keys.md`). Neither echoes nor logs the key; both are
//! answered fresh (`Cache-Control: no-store`), so a revocation shows at once.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, parse_json};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// The license key as issued: `B64URL(payload).B64URL(signature)`.
    key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LicenseStatusView {
    /// True only when the issuing vendor's key signed it and no refund revoked it.
    valid: bool,
    /// `active` (valid), `revoked` (signed by its vendor, revoked by a refund),
    /// or `invalid` (malformed, forged, or not a key Coffer issued).
    #[schema(example = "active")]
    status: &'static str,
    /// The product the key unlocks; null for an `invalid` key.
    #[schema(example = "prd_0193c0de5a6b7c8d9e0f1a2b3c4d5e6f")]
    product_id: Option<String>,
}

/// Checks a license key online (no sign-in). A key is `valid` only when
/// the signature verifies against its issuing vendor's public key and no
/// refund revoked it. A malformed or forged key is answered 200 with
/// `valid: false, status: "invalid", product_id: null`.
#[utoipa::path(
    post,
    path = "/api/v1/licenses/verify",
    tag = "licenses",
    request_body = VerifyBody,
    responses(
        (status = 200, description = "The key's status", body = LicenseStatusView),
        (status = 400, description = "`invalid_json`: the body is not JSON, or not an object with `key`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over `http.body_limit_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `key` is not a string, or an unknown field was sent", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many checks from this address \
            (`http.license_verify_per_minute`); `Retry-After` says when to try again", body = ErrorBody)
    )
)]
pub async fn verify_license(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let client_ip = crate::client_ip::client_ip(peer.ip(), &headers, &state.trusted_proxies);
    if let Some(limit) = &state.license_verify_limit
        && let Err(seconds) = crate::limits::spend_address(limit, client_ip)
    {
        return ApiError::too_many_attempts(i64::try_from(seconds).unwrap_or(60) * 1000).into_response();
    }
    let body: VerifyBody = match parse_json(&headers, &raw) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    match state.checkout.fulfilment().check_license(&body.key).await {
        Ok(check) => {
            let view = LicenseStatusView {
                valid: check.valid(),
                status: check.status.as_str(),
                product_id: check.product_id.map(|p| p.to_string()),
            };
            (StatusCode::OK, [(CACHE_CONTROL, "no-store")], Json(view)).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RevocationListView {
    /// B64URL (no padding) of the list's UTF-8 JSON bytes:
    /// `{"vendor", "issued_at", "revoked": [{"order_id", "product_id",
    /// "licensee", "key_sha256", "revoked_at"}]}`.
    list: String,
    /// B64URL (no padding) of the Ed25519 signature, by the vendor's license
    /// key, over the ASCII `coffer.revocation-list.v1`, one zero byte, and
    /// exactly the decoded `list` bytes.
    signature: String,
}

/// A vendor's signed list of revoked license keys, as of now (no sign-in).
/// Verify it with the vendor's license public key; see `docs/license-keys.md`.
#[utoipa::path(
    get,
    path = "/api/v1/vendors/{slug}/revocations",
    tag = "licenses",
    params(("slug" = String, Path, description = "The vendor's slug")),
    responses(
        (status = 200, description = "The signed list", body = RevocationListView),
        (status = 404, description = "`not_found`: no such vendor, or a suspended one", body = ErrorBody)
    )
)]
pub async fn revocations(State(state): State<AppState>, ApiPath(slug): ApiPath) -> Result<Response, ApiError> {
    let signed = state.checkout.fulfilment().revocation_list(&slug).await?;
    let view = RevocationListView { list: signed.list, signature: signed.signature };
    Ok(([(CACHE_CONTROL, "no-store")], Json(view)).into_response())
}
