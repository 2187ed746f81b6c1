//! VAT and sales tax by the buyer's country, as dated rows: a rate change
//! is a new row with the day it takes effect, so an order is taxed at the
//! rate in force on its day and keeps that rate (orders store it).
//!
//! The shipped rows (`data/vat-rates.csv`) hold the standard rate for
//! electronically supplied services of the 27 EU member states, the United
//! Kingdom, Norway and Switzerland; the operator adds rows in
//! configuration. Catalog prices are net; a country without rows pays none.

use crate::Millis;
use std::collections::BTreeMap;
use time::Date;

/// The shipped table; `docs/tax.md` says where it comes from.
const SHIPPED: &str = include_str!("../data/vat-rates.csv");

/// The most a rate may be: 100% in basis points.
pub const MAX_RATE: u32 = 10_000;

/// One rate of one country from one day on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaxRateRow {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    /// Basis points: 1900 = 19%.
    pub rate: u32,
    /// The first day (UTC) the rate applies.
    pub effective_from: Date,
}

/// A row that could not be read, with what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tax rate row {row}: {problem}")]
pub struct TaxRateError {
    /// 1-based, counting only rows of data.
    pub row: usize,
    pub problem: &'static str,
}

impl TaxRateRow {
    /// Checks a row: a known ISO country code, a rate of at most 100%, a
    /// `YYYY-MM-DD` date.
    pub fn parse(country: &str, rate: u32, effective_from: &str) -> Result<Self, &'static str> {
        let country = country.trim().to_ascii_uppercase();
        if country.len() != 2 || country.parse::<iso_country::Country>().is_err() {
            return Err("needs an ISO country code such as DE");
        }
        if rate > MAX_RATE {
            return Err("needs a rate of at most 10000 (100%) in basis points");
        }
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let effective_from = Date::parse(effective_from.trim(), &format).map_err(|_| "needs a date as YYYY-MM-DD")?;
        Ok(TaxRateRow { country, rate, effective_from })
    }
}

/// Every country's rows, each country's sorted by the day they take effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaxTable {
    rows: BTreeMap<String, Vec<(Date, u32)>>,
}

impl TaxTable {
    /// The shipped rows and then `extra` (the operator's): on the same day
    /// a later row wins, so configuration can correct a shipped one.
    pub fn new(extra: impl IntoIterator<Item = TaxRateRow>) -> Self {
        let mut table = TaxTable { rows: BTreeMap::new() };
        for row in shipped_rows().into_iter().chain(extra) {
            table.add(row);
        }
        table
    }

    /// The shipped rows only.
    pub fn standard() -> Self {
        TaxTable::new([])
    }

    fn add(&mut self, row: TaxRateRow) {
        let rows = self.rows.entry(row.country).or_default();
        rows.retain(|(day, _)| *day != row.effective_from);
        let at = rows.partition_point(|(day, _)| *day < row.effective_from);
        rows.insert(at, (row.effective_from, row.rate));
    }

    /// The rate in force in `country` on the day (UTC) of `at`; 0 where
    /// there are no rows or none yet in force.
    pub fn rate_on(&self, country: &str, at: Millis) -> u32 {
        let day = day_of(at);
        self.rows
            .get(&country.trim().to_ascii_uppercase())
            .and_then(|rows| rows.iter().rev().find(|(from, _)| *from <= day))
            .map_or(0, |(_, rate)| *rate)
    }

    /// Every row, by country and then by day: for the documentation and
    /// for checking the shipped file.
    pub fn rows(&self) -> impl Iterator<Item = TaxRateRow> + '_ {
        self.rows.iter().flat_map(|(country, rows)| {
            rows.iter().map(|(effective_from, rate)| TaxRateRow {
                country: country.clone(),
                rate: *rate,
                effective_from: *effective_from,
            })
        })
    }
}

/// The tax on a net amount at `rate` basis points, rounded half up to the
/// minor unit.
pub fn tax_at(rate: u32, net_minor: i64) -> i64 {
    i64::try_from((i128::from(net_minor) * i128::from(rate) + 5_000) / 10_000).unwrap_or(i64::MAX)
}

/// A rate in basis points as people write it: `19%`, `25.5%`, `8.1%`.
pub fn rate_text(basis_points: u32) -> String {
    let (whole, hundredths) = (basis_points / 100, basis_points % 100);
    match hundredths {
        0 => format!("{whole}%"),
        h if h % 10 == 0 => format!("{whole}.{}%", h / 10),
        h => format!("{whole}.{h:02}%"),
    }
}

/// The tax line of a review, an invoice or a credit note:
/// `VAT (Germany, 19%)`, or `Tax (United States: none)`.
pub fn tax_label(country: &str, basis_points: u32) -> String {
    let name = crate::country::name_of(country).map_or_else(|| country.to_owned(), str::to_owned);
    if basis_points == 0 { format!("Tax ({name}: none)") } else { format!("VAT ({name}, {})", rate_text(basis_points)) }
}

fn day_of(at: Millis) -> Date {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .map_or(Date::MIN, time::OffsetDateTime::date)
}

/// The shipped file's rows. The file is part of the build and a unit test
/// reads it whole, so a bad row cannot ship; one that did is skipped.
fn shipped_rows() -> Vec<TaxRateRow> {
    parse_rows(SHIPPED).into_iter().filter_map(Result::ok).collect()
}

