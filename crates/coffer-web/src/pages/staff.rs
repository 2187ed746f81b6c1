//! The staff console: sign-in (password, then a TOTP or recovery code:
//! staff always have the second factor), enrolment by the one-time link
//! `coffer staff add` prints, and the pages each role opens. Who may open
//! a page is the `Staff<R>` extractor's job, so a route cannot forget it.

use super::account::failure;
use super::sign_in::{
    RealmPages, RealmText, cookie_value, guard_post, same_origin, see_other, sign_in_page, with_cookie,
};
use super::{render, sentence};
use crate::AppState;
use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use coffer_app::AppError;
use coffer_app::accounts::StaffMember;
use coffer_app::accounts::signin::SignIn;
use coffer_app::request::RequestContext;
use coffer_domain::StaffRole;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::marker::PhantomData;
use std::net::SocketAddr;

/// Apart from the customer cookie: one browser may hold both.
const STAFF_COOKIE: &str = crate::cookies::STAFF.name;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(super::sign_in::routes::<StaffRealm>())
        .route("/staff", get(home))
        .route("/staff/enrol/{token}", get(enrol_page).post(enrol))
        .route("/staff/requests", get(requests))
        .route("/staff/members", get(members))
        .route("/staff/vendors", get(vendors).post(add_vendor))
        .route("/staff/vendors/{slug}/standing", post(vendor_standing))
        .route("/staff/reviews", get(reviews))
        .route("/staff/transfers", get(transfers))
        .route("/staff/orders/{id}", get(order_page))
        .route("/staff/orders/{id}/action", post(order_action))
        .route("/staff/orders/{id}/identity", get(identity_document))
        .layer(axum::middleware::map_response(super::account::no_store))
}

/// Which role a page needs. Admins open every page.
pub trait RequiredRole {
    const ROLE: Option<StaffRole>;

    /// Whether a member with `role` may open the page.
    fn allows(role: StaffRole) -> bool {
        Self::ROLE.is_none_or(|needed| role.allows(needed))
    }
}

pub struct Reviewer;
impl RequiredRole for Reviewer {
    const ROLE: Option<StaffRole> = Some(StaffRole::Reviewer);
}

pub struct Support;
impl RequiredRole for Support {
    const ROLE: Option<StaffRole> = Some(StaffRole::Support);
}

/// The pages of one order: support and reviewers (and admins).
pub struct OrderStaff;
impl RequiredRole for OrderStaff {
    const ROLE: Option<StaffRole> = Some(StaffRole::Support);
    fn allows(role: StaffRole) -> bool {
        role.allows(StaffRole::Support) || role.allows(StaffRole::Reviewer)
    }
}

/// Any signed-in staff member.
pub struct AnyRole;
impl RequiredRole for AnyRole {
    const ROLE: Option<StaffRole> = None;
}

pub struct Dpo;
impl RequiredRole for Dpo {
    const ROLE: Option<StaffRole> = Some(StaffRole::Dpo);
}

pub struct Admin;
impl RequiredRole for Admin {
    const ROLE: Option<StaffRole> = Some(StaffRole::Admin);
}

/// A signed-in staff member whose role opens the page; anyone else is
/// sent to the staff sign-in (no session) or refused with 403 (wrong role).
pub struct Staff<R> {
    member: StaffMember,
    /// The session token, for the CSRF token of forms.
    token: String,
    role: PhantomData<R>,
}

impl<R> Staff<R> {
    /// Who acts, in this request: what the services check permissions of
    /// and audit.
    fn ctx(&self) -> RequestContext {
        RequestContext::new(coffer_domain::Principal::Staff { id: self.member.id.to_string(), role: self.member.role })
    }
}

impl<R: RequiredRole> OptionalFromRequestParts<AppState> for Staff<R> {
    type Rejection = Response;

    /// `None` without a live staff session; a wrong role is still refused.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Response> {
        let Some((member, token)) = staff_session(state, &parts.headers).await.map_err(failure)? else {
            return Ok(None);
        };
        if let Some(needed) = R::ROLE
            && !R::allows(member.role)
        {
            let page = MessagePage {
                title: "Not for your role",
                message: format!("This page is for the {} role.", needed.label()),
            };
            return Err((StatusCode::FORBIDDEN, render(&page)).into_response());
        }
        Ok(Some(Staff { member, token, role: PhantomData }))
    }
}

