//! The request a service call serves. The web layer runs each request
//! inside [`serving`] with the id its middleware made (the `x-request-id`
//! of the answer); services make every audit entry through
//! [`audit_entry`], which records that id beside who acted, so an entry can
//! be traced to the request (and its log line) that caused it. Calls from
//! the command line and system jobs carry none.

use coffer_domain::{Actor, AuditAction, AuditEntry, Millis};
use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `work` as the serving of request `request_id`.
pub async fn serving<F: Future>(request_id: String, work: F) -> F::Output {
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
}