/// Reads `country,rate,effective_from,source` lines; `#` starts a comment,
/// and the header line is skipped.
fn parse_rows(text: &str) -> Vec<Result<TaxRateRow, TaxRateError>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with("country,"))
        .enumerate()
        .map(|(index, line)| {
            let row = index + 1;
            let mut fields = line.splitn(4, ',');
            let (Some(country), Some(rate), Some(from)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(TaxRateError { row, problem: "needs country,rate,effective_from,source" });
            };
            let rate = rate.trim().parse().map_err(|_| TaxRateError { row, problem: "the rate is not a number" })?;
            TaxRateRow::parse(country, rate, from).map_err(|problem| TaxRateError { row, problem })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: &str) -> Millis {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = Date::parse(day, &format).unwrap();
        Millis(i64::try_from(date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000).unwrap())
    }

    #[test]
    fn the_shipped_file_reads_whole_and_covers_the_eu_the_uk_norway_and_switzerland() {
        let rows = parse_rows(SHIPPED);
        assert!(rows.iter().all(Result::is_ok), "{:?}", rows.iter().find(|r| r.is_err()));
        let table = TaxTable::standard();
        let countries: Vec<&str> = table.rows.keys().map(String::as_str).collect();
        let expected = [
            "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR", "HU", "IE", "IT",
            "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
        ];
        assert_eq!(countries, expected, "27 member states plus GB, NO and CH");
        let today = at("2026-11-27");
        for (country, rate) in [("PT", 2300), ("SE", 2500), ("PL", 2300), ("HU", 2700), ("FI", 2550), ("CH", 810)] {
            assert_eq!(table.rate_on(country, today), rate, "{country}");
        }
        assert!(expected.iter().all(|c| table.rate_on(c, today) > 0), "every listed country has a rate today");
        assert_eq!(table.rate_on("US", today), 0, "no rows, no tax");
    }

    #[test]
    fn a_rate_applies_from_its_day_and_the_one_before_until_then() {
        let table = TaxTable::standard();
        // Germany's temporary cut in the second half of 2020.
        assert_eq!(table.rate_on("de", at("2020-06-30")), 1900);
        assert_eq!(table.rate_on("DE", at("2020-07-01")), 1600);
        assert_eq!(table.rate_on("DE", at("2020-12-31")), 1600);
        assert_eq!(table.rate_on("DE", at("2021-01-01")), 1900);
        // Estonia's two rises.
        assert_eq!(table.rate_on("EE", at("2023-12-31")), 2000);
        assert_eq!(table.rate_on("EE", at("2024-06-01")), 2200);
        assert_eq!(table.rate_on("EE", at("2025-07-01")), 2400);
        // Before a country's first row there is none.
        assert_eq!(table.rate_on("CH", at("2017-12-31")), 0);
    }

    #[test]
    fn the_operators_rows_add_changes_and_correct_a_shipped_day() {
        let extra = [
            TaxRateRow::parse("pt", 2400, "2027-01-01").unwrap(),
            TaxRateRow::parse("DE", 1850, "2021-01-01").unwrap(),
            TaxRateRow::parse("US", 0, "2020-01-01").unwrap(),
        ];
        let table = TaxTable::new(extra);
        assert_eq!(table.rate_on("PT", at("2026-12-31")), 2300, "the shipped rate until the new row's day");
        assert_eq!(table.rate_on("PT", at("2027-01-01")), 2400);
        assert_eq!(table.rate_on("DE", at("2026-01-01")), 1850, "the same day: the operator's row wins");
        assert_eq!(table.rows().filter(|r| r.country == "DE").count(), 3, "replaced, not added");
    }

    #[test]
    fn bad_rows_are_refused_with_the_reason() {
        assert!(TaxRateRow::parse("Germany", 1900, "2020-01-01").is_err());
        assert!(TaxRateRow::parse("XX", 1900, "2020-01-01").is_err());
        assert!(TaxRateRow::parse("DE", 10_001, "2020-01-01").is_err());
        assert!(TaxRateRow::parse("DE", 1900, "1.1.2020").is_err());
        let rows = parse_rows("DE,19%,2020-01-01,x\nDE,1900\n");
        assert_eq!(rows[0], Err(TaxRateError { row: 1, problem: "the rate is not a number" }));
        assert_eq!(rows[1].as_ref().unwrap_err().row, 2);
    }

    #[test]
    fn rates_and_tax_lines_read_as_people_write_them() {
        assert_eq!(rate_text(1900), "19%");
        assert_eq!(rate_text(2550), "25.5%");
        assert_eq!(rate_text(810), "8.1%");
        assert_eq!(rate_text(1205), "12.05%");
        assert_eq!(tax_label("pt", 2300), "VAT (Portugal, 23%)");
        assert_eq!(tax_label("US", 0), "Tax (United States: none)");
    }

    #[test]
    fn tax_rounds_half_up() {
        assert_eq!(tax_at(1900, 1999), 380);
        assert_eq!(tax_at(1900, 50), 10, "9.5 rounds up");
        assert_eq!(tax_at(0, 1999), 0);
    }
}
