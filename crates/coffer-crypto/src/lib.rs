//! Keys and every cryptographic operation of Coffer: envelope encryption of
//! personal fields, the blind index for email lookups, password hashing,
//! signing of license keys and audit heads, and HMACs for links and webhooks.
//! It does no I/O; the key store that holds wrapped keys lives in
//! `coffer-store`. The privacy-core issue fills this crate; until then it is
//! deliberately empty.
