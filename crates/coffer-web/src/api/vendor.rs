//! The vendor API (`Authorization: Bearer <api_key>`): a vendor's own
//! orders, and only its own lines of them. Another vendor's order answers
//! exactly as one that does not exist.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use coffer_app::request::RequestContext;
use coffer_app::vendors::{VendorOrder, VendorOrderSummary};
use coffer_domain::{OrderId, Principal};
use serde::Serialize;

/// A request with a live vendor API key, as the context services check
/// (`Principal::VendorKey` in this request); anything else is 401.
pub struct VendorApiKey(pub RequestContext);

impl FromRequestParts<AppState> for VendorApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized =
            || ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send a vendor API key as a Bearer token");
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(unauthorized)?;
        match state.vendors.vendor_for_key(key).await {
            Ok(Some(vendor)) => match state.vendor_api_limit.spend(&vendor) {
                Ok(()) => Ok(VendorApiKey(RequestContext::new(Principal::VendorKey(vendor.to_string())))),
                Err(seconds) => Err(ApiError::too_many_attempts(i64::try_from(seconds).unwrap_or(60) * 1000)),
            },
            Ok(None) => Err(unauthorized()),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VendorOrderList {
    /// Newest first, at most 200: ids, dates, the vendor's own lines,
    /// amounts and status; never the buyer (see one order's detail).
    #[schema(value_type = Vec<Object>)]
    orders: Vec<VendorOrderSummary>,
}

/// The vendor's orders: only its own lines, never the buyer (so a list
/// call discloses nobody).
#[utoipa::path(
    get,
    path = "/api/v1/vendor/orders",
    tag = "vendor",
    responses(
        (status = 200, description = "The vendor's orders", body = VendorOrderList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: over the per-key limit (`http.vendor_api_per_minute`)", body = ErrorBody)
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
) -> Result<Json<VendorOrderList>, ApiError> {
    Ok(Json(VendorOrderList { orders: state.vendors.orders(&vendor, 200).await? }))
}

/// One of the vendor's orders; another vendor's is `404 not_found`. The
/// buyer's name, email, address and phone come only while the vendor fills
/// or supports the order (paid, fulfilled, refunded after fulfilment);
/// each such read is audited and recorded as a disclosure the customer sees.
#[utoipa::path(
    get,
    path = "/api/v1/vendor/orders/{id}",
    tag = "vendor",
    params(("id" = String, Path, description = "Order id (`ord_…`)")),
    responses(
        (status = 200, description = "The order, this vendor's part of it", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: over the per-key limit (`http.vendor_api_per_minute`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody)
    )
)]
pub async fn get_order(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    ApiPath(id): ApiPath,
) -> Result<Json<VendorOrder>, ApiError> {
    let id = OrderId::parse(&id).map_err(|_| ApiError::not_found())?;
    state.vendors.order(&vendor, &id).await?.map(Json).ok_or_else(ApiError::not_found)
}
