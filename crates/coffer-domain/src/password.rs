//! The password rule: at least 12 characters, at most 128, and not easy to
//! guess by zxcvbn's estimate (its score 3 of 4: about 10^10 guesses), with
//! the person's own name and email counted against it.

/// Why a password was refused; messages never repeat the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password must have at least {MIN_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_CHARS} characters")]
    TooLong,
    #[error("the password is too easy to guess; try a few unrelated words")]
    TooWeak,
}

pub const MIN_CHARS: usize = 12;
/// Long enough for any passphrase, short enough that hashing stays cheap to refuse.
pub const MAX_CHARS: usize = 128;
/// zxcvbn's score, 0 to 4, that a password must reach.
pub const MIN_STRENGTH: u8 = 3;

/// Checks a new password; `personal` holds the person's name, email and
/// the like, which make a password weaker when it contains them.
pub fn check_new_password(password: &str, personal: &[&str]) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordError::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(PasswordError::TooLong);
    }
    // Whole values and their words ("Ada Lovelace" gives "ada", "lovelace").
    let mut inputs: Vec<String> = Vec::new();
    for value in personal {
        let value = value.to_lowercase();
        inputs
            .extend(value.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 3).map(str::to_owned));
        inputs.push(value);
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    if u8::from(zxcvbn::zxcvbn(password, &inputs).score()) < MIN_STRENGTH {
        return Err(PasswordError::TooWeak);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_and_strength_are_enforced() {
        assert_eq!(check_new_password("short", &[]), Err(PasswordError::TooShort));
        assert_eq!(check_new_password(&"x".repeat(129), &[]), Err(PasswordError::TooLong));
        assert_eq!(check_new_password("password1234", &[]), Err(PasswordError::TooWeak));
        assert_eq!(check_new_password("aaaaaaaaaaaaaaaa", &[]), Err(PasswordError::TooWeak));
        assert_eq!(check_new_password("qwertyuiop123", &[]), Err(PasswordError::TooWeak));
        // Repeats, here of the person's own name, are weak.
        assert_eq!(check_new_password("lovelacelovelace", &["Ada Lovelace"]), Err(PasswordError::TooWeak));
        assert_eq!(check_new_password("orbit velvet canyon 42 lantern", &[]), Ok(()));
        // Characters, not bytes: twelve accented letters pass the length rule.
        assert_ne!(check_new_password("ééééééééééé", &[]), Ok(()));
        assert_ne!(check_new_password("éééééééééééé", &[]), Err(PasswordError::TooShort));
    }

    #[test]
    fn errors_never_repeat_the_password() {
        let err = check_new_password("password1234", &[]).unwrap_err().to_string();
        assert!(!err.contains("password1234"));
    }
}
