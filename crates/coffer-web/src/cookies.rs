//! The cookie rule: `__Host-` prefix, `Secure`, `HttpOnly`, `SameSite=Lax`,
//! `Path=/` when served over TLS (or behind a TLS proxy); in the plain-HTTP
//! local demo the same cookie without the prefix, which browsers refuse on
//! plain HTTP. Cookies carry opaque values only, never personal data.

use cookie::{Cookie, SameSite};

#[derive(Clone, Copy, Debug)]
pub struct CookieRule {
    /// True when clients reach the server over TLS.
    pub secure_transport: bool,
}

impl CookieRule {
    /// The cookie's name on the wire for a base name such as `coffer_session`.
    pub fn cookie_name(&self, base: &str) -> String {
        if self.secure_transport { format!("__Host-{base}") } else { base.to_owned() }
    }

    /// A `Set-Cookie` value for a session-length cookie.
    pub fn set_cookie(&self, base: &str, value: &str) -> String {
        Cookie::build((self.cookie_name(base), value.to_owned()))
            .path("/")
            .secure(true)
            .http_only(true)
            .same_site(SameSite::Lax)
            .build()
            .to_string()
    }

    /// A `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self, base: &str) -> String {
        Cookie::build((self.cookie_name(base), ""))
            .path("/")
            .secure(true)
            .http_only(true)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::ZERO)
            .build()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_cookies_get_the_host_prefix_and_all_attributes() {
        let set = CookieRule { secure_transport: true }.set_cookie("coffer_session", "abc");
        assert_eq!(set, "__Host-coffer_session=abc; HttpOnly; SameSite=Lax; Secure; Path=/");
        let plain = CookieRule { secure_transport: false }.set_cookie("coffer_session", "abc");
        assert_eq!(plain, "coffer_session=abc; HttpOnly; SameSite=Lax; Secure; Path=/");
    }
}
