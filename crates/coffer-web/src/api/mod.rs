//! The JSON API. Every route is registered through `routes!`, so the OpenAPI
//! document is generated from the same handlers that serve requests.

mod licenses;
mod orders;
mod products;
mod vendor;

use crate::AppState;
use crate::error::ErrorBody;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Coffer API",
        description = "Coffer sells software on behalf of independent vendors. Errors are \
                       `{\"error\": {\"code\", \"message\", \"field\"?}}` with a stable code.",
        license(name = "AGPL-3.0-only")
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerKeys)
)]
struct ApiDoc;

/// The vendor API's security scheme: `Authorization: Bearer <api_key>`.
struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("A vendor API key (`cvk_…`), made by a vendor owner in the portal"))
            .build();
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme("vendor_api_key", SecurityScheme::Http(scheme));
        }
    }
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(openapi_json))
        .routes(routes!(products::list_products))
        .routes(routes!(products::get_product))
        .routes(routes!(orders::create_order))
        .routes(routes!(orders::privacy_policy))
        .routes(routes!(licenses::verify_license))
        .routes(routes!(licenses::revocations))
        .routes(routes!(vendor::list_orders))
        .routes(routes!(vendor::get_order))
        .routes(routes!(vendor::list_products, vendor::create_product))
        .routes(routes!(vendor::get_product, vendor::change_product))
}

/// The OpenAPI 3.1 document of every JSON route.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`, or `unavailable` when a store does not answer.
    status: &'static str,
}

/// Whether the server and its database answer.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Everything answers", body = Health),
        (status = 503, description = "A store does not answer", body = Health)
    )
)]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.answers().await {
        (StatusCode::OK, Json(Health { status: "ok" }))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "unavailable" }))
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], state.openapi_json.to_string())
}
