//! The vendor side: a vendor's standing (active or suspended), the roles of
//! its portal's users, and the checks of what a vendor types.

use crate::CustomerError;

/// What a vendor user may do in the portal. Owners hold the vendor's
/// duties: they accept the data-processing terms, issue API keys, manage
/// members and webhooks; members work with products and orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VendorRole {
    Owner,
    Member,
}

impl VendorRole {
    pub const ALL: [VendorRole; 2] = [VendorRole::Owner, VendorRole::Member];

    pub fn parse(s: &str) -> Option<VendorRole> {
        VendorRole::ALL.into_iter().find(|role| role.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VendorRole::Owner => "owner",
            VendorRole::Member => "member",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            VendorRole::Owner => "Owner",
            VendorRole::Member => "Member",
        }
    }
}

/// Whether a vendor trades. A suspended vendor's keys, sessions, webhooks
/// and storefront listings all stop at once (P7: a vendor breaking the
/// rules loses access).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VendorStatus {
    Active,
    Suspended,
}

impl VendorStatus {
    pub fn parse(s: &str) -> Option<VendorStatus> {
        match s {
            "active" => Some(VendorStatus::Active),
            "suspended" => Some(VendorStatus::Suspended),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VendorStatus::Active => "active",
            VendorStatus::Suspended => "suspended",
        }
    }
}

/// A vendor user's address, checked like a customer's but reported as
/// `vendor_user.email`.
pub fn vendor_user_email(value: &str) -> Result<String, CustomerError> {
    crate::customer::email_address(value).map_err(|e| CustomerError { field: "vendor_user.email", ..e })
}

/// A suspension's reason: said to the vendor, so short plain text.
pub fn suspension_reason(value: &str) -> Result<String, CustomerError> {
    let reason = value.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(CustomerError { field: "reason", reason: "give a reason of 1 to 500 characters on one line" });
    }
    Ok(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_statuses_round_trip() {
        for role in VendorRole::ALL {
            assert_eq!(VendorRole::parse(role.as_str()), Some(role));
        }
        assert_eq!(VendorRole::parse("admin"), None);
        for status in [VendorStatus::Active, VendorStatus::Suspended] {
            assert_eq!(VendorStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn reasons_are_one_short_line() {
        assert_eq!(suspension_reason("  sold malware ").unwrap(), "sold malware");
        assert!(suspension_reason(" ").is_err());
        assert!(suspension_reason("a\nb").is_err());
        assert!(suspension_reason(&"x".repeat(501)).is_err());
        assert_eq!(vendor_user_email("x").unwrap_err().field, "vendor_user.email");
    }
}
