//! Operator staff and their roles. Every staff member signs in with a
//! password and a TOTP code (mandatory); what they may open is decided by
//! the role, one per person.

use crate::CustomerError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StaffRole {
    /// Answers customers, marks bank transfers received, refunds.
    Support,
    /// Decides orders held for fraud review.
    Reviewer,
    /// The operator's Data Protection Officer: data requests and the registers.
    Dpo,
    /// Everything, including staff accounts.
    Admin,
}

impl StaffRole {
    pub const ALL: [StaffRole; 4] = [StaffRole::Support, StaffRole::Reviewer, StaffRole::Dpo, StaffRole::Admin];

    pub fn parse(s: &str) -> Option<StaffRole> {
        StaffRole::ALL.into_iter().find(|role| role.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Support => "support",
            StaffRole::Reviewer => "reviewer",
            StaffRole::Dpo => "dpo",
            StaffRole::Admin => "admin",
        }
    }

    /// What a person calls the role.
    pub fn label(self) -> &'static str {
        match self {
            StaffRole::Support => "Support",
            StaffRole::Reviewer => "Fraud reviewer",
            StaffRole::Dpo => "Data Protection Officer",
            StaffRole::Admin => "Administrator",
        }
    }

    /// Whether this role may use what `needed` may use: admins may use
    /// everything, everyone else only their own role's pages.
    pub fn allows(self, needed: StaffRole) -> bool {
        self == needed || self == StaffRole::Admin
    }
}

/// A staff member's work address, checked like a customer's but reported
/// as `staff.email`.
pub fn staff_email(value: &str) -> Result<String, CustomerError> {
    crate::customer::email_address(value).map_err(|e| CustomerError { field: "staff.email", ..e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_only_admin_crosses_roles() {
        for role in StaffRole::ALL {
            assert_eq!(StaffRole::parse(role.as_str()), Some(role));
            assert!(role.allows(role));
            assert!(StaffRole::Admin.allows(role));
        }
        assert_eq!(StaffRole::parse("root"), None);
        assert!(!StaffRole::Support.allows(StaffRole::Dpo));
        assert!(!StaffRole::Dpo.allows(StaffRole::Admin));
    }

    #[test]
    fn staff_addresses_are_checked_and_named_as_staff_fields() {
        assert_eq!(staff_email(" Ops@Example.org ").unwrap(), "Ops@Example.org");
        assert_eq!(staff_email("not an address").unwrap_err().field, "staff.email");
    }
}
