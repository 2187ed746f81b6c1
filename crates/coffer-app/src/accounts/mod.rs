//! Accounts: one sign-in for every realm ([`signin`]: credentials keyed by
//! realm and subject, one-time links, argon2id passwords on a bounded pool,
//! TOTP, server-side sessions and the lock-out), with each realm's own
//! people and pages: customers ([`service`]), staff ([`staff`]) and the
//! users of vendors' portals ([`vendor_users`]).

pub mod errors;
pub mod passwords;
pub mod service;
pub mod signin;
pub mod staff;
pub mod vendor_users;

pub use errors::AccountError;
pub use passwords::PasswordPool;
pub use service::{AccountService, NewSession, SignedIn};
pub use signin::{RealmPolicy, SignInError, TotpSetup};
pub use staff::{Enrolled, StaffMember, StaffService, StaffSession, StaffTotpSetup};
pub use vendor_users::{VendorUser, VendorUserService, VendorUserSession};
