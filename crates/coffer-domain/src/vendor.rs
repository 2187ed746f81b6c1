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

/// A statement's period: whole UTC days, `from` and `to` both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementPeriod {
    pub from: time::Date,
    pub to: time::Date,
}

impl StatementPeriod {
    /// The longest period a statement covers.
    pub const MAX_DAYS: i64 = 366;

    /// Two `YYYY-MM-DD` dates, `from` not after `to`, at most a year apart.
    pub fn parse(from: &str, to: &str) -> Option<StatementPeriod> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let from = time::Date::parse(from.trim(), format).ok()?;
        let to = time::Date::parse(to.trim(), format).ok()?;
        let days = (to - from).whole_days();
        ((0..Self::MAX_DAYS).contains(&days)).then_some(StatementPeriod { from, to })
    }

    /// The first millisecond of `from` and the first after `to`.
    pub fn bounds(self) -> (crate::Millis, crate::Millis) {
        let start = |d: time::Date| d.midnight().assume_utc().unix_timestamp() * 1000;
        let after = self.to.next_day().map_or(i64::MAX, start);
        (crate::Millis(start(self.from)), crate::Millis(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_whole_days_with_both_ends() {
        let p = StatementPeriod::parse("2026-11-01", "2026-11-30").unwrap();
        let (from, to) = p.bounds();
        assert_eq!(from.0, 1_793_491_200_000);
        assert_eq!(to.0 - from.0, 30 * 24 * 60 * 60 * 1000);
        assert!(StatementPeriod::parse("2026-11-02", "2026-11-01").is_none(), "from after to");
        assert!(StatementPeriod::parse("2026-11-01", "2026-11-01").is_some(), "one day");
        assert!(StatementPeriod::parse("2025-01-01", "2026-11-01").is_none(), "over a year");
        assert!(StatementPeriod::parse("2026-13-01", "2026-12-01").is_none());
        assert!(StatementPeriod::parse("yesterday", "2026-12-01").is_none());
    }

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
