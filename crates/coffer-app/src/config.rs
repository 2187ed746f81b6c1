//! The one configuration type. The binary fills it from defaults, then
//! `coffer.toml`, then `COFFER_*` environment variables, then command-line
//! flags (later sources win), and calls [`Config::validate`].

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { setting, reason: reason.into() }
}

/// A list setting: a list in `coffer.toml`, or one comma-separated string
/// (as an environment variable gives it).
fn list_or_commas<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        Commas(String),
    }
    let items = match ListOrString::deserialize(deserializer)? {
        ListOrString::List(items) => items,
        ListOrString::Commas(text) => text.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .map(|item| item.parse().map_err(|e| serde::de::Error::custom(format!("`{item}`: {e}"))))
        .collect()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SQLite file, mail and file folders.
    pub data_dir: PathBuf,
    /// Master key and key store; `<data_dir>.keys` when unset.
    pub key_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`; the SQLite file in `data_dir` when unset.
    pub database_url: Option<String>,
    /// `postgres://…` for a shared key store; a SQLite file in `key_dir` when unset.
    pub key_store_url: Option<String>,
    pub listen: SocketAddr,
    /// The address people open (e.g. `https://shop.example.com`), used in
    /// emailed links and the links `coffer staff add` prints; the listening
    /// address when unset.
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `coffer_web=debug,info`.
    pub log_level: String,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub keys: KeysConfig,
    pub audit: AuditConfig,
    pub mail: MailConfig,
    pub operator: OperatorConfig,
    pub fraud: FraudConfig,
    pub tls: TlsConfig,
    pub webhooks: WebhooksConfig,
    pub vendors: VendorsConfig,
}

/// Outgoing webhook deliveries.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Lets endpoints be plain http or resolve to private, loopback or
    /// link-local addresses (tests and local development only).
    pub allow_private: bool,
    /// How long one attempt may take.
    pub timeout_ms: u64,
    /// How much of a receiver's answer is read.
    pub max_response_bytes: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig { allow_private: false, timeout_ms: 10_000, max_response_bytes: 64 * 1024 }
    }
}

/// What the operator keeps of vendors' sales.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VendorsConfig {
    /// The operator's fee in basis points of the net price (1000 = 10 %).
    pub fee_basis_points: u32,
    /// Fees of particular vendors, by slug.
    pub fee_overrides: std::collections::BTreeMap<String, u32>,
    /// The largest download file a vendor may upload.
    pub max_upload_bytes: usize,
}

impl Default for VendorsConfig {
    fn default() -> Self {
        VendorsConfig {
            fee_basis_points: 1_000,
            fee_overrides: std::collections::BTreeMap::new(),
            max_upload_bytes: 64 * 1024 * 1024,
        }
    }
}

impl VendorsConfig {
    /// The fee of the vendor with this slug, in basis points.
    pub fn fee_of(&self, slug: &str) -> u32 {
        self.fee_overrides.get(slug).copied().unwrap_or(self.fee_basis_points)
    }

    /// Refuses a fee over 100 %.
    pub fn check(&self) -> Result<(), &'static str> {
        let too_high = |bp: u32| bp > 10_000;
        if too_high(self.fee_basis_points) || self.fee_overrides.values().copied().any(too_high) {
            return Err("vendors.fee_basis_points");
        }
        Ok(())
    }
}

/// Built-in HTTPS: both files set turns it on (TLS 1.2 and 1.3 only).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Read again on SIGHUP.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Read again on SIGHUP.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

/// Where outgoing email goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// One `.eml` file per message in `<data_dir>/mail` (the default).
    #[default]
    File,
    /// An SMTP server: `mail.smtp_url`.
    Smtp,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// `smtps://user:password@host:465` (TLS), `smtp://user:password@host:587?tls=required`
    /// (STARTTLS) or `smtp://host:25` (plain, for a local relay). Held as a
    /// secret: it may carry a password.
    pub smtp_url: Option<SecretString>,
    /// The sender of every message.
    pub from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig { transport: MailTransport::File, smtp_url: None, from: "Coffer <no-reply@coffer.invalid>".into() }
    }
}

