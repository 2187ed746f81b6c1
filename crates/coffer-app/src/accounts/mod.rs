//! Accounts: sign-in for customers and staff (vendor users follow): one-time
//! links, argon2id passwords on a bounded pool, TOTP, server-side sessions
//! and the lock-out, shared by both kinds of account.

mod common;
pub mod passwords;
pub mod service;
pub mod staff;

pub use passwords::PasswordPool;
pub use service::{AccountService, NewSession, SignInError, SignedIn, TotpSetup};
pub use staff::{Enrolled, StaffMember, StaffService, StaffSession, StaffTotpSetup};
