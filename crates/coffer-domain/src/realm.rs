//! Sign-in realms: who signs in where. Each realm has its own people, its
//! own sessions and cookie, and its own policy (whether the second factor is
//! mandatory, how long links and sessions live); the credentials (password,
//! TOTP, recovery codes, one-time links) are one model keyed by realm and
//! subject.

/// A realm of people who sign in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Realm {
    /// Customers of the storefront (`/account`).
    Customer,
    /// The operator's staff (`/staff`).
    Staff,
    /// Users of a vendor's portal (reserved: the vendor portal comes later).
    Vendor,
}

impl Realm {
    /// The stored name: the realm column of the credential tables and the
    /// subject kind of a session.
    pub fn as_str(self) -> &'static str {
        match self {
            Realm::Customer => "customer",
            Realm::Staff => "staff",
            Realm::Vendor => "vendor_user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Realm::Customer, Realm::Staff, Realm::Vendor].into_iter().find(|realm| realm.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for realm in [Realm::Customer, Realm::Staff, Realm::Vendor] {
            assert_eq!(Realm::parse(realm.as_str()), Some(realm));
        }
        assert_eq!(Realm::parse("vendor"), None);
    }
}
