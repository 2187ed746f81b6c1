//! The customer's account pages: sign in, one-time links, set password,
//! the overview, sign out. Forms work without JavaScript. Every POST is
//! checked for a same-origin request; forms of a signed-in session also
//! carry its CSRF token.

use super::render;
use crate::AppState;
use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{COOKIE, HOST, LOCATION, ORIGIN, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coffer_app::AppError;
use coffer_app::accounts::SignInError;
use coffer_domain::CustomerId;
use coffer_store::LinkPurpose;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const SESSION_COOKIE: &str = "coffer_session";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(account))
        .route("/account/sign-in", post(sign_in))
        .route("/account/link", post(request_link))
        .route("/account/link/{token}", get(set_password_page).post(set_password))
        .route("/account/sign-out", post(sign_out))
        .route("/account/sign-out-everywhere", post(sign_out_everywhere))
}

#[derive(Template)]
#[template(path = "account_sign_in.html")]
struct SignInPage {
    message: Option<String>,
    email: String,
}

#[derive(Template)]
#[template(path = "account_message.html")]
struct MessagePage {
    title: &'static str,
    message: String,
}

#[derive(Template)]
#[template(path = "account_set_password.html")]
struct SetPasswordPage {
    message: Option<String>,
}

#[derive(Template)]
#[template(path = "account_overview.html")]
struct OverviewPage {
    name: String,
    email: String,
    csrf: String,
}

/// A POST from another site is refused. Browsers send `Sec-Fetch-Site` with
/// every request; where it is missing (older browsers) `Origin` must name
/// this server. Our `Referrer-Policy: no-referrer` makes browsers send
/// `Origin: null` on form posts, so `Sec-Fetch-Site` decides when present.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    match (headers.get(ORIGIN).and_then(|v| v.to_str().ok()), headers.get(HOST).and_then(|v| v.to_str().ok())) {
        (Some(origin), Some(host)) => origin == format!("http://{host}") || origin == format!("https://{host}"),
        (Some(_), None) => false,
        // Not a browser (no CSRF without one): scripts and curl.
        (None, _) => true,
    }
}

fn forbidden() -> Response {
    let page = MessagePage {
        title: "Request refused",
        message: "This form was sent from another site or an old page. Go back, reload the page and try again.".into(),
    };
    (StatusCode::FORBIDDEN, render(&page)).into_response()
}

fn session_cookie(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let name = state.cookie_rule.cookie_name(SESSION_COOKIE);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .flatten()
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// The signed-in customer and their session token, if any.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<(CustomerId, String)>, AppError> {
    let Some(token) = session_cookie(state, headers) else { return Ok(None) };
    Ok(state.accounts.session(&token).await?.map(|customer| (customer, token)))
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")))])
        .into_response()
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

fn failure(e: AppError) -> Response {
    tracing::error!(error = %e, "account page failed");
    let page = MessagePage { title: "Something went wrong", message: "Please try again in a moment.".into() };
    (StatusCode::INTERNAL_SERVER_ERROR, render(&page)).into_response()
}

async fn account(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok(Some((customer, token))) => match state.accounts.own_record(&customer).await {
            Ok(record) => render(&OverviewPage {
                name: record.details.name,
                email: record.details.email,
                csrf: state.accounts.csrf_token(&token),
            }),
            Err(e) => failure(e),
        },
        Ok(None) => render(&SignInPage { message: None, email: String::new() }),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: String,
}

async fn sign_in(State(state): State<AppState>, headers: HeaderMap, form: Form<SignInForm>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    let Form(SignInForm { email, password }) = form;
    if email.len() > 254 || password.len() > 1024 {
        let page = SignInPage {
            message: Some("That is longer than any address or password we accept.".into()),
            email: String::new(),
        };
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
    }
    match state.accounts.sign_in(&email, SecretString::from(password)).await {
        Ok(Ok(session)) => with_cookie(
            see_other("/account"),
            &state.cookie_rule.set_cookie(SESSION_COOKIE, session.token.expose_secret()),
        ),
        Ok(Err(SignInError::Invalid)) => {
            let page = SignInPage { message: Some("The email address or password is not right.".into()), email };
            (StatusCode::UNAUTHORIZED, render(&page)).into_response()
        }
        Ok(Err(SignInError::Locked { retry_after_ms })) => {
            let seconds = (retry_after_ms + 999) / 1000;
            let page = SignInPage {
                message: Some(format!("Too many attempts. Try again in {seconds} seconds, or ask for a link.")),
                email,
            };
            let mut response = (StatusCode::TOO_MANY_REQUESTS, render(&page)).into_response();
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(u64::try_from(seconds).unwrap_or(1)));
            response
        }
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct LinkForm {
    email: String,
}

async fn request_link(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<LinkForm>) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    if form.email.len() <= 254
        && let Err(e) = state.accounts.request_link(&form.email, LinkPurpose::SignIn).await
    {
        return failure(e);
    }
    // The same answer whether or not the address has an account.
    render(&MessagePage {
        title: "Check your email",
        message: "If an account exists for that address, we have sent it a link. It works once, for 15 minutes.".into(),
    })
}

async fn set_password_page() -> Response {
    render(&SetPasswordPage { message: None })
}

#[derive(Deserialize)]
struct PasswordForm {
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Response {
    if !same_origin(&headers) {
        return forbidden();
    }
    match state.accounts.set_password_with_link(&token, SecretString::from(form.password)).await {
        Ok(session) => with_cookie(
            see_other("/account"),
            &state.cookie_rule.set_cookie(SESSION_COOKIE, session.token.expose_secret()),
        ),
        Err(AppError::Refused(message)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, render(&SetPasswordPage { message: Some(message) })).into_response()
        }
        Err(AppError::Erased | AppError::NotFound) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&SetPasswordPage {
                message: Some("This link has expired or was already used; ask for a new one.".into()),
            }),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A signed-in POST: same origin and the session's CSRF token, or refused.
async fn checked_session(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Option<(CustomerId, String)>, Response> {
    if !same_origin(headers) {
        return Err(forbidden());
    }
    match signed_in(state, headers).await {
        Ok(Some((customer, token))) if state.accounts.csrf_matches(&token, csrf) => Ok(Some((customer, token))),
        Ok(Some(_)) => Err(forbidden()),
        Ok(None) => Ok(None),
        Err(e) => Err(failure(e)),
    }
}

fn signed_out(state: &AppState) -> Response {
    with_cookie(see_other("/account"), &state.cookie_rule.clear_cookie(SESSION_COOKIE))
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    match checked_session(&state, &headers, &form.csrf).await {
        Ok(Some((_, token))) => match state.accounts.sign_out(&token).await {
            Ok(()) => signed_out(&state),
            Err(e) => failure(e),
        },
        Ok(None) => signed_out(&state),
        Err(response) => response,
    }
}

async fn sign_out_everywhere(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    match checked_session(&state, &headers, &form.csrf).await {
        Ok(Some((customer, _))) => match state.accounts.sign_out_everywhere(&customer).await {
            Ok(_) => signed_out(&state),
            Err(e) => failure(e),
        },
        Ok(None) => signed_out(&state),
        Err(response) => response,
    }
}
