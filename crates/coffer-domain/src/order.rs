//! Orders: the card check the form does before anything is sent on, the
//! tax table, totals, and the life of an order as a state machine. Card
//! numbers and CVCs pass through here as borrowed text and are never kept:
//! what leaves is the last four digits, the brand and the expiry.

use crate::Millis;

/// A mistake in an order, with a stable code and, when one input is at
/// fault, its dotted path (`card.number`, `items[0].quantity`). Messages
/// never repeat what was typed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OrderError {
    pub code: &'static str,
    pub field: Option<String>,
    pub message: String,
}

impl OrderError {
    pub fn new(code: &'static str, field: Option<&str>, message: impl Into<String>) -> Self {
        OrderError { code, field: field.map(str::to_owned), message: message.into() }
    }
}

/// How the customer pays; the method decides what the form asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentMethod {
    Card,
    /// No card data at all: the order waits as `pending` with a payment
    /// reference until staff mark the money received.
    BankTransfer,
}

impl PaymentMethod {
    pub fn parse(s: &str) -> Option<PaymentMethod> {
        match s {
            "card" => Some(PaymentMethod::Card),
            "bank_transfer" => Some(PaymentMethod::BankTransfer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Card => "card",
            PaymentMethod::BankTransfer => "bank_transfer",
        }
    }
}

/// The operator's account that bank transfers are paid into, as every
/// buyer paying by transfer is shown it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BankAccount {
    pub holder: String,
    /// In the paper format, groups of four: `DE89 3704 0044 0532 0130 00`.
    pub iban: String,
    pub bic: String,
}

impl BankAccount {
    /// Checks the IBAN by its country's length and its checksum, and the
    /// BIC's shape (8 or 11 characters: bank, country, place, branch).
    pub fn parse(holder: &str, iban: &str, bic: &str) -> Result<Self, &'static str> {
        let holder = holder.trim();
        if holder.is_empty() || holder.chars().count() > 140 || holder.chars().any(char::is_control) {
            return Err("the account holder needs a name of at most 140 characters");
        }
        let iban: iban::Iban =
            iban.trim().to_ascii_uppercase().parse().map_err(|_| "the IBAN is not valid (length or checksum)")?;
        let bic = bic.trim().to_ascii_uppercase();
        let bic_ok = matches!(bic.len(), 8 | 11)
            && bic.bytes().take(6).all(|b| b.is_ascii_uppercase())
            && bic.bytes().skip(6).all(|b| b.is_ascii_alphanumeric());
        if !bic_ok {
            return Err("the BIC needs 8 or 11 letters and digits, such as COBADEFFXXX");
        }
        Ok(BankAccount { holder: holder.to_owned(), iban: iban.to_string(), bic })
    }

    /// The account a demo server shows: the IBAN standard's own example.
    pub fn demo() -> Self {
        BankAccount {
            holder: "Coffer Demo Operator".into(),
            iban: "DE89 3704 0044 0532 0130 00".into(),
            bic: "COBADEFFXXX".into(),
        }
    }
}

/// What may be kept of a card once it passed the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSummary {
    pub brand: &'static str,
    pub last4: String,
    pub exp_month: u8,
    pub exp_year: u16,
}

/// The Luhn (mod 10) check over a string of digits.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (i, c) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

fn brand_of(digits: &str) -> &'static str {
    let two: u32 = digits.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let four: u32 = digits.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    match (digits.as_bytes().first(), two, four) {
        (Some(b'4'), _, _) => "visa",
        (_, 51..=55, _) | (_, _, 2221..=2720) => "mastercard",
        (_, 34 | 37, _) => "amex",
        (_, _, 6011) | (_, 65, _) => "discover",
        _ => "card",
    }
}

/// A card brand as stored (`visa`) as people write it (`Visa`).
pub fn brand_name(brand: &str) -> &str {
    match brand {
        "visa" => "Visa",
        "mastercard" => "Mastercard",
        "amex" => "American Express",
        "discover" => "Discover",
        _ => "card",
    }
}

