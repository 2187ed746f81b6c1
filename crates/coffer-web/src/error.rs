//! The JSON error model of the API.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coffer_app::AppError;
use serde::Serialize;
use std::borrow::Cow;

/// An error answer: `{"error": {"code", "message", "field"?}}`. Codes are
/// stable; messages are for people and never hold personal data.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub field: Option<String>,
    /// Seconds for `Retry-After`, on a 429.
    pub retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case; programs branch on it.
    code: &'static str,
    message: String,
    /// Dotted path of the one input field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError { status, code, message: message.into(), field: None, retry_after: None }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 429 `too_many_attempts` with `Retry-After` (whole seconds, at least one).
    pub fn too_many_attempts(retry_after_ms: i64) -> Self {
        let seconds = u64::try_from((retry_after_ms + 999) / 1000).unwrap_or(1).max(1);
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many attempts; try again in {seconds} seconds"),
        );
        error.retry_after = Some(seconds);
        error
    }

    pub fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    pub fn internal() -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "something went wrong on our side")
    }

    /// The answer for a bare status produced by the framework or a layer.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this method is not allowed here"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send the body as application/json"),
            StatusCode::TOO_MANY_REQUESTS => ("too_many_attempts", "too many requests; try again later"),
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "the service is unavailable; try again later"),
            s if s.is_client_error() => ("bad_request", "the request is not valid"),
            _ => ("internal", "something went wrong on our side"),
        };
        ApiError::new(status, code, message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail { code: self.code, message: self.message.to_string(), field: self.field.clone() },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound | AppError::InvalidId(_) => ApiError::not_found(),
            AppError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", "not allowed for this role"),
            AppError::Catalog(e) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_product", e.to_string()),
            AppError::Money(e) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_price", e.to_string()),
            AppError::Conflict => ApiError::new(StatusCode::CONFLICT, "conflict", "this already exists"),
            AppError::Customer(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_customer", format!("{} {}", e.field, e.reason))
                    .with_field(e.field)
            }
            AppError::Erased => ApiError::new(StatusCode::GONE, "erased", "this customer's data was erased"),
            AppError::Gateway(e) => {
                tracing::error!(error = %e, "payment gateway failure");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "payment_gateway_failed",
                    "the payment processor did not answer; try again later",
                )
            }
            // Ours to fix, never the caller's: a 500, not a 422.
            e @ (AppError::AuditChainBroken(_) | AppError::Internal(_) | AppError::Config(_)) => {
                tracing::error!(error = %e, "internal failure");
                ApiError::internal()
            }
            AppError::Account(e) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()),
            AppError::LinkGone(message) => ApiError::new(StatusCode::GONE, "link_gone", message),
            AppError::Vendor(e) => {
                let status = match &e {
                    coffer_app::vendors::VendorError::FileTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                    e if e.is_conflict() => StatusCode::CONFLICT,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let error = ApiError::new(status, e.code(), e.to_string());
                match e.field() {
                    Some(field) => error.with_field(field),
                    None => error,
                }
            }
            AppError::TooManyAttempts { retry_after_ms } => ApiError::too_many_attempts(retry_after_ms),
            AppError::Order(e) => {
                let status = if e.code == "card_declined" {
                    StatusCode::PAYMENT_REQUIRED
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                let error = ApiError::new(status, e.code, e.message);
                match e.field {
                    Some(field) => error.with_field(field),
                    None => error,
                }
            }
            AppError::Crypto(e) => {
                // Names keys by version or id and fields by column only.
                tracing::error!(error = %e, "key failure");
                ApiError::internal()
            }
            AppError::Files(e) => {
                tracing::error!(error = %e, "file failure");
                ApiError::internal()
            }
            AppError::Keys(e) => {
                tracing::error!(error = %e, "key store failure");
                ApiError::for_status(StatusCode::SERVICE_UNAVAILABLE)
            }
            AppError::Unavailable => ApiError::for_status(StatusCode::SERVICE_UNAVAILABLE),
            AppError::Store(e) => {
                // Store messages name tables and constraints, never values.
                tracing::error!(error = %e, "storage failure");
                ApiError::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_on_our_side_are_never_answered_as_the_callers_mistake() {
        let answer = |e: AppError| {
            let api = ApiError::from(e);
            (api.status, api.code)
        };
        assert_eq!(
            answer(AppError::Internal("a value would not encode")),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert_eq!(
            answer(AppError::Files("file store: PermissionDenied".into())),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        let broken = coffer_app::privacy::audit::ChainBroken::Gap { previous: 1, seq: 3 };
        assert_eq!(answer(AppError::AuditChainBroken(broken)), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
        assert_eq!(
            answer(AppError::Gateway("the processor is down".into())),
            (StatusCode::BAD_GATEWAY, "payment_gateway_failed")
        );
        // The caller's mistakes keep their status and code.
        let declined = coffer_domain::OrderError::new("card_declined", Some("card.number"), "declined");
        assert_eq!(answer(AppError::Order(declined)), (StatusCode::PAYMENT_REQUIRED, "card_declined"));
        let wrong = coffer_domain::OrderError::new("wrong_status", Some("status"), "this order is refunded");
        assert_eq!(answer(AppError::Order(wrong)), (StatusCode::UNPROCESSABLE_ENTITY, "wrong_status"));
    }
}