impl<R: RequiredRole> FromRequestParts<AppState> for Staff<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match <Self as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state).await? {
            Some(staff) => Ok(staff),
            None => Err(see_other("/staff")),
        }
    }
}

async fn staff_session(state: &AppState, headers: &HeaderMap) -> Result<Option<(StaffMember, String)>, AppError> {
    let Some(token) = cookie_value(state, headers, STAFF_COOKIE) else { return Ok(None) };
    Ok(state.staff.session(&token).await?.map(|member| (member, token)))
}

#[derive(Template)]
#[template(path = "staff_message.html")]
struct MessagePage {
    title: &'static str,
    message: String,
}

fn forbidden() -> Response {
    let page = MessagePage {
        title: "Request refused",
        message: "This form was sent from another site or an old page. Go back, reload the page and try again.".into(),
    };
    (StatusCode::FORBIDDEN, render(&page)).into_response()
}

/// The staff realm's sign-in pages: the second factor every time, no
/// emailed links (members enrol with a printed link).
pub(super) struct StaffRealm;

impl RealmPages for StaffRealm {
    type Directory = coffer_app::accounts::staff::StaffDirectory;
    const TEXT: &'static RealmText = &RealmText {
        home: "/staff",
        title: "Staff sign-in",
        heading: "Staff console",
        lead: "For the operator's support, review and privacy staff. Sign-in needs your password and a code from your \
               authenticator app.",
        email_label: "Work email address",
        button: "Continue",
        emailed_links: false,
        footnote: "New staff members enrol with the one-time link an administrator gives them.",
        code_title: "Staff sign-in: code",
        code_lead: "Type the 6-digit code your authenticator app shows for Coffer staff, or one of your recovery codes.",
    };
    const COOKIE: &'static str = STAFF_COOKIE;

    fn service(state: &AppState) -> &SignIn<Self::Directory> {
        state.staff.sign_in_service()
    }

    fn forbidden() -> Response {
        forbidden()
    }
}

#[derive(Template)]
#[template(path = "staff_enrol.html")]
struct EnrolPage {
    message: Option<String>,
    secret: String,
    uri: String,
    codes: Vec<String>,
}

#[derive(Template)]
#[template(path = "staff_home.html")]
struct HomePage {
    email: String,
    role: &'static str,
    dpo: bool,
    admin: bool,
    reviewer: bool,
    support: bool,
    csrf: String,
}

struct RequestLine {
    id: String,
    customer: String,
    kind: String,
    jurisdiction: String,
    deadline: String,
}

#[derive(Template)]
#[template(path = "staff_requests.html")]
struct RequestsPage {
    requests: Vec<RequestLine>,
}

struct MemberLine {
    id: String,
    role: &'static str,
    email: String,
    enrolled: bool,
}

#[derive(Template)]
#[template(path = "staff_members.html")]
struct MembersPage {
    members: Vec<MemberLine>,
}

async fn home(staff: Option<Staff<AnyRole>>, State(state): State<AppState>) -> Response {
    let Some(Staff { member, token, .. }) = staff else {
        return sign_in_page::<StaffRealm>(None, String::new()).into_response();
    };
    match state.staff.email_of(&member.id).await {
        Ok(email) => render(&HomePage {
            email,
            role: member.role.label(),
            dpo: member.role.allows(StaffRole::Dpo),
            admin: member.role.allows(StaffRole::Admin),
            reviewer: member.role.allows(StaffRole::Reviewer),
            support: member.role.allows(StaffRole::Support),
            csrf: state.accounts.csrf_token(&token),
        }),
        Err(e) => failure(e),
    }
}

fn link_gone(message: String) -> Response {
    (StatusCode::GONE, render(&MessagePage { title: "Enrolment link not valid", message })).into_response()
}

async fn enrol_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.staff.start_enrolment(&token, None).await {
        Ok(setup) => render(&EnrolPage {
            message: None,
            secret: setup.secret.expose_secret().to_owned(),
            uri: setup.uri.expose_secret().to_owned(),
            codes: Vec::new(),
        }),
        Err(AppError::LinkGone(message)) => link_gone(sentence(message)),
        Err(e) => failure(e),
    }
}

