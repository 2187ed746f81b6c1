//! The anti-forgery token of the forms used before sign-in (sign-in, link,
//! cart, checkout details, written data request): besides the same-origin
//! check, each such POST must carry a token derived from the browser's
//! `coffer_form` cookie (a random value; the token is an HMAC of it under
//! the server's CSRF key). A site that makes a browser post to us cannot
//! read our page, so it cannot know the token.
//!
//! The middleware puts this request's pass in a task-local, so a template
//! writes `{{ crate::pages::forms::form_token() }}` and a handler asks
//! [`form_token_ok`], without threading it through every page.

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use coffer_app::accounts::AccountService;

#[derive(Clone)]
struct FormPass {
    /// The browser's form cookie: the one it sent, or the one this answer
    /// sets. `None` on a page that neither has nor makes one.
    cookie: Option<String>,
    /// Whether the request came with that cookie (only then can a posted
    /// token match).
    sent: bool,
    /// What makes and checks tokens; a token is made only when a page asks.
    accounts: AccountService,
}

tokio::task_local! {
    static FORM: FormPass;
}

fn subject(cookie: &str) -> String {
    format!("form:{cookie}")
}

/// The token for the forms of the page being rendered ("" outside a page
/// request, which makes such a form fail its check rather than pass).
pub fn form_token() -> String {
    FORM.try_with(|pass| pass.cookie.as_ref().map(|c| pass.accounts.csrf_token(&subject(c))).unwrap_or_default())
        .unwrap_or_default()
}

/// Whether a submitted token belongs to the cookie the request came with.
pub(super) fn form_token_ok(given: &str) -> bool {
    FORM.try_with(|pass| {
        pass.sent && pass.cookie.as_ref().is_some_and(|c| pass.accounts.csrf_matches(&subject(c), given))
    })
    .unwrap_or(false)
}

/// Pages with forms used before sign-in: where a visitor without the
/// cookie gets one.
fn has_anonymous_forms(path: &str) -> bool {
    matches!(path, "/account" | "/staff" | "/vendor" | "/checkout" | "/privacy/request")
        || path.starts_with("/products/")
}

/// A cookie value we could have made: 43 base64url characters.
fn well_formed(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn form_cookie(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let sent =
        super::account::cookie_value(&state, request.headers(), crate::cookies::FORM.name).filter(|v| well_formed(v));
    let fresh = match &sent {
        None if request.method() == Method::GET && has_anonymous_forms(request.uri().path()) => {
            state.accounts.new_form_cookie().ok()
        }
        _ => None,
    };
    let pass =
        FormPass { sent: sent.is_some(), cookie: sent.or_else(|| fresh.clone()), accounts: state.accounts.clone() };
    let mut response = FORM.scope(pass, next.run(request)).await;
    if let Some(cookie) = fresh
        && let Ok(value) = HeaderValue::from_str(&state.cookie_rule.set_cookie(crate::cookies::FORM.name, &cookie))
    {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}
