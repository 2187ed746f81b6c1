//! The operator's privacy policy: one text, written for Coffer, with the
//! operator's name and DPO from configuration. Its version is a hash of
//! the text, so any change is a new version; every version is kept in the
//! database and an order records the one consented to.

use askama::Template;
use coffer_app::config::OperatorConfig;

#[derive(Template)]
#[template(path = "privacy_policy_body.html")]
struct PolicyBody<'a> {
    operator: &'a str,
    postal_address: &'a str,
    dpo_email: &'a str,
}

/// The current policy: its version and its HTML (a fragment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyPolicy {
    pub version: String,
    pub html: String,
    /// The operator the policy names (the seller on every invoice).
    pub operator_name: String,
    pub operator_address: String,
    /// The day this version was first published (`27 November 2026`);
    /// empty until it is.
    pub published: String,
}

impl PrivacyPolicy {
    /// The policy as it was first published on `at`.
    pub fn published_on(self, at: coffer_domain::Millis) -> Self {
        PrivacyPolicy { published: coffer_domain::order::long_day_utc(at), ..self }
    }

    /// How people name this version: its date and a short form of the
    /// version (`of 27 November 2026, a1b2c3d4`); the full version is what
    /// orders record.
    pub fn name(&self) -> String {
        let short: String = self.version.chars().take(8).collect();
        if self.published.is_empty() { short } else { format!("of {}, {short}", self.published) }
    }
}

pub fn privacy_policy(operator: &OperatorConfig) -> PrivacyPolicy {
    let html = PolicyBody {
        operator: &operator.name,
        postal_address: &operator.postal_address,
        dpo_email: &operator.dpo_email,
    }
    .render()
    .unwrap_or_default();
    PrivacyPolicy {
        version: coffer_app::checkout::policy_version(&html),
        html,
        operator_name: operator.name.clone(),
        operator_address: operator.postal_address.clone(),
        published: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_follows_the_text() {
        let operator = OperatorConfig::default();
        let first = privacy_policy(&operator);
        assert_eq!(first, privacy_policy(&operator), "the same text, the same version");
        assert_eq!(first.version.len(), 16);
        assert!(first.html.contains(&operator.dpo_email) && first.html.contains(&operator.name));
        let renamed = OperatorConfig { name: "Another Operator".into(), ..operator };
        assert_ne!(privacy_policy(&renamed).version, first.version);
    }
}