#[derive(Deserialize)]
struct EnrolForm {
    password: String,
    secret: String,
    code: String,
}

async fn enrol(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<EnrolForm>,
) -> Response {
    if let Some(refused) = guard_post(&state, peer, &headers, forbidden) {
        return refused;
    }
    if form.password.len() > 1024 || form.secret.len() > 128 || form.code.len() > 64 {
        return link_gone("That is longer than anything this form accepts.".into());
    }
    match state.staff.enrol(&token, SecretString::from(form.password), &form.secret, &form.code).await {
        Ok(enrolled) => with_cookie(
            render(&EnrolPage {
                message: None,
                secret: String::new(),
                uri: String::new(),
                codes: enrolled.recovery_codes,
            }),
            &state.cookie_rule.set_cookie(STAFF_COOKIE, enrolled.session.token.expose_secret()),
        ),
        Err(AppError::LinkGone(message)) => link_gone(sentence(message)),
        Err(AppError::Account(refused)) => {
            // The same secret again, so the app entry already made still works.
            let setup = match state.staff.start_enrolment(&token, Some(&form.secret)).await {
                Ok(setup) => setup,
                Err(AppError::LinkGone(again)) => return link_gone(sentence(again)),
                Err(e) => return failure(e),
            };
            let page = EnrolPage {
                message: Some(sentence(&refused.to_string())),
                secret: setup.secret.expose_secret().to_owned(),
                uri: setup.uri.expose_secret().to_owned(),
                codes: Vec::new(),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, render(&page)).into_response()
        }
        Err(e) => failure(e),
    }
}

/// `YYYY-MM-DD HH:MM` in UTC.
fn utc(ms: i64) -> String {
    coffer_domain::order::rfc3339_utc(coffer_domain::Millis(ms)).replace('T', " ").chars().take(16).collect()
}

async fn requests(staff: Staff<Dpo>, State(state): State<AppState>) -> Response {
    match state.staff.open_privacy_requests(&staff.ctx()).await {
        Ok(rows) => render(&RequestsPage {
            requests: rows
                .into_iter()
                .map(|r| RequestLine {
                    id: r.id,
                    customer: r.customer_id.to_string(),
                    kind: r.kind,
                    jurisdiction: r.jurisdiction,
                    deadline: r.deadline_at.map(|d| utc(d.0)).unwrap_or_default(),
                })
                .collect(),
        }),
        Err(e) => failure(e),
    }
}

struct VendorLine {
    slug: String,
    name: String,
    suspended: Option<String>,
    terms: bool,
    users: usize,
    products: usize,
}

#[derive(Template)]
#[template(path = "staff_vendors.html")]
struct VendorsPage {
    vendors: Vec<VendorLine>,
    /// A vendor just added and its owner's link, shown this once.
    added: Option<(String, String)>,
    message: Option<String>,
    csrf: String,
}

async fn vendors_page(
    state: &AppState,
    staff: &Staff<Admin>,
    added: Option<(String, String)>,
    message: Option<String>,
) -> Response {
    match state.vendors.list_vendors(&staff.ctx()).await {
        Ok(list) => render(&VendorsPage {
            vendors: list
                .into_iter()
                .map(|l| VendorLine {
                    suspended: (l.vendor.status == coffer_domain::VendorStatus::Suspended)
                        .then(|| l.vendor.suspended_reason.clone().unwrap_or_default()),
                    slug: l.vendor.slug.to_string(),
                    name: l.vendor.name,
                    terms: l.vendor.terms_accepted_at.is_some(),
                    users: l.users,
                    products: l.products,
                })
                .collect(),
            added,
            message,
            csrf: state.accounts.csrf_token(&staff.token),
        }),
        Err(e) => failure(e),
    }
}

async fn vendors(staff: Staff<Admin>, State(state): State<AppState>) -> Response {
    vendors_page(&state, &staff, None, None).await
}

#[derive(Deserialize)]
struct VendorForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    owner_email: String,
    /// `suspend` or `reinstate`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
}

