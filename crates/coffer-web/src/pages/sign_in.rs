//! The sign-in pages of every realm: one set of handlers and templates,
//! mounted under each realm's home (`/account`, `/staff`): the form
//! (`POST {home}/sign-in`), the code step (`POST {home}/sign-in/code`) and
//! sign-out (`POST {home}/sign-out`). What differs is the realm's
//! [`RealmPages`]: its sign-in service (whose policy decides whether the code
//! step is mandatory), its cookie and its words.

use super::render;
use crate::AppState;
use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{COOKIE, HOST, LOCATION, ORIGIN, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use coffer_app::AppError;
use coffer_app::accounts::SignInError;
use coffer_app::accounts::signin::{Directory, SignIn, Step};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;

/// The words of a realm's sign-in pages.
pub(super) struct RealmText {
    /// The realm's home: its sign-in form, or its first page once signed in.
    pub(super) home: &'static str,
    pub(super) title: &'static str,
    pub(super) heading: &'static str,
    pub(super) lead: &'static str,
    pub(super) email_label: &'static str,
    pub(super) button: &'static str,
    /// Whether the realm emails sign-in links (a second panel asks for one).
    pub(super) emailed_links: bool,
    /// Said under the form when there are no emailed links.
    pub(super) footnote: &'static str,
    pub(super) code_title: &'static str,
    pub(super) code_lead: &'static str,
}

/// A realm as its pages see it.
pub(super) trait RealmPages: Send + Sync + 'static {
    type Directory: Directory;
    const TEXT: &'static RealmText;
    /// The session cookie's base name.
    const COOKIE: &'static str;

    fn service(state: &AppState) -> &SignIn<Self::Directory>;

    /// The realm's page for a form from another site or an old page.
    fn forbidden() -> Response;

    /// The page for a failure on our side.
    fn failure(e: AppError) -> Response {
        failure(e)
    }
}

/// The sign-in routes of a realm, under its home.
pub(super) fn routes<R: RealmPages>() -> Router<AppState> {
    let home = R::TEXT.home;
    Router::new()
        .route(&format!("{home}/sign-in"), post(sign_in::<R>))
        .route(&format!("{home}/sign-in/code"), post(sign_in_code::<R>))
        .route(&format!("{home}/sign-out"), post(sign_out::<R>))
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    text: &'static RealmText,
    message: Option<String>,
    email: String,
}

#[derive(Template)]
#[template(path = "sign_in_code.html")]
struct CodePage {
    text: &'static RealmText,
    message: Option<String>,
    ticket: String,
}

/// The realm's sign-in form (its home without a session).
pub(super) fn sign_in_page<R: RealmPages>(message: Option<String>, email: String) -> SignInPageFor {
    SignInPageFor(SignInPage { text: R::TEXT, message, email })
}

/// A rendered-on-demand sign-in form of some realm.
pub(super) struct SignInPageFor(SignInPage);

impl IntoResponse for SignInPageFor {
    fn into_response(self) -> Response {
        render(&self.0)
    }
}

fn code_page<R: RealmPages>(message: Option<String>, ticket: String) -> CodePage {
    CodePage { text: R::TEXT, message, ticket }
}

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: String,
    #[serde(default)]
    form_token: String,
}

async fn sign_in<R: RealmPages>(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if let Some(refused) = guard_post(&state, peer, &headers, R::forbidden) {
        return refused;
    }
    let SignInForm { email, password, form_token } = form;
    if !super::forms::form_token_ok(&form_token) {
        return R::forbidden();
    }
    if email.len() > 254 || password.len() > 1024 {
        let message = "That is longer than any address or password we accept.".to_owned();
        return (StatusCode::UNPROCESSABLE_ENTITY, sign_in_page::<R>(Some(message), String::new())).into_response();
    }
    match R::service(&state).sign_in(&email, SecretString::from(password)).await {
        Ok(Ok(Step::Session { token, .. })) => signed_in::<R>(&state, &token),
        Ok(Ok(Step::NeedsCode { ticket })) => render(&code_page::<R>(None, ticket.expose_secret().to_owned())),
        Ok(Err(SignInError::Invalid)) => {
            let page = sign_in_page::<R>(Some("The email address or password is not right.".into()), email);
            (StatusCode::UNAUTHORIZED, page).into_response()
        }
        Ok(Err(SignInError::Locked { retry_after_ms })) => {
            let seconds = retry_seconds(retry_after_ms);
            let or_link = if R::TEXT.emailed_links { ", or ask for a link" } else { "" };
            let message = format!("Too many attempts. Try again in {seconds} seconds{or_link}.");
            too_many_attempts(seconds, &sign_in_page::<R>(Some(message), email).0)
        }
        Err(e) => R::failure(e),
    }
}

