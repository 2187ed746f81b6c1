//! The data inventory: every personal-data field Coffer holds, with why,
//! on what legal basis, who receives it and how long it is kept. The
//! access export, erasure, the retention job and the Art. 30 record are
//! generated from this table, and a test compares it with the schema of
//! both databases, so a personal column cannot be added without an entry.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Identity,
    Contact,
    Payment,
    IdDocument,
    Correspondence,
    Technical,
}

/// GDPR Art. 6(1) bases (LGPD Art. 7 has the same ones we use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    /// Art. 6(1)(b): needed to perform the purchase contract.
    Contract,
    /// Art. 6(1)(c): a legal obligation (tax, invoicing).
    LegalObligation,
    /// Art. 6(1)(f): legitimate interest (fraud prevention).
    LegitimateInterest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// The vendor of the product ordered, for its own orders only.
    Vendor,
    /// The payment gateway, to authorise the payment.
    PaymentGateway,
    /// Authorities, only when a disclosure is recorded in the register.
    AuthoritiesOnRecordedDisclosure,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "days")]
pub enum Retention {
    /// Kept while the account exists; erased on request.
    UntilErasure,
    /// Deleted this many days after it was collected.
    Days(u32),
}

/// What erasure does to a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnErasure {
    /// The data key is destroyed and the column cleared.
    Shred,
    /// Kept, sealed under an operator key rather than the customer's: a
    /// reference the law or a contract still needs, which names nobody in
    /// Coffer once the customer's own data is shredded.
    KeepWithoutIdentity,
    /// Never linked to the customer in storage (found only through the
    /// buyer's own browser cookie, sealed under a key that cookie helps
    /// make), so erasure cannot find it; it is deleted at the end of its
    /// short retention at the latest.
    Unlinked,
}

/// One personal field: where it is stored and the rules it lives by.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PersonalField {
    /// The table and column holding the sealed value.
    pub table: &'static str,
    pub column: &'static str,
    /// What a person calls it.
    pub label: &'static str,
    pub category: Category,
    pub purpose: &'static str,
    pub legal_basis: LegalBasis,
    pub recipients: &'static [Recipient],
    pub retention: Retention,
    pub on_erasure: OnErasure,
}

const ORDER_PARTIES: &[Recipient] =
    &[Recipient::Vendor, Recipient::PaymentGateway, Recipient::AuthoritiesOnRecordedDisclosure];
const VENDOR_AND_AUTHORITIES: &[Recipient] = &[Recipient::Vendor, Recipient::AuthoritiesOnRecordedDisclosure];

