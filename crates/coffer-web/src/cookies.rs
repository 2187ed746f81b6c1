//! The cookie rule: `__Host-` prefix, `Secure`, `HttpOnly`, `SameSite=Lax`,
//! `Path=/` when served over TLS (or behind a TLS proxy); in the plain-HTTP
//! local demo the same cookie without the prefix, which browsers refuse on
//! plain HTTP. Cookies carry opaque values only, never personal data.

use cookie::{Cookie, SameSite};

/// What a cookie may hold (P17: nothing sensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieValue {
    /// A random token (base64url), meaningless outside our database.
    OpaqueToken,
    /// Product ids and quantities (`prd_…:2|prd_…:1`).
    ProductIds,
}

/// One cookie Coffer sets: the published cookie list (`/privacy/cookies`)
/// is made from [`COOKIES`], and the code names cookies only through it.
#[derive(Clone, Copy, Debug)]
pub struct CookieSpec {
    /// The base name; over TLS it gets the `__Host-` prefix.
    pub name: &'static str,
    pub purpose: &'static str,
    pub lifetime: &'static str,
    pub value: CookieValue,
}

pub const SESSION: CookieSpec = CookieSpec {
    name: "coffer_session",
    purpose: "Keeps you signed in to your account.",
    lifetime: "Until you sign out or close the browser; the session ends on our side after 30 minutes without \
               activity and 12 hours after sign-in.",
    value: CookieValue::OpaqueToken,
};

pub const CART: CookieSpec = CookieSpec {
    name: "coffer_cart",
    purpose: "Remembers which products are in your cart (product numbers and quantities only).",
    lifetime: "Until you close the browser or place the order.",
    value: CookieValue::ProductIds,
};

pub const CHECKOUT: CookieSpec = CookieSpec {
    name: "coffer_checkout",
    purpose: "Finds the details you typed at checkout (kept sealed on our side, never your card), so changing \
              the cart or the currency, or going back from the review, loses nothing.",
    lifetime: "Until you close the browser; the details are deleted when you place the order or empty the cart, \
               and a day after your last change.",
    value: CookieValue::OpaqueToken,
};

pub const STAFF: CookieSpec = CookieSpec {
    name: "coffer_staff",
    purpose: "Keeps a member of our staff signed in to the staff console.",
    lifetime: "Until they sign out or close the browser; the session ends after 30 minutes without activity.",
    value: CookieValue::OpaqueToken,
};

pub const VENDOR: CookieSpec = CookieSpec {
    name: "coffer_vendor",
    purpose: "Keeps a vendor's user signed in to the vendor portal.",
    lifetime: "Until they sign out or close the browser; the session ends after 30 minutes without activity.",
    value: CookieValue::OpaqueToken,
};

pub const FORM: CookieSpec = CookieSpec {
    name: "coffer_form",
    purpose: "Proves that a form (sign-in, cart, data request) was sent from our own page, before you sign in \
              (protection against cross-site request forgery).",
    lifetime: "Until you close the browser.",
    value: CookieValue::OpaqueToken,
};

/// Every cookie Coffer sets.
pub const COOKIES: &[CookieSpec] = &[SESSION, CART, CHECKOUT, STAFF, VENDOR, FORM];

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