/// Who runs this shop: the seller on every invoice (merchant of record)
/// and the controller named in the privacy policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperatorConfig {
    pub name: String,
    pub postal_address: String,
    /// The data protection officer's address, published in the policy.
    pub dpo_email: String,
    /// Rows added to the shipped VAT table (`coffer-domain/data/vat-rates.csv`):
    /// a rate change ahead of a release, a correction, or a country the
    /// operator must charge. Catalog prices are net.
    pub tax_rates: Vec<TaxRateConfig>,
    /// The account buyers pay bank transfers into. Without one, bank
    /// transfer is not offered (a demo server shows a demo account).
    pub bank: Option<BankAccountConfig>,
    /// Days an order waits for its bank transfer before it is cancelled
    /// and the buyer told.
    pub transfer_expiry_days: u32,
    /// The operator's VAT identification number, printed on every invoice
    /// (`serve --demo` shows a demo one when none is set).
    pub vat_number: Option<String>,
}

impl OperatorConfig {
    /// The shipped VAT table with the configured rows added.
    pub fn tax_table(&self) -> Result<coffer_domain::TaxTable, ConfigError> {
        let rows = self
            .tax_rates
            .iter()
            .map(|row| coffer_domain::TaxRateRow::parse(&row.country, row.rate, &row.from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| invalid("operator.tax_rates", problem))?;
        Ok(coffer_domain::TaxTable::new(rows))
    }

    /// The configured bank account, checked (IBAN checksum, BIC shape).
    pub fn bank_account(&self) -> Result<Option<coffer_domain::BankAccount>, ConfigError> {
        self.bank
            .as_ref()
            .map(|bank| coffer_domain::BankAccount::parse(&bank.holder, &bank.iban, &bank.bic))
            .transpose()
            .map_err(|problem| invalid("operator.bank", problem))
    }
}

/// One `[[operator.tax_rates]]` row: `country = "PT"`, `rate = 2300`
/// (basis points), `from = "2027-01-01"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxRateConfig {
    pub country: String,
    pub rate: u32,
    pub from: String,
}

/// `[operator.bank]`: where bank transfers go, shown to every buyer who
/// pays by transfer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankAccountConfig {
    pub holder: String,
    pub iban: String,
    pub bic: String,
}

impl BankAccountConfig {
    /// What a demo server shows when no account is configured.
    pub fn demo() -> Self {
        let demo = coffer_domain::BankAccount::demo();
        BankAccountConfig { holder: demo.holder, iban: demo.iban, bic: demo.bic }
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            name: "Coffer Demo Operator".into(),
            postal_address: "Example Street 1, 10115 Berlin, Germany".into(),
            dpo_email: "dpo@coffer.invalid".into(),
            tax_rates: Vec::new(),
            bank: None,
            transfer_expiry_days: 14,
            vat_number: None,
        }
    }
}

/// The fraud screen's weights. The defaults keep CONTRACT.md's test cards
/// behaving as documented (they are never screened).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FraudConfig {
    /// Orders scoring this much or more are held for a reviewer.
    pub hold_at: u32,
    pub window_minutes: u32,
    pub max_per_email: u32,
    pub max_per_card: u32,
    pub max_per_ip: u32,
    /// Totals at or above this (minor units, any currency) add to the score.
    pub large_amount_minor: i64,
    /// IP ranges (CIDR) and their ISO country, e.g. `"203.0.113.0/24" = "AU"`.
    pub ip_countries: std::collections::BTreeMap<String, String>,
    /// Failed payments allowed per client address, email and card within
    /// `failed_payments_window_minutes`; 0 = no limit.
    pub failed_payments_max: u32,
    pub failed_payments_window_minutes: u32,
}

impl Default for FraudConfig {
    fn default() -> Self {
        let d = coffer_domain::fraud::FraudSettings::default();
        FraudConfig {
            hold_at: d.hold_at,
            window_minutes: u32::try_from(d.window_ms / 60_000).unwrap_or(60),
            max_per_email: d.max_per_email,
            max_per_card: d.max_per_card,
            max_per_ip: d.max_per_ip,
            large_amount_minor: d.large_amount_minor,
            ip_countries: std::collections::BTreeMap::new(),
            failed_payments_max: d.failed_payments_max,
            failed_payments_window_minutes: u32::try_from(d.failed_payments_window_ms / 60_000).unwrap_or(10),
        }
    }
}

