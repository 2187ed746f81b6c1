//! Why an account operation was refused: one variant per reason, each with
//! a stable code the web layer answers with. Internal failures are never
//! among them (they stay `AppError`'s other variants).

use coffer_domain::PasswordError;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// The new password breaks the rule (too short, too long, too weak).
    #[error(transparent)]
    WeakPassword(#[from] PasswordError),
    /// The current password, confirmed for a change, is wrong.
    #[error("the password is not right")]
    WrongPassword,
    /// The code asked for with an emailed link is wrong.
    #[error("the code from your authenticator app or the recovery code is not right")]
    WrongCode,
    /// Turning the second factor on while it is on (off needs the password).
    #[error("two-step sign-in is already on; turn it off first")]
    TotpAlreadyOn,
    /// The secret sent back with the form is not a TOTP secret.
    #[error("the secret is not valid; start again")]
    InvalidSecret,
    /// The code does not match the secret being set up.
    #[error("that code does not match; check the time on your device")]
    CodeMismatch,
    /// `staff add` for an address that has already enrolled.
    #[error("a staff member with this address is already enrolled")]
    AlreadyEnrolled,
    /// `staff add` with another role than the pending one's.
    #[error("this address was added as {0} and has not enrolled yet; add it with that role for a new link")]
    RoleMismatch(&'static str),
    /// A data request's confirmation link that is used, expired or unknown.
    #[error("this confirmation link has expired or was already used")]
    ConfirmationGone,
}

impl AccountError {
    /// The stable code of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            AccountError::WeakPassword(_) => "weak_password",
            AccountError::WrongPassword => "wrong_password",
            AccountError::WrongCode => "wrong_code",
            AccountError::TotpAlreadyOn => "totp_already_on",
            AccountError::InvalidSecret => "invalid_totp_secret",
            AccountError::CodeMismatch => "totp_code_mismatch",
            AccountError::AlreadyEnrolled => "already_enrolled",
            AccountError::RoleMismatch(_) => "role_mismatch",
            AccountError::ConfirmationGone => "confirmation_gone",
        }
    }
}
