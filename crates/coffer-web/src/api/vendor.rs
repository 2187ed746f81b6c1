//! The vendor API (`Authorization: Bearer <api_key>`): a vendor's own
//! orders (only its own lines of them) and products. Another vendor's
//! order or product answers exactly as one that does not exist.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery, parse_json};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use coffer_app::request::RequestContext;
use coffer_app::vendors::products::{ProductInput, parse_prices};
use coffer_app::vendors::{VendorOrder, VendorOrderSummary};
use coffer_domain::OrderId;
use coffer_domain::{Delivery, Product, ProductId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
        // The limit is per key: each of a vendor's programs has its own.
        match state.vendors.check_api_key(key).await {
            Ok(Some(check)) => match state.vendor_api_limit.spend(&check.key) {
                Ok(()) => Ok(VendorApiKey(check.ctx())),
                Err(seconds) => Err(ApiError::too_many_attempts(i64::try_from(seconds).unwrap_or(60) * 1000)),
            },
            Ok(None) => Err(unauthorized()),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VendorOrderList {
    /// Newest first: ids, dates, the vendor's own lines, amounts and
    /// status; never the buyer (see one order's detail).
    #[schema(value_type = Vec<Object>)]
    orders: Vec<VendorOrderSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderListParams {
    /// The `next_after` of the previous page (an order id).
    after: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// Only orders in this status: `pending`, `paid`, `fulfilled`, `on_hold`, `rejected`, `cancelled`, `refunded`.
    status: Option<String>,
    /// Placed on or after this UTC day (`YYYY-MM-DD`).
    #[param(format = Date)]
    from: Option<String>,
    /// Placed on or before this UTC day (`YYYY-MM-DD`).
    #[param(format = Date)]
    to: Option<String>,
}

fn invalid_parameter(field: &str, message: &'static str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter", message).with_field(field)
}

/// The vendor's orders, newest first, a page at a time: only its own
/// lines, never the buyer (so a list discloses nobody).
#[utoipa::path(
    get,
    path = "/api/v1/vendor/orders",
    tag = "vendor",
    params(OrderListParams),
    security(("vendor_api_key" = [])),
    responses(
        (status = 200, description = "A page of the vendor's orders", body = VendorOrderList),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 422, description = "`invalid_parameter`: a bad cursor, limit, status or date", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn list_orders(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    ApiQuery(params): ApiQuery<OrderListParams>,
) -> Result<Json<VendorOrderList>, ApiError> {
    let mut query = coffer_app::vendors::VendorOrderQuery::default();
    if let Some(after) = &params.after {
        query.after = Some(OrderId::parse(after).map_err(|_| invalid_parameter("after", "not an order id"))?);
    }
    query.limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&query.limit) {
        return Err(invalid_parameter("limit", "must be between 1 and 200"));
    }
    if let Some(status) = &params.status {
        query.status = Some(
            coffer_domain::OrderStatus::parse(status)
                .ok_or_else(|| invalid_parameter("status", "not an order status"))?,
        );
    }
    let day = |field: &str, text: &str| {
        coffer_domain::StatementPeriod::parse(text, text)
            .map(|p| p.bounds())
            .ok_or_else(|| invalid_parameter(field, "not a date (YYYY-MM-DD)"))
    };
    if let Some(from) = &params.from {
        query.from = day("from", from)?.0;
    }
    if let Some(to) = &params.to {
        query.to = day("to", to)?.1;
    }
    let (orders, next_after) = state.vendors.orders(&vendor, &query).await?;
    Ok(Json(VendorOrderList { orders, next_after }))
}

/// One of the vendor's orders; another vendor's is `404 not_found`. The
/// buyer's name, email, address and phone come only while the vendor fills
/// or supports the order (paid, fulfilled, refunded after fulfilment);
/// each such read is audited and recorded as a disclosure the customer sees.
#[utoipa::path(
    get,
    path = "/api/v1/vendor/orders/{id}",
    tag = "vendor",
    security(("vendor_api_key" = [])),
    params(("id" = String, Path, description = "Order id (`ord_…`)")),
    responses(
        (status = 200, description = "The order, this vendor's part of it", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
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

const PER_KEY: &str = "`too_many_attempts`: over the per-key limit (`http.vendor_api_per_minute`)";

/// A product as its vendor sees it: drafts too, and whether buyers see it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VendorProductView {
    #[schema(example = "prd_0193c0de5a6b7c8d9e0f1a2b3c4d5e6f")]
    id: String,
    name: String,
    description: String,
    /// Net prices in minor units, by ISO 4217 currency code.
    #[schema(example = json!({"USD": 1999, "EUR": 1899}))]
    prices: BTreeMap<String, i64>,
    /// `license_key`, `download` or `both`.
    delivery: &'static str,
    /// Whether the vendor publishes it.
    published: bool,
    /// Whether buyers see and can order it: published, the vendor active,
    /// and a download's file uploaded.
    listed: bool,
    /// RFC 3339, UTC.
    created_at: String,
}

impl From<Product> for VendorProductView {
    fn from(p: Product) -> Self {
        VendorProductView {
            prices: p.prices.iter().map(|m| (m.currency().code().to_owned(), m.minor())).collect(),
            id: p.id.to_string(),
            name: p.name,
            description: p.description,
            delivery: p.delivery.as_str(),
            published: p.published,
            listed: p.listed,
            created_at: coffer_domain::order::rfc3339_utc(p.created_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VendorProductList {
    products: Vec<VendorProductView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProductListParams {
    /// The `next_after` of the previous page.
    after: Option<String>,
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// A new product. Prices are net, in minor units, by ISO 4217 code.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductBody {
    /// 1 to 120 characters.
    #[schema(min_length = 1, max_length = 120, example = "Northwind Notes Pro")]
    name: String,
    /// At most 5,000 characters.
    #[serde(default)]
    #[schema(max_length = 5000)]
    description: String,
    /// Net amounts in minor units (≥ 0) by ISO 4217 code, at least one.
    #[schema(example = json!({"USD": 1999, "EUR": 1899}))]
    prices: BTreeMap<String, u64>,
    delivery: DeliveryBody,
    /// Published at once (default) or kept as a draft.
    #[serde(default = "yes")]
    published: bool,
}

/// How a product reaches the buyer.
#[derive(Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryBody {
    LicenseKey,
    Download,
    Both,
}

impl From<DeliveryBody> for Delivery {
    fn from(d: DeliveryBody) -> Self {
        match d {
            DeliveryBody::LicenseKey => Delivery::LicenseKey,
            DeliveryBody::Download => Delivery::Download,
            DeliveryBody::Both => Delivery::Both,
        }
    }
}

fn yes() -> bool {
    true
}

/// A change to a product: what is sent is replaced, the rest stays.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductChangeBody {
    #[schema(min_length = 1, max_length = 120)]
    name: Option<String>,
    #[schema(max_length = 5000)]
    description: Option<String>,
    /// Net amounts in minor units (≥ 0) by ISO 4217 code, at least one.
    prices: Option<BTreeMap<String, u64>>,
    delivery: Option<DeliveryBody>,
    published: Option<bool>,
}

fn invalid_price(field: String, e: coffer_domain::MoneyError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_price", e.to_string()).with_field(field)
}

fn prices_of(typed: &BTreeMap<String, u64>) -> Result<coffer_domain::Prices, ApiError> {
    let typed: Vec<(String, i64)> = typed.iter().map(|(c, m)| (c.clone(), i64::try_from(*m).unwrap_or(-1))).collect();
    parse_prices(&typed).map_err(|(field, e)| invalid_price(field, e))
}

/// The vendor's products, drafts and withdrawn ones too, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/vendor/products",
    tag = "vendor",
    params(ProductListParams),
    security(("vendor_api_key" = [])),
    responses(
        (status = 200, description = "A page of the vendor's products", body = VendorProductList),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 422, description = "`invalid_parameter`: `after` is not a product id or `limit` is out of range", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn list_products(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    ApiQuery(params): ApiQuery<ProductListParams>,
) -> Result<Json<VendorProductList>, ApiError> {
    let invalid = |field: &str, message: &'static str| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter", message).with_field(field)
    };
    let after =
        params.after.map(|s| ProductId::parse(&s)).transpose().map_err(|_| invalid("after", "not a product id"))?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 100"));
    }
    let page = state.vendors.own_products(&vendor, after.as_ref(), limit).await?;
    Ok(Json(VendorProductList {
        products: page.products.into_iter().map(VendorProductView::from).collect(),
        next_after: page.next_after.map(|id| id.to_string()),
    }))
}

/// Creates a product of the vendor.
#[utoipa::path(
    post,
    path = "/api/v1/vendor/products",
    tag = "vendor",
    request_body = NewProductBody,
    security(("vendor_api_key" = [])),
    responses(
        (status = 201, description = "The product, with its `id`", body = VendorProductView),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `invalid_product` (name, description), `invalid_price` (an unknown currency, a negative amount, no price)", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn create_product(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let body: NewProductBody = parse_json(&headers, &raw)?;
    let prices = prices_of(&body.prices)?;
    let input = ProductInput { name: body.name, description: body.description, delivery: body.delivery.into() };
    let product = state.vendors.create_own_product(&vendor, &input, prices, body.published).await?;
    Ok((StatusCode::CREATED, Json(VendorProductView::from(product))).into_response())
}

/// One of the vendor's products; another vendor's is `404 not_found`.
#[utoipa::path(
    get,
    path = "/api/v1/vendor/products/{id}",
    tag = "vendor",
    params(("id" = String, Path, description = "Product id (`prd_…`)")),
    security(("vendor_api_key" = [])),
    responses(
        (status = 200, description = "The product", body = VendorProductView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn get_product(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    ApiPath(id): ApiPath,
) -> Result<Json<VendorProductView>, ApiError> {
    let id = ProductId::parse(&id).map_err(|_| ApiError::not_found())?;
    Ok(Json(state.vendors.own_product(&vendor, &id).await?.into()))
}

/// Changes one of the vendor's products (what is sent), or publishes or
/// withdraws it (`published`).
#[utoipa::path(
    patch,
    path = "/api/v1/vendor/products/{id}",
    tag = "vendor",
    params(("id" = String, Path, description = "Product id (`prd_…`)")),
    request_body = ProductChangeBody,
    security(("vendor_api_key" = [])),
    responses(
        (status = 200, description = "The product as it is now", body = VendorProductView),
        (status = 400, description = "`invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: send `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `invalid_product`, `invalid_price`", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn change_product(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    ApiPath(id): ApiPath,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Json<VendorProductView>, ApiError> {
    let id = ProductId::parse(&id).map_err(|_| ApiError::not_found())?;
    let body: ProductChangeBody = parse_json(&headers, &raw)?;
    let mut product = state.vendors.own_product(&vendor, &id).await?;
    if body.name.is_some() || body.description.is_some() || body.prices.is_some() || body.delivery.is_some() {
        let prices = match &body.prices {
            Some(typed) => prices_of(typed)?,
            None => product.prices.clone(),
        };
        let input = ProductInput {
            name: body.name.unwrap_or(product.name.clone()),
            description: body.description.unwrap_or(product.description.clone()),
            delivery: body.delivery.map_or(product.delivery, Delivery::from),
        };
        product = state.vendors.edit_own_product(&vendor, &id, &input, prices).await?;
    }
    if let Some(published) = body.published
        && published != product.published
    {
        product = state.vendors.publish_own_product(&vendor, &id, published).await?;
    }
    Ok(Json(product.into()))
}

/// A download file as its vendor sees it after the upload.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadedFileView {
    product_id: String,
    file_name: String,
    size_bytes: i64,
    /// Lowercase hex SHA-256 of the bytes received: compare it with yours.
    sha256: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// The file name buyers download it as (its last path part is kept).
    #[param(max_length = 200, example = "notes-pro-2.4.dmg")]
    name: String,
}

/// Uploads (or replaces) the download file of one of the vendor's products:
/// the body is the file's bytes, its `Content-Type` kept for downloads.
/// At most `vendors.max_upload_bytes` (64 MiB by default).
#[utoipa::path(
    put,
    path = "/api/v1/vendor/products/{id}/file",
    tag = "vendor",
    params(("id" = String, Path, description = "Product id (`prd_…`)"), UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    security(("vendor_api_key" = [])),
    responses(
        (status = 200, description = "Stored: its size and SHA-256", body = UploadedFileView),
        (status = 400, description = "`invalid_query`: `name` missing", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 413, description = "`file_too_large`", body = ErrorBody),
        (status = 422, description = "`empty_file`", body = ErrorBody),
        (status = 429, description = PER_KEY, body = ErrorBody)
    )
)]
pub async fn upload_file(
    State(state): State<AppState>,
    VendorApiKey(vendor): VendorApiKey,
    ApiPath(id): ApiPath,
    ApiQuery(params): ApiQuery<UploadParams>,
    headers: HeaderMap,
    raw: Bytes,
) -> Result<Json<UploadedFileView>, ApiError> {
    let id = ProductId::parse(&id).map_err(|_| ApiError::not_found())?;
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let stored = state.vendors.upload_own_file(&vendor, &id, &params.name, content_type, &raw).await?;
    Ok(Json(UploadedFileView {
        product_id: id.to_string(),
        file_name: stored.file_name,
        size_bytes: stored.size_bytes,
        sha256: stored.sha256,
    }))
}