impl FraudConfig {
    /// The screen's settings; ranges were checked by `Config::validate`.
    pub fn settings(&self) -> coffer_domain::fraud::FraudSettings {
        coffer_domain::fraud::FraudSettings {
            hold_at: self.hold_at,
            window_ms: i64::from(self.window_minutes) * 60_000,
            max_per_email: self.max_per_email,
            max_per_card: self.max_per_card,
            max_per_ip: self.max_per_ip,
            large_amount_minor: self.large_amount_minor,
            ip_countries: self
                .ip_countries
                .iter()
                .filter_map(|(net, country)| Some((net.parse().ok()?, country.to_ascii_uppercase())))
                .collect(),
            failed_payments_max: self.failed_payments_max,
            failed_payments_window_ms: i64::from(self.failed_payments_window_minutes) * 60_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Days a retired master key version is kept before its file is
    /// destroyed: as long as key-store backups are kept, no longer.
    pub retired_key_retention_days: u32,
    /// Wraps a server re-wraps per batch in the background after `keys activate`.
    pub rewrap_batch: u32,
    /// After each batch the re-wrap rests this many times as long as the
    /// batch took, leaving CPU for requests (docs/benchmarks.md).
    pub rewrap_rest: f64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig { retired_key_retention_days: 30, rewrap_batch: 4_000, rewrap_rest: 2.0 }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// How often the audit chain head is signed into the key store.
    pub sign_interval_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { sign_interval_ms: 60_000 }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
    /// A request still running after this long is answered 408.
    pub request_timeout_ms: u64,
    /// Requests handled at once; more wait their turn.
    pub concurrency_limit: usize,
    /// How old a cached public catalog answer may be; 0 turns the cache off.
    pub catalog_cache_ms: u64,
    /// Sign-in, link and password attempts per minute from one IP address
    /// (per server; the per-account lock-out is in the database).
    pub sign_in_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` is believed (exact addresses; in the
    /// environment, comma-separated).
    #[serde(deserialize_with = "list_or_commas")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Order attempts (API and checkout page) per minute from one client
    /// address (an IPv6 /64), per server; 0 = no limit (load tests).
    pub orders_per_minute: u32,
    /// Vendor API requests per minute and API key, per server.
    pub vendor_api_per_minute: u32,
    /// License checks (`POST /api/v1/licenses/verify`) per minute from one
    /// client address (an IPv6 /64), per server; 0 = no limit.
    pub license_verify_per_minute: u32,
    /// Networks (CIDR) the staff pages and staff API answer to; others get
    /// 404. Empty: open to every network (set it in production).
    #[serde(deserialize_with = "list_or_commas")]
    pub staff_networks: Vec<ipnet::IpNet>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    pub sqlite_readers: u32,
    pub postgres_connections: u32,
    pub write_batch_max: usize,
    pub busy_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./coffer-data"),
            key_dir: None,
            database_url: None,
            key_store_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            keys: KeysConfig::default(),
            audit: AuditConfig::default(),
            mail: MailConfig::default(),
            operator: OperatorConfig::default(),
            fraud: FraudConfig::default(),
            tls: TlsConfig::default(),
            webhooks: WebhooksConfig::default(),
            vendors: VendorsConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit_bytes: 1024 * 1024,
            request_timeout_ms: 30_000,
            concurrency_limit: 1024,
            catalog_cache_ms: 1_000,
            sign_in_per_minute: 20,
            trusted_proxies: Vec::new(),
            orders_per_minute: 120,
            vendor_api_per_minute: 600,
            license_verify_per_minute: 60,
            staff_networks: Vec::new(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { sqlite_readers: 8, postgres_connections: 16, write_batch_max: 256, busy_timeout_ms: 5_000 }
    }
}

/// The top-level settings, as named in `coffer.toml` and (upper-cased, with
/// a `COFFER_` prefix) in the environment.
pub const SETTINGS: &[&str] = &[
    "data_dir",
    "key_dir",
    "database_url",
    "key_store_url",
    "listen",
    "public_url",
    "log_format",
    "log_level",
    "http",
    "database",
    "keys",
    "audit",
    "mail",
    "operator",
    "fraud",
    "tls",
    "webhooks",
    "vendors",
];

impl Config {
    /// Where people reach this server: `public_url`, or the listening
    /// address (`listening`, once bound; `listen` before).
    pub fn base_url(&self, listening: Option<SocketAddr>) -> String {
        let scheme = if self.tls.enabled() { "https" } else { "http" };
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{scheme}://{}", listening.unwrap_or(self.listen)),
        }
    }

    /// Whether clients reach the server over TLS: built in, or a TLS proxy
    /// in front (`public_url` on https with trusted proxies). Cookies then
    /// take the `__Host-` prefix and answers carry HSTS.
    pub fn secure_transport(&self) -> bool {
        self.tls.enabled()
            || (self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
                && !self.http.trusted_proxies.is_empty())
    }

    pub fn key_dir(&self) -> PathBuf {
        self.key_dir.clone().unwrap_or_else(|| {
            let mut name = self.data_dir.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "coffer-data".into());
            name.push(".keys");
            self.data_dir.with_file_name(name)
        })
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("coffer.db").display()))
    }

    /// The key store's URL: `key_store_url`, or a SQLite file in the key directory.
    pub fn key_store_url(&self) -> String {
        self.key_store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.key_dir().join("keystore.db").display()))
    }

    pub fn uses_embedded_sqlite(&self) -> bool {
        self.database_url.is_none()
    }

    /// Checks what serde cannot: relations between settings and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_places()?;
        self.check_operator()?;
        self.check_http()?;
        self.check_storage()?;
        if let Err(setting) = self.vendors.check() {
            return Err(invalid(setting, "must be at most 10000 (100 %)"));
        }
        if self.webhooks.timeout_ms == 0 || self.webhooks.timeout_ms > 60_000 {
            return Err(invalid("webhooks.timeout_ms", "must be 1 to 60000"));
        }
        self.check_background_work()
    }

    /// Where data, keys and the public address live: data and keys apart, URLs of a kind we serve.
    fn check_places(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let data = absolute(&self.data_dir);
        let keys = absolute(&self.key_dir());
        if keys.starts_with(&data) {
            return Err(invalid("key_dir", "must not be inside data_dir: keys never travel with data backups"));
        }
        if data.starts_with(&keys) {
            return Err(invalid("data_dir", "must not be inside key_dir"));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(invalid("database_url", "must start with sqlite:, postgres:// or postgresql://"));
        }
        if let Some(url) = &self.key_store_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(invalid("key_store_url", "must start with postgres:// or postgresql://"));
        }
        if self.key_store_url.is_some() && self.key_store_url == self.database_url {
            return Err(invalid(
                "key_store_url",
                "must name a different database from database_url: keys never live with the data",
            ));
        }
        if let Some(url) = &self.public_url
            && !((url.starts_with("https://") || url.starts_with("http://"))
                && url.len() > 8
                && !url.contains(char::is_whitespace))
        {
            return Err(invalid("public_url", "must be an http:// or https:// address"));
        }
        Ok(())
    }

    /// The operator's name, DPO, tax rates and fraud settings.
    fn check_operator(&self) -> Result<(), ConfigError> {
        self.operator.tax_table()?;
        self.operator.bank_account()?;
        if self.operator.vat_number.as_ref().is_some_and(|n| {
            let n = n.trim();
            !(4..=20).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
        }) {
            return Err(invalid("operator.vat_number", "needs 4 to 20 letters and digits, such as DE123456789"));
        }
        if !(1..=90).contains(&self.operator.transfer_expiry_days) {
            return Err(invalid("operator.transfer_expiry_days", "must be between 1 and 90"));
        }
        if self.fraud.ip_countries.iter().any(|(net, country)| {
            net.parse::<ipnet::IpNet>().is_err()
                || country.to_ascii_uppercase().parse::<iso_country::Country>().is_err()
        }) {
            return Err(invalid("fraud.ip_countries", "needs CIDR ranges (203.0.113.0/24) and ISO country codes"));
        }
        if self.fraud.window_minutes == 0 {
            return Err(invalid("fraud.window_minutes", "must be at least 1"));
        }
        if self.operator.name.trim().is_empty() || !self.operator.dpo_email.contains('@') {
            return Err(invalid("operator", "needs a name and the DPO's email address"));
        }
        Ok(())
    }

    /// The HTTP server's limits and its TLS files.
    fn check_http(&self) -> Result<(), ConfigError> {
        if self.http.body_limit_bytes == 0 {
            return Err(invalid("http.body_limit_bytes", "must be at least 1"));
        }
        if self.http.request_timeout_ms == 0 {
            return Err(invalid("http.request_timeout_ms", "must be at least 1"));
        }
        if self.http.sign_in_per_minute == 0 {
            return Err(invalid("http.sign_in_per_minute", "must be at least 1"));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(invalid(
                "tls",
                "set both tls.cert_file and tls.key_file (--tls-cert and --tls-key), or neither",
            ));
        }
        if self.http.vendor_api_per_minute == 0 {
            return Err(invalid("http.vendor_api_per_minute", "must be at least 1"));
        }
        if self.http.concurrency_limit == 0 {
            return Err(invalid("http.concurrency_limit", "must be at least 1"));
        }
        Ok(())
    }

    /// Database connections and the key re-wrap's pace.
    fn check_storage(&self) -> Result<(), ConfigError> {
        if self.database.sqlite_readers == 0 {
            return Err(invalid("database.sqlite_readers", "must be at least 1"));
        }
        if self.database.postgres_connections < 2 {
            return Err(invalid("database.postgres_connections", "must be at least 2"));
        }
        if self.keys.rewrap_batch == 0 {
            return Err(invalid("keys.rewrap_batch", "must be at least 1"));
        }
        if !(0.0..=100.0).contains(&self.keys.rewrap_rest) {
            return Err(invalid("keys.rewrap_rest", "must be between 0 and 100"));
        }
        Ok(())
    }

    /// Mail, audit signing and the writer's batches.
    fn check_background_work(&self) -> Result<(), ConfigError> {
        if self.mail.transport == MailTransport::Smtp && self.mail.smtp_url.is_none() {
            return Err(invalid("mail.smtp_url", "is required when mail.transport is smtp"));
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid("mail.from", "must be an address like \"Shop <no-reply@example.com>\""));
        }
        if self.audit.sign_interval_ms == 0 {
            return Err(invalid("audit.sign_interval_ms", "must be at least 1"));
        }
        if self.database.write_batch_max == 0 {
            return Err(invalid("database.write_batch_max", "must be at least 1"));
        }
        Ok(())
    }
}

/// The path made absolute and stripped of `.` and `..` parts, without
/// touching the file system (the directories may not exist yet).
fn absolute(path: &Path) -> PathBuf {
    let joined = std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_keys_sit_beside_data() {
        let config = Config::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.key_dir(), PathBuf::from("./coffer-data.keys"));
        assert_eq!(config.database_url(), "sqlite://./coffer-data/coffer.db?mode=rwc");
    }

    #[test]
    fn key_dir_inside_data_dir_is_refused() {
        let config = Config { key_dir: Some("./coffer-data/keys".into()), ..Config::default() };
        assert_eq!(config.validate().map_err(|e| e.setting), Err("key_dir"));
        let sneaky = Config { key_dir: Some("./x/../coffer-data/k".into()), ..Config::default() };
        assert_eq!(sneaky.validate().map_err(|e| e.setting), Err("key_dir"));
    }

    #[test]
    fn bad_values_name_their_setting() {
        let mut config = Config { database_url: Some("mysql://x".into()), ..Config::default() };
        assert_eq!(config.validate().map_err(|e| e.setting), Err("database_url"));
        config = Config::default();
        config.http.concurrency_limit = 0;
        assert_eq!(config.validate().map_err(|e| e.setting), Err("http.concurrency_limit"));
    }

    #[test]
    fn key_store_never_shares_the_data_database() {
        let url = Some("postgres://db.example/coffer".to_owned());
        let config = Config { database_url: url.clone(), key_store_url: url, ..Config::default() };
        assert_eq!(config.validate().map_err(|e| e.setting), Err("key_store_url"));
        let apart = Config {
            database_url: Some("postgres://db.example/coffer".into()),
            key_store_url: Some("postgres://keys.example/coffer_keys".into()),
            ..Config::default()
        };
        assert_eq!(apart.validate(), Ok(()));
    }
}
