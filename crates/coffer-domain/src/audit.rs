//! Audit entries: who did what to which subject, when, from which request.
//! Subjects are named by id, never by personal data. The bytes that the
//! hash chain covers are defined here so every reader agrees on them.

use crate::{AuditEntryId, Millis};

/// Who acted. Rendered as `kind:id`, e.g. `cli:root`, `staff:stf_…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A command-line operator, by operating-system account name.
    Cli(String),
    /// The server itself (jobs, the sealer).
    System,
    /// A signed-in customer acting on their own account, by customer id.
    Customer(String),
    /// A signed-in staff member, by staff id.
    Staff(String),
    /// A vendor's program (API key), by vendor id.
    Vendor(String),
    /// A user of a vendor's portal, by vendor user id.
    VendorUser(String),
}

impl Actor {
    pub fn render(&self) -> String {
        match self {
            Actor::Cli(user) => format!("cli:{user}"),
            Actor::System => "system".to_owned(),
            Actor::Customer(id) => format!("customer:{id}"),
            Actor::Staff(id) => format!("staff:{id}"),
            Actor::Vendor(id) => format!("vendor:{id}"),
            Actor::VendorUser(id) => format!("vendor_user:{id}"),
        }
    }
}

/// What was done; the names are stable, they are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    CustomerCreated,
    CustomerUpdated,
    /// Someone other than the customer read their personal data.
    CustomerRead,
    CustomerExported,
    CustomerErased,
    ErasureReplayed,
    MasterKeyAdded,
    MasterKeyActivated,
    MasterKeyRetired,
    MasterKeyDestroyed,
    KeysRewrapped,
    BackupCreated,
    BackupRestored,
    PrivacyRequestConfirmed,
    StaffAdded,
    StaffEnrolled,
    OrderPlaced,
    InvoiceIssued,
    OrderStatusChanged,
    VendorAdded,
    VendorSuspended,
    VendorReinstated,
    VendorTermsAccepted,
    VendorUserInvited,
    VendorUserEnrolled,
    VendorUserRemoved,
    VendorApiKeyCreated,
    VendorApiKeyRevoked,
    VendorDpoChanged,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::CustomerCreated => "customer.created",
            AuditAction::CustomerUpdated => "customer.updated",
            AuditAction::CustomerRead => "customer.read",
            AuditAction::CustomerExported => "customer.exported",
            AuditAction::CustomerErased => "customer.erased",
            AuditAction::ErasureReplayed => "erasure.replayed",
            AuditAction::MasterKeyAdded => "master_key.added",
            AuditAction::MasterKeyActivated => "master_key.activated",
            AuditAction::MasterKeyRetired => "master_key.retired",
            AuditAction::MasterKeyDestroyed => "master_key.destroyed",
            AuditAction::KeysRewrapped => "keys.rewrapped",
            AuditAction::BackupCreated => "backup.created",
            AuditAction::BackupRestored => "backup.restored",
            AuditAction::PrivacyRequestConfirmed => "privacy_request.confirmed",
            AuditAction::StaffAdded => "staff.added",
            AuditAction::StaffEnrolled => "staff.enrolled",
            AuditAction::OrderPlaced => "order.placed",
            AuditAction::InvoiceIssued => "invoice.issued",
            AuditAction::OrderStatusChanged => "order.status_changed",
            AuditAction::VendorAdded => "vendor.added",
            AuditAction::VendorSuspended => "vendor.suspended",
            AuditAction::VendorReinstated => "vendor.reinstated",
            AuditAction::VendorTermsAccepted => "vendor.terms_accepted",
            AuditAction::VendorUserInvited => "vendor_user.invited",
            AuditAction::VendorUserEnrolled => "vendor_user.enrolled",
            AuditAction::VendorUserRemoved => "vendor_user.removed",
            AuditAction::VendorApiKeyCreated => "vendor_api_key.created",
            AuditAction::VendorApiKeyRevoked => "vendor_api_key.revoked",
            AuditAction::VendorDpoChanged => "vendor.dpo_changed",
        }
    }
}

/// One entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: AuditEntryId,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    /// The id of what was acted on (a customer id, a key version…).
    pub subject: Option<String>,
    pub request_id: Option<String>,
}

impl AuditEntry {
    pub fn new(at: Millis, actor: &Actor, action: AuditAction, subject: Option<String>) -> AuditEntry {
        AuditEntry {
            id: AuditEntryId::generate(),
            at,
            actor: actor.render(),
            action: action.as_str().to_owned(),
            subject,
            request_id: None,
        }
    }

    pub fn with_request(mut self, request_id: Option<String>) -> AuditEntry {
        self.request_id = request_id;
        self
    }

    /// The bytes the hash chain covers: each field length-prefixed, so no
    /// two different entries share an encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        let mut put = |bytes: &[u8]| {
            out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        put(self.id.as_str().as_bytes());
        put(&self.at.0.to_be_bytes());
        put(self.actor.as_bytes());
        put(self.action.as_bytes());
        put(self.subject.as_deref().unwrap_or("\u{0}none").as_bytes());
        put(self.request_id.as_deref().unwrap_or("\u{0}none").as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_separate_fields() {
        let a = AuditEntry::new(Millis(1), &Actor::Cli("ab".into()), AuditAction::CustomerRead, Some("c".into()));
        let mut b = a.clone();
        b.actor = "cli:a".into();
        b.action = format!("b{}", a.action);
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        let mut c = a.clone();
        c.subject = None;
        assert_ne!(a.canonical_bytes(), c.canonical_bytes());
    }
}
