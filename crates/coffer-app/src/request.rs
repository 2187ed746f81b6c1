//! The request a service call serves. The web layer runs each request
//! inside [`serving`] with the id its middleware made (the `x-request-id`
//! of the answer), and its extractors build a [`RequestContext`]: who acts
//! (the principal) and that id. Services acting for someone take the
//! context, check a named permission on it ([`RequestContext::require`])
//! and make their audit entries from it, so an entry names who acted and
//! the request (and its log line) that caused it. Calls from the command
//! line and system jobs carry no request id. Entries made below a service
//! method, where only the actor is at hand, go through [`audit_entry`],
//! which finds the request id the same way.

use crate::AppError;
use coffer_domain::{Actor, AuditAction, AuditEntry, CustomerId, Millis, Permission, Principal};
use std::future::Future;

/// Who is acting, and in which request: what every service method that
/// acts for a principal takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    principal: Principal,
    request_id: Option<String>,
}

impl RequestContext {
    /// `principal` acting in the request under way (none outside one).
    pub fn new(principal: Principal) -> Self {
        RequestContext { principal, request_id: current_request_id() }
    }

    /// The operator at the command line (named by their login).
    pub fn cli(name: impl Into<String>) -> Self {
        RequestContext { principal: Principal::Cli(name.into()), request_id: None }
    }

    /// The server's own jobs.
    pub fn system() -> Self {
        RequestContext { principal: Principal::System, request_id: None }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The audit log's name for who acts.
    pub fn actor(&self) -> Actor {
        self.principal.actor()
    }

    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The customer acting on their own account: a signed-in customer only.
    pub fn own_account(&self) -> Result<CustomerId, AppError> {
        let refused = AppError::Forbidden(Permission::UseOwnAccount);
        match &self.principal {
            Principal::Customer(id) if self.principal.may(Permission::UseOwnAccount) => {
                CustomerId::parse(id).map_err(|_| refused)
            }
            _ => Err(refused),
        }
    }

    /// The principal's permission, or [`AppError::Forbidden`].
    pub fn require(&self, permission: Permission) -> Result<(), AppError> {
        if self.principal.may(permission) { Ok(()) } else { Err(AppError::Forbidden(permission)) }
    }

    /// An audit entry of what this principal did, in this request.
    pub fn audit_entry(&self, at: Millis, action: AuditAction, subject: Option<String>) -> AuditEntry {
        AuditEntry::new(at, &self.actor(), action, subject).with_request(self.request_id.clone())
    }
}

impl From<Principal> for RequestContext {
    fn from(principal: Principal) -> Self {
        RequestContext::new(principal)
    }
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `work` as the serving of request `request_id`.
pub async fn serving<F: Future>(request_id: String, work: F) -> F::Output {
    crate::memory::note_work();
    REQUEST_ID.scope(request_id, work).await
}

/// The id of the request under way, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Spawns work that finishes a request after its answer (an email sent
/// later), still as part of that request.
pub fn spawn_for_request<F>(work: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current_request_id() {
        Some(id) => tokio::spawn(serving(id, work)),
        None => tokio::spawn(work),
    }
}

/// The one way services make an audit entry: who acted, what, on which
/// subject (an id, never personal data), when, and the request under way.
pub fn audit_entry(at: Millis, actor: &Actor, action: AuditAction, subject: Option<String>) -> AuditEntry {
    AuditEntry::new(at, actor, action, subject).with_request(current_request_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_carry_the_request_they_were_made_in() {
        let outside = audit_entry(Millis(1), &Actor::System, AuditAction::KeysRewrapped, None);
        assert_eq!(outside.request_id, None);
        let inside = serving("req-1".into(), async {
            audit_entry(Millis(1), &Actor::Staff("stf_1".into()), AuditAction::CustomerRead, Some("cus_1".into()))
        })
        .await;
        assert_eq!(inside.request_id.as_deref(), Some("req-1"));
        let later = serving("req-2".into(), async {
            spawn_for_request(async { audit_entry(Millis(2), &Actor::System, AuditAction::CustomerRead, None) }).await
        })
        .await
        .unwrap();
        assert_eq!(later.request_id.as_deref(), Some("req-2"), "work spawned for a request keeps its id");
    }

    #[tokio::test]
    async fn a_context_carries_its_request_and_checks_its_principal() {
        let staff = Principal::Staff { id: "stf_1".into(), role: coffer_domain::StaffRole::Support };
        let ctx = serving("req-3".into(), async { RequestContext::new(staff) }).await;
        assert_eq!(ctx.request_id(), Some("req-3"));
        let entry = ctx.audit_entry(Millis(1), AuditAction::CustomerRead, None);
        assert_eq!((entry.actor.as_str(), entry.request_id.as_deref()), ("staff:stf_1", Some("req-3")));
        assert!(ctx.require(Permission::RefundOrder).is_ok());
        assert!(matches!(ctx.require(Permission::ApproveOrder), Err(AppError::Forbidden(Permission::ApproveOrder))));
        assert_eq!(RequestContext::cli("ops").request_id(), None);
        assert!(RequestContext::system().require(Permission::ExpireOrders).is_ok());
    }
}
