//! Vendors and the products they sell through the operator.

use crate::clock::Millis;
use crate::id::{ProductId, VendorId};
use crate::money::{MoneyError, Prices};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const NAME_MAX_CHARS: usize = 120;
pub const DESCRIPTION_MAX_CHARS: usize = 5_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("name must be 1 to {NAME_MAX_CHARS} characters")]
    InvalidName,
    #[error("description must be at most {DESCRIPTION_MAX_CHARS} characters")]
    InvalidDescription,
    #[error("slug must be 2 to 40 characters of a-z, 0-9 and '-', starting with a letter")]
    InvalidSlug,
    #[error("unknown delivery kind")]
    InvalidDelivery,
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// How a product reaches the buyer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    LicenseKey,
    Download,
    Both,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::LicenseKey => "license_key",
            Delivery::Download => "download",
            Delivery::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Result<Self, CatalogError> {
        match s {
            "license_key" => Ok(Delivery::LicenseKey),
            "download" => Ok(Delivery::Download),
            "both" => Ok(Delivery::Both),
            _ => Err(CatalogError::InvalidDelivery),
        }
    }

    pub fn has_license_key(self) -> bool {
        matches!(self, Delivery::LicenseKey | Delivery::Both)
    }

    pub fn has_download(self) -> bool {
        matches!(self, Delivery::Download | Delivery::Both)
    }
}

/// A vendor's URL-safe handle, e.g. `northwind`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VendorSlug(String);

impl VendorSlug {
    pub fn parse(s: &str) -> Result<Self, CatalogError> {
        let ok = (2..=40).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(VendorSlug(s.to_owned())) } else { Err(CatalogError::InvalidSlug) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VendorSlug {
    type Error = CatalogError;
    fn try_from(s: String) -> Result<Self, CatalogError> {
        VendorSlug::parse(&s)
    }
}

impl From<VendorSlug> for String {
    fn from(s: VendorSlug) -> String {
        s.0
    }
}

impl fmt::Display for VendorSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn clean_name(name: &str) -> Result<String, CatalogError> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > NAME_MAX_CHARS || name.chars().any(char::is_control) {
        return Err(CatalogError::InvalidName);
    }
    Ok(name.to_owned())
}

fn clean_description(text: &str) -> Result<String, CatalogError> {
    let text = text.trim();
    let bad_control = text.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if text.chars().count() > DESCRIPTION_MAX_CHARS || bad_control {
        return Err(CatalogError::InvalidDescription);
    }
    Ok(text.to_owned())
}

/// A vendor as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vendor {
    pub id: VendorId,
    pub slug: VendorSlug,
    pub name: String,
    pub created_at: Millis,
}

/// A validated vendor not yet stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVendor(Vendor);

impl NewVendor {
    pub fn new(slug: &str, name: &str, now: Millis) -> Result<Self, CatalogError> {
        Ok(NewVendor(Vendor {
            id: VendorId::generate(),
            slug: VendorSlug::parse(slug)?,
            name: clean_name(name)?,
            created_at: now,
        }))
    }

    pub fn vendor(&self) -> &Vendor {
        &self.0
    }
}

/// A product as stored, with its vendor's display name for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub vendor_id: VendorId,
    pub vendor_slug: VendorSlug,
    pub vendor_name: String,
    pub name: String,
    pub description: String,
    pub prices: Prices,
    pub delivery: Delivery,
    pub created_at: Millis,
    /// Whether the vendor publishes it (else a draft or withdrawn).
    pub published: bool,
    /// Whether buyers see and can order it: published, its vendor active,
    /// and its download file uploaded if it delivers one.
    pub listed: bool,
}

/// A validated product not yet stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProduct {
    pub id: ProductId,
    pub vendor_id: VendorId,
    pub name: String,
    pub description: String,
    pub prices: Prices,
    pub delivery: Delivery,
    pub created_at: Millis,
    pub published: bool,
}

impl NewProduct {
    pub fn new(
        vendor_id: VendorId,
        name: &str,
        description: &str,
        prices: Prices,
        delivery: Delivery,
        now: Millis,
    ) -> Result<Self, CatalogError> {
        Ok(NewProduct {
            id: ProductId::generate(),
            vendor_id,
            name: clean_name(name)?,
            description: clean_description(description)?,
            prices,
            delivery,
            created_at: now,
            published: true,
        })
    }

    /// A product's new name, description, prices and delivery, checked as
    /// at creation (its id, vendor and creation time stay).
    pub fn edited(
        product: &Product,
        name: &str,
        description: &str,
        prices: Prices,
        delivery: Delivery,
    ) -> Result<Self, CatalogError> {
        Ok(NewProduct {
            id: product.id.clone(),
            vendor_id: product.vendor_id.clone(),
            name: clean_name(name)?,
            description: clean_description(description)?,
            prices,
            delivery,
            created_at: product.created_at,
            published: product.published,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};

    fn prices() -> Prices {
        let usd = Currency::parse("USD").unwrap_or_else(|e| panic!("{e}"));
        Prices::new(Money::new(1999, usd)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn slugs_are_strict() {
        assert!(VendorSlug::parse("northwind-2").is_ok());
        for bad in ["", "a", "Northwind", "2fast", "has space", "../x", "a_b", &"x".repeat(41)] {
            assert_eq!(VendorSlug::parse(bad), Err(CatalogError::InvalidSlug), "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        let v = NewVendor::new("acme", "  Acme Tools ", Millis(0)).map(|v| v.vendor().name.clone());
        assert_eq!(v, Ok("Acme Tools".into()));
        assert_eq!(NewVendor::new("acme", "   ", Millis(0)), Err(CatalogError::InvalidName));
        let long = "x".repeat(NAME_MAX_CHARS + 1);
        assert_eq!(NewVendor::new("acme", &long, Millis(0)), Err(CatalogError::InvalidName));
        assert_eq!(NewVendor::new("acme", "a\u{0}b", Millis(0)), Err(CatalogError::InvalidName));
    }

    #[test]
    fn product_description_is_bounded() {
        let vendor = VendorId::generate();
        let long = "d".repeat(DESCRIPTION_MAX_CHARS + 1);
        let made = NewProduct::new(vendor.clone(), "Tool", &long, prices(), Delivery::Both, Millis(0));
        assert_eq!(made, Err(CatalogError::InvalidDescription));
        let ok = NewProduct::new(vendor, "Tool", "Line one\nLine two", prices(), Delivery::Both, Millis(0));
        assert!(ok.is_ok());
    }

    #[test]
    fn delivery_round_trips() {
        for d in [Delivery::LicenseKey, Delivery::Download, Delivery::Both] {
            assert_eq!(Delivery::parse(d.as_str()), Ok(d));
        }
        assert_eq!(Delivery::parse("fax"), Err(CatalogError::InvalidDelivery));
        assert!(Delivery::Both.has_download() && Delivery::Both.has_license_key());
        assert!(!Delivery::Download.has_license_key());
    }
}
