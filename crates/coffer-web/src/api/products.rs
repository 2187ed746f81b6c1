//! The public catalog.

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use coffer_app::ProductQuery;
use coffer_domain::{Product, ProductId, VendorSlug};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A product as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProductView {
    #[schema(example = "prd_0193c0de5a6b7c8d9e0f1a2b3c4d5e6f")]
    id: String,
    name: String,
    description: String,
    /// Net prices in minor units, by ISO 4217 currency code.
    #[schema(example = json!({"USD": 1999, "EUR": 1899}))]
    prices: BTreeMap<String, i64>,
    /// `license_key`, `download` or `both`.
    delivery: &'static str,
    vendor: VendorView,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VendorView {
    slug: String,
    name: String,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        ProductView {
            prices: p.prices.iter().map(|m| (m.currency().code().to_owned(), m.minor())).collect(),
            id: p.id.to_string(),
            name: p.name,
            description: p.description,
            delivery: p.delivery.as_str(),
            vendor: VendorView { slug: p.vendor_slug.to_string(), name: p.vendor_name },
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProductList {
    products: Vec<ProductView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this vendor's products (its slug).
    vendor: Option<String>,
    /// The `next_after` of the previous page.
    after: Option<String>,
    /// Page size, 1 to 100 (default 50).
    limit: Option<u32>,
}

/// Lists products, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/products",
    tag = "catalog",
    params(ListParams),
    responses(
        (status = 200, description = "A page of products", body = ProductList),
        (status = 400, description = "Bad query: `invalid_query`", body = ErrorBody),
        (status = 422, description = "A parameter value is invalid: `invalid_parameter`", body = ErrorBody)
    )
)]
pub async fn list_products(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<axum::response::Response, ApiError> {
    let invalid = |field: &str, message: &'static str| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameter", message).with_field(field)
    };
    let vendor =
        params.vendor.map(|s| VendorSlug::parse(&s)).transpose().map_err(|_| invalid("vendor", "not a vendor slug"))?;
    let after =
        params.after.map(|s| ProductId::parse(&s)).transpose().map_err(|_| invalid("after", "not a product id"))?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 100"));
    }
    // Rendered once per catalog cache period, then served as it is.
    let json = state
        .catalog
        .rendered_products(&ProductQuery { vendor, after, limit }, "api-v1-json", |page| {
            let list = ProductList {
                products: page.products.iter().cloned().map(ProductView::from).collect(),
                next_after: page.next_after.as_ref().map(ToString::to_string),
            };
            serde_json::to_vec(&list).map_err(|_| coffer_app::AppError::Internal("a product list could not be encoded"))
        })
        .await?;
    let body = axum::body::Body::from(bytes::Bytes::from_owner(json));
    Ok(([(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"))], body)
        .into_response())
}

/// One product.
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    tag = "catalog",
    params(("id" = String, Path, description = "Product id (`prd_…`)")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 404, description = "No such product: `not_found`", body = ErrorBody)
    )
)]
pub async fn get_product(State(state): State<AppState>, ApiPath(id): ApiPath) -> Result<Json<ProductView>, ApiError> {
    let id = ProductId::parse(&id).map_err(|_| ApiError::not_found())?;
    Ok(Json(state.catalog.listed_product(&id).await?.into()))
}
