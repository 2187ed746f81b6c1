//! Proof of identity for a held order: the signed link from the order
//! email leads to an upload form (no sign-in needed); the file is checked by
//! its content and encrypted under the customer's key before it is stored.
//! These routes take larger bodies than the rest, so they have a router of
//! their own.

use super::account::{MessagePage, failure, forbidden, same_origin};
use super::{render, sentence};
use crate::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use coffer_app::AppError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/identity/{token}", get(upload_page).post(upload))
        .layer(axum::middleware::map_response(super::account::no_store))
}

#[derive(Template)]
#[template(path = "identity_upload.html")]
struct UploadPage {
    message: Option<String>,
}

fn link_gone() -> Response {
    let page = MessagePage {
        title: "Upload link not valid",
        message: "This link has expired, or the order is no longer waiting for a check.".into(),
    };
    (StatusCode::GONE, render(&page)).into_response()
}

async fn upload_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let identity = state.checkout.identity();
    match identity.identity_link_order(&token).await {
        Ok(Some(order)) => match identity.uploaded_at(&order).await {
            // A used link says so: the document is here.
            Ok(Some(at)) => render(&UploadPage {
                message: Some(format!(
                    "We received your document on {}. We email you as soon as the check is done; you need not \
                     upload it again (a new upload would replace it).",
                    coffer_domain::order::long_day_utc(at)
                )),
            }),
            Ok(None) => render(&UploadPage { message: None }),
            Err(e) => failure(e),
        },
        Ok(None) => link_gone(),
        Err(e) => failure(e),
    }
}

async fn upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    mut form: Multipart,
) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let again = |message: &str| {
        (StatusCode::UNPROCESSABLE_ENTITY, render(&UploadPage { message: Some(message.to_owned()) })).into_response()
    };
    let mut document = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("document") => match field.bytes().await {
                Ok(bytes) => document = Some(bytes),
                Err(_) => return again("The file could not be read; it may be larger than 8 MB."),
            },
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return again("The upload could not be read; it may be larger than 8 MB."),
        }
    }
    let Some(document) = document.filter(|d| !d.is_empty()) else { return again("Choose a file to upload.") };
    match state.checkout.identity().upload_identity(&token, &document).await {
        Ok(()) => render(&MessagePage {
            title: "Thank you",
            message: "Your document is uploaded. We email you as soon as the check is done.".into(),
        }),
        Err(AppError::Order(e)) if e.code == "link_invalid" => link_gone(),
        Err(AppError::Order(e)) => again(&sentence(&e.message)),
        Err(e) => failure(e),
    }
}
