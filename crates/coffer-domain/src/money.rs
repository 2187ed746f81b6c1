//! Money in minor units of an ISO 4217 currency; never floating point.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("unknown currency code")]
    UnknownCurrency,
    #[error("amount must not be negative")]
    NegativeAmount,
    #[error("at least one price is required")]
    NoPrice,
}

/// An ISO 4217 currency that has minor units (no funds, metals or
/// superseded codes), written as its three upper-case letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(iso_currency::Currency);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(MoneyError::UnknownCurrency);
        }
        let c = iso_currency::Currency::from_code(code).ok_or(MoneyError::UnknownCurrency)?;
        if c.exponent().is_none() || c.is_fund() || c.is_special() || c.is_superseded().is_some() {
            return Err(MoneyError::UnknownCurrency);
        }
        Ok(Currency(c))
    }

    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point (2 for USD, 0 for JPY).
    pub fn exponent(self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }

    /// An amount in minor units as people read it: "19.99 USD", "1500 JPY",
    /// "-2.85 EUR". Exact, from integer arithmetic only.
    pub fn amount(self, minor: i64) -> String {
        let exp = self.exponent();
        if exp == 0 {
            return format!("{minor} {self}");
        }
        let unit = 10u64.pow(exp);
        let width = exp as usize;
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        format!("{sign}{}.{:0width$} {self}", abs / unit, abs % unit)
    }
}

impl PartialOrd for Currency {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Currency {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.code().cmp(other.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, MoneyError> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

/// A non-negative amount in minor units of one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::NegativeAmount);
        }
        Ok(Money { minor, currency })
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }
}

/// "19.99 USD", "1500 JPY": exact, from integer arithmetic only.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.currency.amount(self.minor))
    }
}

/// A product's prices: at least one, at most one per currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prices(BTreeMap<Currency, Money>);

impl Prices {
    pub fn new(prices: impl IntoIterator<Item = Money>) -> Result<Self, MoneyError> {
        let map: BTreeMap<_, _> = prices.into_iter().map(|m| (m.currency(), m)).collect();
        if map.is_empty() {
            return Err(MoneyError::NoPrice);
        }
        Ok(Prices(map))
    }

    pub fn get(&self, currency: Currency) -> Option<Money> {
        self.0.get(&currency).copied()
    }

    /// Prices in currency-code order.
    pub fn iter(&self) -> impl Iterator<Item = Money> + '_ {
        self.0.values().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn known_currencies_parse_and_unknown_are_rejected() {
        assert_eq!(usd().code(), "USD");
        assert_eq!(Currency::parse("JPY").map(Currency::exponent), Ok(0));
        for bad in ["usd", "XXX", "XAU", "ZZZ", "US", "USDD", "", "€"] {
            assert_eq!(Currency::parse(bad), Err(MoneyError::UnknownCurrency), "{bad:?}");
        }
    }

    #[test]
    fn negative_amounts_are_rejected() {
        assert_eq!(Money::new(-1, usd()), Err(MoneyError::NegativeAmount));
        assert_eq!(Money::new(0, usd()).map(Money::minor), Ok(0));
    }

    #[test]
    fn formats_with_the_currency_exponent() {
        let jpy = Currency::parse("JPY").unwrap_or_else(|e| panic!("{e}"));
        let bhd = Currency::parse("BHD").unwrap_or_else(|e| panic!("{e}"));
        let show = |m: i64, c| Money::new(m, c).map(|m| m.to_string());
        assert_eq!(show(1999, usd()), Ok("19.99 USD".into()));
        assert_eq!(show(5, usd()), Ok("0.05 USD".into()));
        assert_eq!(show(1500, jpy), Ok("1500 JPY".into()));
        assert_eq!(show(1234, bhd), Ok("1.234 BHD".into()));
        // Plain amounts, refunds included, format the same way.
        assert_eq!(usd().amount(-285), "-2.85 USD");
        assert_eq!(usd().amount(4164), "41.64 USD");
    }

    #[test]
    fn prices_need_at_least_one_and_keep_one_per_currency() {
        assert_eq!(Prices::new([]), Err(MoneyError::NoPrice));
        let p = Prices::new([Money::new(1, usd()), Money::new(2, usd())].into_iter().flatten());
        assert_eq!(p.map(|p| p.iter().count()), Ok(1));
    }
}
