//! Fraud screening as a pure, explainable function: the signals of one
//! order in, a score and its reasons out. Above the threshold the order is
//! held for a reviewer. Every reason is a stable code a reviewer can read.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::OnceLock;

/// How the screen weighs things; the defaults keep the contract's test
/// cards behaving as documented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FraudSettings {
    /// Orders at or above this score are held.
    pub hold_at: u32,
    /// The window of the velocity counts.
    pub window_ms: i64,
    /// More attempts than this within the window counts against the order.
    pub max_per_email: u32,
    pub max_per_card: u32,
    pub max_per_ip: u32,
    /// An order total at or above this many minor units adds to the score.
    pub large_amount_minor: i64,
    /// IP ranges with their ISO country, for the country checks.
    pub ip_countries: Vec<(ipnet::IpNet, String)>,
    /// Failed payments (declined, invalid or expired cards) allowed per
    /// client address, email and card within `failed_payments_window_ms`
    /// before orders from it are refused; 0 = no limit.
    pub failed_payments_max: u32,
    pub failed_payments_window_ms: i64,
}

impl Default for FraudSettings {
    fn default() -> Self {
        FraudSettings {
            hold_at: 60,
            window_ms: 60 * 60 * 1000,
            max_per_email: 5,
            max_per_card: 5,
            max_per_ip: 20,
            large_amount_minor: 100_000,
            ip_countries: Vec::new(),
            failed_payments_max: 10,
            failed_payments_window_ms: 10 * 60 * 1000,
        }
    }
}

/// What is known about one order when it is screened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FraudSignals {
    /// Earlier attempts within the window (test cards not counted).
    pub attempts_by_email: u32,
    pub attempts_by_card: u32,
    pub attempts_by_ip: u32,
    pub billing_country: String,
    /// From the card's BIN, when known.
    pub card_country: Option<String>,
    /// From the configured ranges; loopback and unknown addresses give none.
    pub ip_country: Option<String>,
    pub amount_minor: i64,
    pub email_domain: String,
}

/// The screen's answer: the score, why, and whether to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FraudVerdict {
    pub score: u32,
    pub reasons: Vec<&'static str>,
    pub hold: bool,
}

pub fn screen(signals: &FraudSignals, settings: &FraudSettings) -> FraudVerdict {
    let mut score = 0;
    let mut reasons = Vec::new();
    let mut add = |points: u32, reason: &'static str| {
        score += points;
        reasons.push(reason);
    };
    if signals.attempts_by_email >= settings.max_per_email {
        add(40, "velocity_email");
    }
    if signals.attempts_by_card >= settings.max_per_card {
        add(40, "velocity_card");
    }
    if signals.attempts_by_ip >= settings.max_per_ip {
        add(30, "velocity_ip");
    }
    let billing = signals.billing_country.to_ascii_uppercase();
    if signals.card_country.as_deref().is_some_and(|c| !c.eq_ignore_ascii_case(&billing)) {
        add(30, "card_country_differs_from_billing");
    }
    if signals.ip_country.as_deref().is_some_and(|c| !c.eq_ignore_ascii_case(&billing)) {
        add(20, "ip_country_differs_from_billing");
    }
    if signals.amount_minor >= settings.large_amount_minor {
        add(20, "large_amount");
    }
    if is_disposable(&signals.email_domain) {
        add(40, "disposable_email_domain");
    }
    FraudVerdict { hold: score >= settings.hold_at, score, reasons }
}

/// The country of an IP address by the configured ranges. Loopback,
/// private and unknown addresses have none (and so never mismatch).
pub fn ip_country(ip: IpAddr, settings: &FraudSettings) -> Option<String> {
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    settings
        .ip_countries
        .iter()
        .filter(|(net, _)| net.contains(&ip))
        .max_by_key(|(net, _)| net.prefix_len())
        .map(|(_, c)| c.clone())
}

/// The issuing country of the simulated gateway's card ranges (BINs).
pub fn card_country(digits: &str) -> Option<&'static str> {
    const BINS: &[(&str, &str)] = &[
        ("4000002760000016", "DE"),
        ("4000000760000002", "BR"),
        ("4000008260000000", "GB"),
        ("4000002500000003", "FR"),
        ("424242", "US"),
        ("555555", "US"),
        ("400000", "US"),
    ];
    BINS.iter().find(|(prefix, _)| digits.starts_with(prefix)).map(|(_, country)| *country)
}

/// Whether a domain (or a parent of it) is on the shipped list of
/// disposable email providers.
pub fn is_disposable(domain: &str) -> bool {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let list = LIST.get_or_init(|| {
        include_str!("../data/disposable_domains.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    });
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let mut rest = domain.as_str();
    loop {
        if list.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> FraudSignals {
        FraudSignals {
            billing_country: "DE".into(),
            amount_minor: 2379,
            email_domain: "example.org".into(),
            ..FraudSignals::default()
        }
    }

    #[test]
    fn a_clean_order_passes_with_no_reasons() {
        let verdict = screen(&clean(), &FraudSettings::default());
        assert_eq!(verdict, FraudVerdict { score: 0, reasons: vec![], hold: false });
    }

    #[test]
    fn each_signal_gives_its_reason_and_enough_of_them_hold() {
        let settings = FraudSettings::default();
        let disposable = FraudSignals { email_domain: "mailinator.com".into(), ..clean() };
        assert_eq!(screen(&disposable, &settings).reasons, ["disposable_email_domain"]);
        let mismatch = FraudSignals { card_country: Some("BR".into()), ip_country: Some("GB".into()), ..clean() };
        let verdict = screen(&mismatch, &settings);
        assert_eq!(verdict.reasons, ["card_country_differs_from_billing", "ip_country_differs_from_billing"]);
        assert_eq!((verdict.score, verdict.hold), (50, false));
        let busy = FraudSignals { attempts_by_email: 5, attempts_by_card: 5, ..clean() };
        let verdict = screen(&busy, &settings);
        assert_eq!((verdict.score, verdict.hold), (80, true));
        assert_eq!(verdict.reasons, ["velocity_email", "velocity_card"]);
        let same_country = FraudSignals { card_country: Some("de".into()), ..clean() };
        assert!(screen(&same_country, &settings).reasons.is_empty());
    }

    #[test]
    fn loopback_and_unknown_addresses_have_no_country() {
        let settings = FraudSettings {
            ip_countries: vec![
                ("203.0.113.0/24".parse().unwrap(), "AU".into()),
                ("203.0.113.128/25".parse().unwrap(), "NZ".into()),
            ],
            ..FraudSettings::default()
        };
        assert_eq!(ip_country("127.0.0.1".parse().unwrap(), &settings), None);
        assert_eq!(ip_country("::1".parse().unwrap(), &settings), None);
        assert_eq!(ip_country("198.51.100.7".parse().unwrap(), &settings), None);
        assert_eq!(ip_country("203.0.113.7".parse().unwrap(), &settings).as_deref(), Some("AU"));
        assert_eq!(
            ip_country("203.0.113.200".parse().unwrap(), &settings).as_deref(),
            Some("NZ"),
            "the narrowest range"
        );
    }

    #[test]
    fn disposable_domains_and_their_subdomains_are_known() {
        assert!(is_disposable("mailinator.com"));
        assert!(is_disposable("Eu.Mailinator.com."));
        assert!(!is_disposable("example.org"));
        assert!(!is_disposable("com"));
        assert_eq!(card_country("4242424242424242"), Some("US"));
        assert_eq!(card_country("4000002760000016"), Some("DE"));
        assert_eq!(card_country("6011000000000004"), None);
    }
}