/// The digits of a card number typed with spaces or dashes, if it is one.
pub fn card_digits(number: &str) -> Option<String> {
    let digits: String = number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    (digits.len() >= 12 && digits.len() <= 19 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// Every problem of a card's fields at once (number, expiry, security
/// code), for a form that marks each field; empty when [`check_card`]
/// would accept the card. Messages never repeat the number.
pub fn card_problems(number: &str, exp_month: i64, exp_year: i64, cvc: &str, today: (i32, u8)) -> Vec<OrderError> {
    let mut problems = Vec::new();
    if !card_digits(number).is_some_and(|digits| luhn_valid(&digits)) {
        problems.push(OrderError::new("card_invalid", Some("card.number"), "the card number is not valid"));
    }
    let month = u8::try_from(exp_month).ok().filter(|m| (1..=12).contains(m));
    let year = u16::try_from(exp_year).ok().filter(|y| (2000..=2100).contains(y));
    if month.is_none() {
        problems.push(OrderError::new("card_invalid", Some("card.exp_month"), "the expiry month must be 1 to 12"));
    }
    match (year, month) {
        (None, _) => {
            problems.push(OrderError::new("card_invalid", Some("card.exp_year"), "the expiry year is not valid"))
        }
        (Some(year), Some(month)) if (i32::from(year), month) < today => {
            problems.push(OrderError::new("card_expired", Some("card.exp_year"), "the card has expired"))
        }
        _ => {}
    }
    if !(cvc.len() == 3 || cvc.len() == 4) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        problems.push(OrderError::new("card_invalid", Some("card.cvc"), "the security code must be 3 or 4 digits"));
    }
    problems
}

/// Checks a card as typed: number (Luhn), expiry not in the past at
/// `today` (year, month), CVC of 3 or 4 digits.
pub fn check_card(
    number: &str,
    exp_month: i64,
    exp_year: i64,
    cvc: &str,
    today: (i32, u8),
) -> Result<CardSummary, OrderError> {
    let Some(digits) = card_digits(number) else {
        return Err(OrderError::new("card_invalid", Some("card.number"), "the card number is not valid"));
    };
    if !luhn_valid(&digits) {
        return Err(OrderError::new("card_invalid", Some("card.number"), "the card number is not valid"));
    }
    let month = u8::try_from(exp_month).ok().filter(|m| (1..=12).contains(m));
    let Some(month) = month else {
        return Err(OrderError::new("card_invalid", Some("card.exp_month"), "the expiry month must be 1 to 12"));
    };
    let Some(year) = u16::try_from(exp_year).ok().filter(|y| (2000..=2100).contains(y)) else {
        return Err(OrderError::new("card_invalid", Some("card.exp_year"), "the expiry year is not valid"));
    };
    if (i32::from(year), month) < today {
        return Err(OrderError::new("card_expired", Some("card.exp_year"), "the card has expired"));
    }
    if !(cvc.len() == 3 || cvc.len() == 4) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OrderError::new("card_invalid", Some("card.cvc"), "the security code must be 3 or 4 digits"));
    }
    Ok(CardSummary {
        brand: brand_of(&digits),
        last4: digits[digits.len() - 4..].to_owned(),
        exp_month: month,
        exp_year: year,
    })
}

/// The most of one product in one order.
pub const MAX_QUANTITY: i64 = 100;
/// The most lines in one order.
pub const MAX_LINES: usize = 50;

/// An order's totals in minor units of its one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
}

/// Sums lines (`unit price × quantity`) and adds tax at `tax_rate` basis
/// points (see [`crate::tax`]).
pub fn totals(lines: &[(i64, i64)], tax_rate: u32) -> Totals {
    let subtotal = lines.iter().map(|(unit, qty)| unit.saturating_mul(*qty)).fold(0i64, i64::saturating_add);
    let tax = crate::tax::tax_at(tax_rate, subtotal);
    Totals { subtotal, tax, total: subtotal.saturating_add(tax) }
}

/// One line of an order, for refunds: its net amount and what was
/// given back for it already (0 while it is not refunded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefundableLine {
    pub line_total: i64,
    pub refunded: i64,
}

/// What refunding line `index` gives back: its net amount and its share of
/// the tax, proportional to its amount; the last line still open takes the
/// tax that is left, so the refunds of all lines add up to the total
/// exactly. `None` when there is no such line or it is refunded already.
pub fn line_refund(lines: &[RefundableLine], index: usize, subtotal: i64, tax: i64) -> Option<i64> {
    let line = lines.get(index).filter(|l| l.refunded == 0)?;
    let open = lines.iter().filter(|l| l.refunded == 0).count();
    let tax_refunded_before: i64 = lines.iter().filter(|l| l.refunded > 0).map(|l| l.refunded - l.line_total).sum();
    let tax_share = if open == 1 {
        tax - tax_refunded_before
    } else if subtotal > 0 {
        i64::try_from(i128::from(tax) * i128::from(line.line_total) / i128::from(subtotal)).unwrap_or(0)
    } else {
        0
    };
    Some(line.line_total + tax_share)
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Waiting for a bank transfer.
    Pending,
    Paid,
    /// Delivered: license keys issued, downloads available.
    Fulfilled,
    /// Held for a fraud review.
    OnHold,
    /// Refused at review; the payment is voided.
    Rejected,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Fulfilled => "fulfilled",
            OrderStatus::OnHold => "on_hold",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        [
            OrderStatus::Pending,
            OrderStatus::Paid,
            OrderStatus::Fulfilled,
            OrderStatus::OnHold,
            OrderStatus::Rejected,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// The moves the lifecycle allows: pending → paid → fulfilled; on_hold →
    /// paid or rejected; pending or on_hold → cancelled; paid or fulfilled →
    /// refunded.
    pub fn can_become(self, next: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, next),
            (Pending, Paid)
                | (Paid, Fulfilled)
                | (OnHold, Paid)
                | (OnHold, Rejected)
                | (Pending | OnHold, Cancelled)
                | (Paid | Fulfilled, Refunded)
        )
    }
}

