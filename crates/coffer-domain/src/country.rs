//! Countries by the names buyers know them by, for the country select
//! (ISO 3166-1 alpha-2 codes are the values the forms send).

/// Where the ISO list's formal name is not what a buyer looks for.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("BN", "Brunei"),
    ("BO", "Bolivia"),
    ("CD", "Congo (Democratic Republic)"),
    ("CZ", "Czechia"),
    ("FK", "Falkland Islands"),
    ("FM", "Micronesia"),
    ("GB", "United Kingdom"),
    ("IR", "Iran"),
    ("KP", "North Korea"),
    ("KR", "South Korea"),
    ("LA", "Laos"),
    ("MD", "Moldova"),
    ("MK", "North Macedonia"),
    ("PS", "Palestine"),
    ("RU", "Russia"),
    ("SY", "Syria"),
    ("SZ", "Eswatini"),
    ("TR", "Türkiye"),
    ("TW", "Taiwan"),
    ("TZ", "Tanzania"),
    ("US", "United States"),
    ("VA", "Vatican City"),
    ("VE", "Venezuela"),
    ("VG", "British Virgin Islands"),
    ("VI", "U.S. Virgin Islands"),
    ("VN", "Vietnam"),
];

/// The name of an ISO country code (any case), or `None` for a code that
/// is not a country.
pub fn name_of(code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_uppercase();
    if let Some((_, name)) = SHORT_NAMES.iter().find(|(c, _)| *c == code) {
        return Some(name);
    }
    let country: iso_country::Country = code.parse().ok()?;
    Some(country.name()).filter(|name| !name.is_empty())
}

/// Every country as (code, name), sorted by name as a person reads it
/// (accents ignored: Åland sits with the A's).
pub fn all_by_name() -> Vec<(&'static str, &'static str)> {
    let mut all: Vec<(&'static str, &'static str)> =
        iso_country::data::all().into_iter().filter_map(|c| Some((c.alpha2, name_of(c.alpha2)?))).collect();
    all.sort_by_cached_key(|(_, name)| sort_key(name));
    all.dedup_by_key(|(code, _)| *code);
    all
}

fn sort_key(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'Å' | 'Ä' | 'Á' => 'A',
            'Ç' => 'C',
            'É' => 'E',
            'Ö' | 'Ô' => 'O',
            'Ü' => 'U',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_readable_name() {
        let all = all_by_name();
        assert!(all.len() >= 245, "{}", all.len());
        assert_eq!(name_of("de"), Some("Germany"));
        assert_eq!(name_of("GB"), Some("United Kingdom"));
        assert_eq!(name_of("TW"), Some("Taiwan"));
        assert_eq!(name_of("Ge"), Some("Georgia"));
        assert_eq!(name_of("XX"), None);
        assert!(
            all.iter().all(|(_, name)| !name.contains('[') && !name.contains('(')
                || name.contains("Congo")
                || name.contains("Keeling")
                || name.contains("part)")),
            "short names only"
        );
        let codes: std::collections::BTreeSet<_> = all.iter().map(|(code, _)| code).collect();
        assert_eq!(codes.len(), all.len(), "each code once");
        let position = |code| all.iter().position(|(c, _)| *c == code).unwrap();
        assert!(position("AX") < position("AL"), "Åland sorts as Aland");
        assert!(position("DE") < position("GH"), "by name, not by code");
    }
}
