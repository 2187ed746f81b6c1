//! Typed identifiers: a short kind prefix and a UUIDv7 in lowercase hex
//! (`prd_0193…`). The prefix makes ids self-describing in logs and URLs; the
//! strict parser means a path parameter that is not exactly such an id (for
//! instance `../../etc/passwd`) never reaches a query.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a valid {kind} id")]
pub struct IdError {
    pub kind: &'static str,
}

fn parse_prefixed(s: &str, prefix: &'static str, kind: &'static str) -> Result<String, IdError> {
    let hex = s.strip_prefix(prefix).ok_or(IdError { kind })?;
    let ok = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok { Ok(s.to_owned()) } else { Err(IdError { kind }) }
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_prefixed(s, $prefix, $kind).map($name)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// Identifies a vendor.
    VendorId, "ven_", "vendor"
);
prefixed_id!(
    /// Identifies a product.
    ProductId, "prd_", "product"
);
prefixed_id!(
    /// Identifies a customer.
    CustomerId, "cus_", "customer"
);
prefixed_id!(
    /// Identifies a customer's data key in the key store.
    DataKeyId, "dek_", "data key"
);
prefixed_id!(
    /// Identifies a message in the email outbox.
    EmailId, "eml_", "email"
);
prefixed_id!(
    /// Identifies a background job (see the job queue).
    JobId, "job_", "job"
);
prefixed_id!(
    /// Identifies a written data-subject request.
    PrivacyRequestId, "prq_", "privacy request"
);
prefixed_id!(
    /// Identifies an order.
    OrderId, "ord_", "order"
);
prefixed_id!(
    /// Identifies a member of the operator's staff.
    StaffId, "stf_", "staff member"
);
prefixed_id!(
    /// Identifies a disclosure record (who received which fields, when).
    DisclosureId, "dis_", "disclosure"
);
prefixed_id!(
    /// Identifies a user of a vendor's portal.
    VendorUserId, "vus_", "vendor user"
);
prefixed_id!(
    /// Identifies a vendor API key (never the key itself).
    VendorApiKeyId, "vak_", "API key"
);
prefixed_id!(
    /// Identifies a vendor's webhook endpoint.
    WebhookEndpointId, "whe_", "webhook endpoint"
);
prefixed_id!(
    /// Identifies one event's delivery to one webhook endpoint.
    WebhookDeliveryId, "whd_", "webhook delivery"
);
prefixed_id!(
    /// Identifies an entry of a vendor's ledger.
    LedgerEntryId, "led_", "ledger entry"
);
prefixed_id!(
    /// Identifies an audit log entry.
    AuditEntryId, "aud_", "audit entry"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip() {
        let id = ProductId::generate();
        assert_eq!(ProductId::parse(id.as_str()), Ok(id.clone()));
        assert!(id.as_str().starts_with("prd_"));
    }

    #[test]
    fn rejects_anything_but_the_exact_shape() {
        for bad in [
            "",
            "prd_",
            "../../etc/passwd",
            "prd_../../../../../../etc/passwd",
            "prd_0193ABCDEF0123456789abcdef012345",
            "ven_0193abcdef0123456789abcdef012345",
            "prd_0193abcdef0123456789abcdef0123456",
            "prd_0193abcdef0123456789abcdef01234\u{e9}",
        ] {
            assert!(ProductId::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ProductId::parse("prd_0193abcdef0123456789abcdef012345").is_ok());
    }
}
