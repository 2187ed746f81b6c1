//! The JSON API. Every route is registered through `routes!`, so the OpenAPI
//! document is generated from the same handlers that serve requests.

mod licenses;
mod orders;
mod products;
mod vendor;
mod vendor_webhooks;

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
        .routes(routes!(vendor_webhooks::create_webhook, vendor_webhooks::list_webhooks))
        .routes(routes!(vendor_webhooks::delete_webhook))
        .routes(routes!(vendor_webhooks::list_deliveries))
        .routes(routes!(vendor_webhooks::replay_delivery))
        .routes(routes!(vendor_webhooks::statement))
}

/// The routes that take bodies larger than the usual limit (a vendor's
/// download file): a router of their own, with its own limit.
pub fn upload_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(vendor::upload_file))
}

/// The OpenAPI 3.1 document of every JSON route.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut document = routes().split_for_parts().1;
    document.merge(upload_routes().split_for_parts().1);
    document
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

#[cfg(test)]
mod document_tests {
    use utoipa::openapi::path::{Operation, ParameterIn};

    /// What each operation must document: every answer it can give.
    fn problems(method: &str, path: &str, op: &Operation) -> Vec<String> {
        let codes: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
        let mut missing = Vec::new();
        let mut need = |code: &'static str, why: &str| {
            if !codes.contains(&code) {
                missing.push(format!("{method} {path}: no {code} ({why})"));
            }
        };
        if !codes.iter().any(|c| c.starts_with('2')) {
            need("200", "a success");
        }
        if op.request_body.is_some() && !path.ends_with("/file") {
            need("400", "a body that is not JSON");
            need("415", "a body that is not application/json");
            need("422", "a field of the wrong kind");
        }
        let params: Vec<&utoipa::openapi::path::Parameter> = op
            .parameters
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|p| match p {
                utoipa::openapi::RefOr::T(p) => Some(p),
                utoipa::openapi::RefOr::Ref(_) => None,
            })
            .collect();
        if params.iter().any(|p| p.parameter_in == ParameterIn::Query) {
            need("400", "an unknown or ill-typed query parameter");
        }
        if params.iter().any(|p| p.parameter_in == ParameterIn::Path) {
            need("404", "a path naming nothing");
        }
        if op.security.is_some() {
            need("401", "no, a bad or a revoked key");
            need("429", "over the per-key limit");
        }
        if path.starts_with("/api/v1/vendor/") && op.security.is_none() {
            missing.push(format!("{method} {path}: no security scheme"));
        }
        missing
    }

    #[test]
    fn every_operation_documents_every_answer_it_can_give() {
        let document = super::openapi_document();
        let schemes = document.components.as_ref().map(|c| c.security_schemes.clone()).unwrap_or_default();
        assert!(schemes.contains_key("vendor_api_key"), "the bearer scheme is described");
        let mut missing = Vec::new();
        for (path, item) in &document.paths.paths {
            let ops = [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    missing.extend(problems(method, path, op));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented answers:\n{}", missing.join("\n"));
    }
}
