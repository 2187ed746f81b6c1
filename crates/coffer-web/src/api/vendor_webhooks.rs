//! The vendor API's webhook endpoints, their delivery log and replay, and
//! the statement of what the operator owes the vendor. Another vendor's
//! endpoint or delivery is `404 not_found`, exactly as a missing one.

use super::vendor::VendorApiKey;
use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, parse_json};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use coffer_app::vendors::{WebhookDelivery, WebhookEndpoint};
use coffer_domain::{WebhookDeliveryId, WebhookEndpointId};
use serde::{Deserialize, Serialize};

const PER_KEY: &str = "`too_many_attempts`: over the per-key limit (`http.vendor_api_per_minute`)";

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// `https://` only; private, loopback and link-local destinations are refused.
    #[schema(max_length = 2000, example = "https://vendor.example.com/coffer/webhooks")]
    url: String,
    /// One or more of `order.paid`, `order.fulfilled`, `order.on_hold`,
    /// `order.refunded`, `order.cancelled`, `license.revoked`.
    #[schema(min_items = 1, example = json!(["order.paid", "order.refunded"]))]
    events: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    #[schema(example = "whe_0193c0de5a6b7c8d9e0f1a2b3c4d5e6f")]
    id: String,
    url: String,
    events: Vec<String>,
    /// RFC 3339, UTC.
    created_at: String,
}

