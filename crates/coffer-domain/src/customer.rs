//! The customer record: who bought, and how to reach them. Every field here
//! is personal data; the store only ever sees it sealed (see the data
//! inventory). Validation errors name the field, never its value.

use serde::{Deserialize, Serialize};

/// A bad customer field; `field` is a dotted path for the API error model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct CustomerError {
    pub field: &'static str,
    pub reason: &'static str,
}

fn bad(field: &'static str, reason: &'static str) -> CustomerError {
    CustomerError { field, reason }
}

/// A postal address. `country` is an ISO 3166-1 alpha-2 code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailingAddress {
    pub line1: String,
    #[serde(default)]
    pub line2: String,
    pub city: String,
    #[serde(default)]
    pub region: String,
    pub postal_code: String,
    pub country: String,
}

/// What a customer tells us about themselves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerDetails {
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<MailingAddress>,
}

fn text(field: &'static str, value: &str, max_chars: usize, required: bool) -> Result<String, CustomerError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(bad(field, "is required"));
    }
    if value.chars().count() > max_chars {
        return Err(bad(field, "is too long"));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// A plausible address: one `@`, a local part, a domain with a dot and no
/// spaces. Deliverability is proven by mail, not by a pattern.
pub(crate) fn email_address(value: &str) -> Result<String, CustomerError> {
    let value = text("customer.email", value, 254, true)?;
    let ok = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if ok { Ok(value) } else { Err(bad("customer.email", "is not a valid email address")) }
}

fn phone(value: &str) -> Result<String, CustomerError> {
    let value = text("customer.phone", value, 32, true)?;
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let allowed = value.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if allowed && (5..=20).contains(&digits) {
        Ok(value)
    } else {
        Err(bad("customer.phone", "is not a valid phone number"))
    }
}

impl MailingAddress {
    /// Every bad part of the address at once, in the form's order.
    pub fn problems(&self) -> Vec<CustomerError> {
        [
            text("customer.address.line1", &self.line1, 200, true).err(),
            text("customer.address.line2", &self.line2, 200, false).err(),
            text("customer.address.city", &self.city, 100, true).err(),
            text("customer.address.region", &self.region, 100, false).err(),
            text("customer.address.postal_code", &self.postal_code, 20, false).err(),
            self.validated().err().filter(|e| e.field == "customer.address.country"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub fn validated(&self) -> Result<MailingAddress, CustomerError> {
        let country = self.country.trim().to_ascii_uppercase();
        if country.is_empty() {
            return Err(bad("customer.address.country", "is required"));
        }
        if country.len() != 2
            || !country.bytes().all(|b| b.is_ascii_uppercase())
            || country.parse::<iso_country::Country>().is_err()
        {
            return Err(bad("customer.address.country", "must be a two-letter ISO 3166 country code"));
        }
        Ok(MailingAddress {
            line1: text("customer.address.line1", &self.line1, 200, true)?,
            line2: text("customer.address.line2", &self.line2, 200, false)?,
            city: text("customer.address.city", &self.city, 100, true)?,
            region: text("customer.address.region", &self.region, 100, false)?,
            postal_code: text("customer.address.postal_code", &self.postal_code, 20, false)?,
            country,
        })
    }

    /// The address as it is written on an envelope, one line each, in the
    /// country's usual order: the city line is `City, Region 12345` in
    /// North America and Australia, `12345 City` elsewhere (the common
    /// European order), with the region on a line of its own; the
    /// country's name last. Empty parts are left out.
    pub fn lines(&self) -> Vec<String> {
        let city_line = match self.country.as_str() {
            "US" | "CA" | "AU" => {
                let place = [self.city.trim(), self.region.trim()].into_iter().filter(|p| !p.is_empty());
                format!("{} {}", place.collect::<Vec<_>>().join(", "), self.postal_code.trim())
            }
            "GB" | "IE" => [self.city.trim(), self.postal_code.trim()].join("\n"),
            _ => format!("{} {}", self.postal_code.trim(), self.city.trim()),
        };
        let region = match self.country.as_str() {
            "US" | "CA" | "AU" => "",
            _ => self.region.trim(),
        };
        let country = crate::country::name_of(&self.country).unwrap_or(self.country.as_str());
        [self.line1.trim(), self.line2.trim()]
            .into_iter()
            .map(str::to_owned)
            .chain(city_line.split('\n').map(|l| l.trim().to_owned()))
            .chain([region.to_owned(), country.to_owned()])
            .filter(|line| !line.is_empty())
            .collect()
    }
}

impl CustomerDetails {
    /// Every bad field at once, for a form that marks each one (the order
    /// of the form: name, email, phone, then the address). Empty when
    /// [`CustomerDetails::validated`] would accept the details.
    pub fn problems(&self) -> Vec<CustomerError> {
        let mut problems: Vec<CustomerError> = [
            text("customer.name", &self.name, 200, true).err(),
            email_address(&self.email).err(),
            self.phone.as_deref().map(str::trim).filter(|p| !p.is_empty()).and_then(|p| phone(p).err()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(address) = &self.address {
            problems.extend(address.problems());
        }
        problems
    }

    /// The details trimmed and checked; the first bad field is reported.
    pub fn validated(&self) -> Result<CustomerDetails, CustomerError> {
        Ok(CustomerDetails {
            name: text("customer.name", &self.name, 200, true)?,
            email: email_address(&self.email)?,
            phone: match self.phone.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(p) => Some(phone(p)?),
            },
            address: self.address.as_ref().map(MailingAddress::validated).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let details = CustomerDetails {
            name: " ".into(),
            email: "not-an-address".into(),
            phone: Some("call me".into()),
            address: Some(MailingAddress {
                line1: String::new(),
                line2: String::new(),
                city: "Berlin".into(),
                region: String::new(),
                postal_code: String::new(),
                country: "Germany".into(),
            }),
        };
        let fields: Vec<&str> = details.problems().iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["customer.name", "customer.email", "customer.phone", "customer.address.line1", "customer.address.country"]
        );
        assert!(details.validated().is_err());
        let mut good = details.clone();
        good.name = "Ada".into();
        good.email = "ada@example.org".into();
        good.phone = None;
        let address = good.address.as_mut().unwrap();
        address.line1 = "1 Main St".into();
        address.country = "DE".into();
        assert!(good.problems().is_empty() && good.validated().is_ok(), "no problems: accepted");
    }

    #[test]
    fn an_address_is_written_in_its_countrys_order() {
        let address = |country: &str, region: &str| MailingAddress {
            line1: "1 Main St".into(),
            line2: String::new(),
            city: "Springfield".into(),
            region: region.into(),
            postal_code: "12345".into(),
            country: country.into(),
        };
        assert_eq!(address("US", "IL").lines(), ["1 Main St", "Springfield, IL 12345", "United States"]);
        assert_eq!(address("DE", "").lines(), ["1 Main St", "12345 Springfield", "Germany"]);
        assert_eq!(address("GB", "Kent").lines(), ["1 Main St", "Springfield", "12345", "Kent", "United Kingdom"]);
        let mut no_postcode = address("IE", "");
        no_postcode.postal_code.clear();
        assert_eq!(no_postcode.lines(), ["1 Main St", "Springfield", "Ireland"]);
    }

    fn ada() -> CustomerDetails {
        CustomerDetails {
            name: " Ada Lovelace ".into(),
            email: "ada@example.org".into(),
            phone: Some("+44 20 7946 0000".into()),
            address: Some(MailingAddress {
                line1: "12 St James's Square".into(),
                line2: String::new(),
                city: "London".into(),
                region: String::new(),
                postal_code: "SW1Y 4JH".into(),
                country: "gb".into(),
            }),
        }
    }

    #[test]
    fn valid_details_are_trimmed_and_normalised() {
        let v = ada().validated().unwrap();
        assert_eq!(v.name, "Ada Lovelace");
        assert_eq!(v.address.unwrap().country, "GB");
    }

    #[test]
    fn each_bad_field_is_named_without_its_value() {
        let cases: Vec<(CustomerDetails, &str)> = vec![
            (CustomerDetails { name: "  ".into(), ..ada() }, "customer.name"),
            (CustomerDetails { email: "ada.example.org".into(), ..ada() }, "customer.email"),
            (CustomerDetails { email: "ada@localhost".into(), ..ada() }, "customer.email"),
            (CustomerDetails { email: "a b@example.org".into(), ..ada() }, "customer.email"),
            (CustomerDetails { phone: Some("call me".into()), ..ada() }, "customer.phone"),
            (CustomerDetails { name: "x".repeat(201), ..ada() }, "customer.name"),
            (CustomerDetails { name: "Ada\u{0}".into(), ..ada() }, "customer.name"),
        ];
        for (details, field) in cases {
            let err = details.validated().unwrap_err();
            assert_eq!(err.field, field);
            assert!(!err.to_string().contains("ada") && !err.to_string().contains("call me"), "{err}");
        }
        let mut no_country = ada();
        if let Some(a) = no_country.address.as_mut() {
            a.country = "GBR".into();
        }
        assert_eq!(no_country.validated().unwrap_err().field, "customer.address.country");
    }

    #[test]
    fn phone_and_address_are_optional() {
        let v = CustomerDetails { phone: Some(" ".into()), address: None, ..ada() }.validated().unwrap();
        assert_eq!((v.phone, v.address), (None, None));
    }
}
