//! Accounts: sign-in for customers, vendor users and staff. This first part
//! holds password hashing; sessions, links, TOTP and the account pages
//! follow (issue 5).

pub mod passwords;

pub use passwords::PasswordPool;