impl From<WebhookEndpoint> for WebhookView {
    fn from(e: WebhookEndpoint) -> Self {
        WebhookView {
            id: e.id.to_string(),
            url: e.url,
            events: e.events,
            created_at: coffer_domain::order::rfc3339_utc(e.created_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    endpoint: WebhookView,
    /// `whsec_…`: the key of the `Coffer-Signature` HMAC. Shown only now.
    secret: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    webhooks: Vec<WebhookView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    #[schema(example = "whd_0193c0de5a6b7c8d9e0f1a2b3c4d5e6f")]
    id: String,
    /// The `Coffer-Event-Id` header: the same on every attempt and replay.
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    order_id: String,
    /// `pending` (to be tried again), `delivered` or `failed` (given up).
    status: String,
    attempts: i64,
    /// The receiver's last HTTP status, if it answered.
    last_status_code: Option<i64>,
    /// What went wrong last: `timeout`, `connect`, `private_destination`, `answered 500`…
    last_error: Option<String>,
    last_attempt_at: Option<String>,
    delivered_at: Option<String>,
    created_at: String,
}

impl From<WebhookDelivery> for DeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        let time = coffer_domain::order::rfc3339_utc;
        DeliveryView {
            id: d.id.to_string(),
            event_id: coffer_app::vendors::webhooks::event_id(&d.event_key),
            event_type: d.event_type,
            order_id: d.order_id,
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            last_attempt_at: d.last_attempt_at.map(time),
            delivered_at: d.delivered_at.map(time),
            created_at: time(d.created_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    deliveries: Vec<DeliveryView>,
    /// Pass as `before` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// The `next_before` of the previous page.
    before: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

fn endpoint_id(text: &str) -> Result<WebhookEndpointId, ApiError> {
    WebhookEndpointId::parse(text).map_err(|_| ApiError::not_found())
}

/// Adds a webhook endpoint; its signing secret is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/vendor/webhooks",
    tag = "vendor",
    request_body = NewWebhookBody,
    security(("vendor_api_key" = [])),
    responses(
        (status = 201, description = "The endpoint and its secret", body = CreatedWebhook),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`too_many_endpoints`: at most 10", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `webhook_url_invalid`, `webhook_url_not_https`, `webhook_url_private`, \
            `webhook_url_credentials`, `webhook_url_too_long`, `webhook_url_no_host`, `invalid_events`", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn create_webhook(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let body: NewWebhookBody = parse_json(&headers, &raw)?;
    let created = state.vendors.create_endpoint(&vendor, &body.url, &body.events).await?;
    let answer = CreatedWebhook {
        endpoint: created.endpoint.into(),
        secret: secrecy::ExposeSecret::expose_secret(&created.secret).to_owned(),
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The vendor's webhook endpoints (never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/vendor/webhooks",
    tag = "vendor",
    security(("vendor_api_key" = [])),
    responses(
        (status = 200, description = "The endpoints", body = WebhookList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = state.vendors.endpoints(&vendor).await?.into_iter().map(WebhookView::from).collect();
    Ok(Json(WebhookList { webhooks }))
}

/// Deletes an endpoint: nothing more is sent to it.
#[utoipa::path(
    delete,
    path = "/api/v1/vendor/webhooks/{id}",
    tag = "vendor",
    params(("id" = String, Path, description = "Endpoint id (`whe_…`)")),
    security(("vendor_api_key" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.vendors.delete_endpoint(&vendor, &endpoint_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An endpoint's delivery log, newest first: attempts, status, the
/// receiver's last answer and when.
#[utoipa::path(
    get,
    path = "/api/v1/vendor/webhooks/{id}/deliveries",
    tag = "vendor",
    params(("id" = String, Path, description = "Endpoint id (`whe_…`)"), DeliveryParams),
    security(("vendor_api_key" = [])),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveryList),
        (status = 400, description = "`invalid_query`, `invalid_path`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_parameter`: a bad cursor or limit", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryList>, ApiError> {
    let invalid = |field: &str, message: &'static str| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter", message).with_field(field)
    };
    let endpoint = endpoint_id(&id)?;
    let before = params
        .before
        .map(|b| WebhookDeliveryId::parse(&b))
        .transpose()
        .map_err(|_| invalid("before", "not a delivery id"))?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 100"));
    }
    let found = state.vendors.deliveries(&vendor, &endpoint, before.as_ref(), limit).await?;
    let full = i64::try_from(found.len()).unwrap_or(i64::MAX) == limit;
    let next_before = if full { found.last().map(|d| d.id.to_string()) } else { None };
    Ok(Json(DeliveryList { deliveries: found.into_iter().map(DeliveryView::from).collect(), next_before }))
}

/// Sends a delivery again now (with the same event id).
#[utoipa::path(
    post,
    path = "/api/v1/vendor/webhooks/{id}/deliveries/{delivery_id}/replay",
    tag = "vendor",
    params(
        ("id" = String, Path, description = "Endpoint id (`whe_…`)"),
        ("delivery_id" = String, Path, description = "Delivery id (`whd_…`)")
    ),
    security(("vendor_api_key" = [])),
    responses(
        (status = 202, description = "Queued to be sent again", body = DeliveryView),
        (status = 400, description = "`invalid_path`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn replay_delivery(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let delivery = WebhookDeliveryId::parse(&delivery).map_err(|_| ApiError::not_found())?;
    let replayed = state.vendors.replay(&vendor, &endpoint_id(&id)?, &delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(replayed))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatementParams {
    /// The first UTC day (`YYYY-MM-DD`), included.
    #[param(format = Date)]
    from: String,
    /// The last UTC day (`YYYY-MM-DD`), included; at most 366 days after `from`.
    #[param(format = Date)]
    to: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StatementView {
    from: String,
    to: String,
    /// Per currency, in minor units: `sales` and `refunds` of net prices,
    /// `fees` kept, `net` due (`sales - refunds - fees`).
    #[schema(value_type = Vec<Object>)]
    currencies: Vec<coffer_app::vendors::statement::CurrencyTotals>,
    /// Every ledger entry of the period: `at`, `order_id`, `line_no`,
    /// `kind` (`sale`, `fee`, `refund`, `fee_refund`), `currency`, signed `amount`.
    #[schema(value_type = Vec<Object>)]
    entries: Vec<coffer_app::vendors::statement::StatementEntry>,
}

/// What the operator owes the vendor for a period.
#[utoipa::path(
    get,
    path = "/api/v1/vendor/statement",
    tag = "vendor",
    params(StatementParams),
    security(("vendor_api_key" = [])),
    responses(
        (status = 200, description = "The statement", body = StatementView),
        (status = 400, description = "`invalid_query`: `from` or `to` missing", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 422, description = "`invalid_period`", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn statement(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    ApiQuery(params): ApiQuery<StatementParams>,
) -> Result<Json<StatementView>, ApiError> {
    let s = state.vendors.statement(&vendor, &params.from, &params.to).await?;
    Ok(Json(StatementView { from: s.from, to: s.to, currencies: s.currencies, entries: s.entries }))
}