/// A recorded move of an order, with who made it and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub at: Millis,
    pub actor: String,
    pub reason: String,
}

/// The calendar (year, month) of a moment, in UTC.
pub fn year_month(at: Millis) -> (i32, u8) {
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = at.0.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (i32::try_from(year).unwrap_or(i32::MAX), u8::try_from(month).unwrap_or(1))
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A moment as RFC 3339 in UTC, to the second (`2026-11-26T02:00:00Z`).
pub fn rfc3339_utc(at: Millis) -> String {
    let seconds = at.0.div_euclid(1000);
    let (year, month) = year_month(at);
    let day = seconds.div_euclid(86_400) - days_from_civil(i64::from(year), i64::from(month), 1) + 1;
    let in_day = seconds.rem_euclid(86_400);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", in_day / 3600, in_day % 3600 / 60, in_day % 60)
}

/// A day as people write it, in UTC: `11 December 2026`.
pub fn long_day_utc(at: Millis) -> String {
    let format = time::macros::format_description!("[day padding:none] [month repr:long] [year]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.0) * 1_000_000)
        .ok()
        .and_then(|moment| moment.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_card_problem_is_reported_at_once() {
        let fields = |p: Vec<OrderError>| p.into_iter().map(|e| e.field.unwrap_or_default()).collect::<Vec<_>>();
        assert_eq!(
            fields(card_problems("4242 4242 4242 4241", 13, 1999, "12", (2026, 11))),
            ["card.number", "card.exp_month", "card.exp_year", "card.cvc"]
        );
        let expired = card_problems("4242424242424242", 10, 2026, "123", (2026, 11));
        assert_eq!((expired.len(), expired[0].code), (1, "card_expired"));
        assert!(card_problems("4242424242424242", 12, 2030, "123", (2026, 11)).is_empty());
        assert!(check_card("4242424242424242", 12, 2030, "123", (2026, 11)).is_ok(), "the same card passes both");
    }

    #[test]
    fn a_day_is_written_as_people_write_it() {
        assert_eq!(long_day_utc(Millis(1_796_169_600_000)), "2 December 2026");
        assert_eq!(rfc3339_utc(Millis(1_796_169_600_000)), "2026-12-02T00:00:00Z");
    }

    fn refund_all(lines: &mut [RefundableLine], order: &[usize], subtotal: i64, tax: i64) -> Vec<i64> {
        let mut amounts = Vec::new();
        for &i in order {
            let amount = line_refund(lines, i, subtotal, tax).unwrap();
            lines[i].refunded = amount;
            amounts.push(amount);
        }
        amounts
    }

    #[test]
    fn line_refunds_share_the_tax_and_add_up_to_the_total_in_any_order() {
        // 19.99 + 15.00 + 0.01 net, 19% VAT rounded on the subtotal: 6.65.
        let line = |line_total| RefundableLine { line_total, refunded: 0 };
        let (subtotal, tax) = (3_500, 665);
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut lines = [line(1_999), line(1_500), line(1)];
            let amounts = refund_all(&mut lines, &order, subtotal, tax);
            assert_eq!(amounts.iter().sum::<i64>(), subtotal + tax, "order {order:?}: {amounts:?}");
            assert!(amounts.iter().zip(order).all(|(a, i)| *a >= lines[i].line_total), "never less than the net");
        }
        // 1999 × 665 / 3500 = 379.81 → 379.
        assert_eq!(line_refund(&[line(1_999), line(1_500), line(1)], 0, subtotal, tax), Some(1_999 + 379));
    }

    #[test]
    fn a_refunded_or_missing_line_gives_nothing_and_no_tax_means_the_net() {
        let lines =
            [RefundableLine { line_total: 1_000, refunded: 1_190 }, RefundableLine { line_total: 500, refunded: 0 }];
        assert_eq!(line_refund(&lines, 0, 1_500, 285), None, "refunded already");
        assert_eq!(line_refund(&lines, 7, 1_500, 285), None);
        assert_eq!(line_refund(&lines, 1, 1_500, 285), Some(500 + 95), "the last open line takes what is left");
        let untaxed =
            [RefundableLine { line_total: 700, refunded: 0 }, RefundableLine { line_total: 300, refunded: 0 }];
        assert_eq!(line_refund(&untaxed, 0, 1_000, 0), Some(700));
    }

    #[test]
    fn luhn_accepts_the_test_cards_and_refuses_a_typo() {
        for number in ["4242 4242 4242 4242", "4000-0000-0000-0002", "4000000000009235", "5555555555554444"] {
            assert!(luhn_valid(&card_digits(number).unwrap()), "{number}");
        }
        assert!(!luhn_valid("4242424242424241"));
        assert!(card_digits("4242 abcd").is_none());
    }

    #[test]
    fn card_check_keeps_only_brand_last_four_and_expiry() {
        let card = check_card("4242 4242 4242 4242", 12, 2030, "123", (2026, 11)).unwrap();
        assert_eq!(card, CardSummary { brand: "visa", last4: "4242".into(), exp_month: 12, exp_year: 2030 });
        assert_eq!(check_card("4242424242424241", 12, 2030, "123", (2026, 11)).unwrap_err().code, "card_invalid");
        let expired = check_card("4242424242424242", 10, 2026, "123", (2026, 11)).unwrap_err();
        assert_eq!((expired.code, expired.field.as_deref()), ("card_expired", Some("card.exp_year")));
        assert!(check_card("4242424242424242", 11, 2026, "123", (2026, 11)).is_ok(), "valid through its month");
        assert_eq!(
            check_card("4242424242424242", 13, 2030, "123", (2026, 11)).unwrap_err().field.unwrap(),
            "card.exp_month"
        );
        assert_eq!(check_card("4242424242424242", 12, 2030, "12a", (2026, 11)).unwrap_err().field.unwrap(), "card.cvc");
        // Messages never repeat the number.
        let e = check_card("4242424242424241", 12, 2030, "123", (2026, 11)).unwrap_err();
        assert!(!e.message.contains("4242"));
    }

    #[test]
    fn a_bank_account_needs_a_valid_iban_and_bic() {
        let demo = BankAccount::demo();
        assert_eq!(BankAccount::parse(&demo.holder, "de89370400440532013000", "cobadeffxxx"), Ok(demo));
        assert!(BankAccount::parse("Op", "DE89 3704 0044 0532 0130 01", "COBADEFF").unwrap_err().contains("IBAN"));
        assert!(BankAccount::parse("Op", "DE89 3704 0044 0532 0130", "COBADEFF").is_err(), "too short for DE");
        assert!(BankAccount::parse("Op", "DE89370400440532013000", "COBA").unwrap_err().contains("BIC"));
        assert!(BankAccount::parse(" ", "DE89370400440532013000", "COBADEFF").unwrap_err().contains("holder"));
    }

    #[test]
    fn totals_add_tax_at_the_rate() {
        assert_eq!(totals(&[(1999, 1)], 1900), Totals { subtotal: 1999, tax: 380, total: 2379 });
        assert_eq!(totals(&[(1999, 1), (900, 2)], 0), Totals { subtotal: 3799, tax: 0, total: 3799 });
    }

    #[test]
    fn lifecycle_allows_only_its_moves() {
        use OrderStatus::*;
        assert!(Pending.can_become(Paid) && Paid.can_become(Fulfilled) && OnHold.can_become(Rejected));
        assert!(Fulfilled.can_become(Refunded));
        assert!(!Fulfilled.can_become(Pending) && !Rejected.can_become(Paid) && !Refunded.can_become(Fulfilled));
        for s in ["pending", "paid", "fulfilled", "on_hold", "rejected", "cancelled", "refunded"] {
            assert_eq!(OrderStatus::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn year_month_of_known_days() {
        assert_eq!(year_month(Millis(0)), (1970, 1));
        // 2026-11-26T02:00:00Z
        assert_eq!(year_month(Millis(1_795_658_400_000)), (2026, 11));
        // 2024-02-29T12:00:00Z
        assert_eq!(year_month(Millis(1_709_208_000_000)), (2024, 2));
        assert_eq!(rfc3339_utc(Millis(1_709_208_000_000)), "2024-02-29T12:00:00Z");
        assert_eq!(rfc3339_utc(Millis(1_795_658_405_999)), "2026-11-26T02:00:05Z");
        assert_eq!(rfc3339_utc(Millis(0)), "1970-01-01T00:00:00Z");
    }
}