/// Every personal field Coffer stores.
pub const INVENTORY: &[PersonalField] = &[
    PersonalField {
        table: "customers",
        column: "name",
        label: "Name",
        category: Category::Identity,
        purpose: "Filling orders, invoicing and talking with the customer about them",
        legal_basis: LegalBasis::Contract,
        recipients: ORDER_PARTIES,
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "customers",
        column: "email",
        label: "Email address",
        category: Category::Contact,
        purpose: "Signing in, delivering purchases and messages about orders",
        legal_basis: LegalBasis::Contract,
        recipients: ORDER_PARTIES,
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "customers",
        column: "phone",
        label: "Phone number",
        category: Category::Contact,
        purpose: "Support for an order when email does not reach the customer",
        legal_basis: LegalBasis::Contract,
        recipients: VENDOR_AND_AUTHORITIES,
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "customers",
        column: "address",
        label: "Mailing address",
        category: Category::Contact,
        purpose: "Invoicing and the sales tax or VAT of the customer's country",
        legal_basis: LegalBasis::LegalObligation,
        recipients: ORDER_PARTIES,
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "outbox_emails",
        column: "recipient",
        label: "Email address a message is sent to",
        category: Category::Contact,
        purpose: "Delivering the messages about orders and the account",
        legal_basis: LegalBasis::Contract,
        recipients: &[Recipient::AuthoritiesOnRecordedDisclosure],
        retention: Retention::Days(90),
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "outbox_emails",
        column: "subject",
        label: "Subject of a message to the customer",
        category: Category::Correspondence,
        purpose: "Talking with the customer about orders and the account",
        legal_basis: LegalBasis::Contract,
        recipients: &[Recipient::AuthoritiesOnRecordedDisclosure],
        retention: Retention::Days(90),
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "outbox_emails",
        column: "body",
        label: "Text of a message to the customer",
        category: Category::Correspondence,
        purpose: "Talking with the customer about orders and the account",
        legal_basis: LegalBasis::Contract,
        recipients: &[Recipient::AuthoritiesOnRecordedDisclosure],
        retention: Retention::Days(90),
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "outbox_emails",
        column: "attachment",
        label: "A file sent with a message (an invoice as PDF)",
        category: Category::Correspondence,
        purpose: "Sending the customer their invoice",
        legal_basis: LegalBasis::Contract,
        recipients: &[Recipient::AuthoritiesOnRecordedDisclosure],
        retention: Retention::Days(90),
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "accounts",
        column: "password_hash",
        label: "Password (as an argon2id hash)",
        category: Category::Technical,
        purpose: "Signing in to the account",
        legal_basis: LegalBasis::Contract,
        recipients: &[],
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "accounts",
        column: "totp_secret",
        label: "Second sign-in factor (TOTP secret)",
        category: Category::Technical,
        purpose: "Signing in to the account with a second factor, when turned on",
        legal_basis: LegalBasis::Contract,
        recipients: &[],
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    // Each order keeps its own sealed copy of what was typed at checkout.
    PersonalField {
        table: "orders",
        column: "name",
        label: "Name on an order",
        category: Category::Identity,
        purpose: "Filling the order, its invoice and talking with the customer about it",
        legal_basis: LegalBasis::Contract,
        recipients: ORDER_PARTIES,
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "orders",
        column: "email",
        label: "Email address on an order",
        category: Category::Contact,
        purpose: "Delivering the purchase and messages about the order",
        legal_basis: LegalBasis::Contract,
        recipients: ORDER_PARTIES,
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "orders",
        column: "phone",
        label: "Phone number on an order",
        category: Category::Contact,
        purpose: "Support for the order when email does not reach the customer",
        legal_basis: LegalBasis::Contract,
        recipients: VENDOR_AND_AUTHORITIES,
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "orders",
        column: "address",
        label: "Mailing address on an order",
        category: Category::Contact,
        purpose: "The invoice and the tax of the customer's country",
        legal_basis: LegalBasis::LegalObligation,
        recipients: ORDER_PARTIES,
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "orders",
        column: "card",
        label: "Card used (payment token, brand, last four digits, expiry)",
        category: Category::Payment,
        purpose: "Refunds and disputes of the payment; never the card number or security code",
        legal_basis: LegalBasis::Contract,
        recipients: &[Recipient::PaymentGateway, Recipient::AuthoritiesOnRecordedDisclosure],
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "orders",
        column: "payment_token",
        label: "The payment processor's reference for a card payment",
        category: Category::Payment,
        purpose: "Voids and refunds through the processor, also after the account is deleted; it carries no card \
                  data and, once the customer's data is shredded, names nobody here",
        legal_basis: LegalBasis::LegalObligation,
        recipients: &[Recipient::PaymentGateway],
        // The longest chargeback window of the card schemes.
        retention: Retention::Days(540),
        on_erasure: OnErasure::KeepWithoutIdentity,
    },
    PersonalField {
        table: "orders",
        column: "guardian_name",
        label: "Name of the legal guardian who consented to a minor's order",
        category: Category::Identity,
        purpose: "Proof that a guardian was present, consented and took responsibility for the data",
        legal_basis: LegalBasis::LegalObligation,
        recipients: &[Recipient::AuthoritiesOnRecordedDisclosure],
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "license_keys",
        column: "license_key",
        label: "License key issued to the customer",
        category: Category::Technical,
        purpose: "Delivering the purchase and showing it again in the account",
        legal_basis: LegalBasis::Contract,
        recipients: &[Recipient::Vendor],
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "id_documents",
        column: "sealed_digest",
        label: "Proof-of-identity document (the file, encrypted in the file store; this is its sealed checksum)",
        category: Category::IdDocument,
        purpose: "Confirming the buyer's identity when an order is held for a fraud review",
        legal_basis: LegalBasis::LegitimateInterest,
        recipients: &[Recipient::AuthoritiesOnRecordedDisclosure],
        retention: Retention::Days(30),
        on_erasure: OnErasure::Shred,
    },
    PersonalField {
        table: "checkout_drafts",
        column: "sealed",
        label: "What a buyer typed at checkout before placing the order (name, email, phone, address, choices, \
                card expiry; never the card number or code)",
        category: Category::Contact,
        purpose: "Keeping the checkout form between its pages (cart changes, currency, review, a declined card) \
                  until the order is placed or the cart emptied",
        legal_basis: LegalBasis::Contract,
        recipients: &[],
        retention: Retention::Days(1),
        on_erasure: OnErasure::Unlinked,
    },
    PersonalField {
        table: "idempotency_keys",
        column: "response",
        label: "The answer to an order request, kept to answer a repeat of it",
        category: Category::Technical,
        purpose: "Answering a repeated order request (same Idempotency-Key) without placing a second order",
        legal_basis: LegalBasis::Contract,
        recipients: &[],
        retention: Retention::Days(1),
        on_erasure: OnErasure::Shred,
    },
    // The operator's own staff are data subjects too: their address is
    // sealed under a data key of each staff member's own, and so are their
    // password hash and TOTP secret (in `accounts`, realm `staff`).
    PersonalField {
        table: "staff_members",
        column: "email",
        label: "Staff member's work email address",
        category: Category::Contact,
        purpose: "Staff sign-in and enrolment",
        legal_basis: LegalBasis::Contract,
        recipients: &[],
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
    // Vendors' people too: the address of each user of a vendor's portal,
    // sealed under a data key of their own (their password hash and TOTP
    // secret are in `accounts`, realm `vendor_user`).
    PersonalField {
        table: "vendor_users",
        column: "email",
        label: "Vendor portal user's work email address",
        category: Category::Contact,
        purpose: "Vendor portal sign-in and enrolment, notifications of new orders, and, for an owner who names no \
                  other privacy contact, the vendor's privacy contact shown to its buyers",
        legal_basis: LegalBasis::Contract,
        recipients: &[],
        retention: Retention::UntilErasure,
        on_erasure: OnErasure::Shred,
    },
];

/// Binary columns that are not personal data: keyed hashes and chain links.
/// The schema test accepts a binary column only if it is here or in
/// [`INVENTORY`].
pub const NON_PERSONAL_BINARY_COLUMNS: &[(&str, &str, &str)] = &[
    ("customers", "email_index", "keyed blind index (HMAC) of the email address; useless without the index key"),
    ("audit_log", "link_hash", "SHA-256 link of the audit hash chain"),
    ("audit_chain_head", "hash", "SHA-256 link of the audit hash chain"),
    ("_sqlx_migrations", "checksum", "checksum of each applied schema migration"),
    ("sign_in_links", "token_hash", "SHA-256 of a random one-time token"),
    ("sessions", "id_hash", "SHA-256 of a random session id"),
    ("recovery_codes", "code_hash", "SHA-256 of a random recovery code"),
    ("privacy_requests", "challenge_hash", "SHA-256 of a random confirmation token"),
    ("sign_in_throttle", "account_key", "keyed blind index of an address tried at sign-in"),
    (
        "fraud_attempts",
        "key_hash",
        "keyed hash (HMAC) of an email address, card number or IP address, for velocity counts",
    ),
    ("vendor_api_keys", "key_hash", "SHA-256 of a random vendor API key"),
    (
        "license_keys",
        "key_hash",
        "SHA-256 of an issued license key (its signature makes it unguessable), to find the key's status",
    ),
    ("idempotency_keys", "key_hash", "keyed hash (HMAC) of an Idempotency-Key header"),
    ("checkout_drafts", "id", "SHA-256 of a random checkout cookie token"),
    ("idempotency_keys", "fingerprint", "keyed hash (HMAC) of an order request and its card number"),
    ("staff_members", "email_index", "keyed blind index (HMAC) of a staff member's email address"),
    ("vendor_users", "email_index", "keyed blind index (HMAC) of a vendor user's email address"),
];

/// How long the inventory keeps a field, in milliseconds; `None` for a
/// field kept until erasure (or not in the inventory).
pub fn retention_ms(table: &str, column: &str) -> Option<i64> {
    INVENTORY.iter().find(|f| f.table == table && f.column == column).and_then(|f| match f.retention {
        Retention::Days(days) => Some(i64::from(days) * 24 * 60 * 60 * 1000),
        Retention::UntilErasure => None,
    })
}

/// The inventory entries of one table, in inventory order.
pub fn fields_of(table: &str) -> impl Iterator<Item = &'static PersonalField> + '_ {
    INVENTORY.iter().filter(move |f| f.table == table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_listed_once_and_says_why() {
        let mut seen = std::collections::HashSet::new();
        for field in INVENTORY {
            assert!(seen.insert((field.table, field.column)), "{}.{} listed twice", field.table, field.column);
            assert!(!field.purpose.is_empty() && !field.label.is_empty());
        }
        assert_eq!(fields_of("customers").count(), 4);
    }
}
