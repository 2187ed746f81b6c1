//! Accounts: sign-in for customers (vendor users and staff follow): one-time
//! links by email, argon2id passwords on a bounded pool, server-side
//! sessions and the lock-out. TOTP and the account pages follow (issue 5).

pub mod passwords;
pub mod service;

pub use passwords::PasswordPool;
pub use service::{AccountService, NewSession, SignInError, SignedIn, TotpSetup};