async fn add_vendor(
    staff: Staff<Admin>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<VendorForm>,
) -> Response {
    if !same_origin(&headers) || !state.accounts.csrf_matches(&staff.token, &form.csrf) {
        return forbidden();
    }
    match state.vendors.add_vendor(&staff.ctx(), &form.slug, &form.name, &form.owner_email).await {
        Ok(added) => {
            let shown = (added.vendor.slug.to_string(), added.enrolment_link.expose_secret().to_owned());
            vendors_page(&state, &staff, Some(shown), None).await
        }
        Err(e) => match super::vendor::refusal(e) {
            Ok(message) => (StatusCode::UNPROCESSABLE_ENTITY, vendors_page(&state, &staff, None, Some(message)).await)
                .into_response(),
            Err(page) => page,
        },
    }
}

async fn vendor_standing(
    staff: Staff<Admin>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
    Form(form): Form<VendorForm>,
) -> Response {
    if !same_origin(&headers) || !state.accounts.csrf_matches(&staff.token, &form.csrf) {
        return forbidden();
    }
    let done = match form.action.as_str() {
        "suspend" => state.vendors.suspend(&staff.ctx(), &slug, &form.reason).await,
        "reinstate" => state.vendors.reinstate(&staff.ctx(), &slug).await,
        _ => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                vendors_page(&state, &staff, None, Some("Choose suspend or reinstate.".into())).await,
            )
                .into_response();
        }
    };
    match done {
        Ok(_) => see_other("/staff/vendors"),
        Err(e) => match super::vendor::refusal(e) {
            Ok(message) => (StatusCode::UNPROCESSABLE_ENTITY, vendors_page(&state, &staff, None, Some(message)).await)
                .into_response(),
            Err(page) => page,
        },
    }
}

async fn members(_staff: Staff<Admin>, State(state): State<AppState>) -> Response {
    match state.staff.list().await {
        Ok(list) => render(&MembersPage {
            members: list
                .into_iter()
                .map(|(id, role, email, enrolled)| MemberLine {
                    id: id.to_string(),
                    role: role.label(),
                    email,
                    enrolled,
                })
                .collect(),
        }),
        Err(e) => failure(e),
    }
}

struct QueueLine {
    id: String,
    placed: String,
    total: String,
    status: String,
    score: i64,
    reasons: String,
    reference: String,
}