/// To the realm's home with a fresh session cookie.
pub(super) fn signed_in<R: RealmPages>(state: &AppState, token: &SecretString) -> Response {
    with_cookie(see_other(R::TEXT.home), &state.cookie_rule.set_cookie(R::COOKIE, token.expose_secret()))
}

#[derive(Deserialize)]
struct CodeForm {
    ticket: String,
    code: String,
}

async fn sign_in_code<R: RealmPages>(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    if let Some(refused) = guard_post(&state, peer, &headers, R::forbidden) {
        return refused;
    }
    // Tickets are 43 characters and codes at most a recovery code's 9.
    if form.code.len() > 64 || form.ticket.len() > 64 {
        let page = code_page::<R>(Some("That is not a code.".into()), String::new());
        return (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response();
    }
    match R::service(&state).complete_second_factor(&form.ticket, &form.code).await {
        Ok(Ok((token, _))) => signed_in::<R>(&state, &token),
        Ok(Err(SignInError::Invalid)) => {
            let message = "That code is not right, or this page expired; sign in again if it keeps failing.";
            let page = code_page::<R>(Some(message.into()), form.ticket);
            (StatusCode::UNAUTHORIZED, render(&page)).into_response()
        }
        Ok(Err(SignInError::Locked { retry_after_ms })) => {
            let seconds = retry_seconds(retry_after_ms);
            let message = format!("Too many attempts. Try again in {seconds} seconds.");
            too_many_attempts(seconds, &code_page::<R>(Some(message), form.ticket))
        }
        Err(e) => R::failure(e),
    }
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

async fn sign_out<R: RealmPages>(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    end_sessions::<R>(&state, &headers, &form.csrf, false).await
}

/// Signing out needs the session's CSRF token; without a live session the
/// (dead) cookie is cleared all the same. `everywhere` ends every session
/// of the person, not only this one.
pub(super) async fn end_sessions<R: RealmPages>(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
    everywhere: bool,
) -> Response {
    if !same_origin(headers) {
        return R::forbidden();
    }
    let service = R::service(state);
    if let Some(token) = cookie_value(state, headers, R::COOKIE) {
        let subject = match service.session(&token).await {
            Ok(subject) => subject,
            Err(e) => return R::failure(e),
        };
        if let Some(subject) = subject {
            if !state.accounts.csrf_matches(&token, csrf) {
                return R::forbidden();
            }
            let ended = if everywhere {
                service.sign_out_everywhere(&subject).await.map(drop)
            } else {
                service.sign_out(&token).await
            };
            if let Err(e) = ended {
                return R::failure(e);
            }
        }
    }
    with_cookie(see_other(R::TEXT.home), &state.cookie_rule.clear_cookie(R::COOKIE))
}

/// The page for a failure on our side (or a principal a service refused).
pub(super) fn failure(e: AppError) -> Response {
    // A service refused the principal: the edge let through more than the
    // permission table allows; say so plainly, never as a failure.
    if let AppError::Forbidden(_) = e {
        let page = super::account::MessagePage {
            title: "Not for your role",
            message: "Your role does not include this.".into(),
        };
        return (StatusCode::FORBIDDEN, render(&page)).into_response();
    }
    tracing::error!(error = %e, "account page failed");
    let page =
        super::account::MessagePage { title: "Something went wrong", message: "Please try again in a moment.".into() };
    (StatusCode::INTERNAL_SERVER_ERROR, render(&page)).into_response()
}

/// A POST from another site is refused. Browsers send `Sec-Fetch-Site` with
/// every request; where it is missing (older browsers) `Origin` must name
/// this server. Our `Referrer-Policy: no-referrer` makes browsers send
/// `Origin: null` on form posts, so `Sec-Fetch-Site` decides when present.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
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

/// The checks of an anonymous POST that guards something worth guessing
/// (sign-in, links, payment): a same-origin request (else `refused`), then
/// one of the client's attempts. `Some` is the answer to give instead.
pub(super) fn guard_post(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    refused: fn() -> Response,
) -> Option<Response> {
    if !same_origin(headers) {
        return Some(refused());
    }
    super::account::over_limit(state, peer, headers)
}

/// Whole seconds until a lock ends (at least one).
pub(super) fn retry_seconds(retry_after_ms: i64) -> u64 {
    u64::try_from((retry_after_ms + 999) / 1000).unwrap_or(1).max(1)
}

/// A 429 with the page that says why and `Retry-After`.
pub(super) fn too_many_attempts(seconds: u64, page: &impl Template) -> Response {
    let mut response = (StatusCode::TOO_MANY_REQUESTS, render(page)).into_response();
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The value of one of our cookies, by its base name.
pub(super) fn cookie_value(state: &AppState, headers: &HeaderMap, base: &str) -> Option<String> {
    let name = state.cookie_rule.cookie_name(base);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .flatten()
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

pub(super) fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")))])
        .into_response()
}

pub(super) fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}
