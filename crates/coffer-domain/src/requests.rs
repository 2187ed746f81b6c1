//! Written data-subject requests (GDPR Art. 15-17, 20; LGPD Art. 18) and
//! their legal deadlines.

use crate::Millis;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Access,
    Rectification,
    Erasure,
}

impl RequestKind {
    pub fn parse(s: &str) -> Option<RequestKind> {
        match s {
            "access" => Some(RequestKind::Access),
            "rectification" => Some(RequestKind::Rectification),
            "erasure" => Some(RequestKind::Erasure),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Rectification => "rectification",
            RequestKind::Erasure => "erasure",
        }
    }

    /// In words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            RequestKind::Access => "a copy of your data",
            RequestKind::Rectification => "a correction of your data",
            RequestKind::Erasure => "the erasure of your data",
        }
    }
}

/// Whose law sets the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jurisdiction {
    /// GDPR: one month (counted here as 30 days).
    Eu,
    /// LGPD: 15 days.
    Brazil,
    /// Elsewhere we answer within the GDPR's month as well.
    Other,
}

impl Jurisdiction {
    pub fn parse(s: &str) -> Option<Jurisdiction> {
        match s {
            "eu" => Some(Jurisdiction::Eu),
            "br" => Some(Jurisdiction::Brazil),
            "other" => Some(Jurisdiction::Other),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Jurisdiction::Eu => "eu",
            Jurisdiction::Brazil => "br",
            Jurisdiction::Other => "other",
        }
    }

    /// The answer is due this long after the requester's identity is confirmed.
    pub fn deadline(self, confirmed_at: Millis) -> Millis {
        let days = match self {
            Jurisdiction::Brazil => 15,
            Jurisdiction::Eu | Jurisdiction::Other => 30,
        };
        confirmed_at.plus_ms(days * DAY_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_law() {
        assert_eq!(Jurisdiction::Brazil.deadline(Millis(0)), Millis(15 * DAY_MS));
        assert_eq!(Jurisdiction::Eu.deadline(Millis(0)), Millis(30 * DAY_MS));
        assert_eq!(Jurisdiction::parse("br"), Some(Jurisdiction::Brazil));
        assert_eq!(Jurisdiction::parse("mars"), None);
        assert_eq!(RequestKind::parse("erasure").map(RequestKind::as_str), Some("erasure"));
        assert_eq!(RequestKind::parse("sell"), None);
    }
}