impl From<coffer_app::checkout::QueuedOrder> for QueueLine {
    fn from(o: coffer_app::checkout::QueuedOrder) -> Self {
        QueueLine {
            id: o.id.to_string(),
            placed: utc(o.created_at.0),
            total: money(o.total, &o.currency),
            status: o.status.replace('_', " "),
            score: o.fraud_score,
            reasons: o.fraud_reasons.replace(',', ", ").replace('_', " "),
            reference: o.payment_reference.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "staff_queue.html")]
struct QueuePage {
    title: &'static str,
    lead: &'static str,
    orders: Vec<QueueLine>,
    /// The bank transfer queue: references and amounts due, and a search.
    transfers: bool,
    /// What support searched for, and what it found.
    search: Option<(String, Vec<QueueLine>)>,
}

/// An amount for a page; an unknown stored currency shows no amount.
fn money(minor: i64, currency: &str) -> String {
    coffer_domain::Currency::parse(currency).map(|c| c.amount(minor)).unwrap_or_default()
}

async fn queue(
    state: &AppState,
    ctx: &RequestContext,
    status: coffer_domain::OrderStatus,
    title: &'static str,
    lead: &'static str,
    search: Option<(String, Vec<QueueLine>)>,
) -> Response {
    match state.checkout.staff().queue(status, ctx).await {
        Ok(orders) => render(&QueuePage {
            title,
            lead,
            orders: orders.into_iter().map(QueueLine::from).collect(),
            transfers: status == coffer_domain::OrderStatus::Pending,
            search,
        }),
        Err(e) => failure(e),
    }
}

#[derive(serde::Deserialize)]
struct ReferenceQuery {
    #[serde(default)]
    reference: String,
}

/// Orders held for a fraud review, oldest first.
async fn reviews(staff: Staff<Reviewer>, State(state): State<AppState>) -> Response {
    queue(
        &state,
        &staff.ctx(),
        coffer_domain::OrderStatus::OnHold,
        "Fraud reviews",
        "Orders held by the fraud screen or the payment gateway. Open one to approve or reject it.",
        None,
    )
    .await
}

/// Orders waiting for a bank transfer, and a search by the reference a
/// bank statement shows.
async fn transfers(
    staff: Staff<Support>,
    State(state): State<AppState>,
    Query(query): Query<ReferenceQuery>,
) -> Response {
    let ctx = staff.ctx();
    let wanted = query.reference.trim().chars().take(64).collect::<String>();
    let search = if wanted.is_empty() {
        None
    } else {
        match state.checkout.staff().find_by_reference(&wanted, &ctx).await {
            Ok(found) => Some((wanted, found.into_iter().map(QueueLine::from).collect())),
            Err(e) => return failure(e),
        }
    };
    queue(
        &state,
        &ctx,
        coffer_domain::OrderStatus::Pending,
        "Bank transfers",
        "Orders waiting for their transfer, oldest first. Match a payment by its reference, check the amount, \
         then open the order to mark the money received.",
        search,
    )
    .await
}

#[derive(Template)]
#[template(path = "staff_order.html")]
struct OrderPage {
    id: String,
    message: Option<String>,
    status: String,
    total: String,
    payment: String,
    /// A transfer still awaited: (reference, amount due).
    transfer_due: Option<(String, String)>,
    name: String,
    email: String,
    country: String,
    score: i64,
    reasons: String,
    /// (line number, item, quantity, amount, refunded note, refundable)
    lines: Vec<(i64, String, i64, String, String, bool)>,
    events: Vec<String>,
    /// (action, button, reason label, reason required)
    actions: Vec<(&'static str, &'static str, &'static str, bool)>,
    csrf: String,
    /// When a proof-of-identity document was uploaded, for reviewers.
    identity: Option<String>,
    reviewer: bool,
}

async fn order_view(state: &AppState, staff: &Staff<OrderStaff>, id: &str, message: Option<String>) -> Response {
    use coffer_app::checkout::StaffAction;
    let Ok(id) = coffer_domain::OrderId::parse(id) else { return not_found() };
    let ctx = staff.ctx();
    let view = match state.checkout.staff().staff_view(&id, &ctx).await {
        Ok(view) => view,
        Err(AppError::NotFound) => return not_found(),
        Err(e) => return failure(e),
    };
    let order = &view.order;
    let actions = view
        .allowed
        .iter()
        .map(|action| match action {
            StaffAction::Approve => ("approve", "Approve and deliver", "Note (optional)", false),
            StaffAction::Reject => ("reject", "Reject and void the payment", "Reason, sent to the customer", true),
            StaffAction::TransferReceived => {
                ("transfer_received", "Mark the transfer received", "Note (optional)", false)
            }
            _ => ("refund", "Refund the whole order", "Reason, sent to the customer", true),
        })
        .collect();
    render(&OrderPage {
        id: order.id.to_string(),
        message,
        status: order.status.as_str().replace('_', " "),
        total: money(order.total, &order.currency),
        payment: if order.payment_method == "card" { "card".into() } else { "bank transfer".into() },
        transfer_due: order
            .payment_reference
            .clone()
            .filter(|_| order.status == coffer_domain::OrderStatus::Pending)
            .map(|reference| (reference, money(order.total, &order.currency))),
        name: if view.erased {
            "erased: the customer's data was deleted on their request".into()
        } else {
            view.name.clone()
        },
        email: view.email.clone(),
        country: view.country.clone(),
        score: order.fraud_score,
        reasons: order.fraud_reasons.replace(',', ", ").replace('_', " "),
        lines: view
            .lines
            .iter()
            .map(|l| {
                let refunded = if l.refunded > 0 {
                    format!("refunded {}", money(l.refunded, &order.currency))
                } else {
                    String::new()
                };
                let refundable = l.refunded == 0 && view.may_refund_lines;
                (l.line_no, l.name.clone(), l.quantity, money(l.total, &order.currency), refunded, refundable)
            })
            .collect(),
        events: view
            .events
            .iter()
            .map(|e| {
                let from = e.from.as_deref().map(|f| format!("{f} → ")).unwrap_or_default();
                let reason = if e.reason.is_empty() { String::new() } else { format!(": {}", e.reason) };
                format!("{} {from}{} by {}{reason}", utc(e.at.0), e.to, e.actor)
            })
            .collect(),
        actions,
        csrf: state.accounts.csrf_token(&staff.token),
        identity: match state.checkout.identity().uploaded_at(&order.id).await {
            Ok(uploaded) => uploaded.map(|at| utc(at.0)),
            Err(e) => return failure(e),
        },
        reviewer: staff.member.role.allows(StaffRole::Reviewer),
    })
}

/// The held order's proof of identity, for reviewers only; audited.
async fn identity_document(staff: Staff<Reviewer>, State(state): State<AppState>, Path(id): Path<String>) -> Response {
    use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
    let Ok(id) = coffer_domain::OrderId::parse(&id) else { return not_found() };
    let ctx = staff.ctx();
    match state.checkout.identity().identity_document(&id, &ctx).await {
        Ok(Some((content_type, bytes))) => (
            [
                (CONTENT_TYPE, content_type),
                (CONTENT_DISPOSITION, "inline".to_owned()),
                (CACHE_CONTROL, "no-store".to_owned()),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => not_found(),
        Err(e) => failure(e),
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        render(&MessagePage { title: "No such order", message: "There is no order with this number.".into() }),
    )
        .into_response()
}

async fn order_page(staff: Staff<OrderStaff>, State(state): State<AppState>, Path(id): Path<String>) -> Response {
    order_view(&state, &staff, &id, None).await
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    action: String,
    #[serde(default)]
    reason: String,
    /// For `refund_line`.
    #[serde(default)]
    line: Option<String>,
}

async fn order_action(
    staff: Staff<OrderStaff>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    use coffer_app::checkout::StaffAction;
    if !same_origin(&headers) || !state.accounts.csrf_matches(&staff.token, &form.csrf) {
        return forbidden();
    }
    // Who may make which move is the service's to decide (a refusal is
    // AppError::Forbidden, shown as "Not for your role").
    if form.action == "refund_line" {
        let Ok(order_id) = coffer_domain::OrderId::parse(&id) else { return not_found() };
        let Some(line) = form.line.as_deref().and_then(|l| l.parse::<i64>().ok()) else {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                order_view(&state, &staff, &id, Some("No line chosen.".into())).await,
            )
                .into_response();
        };
        let ctx = staff.ctx();
        let done = state.checkout.staff().refund_line(&order_id, line, &ctx, &form.reason).await;
        return action_answer(
            &state,
            &staff,
            &id,
            done.map(|status| format!("line {line} is refunded; the order is {}", status.as_str().replace('_', " "))),
        )
        .await;
    }
    let action = match form.action.as_str() {
        "approve" => StaffAction::Approve,
        "reject" => StaffAction::Reject,
        "transfer_received" => StaffAction::TransferReceived,
        "refund" => StaffAction::Refund,
        _ => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                order_view(&state, &staff, &id, Some("Unknown action.".into())).await,
            )
                .into_response();
        }
    };
    let Ok(order_id) = coffer_domain::OrderId::parse(&id) else { return not_found() };
    let ctx = staff.ctx();
    let done = state.checkout.staff().staff_action(&order_id, action, &ctx, &form.reason).await;
    action_answer(
        &state,
        &staff,
        &id,
        done.map(|status| format!("the order is now {}", status.as_str().replace('_', " "))),
    )
    .await
}

/// The order page again after a staff action, saying what was done or why not.
async fn action_answer(
    state: &AppState,
    staff: &Staff<OrderStaff>,
    id: &str,
    done: Result<String, AppError>,
) -> Response {
    match done {
        Ok(what) => order_view(state, staff, id, Some(format!("Done: {what}."))).await,
        Err(AppError::Order(e)) => {
            let message = format!("Not done: {}.", e.message);
            (StatusCode::UNPROCESSABLE_ENTITY, order_view(state, staff, id, Some(message)).await).into_response()
        }
        Err(AppError::NotFound) => not_found(),
        Err(e) => failure(e),
    }
}
