//! Outgoing webhook deliveries: one signed POST per attempt.
//!
//! A vendor chooses the URL, so the sender must not become a way into the
//! server's own network (SSRF). Two guards, both on by default:
//! - [`check_webhook_url`] refuses a URL that is not `https`, carries
//!   credentials, or names a non-public IP address literal; it runs when the
//!   endpoint is saved and again before every attempt.
//! - The client resolves host names itself ([`reqwest::dns::Resolve`]) and
//!   drops every non-public address before connecting, so the check holds
//!   for the addresses actually connected to, at every attempt: a name that
//!   resolved to a public address when saved and to `127.0.0.1` later
//!   (DNS rebinding) is refused.
//!
//! Redirects are never followed (a redirect is a failed attempt with its
//! status), no proxy is taken from the environment, the whole attempt has
//! one timeout, and at most `max_response_bytes` of the answer are read and
//! then thrown away. Outcomes name a kind of failure only: never the URL,
//! the body or a secret.

use crate::AppError;
use coffer_crypto::webhook_signature;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2_000;
/// The `User-Agent` of every delivery.
pub const USER_AGENT: &str = "Coffer-Webhooks/1";

/// How deliveries are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderSettings {
    /// Allow `http` and private, loopback and other non-public destinations
    /// (`webhooks.allow_private`; for local development and tests only).
    pub allow_private: bool,
    /// The whole attempt: resolving, connecting, sending and reading.
    pub timeout: Duration,
    /// At most this much of an answer's body is read (then discarded).
    pub max_response_bytes: usize,
}

impl Default for SenderSettings {
    fn default() -> Self {
        SenderSettings { allow_private: false, timeout: Duration::from_secs(10), max_response_bytes: 64 * 1024 }
    }
}

/// Why a webhook URL is refused. The message never repeats the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("the webhook URL is not a valid absolute URL")]
    Invalid,
    #[error("the webhook URL is longer than 2000 characters")]
    TooLong,
    #[error("the webhook URL must use https")]
    NotHttps,
    #[error("the webhook URL has no host")]
    NoHost,
    #[error("the webhook URL must not contain a user name or password")]
    Credentials,
    #[error("the webhook URL points to a private, local or reserved address")]
    Private,
}

impl UrlProblem {
    /// The stable error code.
    pub fn code(self) -> &'static str {
        match self {
            UrlProblem::Invalid => "webhook_url_invalid",
            UrlProblem::TooLong => "webhook_url_too_long",
            UrlProblem::NotHttps => "webhook_url_not_https",
            UrlProblem::NoHost => "webhook_url_no_host",
            UrlProblem::Credentials => "webhook_url_credentials",
            UrlProblem::Private => "webhook_url_private",
        }
    }
}

/// Checks a webhook URL as it is saved and before each attempt. Host names
/// are checked later, on the addresses they resolve to (see the module).
pub fn check_webhook_url(url: &str, allow_private: bool) -> Result<Url, UrlProblem> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlProblem::TooLong);
    }
    let parsed = Url::parse(url).map_err(|_| UrlProblem::Invalid)?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlProblem::NotHttps),
    }
    let host = parsed.host_str().filter(|host| !host.is_empty()).ok_or(UrlProblem::NoHost)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    // The parser normalises IPv4 literals (`127.1`, `0x7f000001`) to dotted
    // form and writes IPv6 ones in brackets; anything else is a host name.
    let bare = host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')).unwrap_or(host);
    let literal = bare.parse::<IpAddr>().ok();
    if let Some(ip) = literal
        && !allow_private
        && !is_public_ip(ip)
    {
        return Err(UrlProblem::Private);
    }
    Ok(parsed)
}

/// Whether an address is globally routable: not private, loopback,
/// link-local, unspecified, multicast, broadcast, documentation,
/// benchmarking, shared (CGNAT), reserved, an IPv6 unique-local or
/// site-local address, nor an IPv6 form that embeds such an IPv4 address
/// (mapped, compatible, NAT64, 6to4); Teredo is refused outright.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const NOT_PUBLIC: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata services)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
        ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and the broadcast address
    ];
    !NOT_PUBLIC.iter().any(|&(net, prefix)| in_v4(ip, net, prefix))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // Forms that carry an IPv4 address: judged by that address.
    let mapped = in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96);
    let nat64 = in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
    if mapped || nat64 {
        return is_public_v4(low_v4(ip));
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        // 6to4: the IPv4 address is bits 16..48.
        let embedded = ((u128::from(ip) >> 80) & 0xffff_ffff) as u32;
        return is_public_v4(Ipv4Addr::from(embedded));
    }
    // Only global unicast (2000::/3) is public; this leaves out ::, ::1,
    // IPv4-compatible (::/96), 64:ff9b:1::/48, 100::/64 (discard), fc00::/7
    // (unique local), fe80::/10 (link-local), fec0::/10 (site-local) and
    // ff00::/8 (multicast).
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return false;
    }
    const NOT_PUBLIC: &[([u16; 8], u32)] = &[
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments, Teredo (2001::/32)
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation (RFC 9637)
    ];
    !NOT_PUBLIC.iter().any(|&(net, prefix)| in_v6(ip, net, prefix))
}

/// Why an attempt failed before an HTTP status was received. A short,
/// fixed word for the delivery log: never the URL, the body or a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptError {
    /// The attempt took longer than the configured timeout.
    Timeout,
    /// The destination is (or resolved only to) a non-public address.
    PrivateDestination,
    /// The host name did not resolve, or no connection (TCP or TLS) was made.
    Connect,
    /// The URL no longer passes [`check_webhook_url`] for a reason other
    /// than a private address.
    InvalidUrl,
    /// Anything else (e.g. the peer closed the connection mid-answer).
    Other,
}

impl AttemptError {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptError::Timeout => "timeout",
            AttemptError::PrivateDestination => "private_destination",
            AttemptError::Connect => "connect",
            AttemptError::InvalidUrl => "invalid_url",
            AttemptError::Other => "other",
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The answer's status, when one came.
    pub status: Option<u16>,
    /// Why no status came.
    pub error: Option<AttemptError>,
    pub elapsed_ms: i64,
}

impl AttemptOutcome {
    /// Delivered: a 2xx answer. A redirect or any other status is a failure.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|status| (200..300).contains(&status))
    }
}

/// The error the resolver gives when a name has no public address left.
#[derive(Debug)]
struct PrivateDestination;

impl std::fmt::Display for PrivateDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the host resolves only to private, local or reserved addresses")
    }
}

impl std::error::Error for PrivateDestination {}

/// Resolves with the system resolver (tokio's `lookup_host`) and, unless
/// private destinations are allowed, keeps only public addresses.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = found.filter(|address| allow_private || is_public_ip(address.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(PrivateDestination) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// Sends webhook deliveries; one HTTP client (and its connection pool) for
/// all of them. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    settings: SenderSettings,
}

impl WebhookSender {
    pub fn new(settings: SenderSettings) -> Result<WebhookSender, AppError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|_| AppError::Config("the webhook sender's TLS versions"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(GuardedResolver { allow_private: settings.allow_private })
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!settings.allow_private)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|_| AppError::Config("the webhook sender's HTTP client could not be built"))?;
        Ok(WebhookSender { client, settings })
    }

    pub fn settings(&self) -> &SenderSettings {
        &self.settings
    }

    /// One delivery attempt: POSTs `body` signed with `secret` at
    /// `now_unix`. Never panics and never returns the URL in its outcome.
    pub async fn send(
        &self,
        url: &str,
        secret: &str,
        event_id: &str,
        event_type: &str,
        body: &[u8],
        now_unix: i64,
    ) -> AttemptOutcome {
        let started = Instant::now();
        let finish = |status: Option<u16>, error: Option<AttemptError>| AttemptOutcome {
            status,
            error,
            elapsed_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        };
        let url = match check_webhook_url(url, self.settings.allow_private) {
            Ok(url) => url,
            Err(UrlProblem::Private) => return finish(None, Some(AttemptError::PrivateDestination)),
            Err(_) => return finish(None, Some(AttemptError::InvalidUrl)),
        };
        let (Ok(signature), Ok(event_id), Ok(event_type)) = (
            HeaderValue::from_str(&webhook_signature(secret, now_unix, body)),
            HeaderValue::from_str(event_id),
            HeaderValue::from_str(event_type),
        ) else {
            return finish(None, Some(AttemptError::Other));
        };
        let request = self
            .client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("Coffer-Signature", signature)
            .header("Coffer-Event-Id", event_id)
            .header("Coffer-Event-Type", event_type)
            .body(body.to_vec());
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return finish(None, Some(classify(&error))),
        };
        let status = response.status().as_u16();
        // Read a little of the answer so a well-behaved receiver's connection
        // can be reused, then drop the rest unread. Its content is ignored, and
        // a failure while reading does not undo the status already received.
        let mut read = 0usize;
        while read < self.settings.max_response_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => read = read.saturating_add(chunk.len()),
                Ok(None) | Err(_) => break,
            }
        }
        drop(response);
        finish(Some(status), None)
    }
}

/// The kind of a failed request, found in the error's chain of causes.
fn classify(error: &reqwest::Error) -> AttemptError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<PrivateDestination>() {
            return AttemptError::PrivateDestination;
        }
        cause = current.source();
    }
    if error.is_timeout() {
        AttemptError::Timeout
    } else if error.is_connect() {
        AttemptError::Connect
    } else if error.is_builder() {
        AttemptError::InvalidUrl
    } else {
        AttemptError::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_non_public_addresses() {
        let table: &[(&str, bool)] = &[
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("93.184.215.14", true),
            ("100.63.255.255", true),
            ("100.128.0.0", true),
            ("172.15.255.255", true),
            ("172.32.0.0", true),
            ("192.169.0.1", true),
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("10.0.0.1", false),
            ("10.255.255.255", false),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("127.0.0.1", false),
            ("127.255.255.254", false),
            ("169.254.169.254", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("192.0.0.8", false),
            ("192.0.2.1", false),
            ("192.168.1.1", false),
            ("198.18.0.1", false),
            ("198.19.255.255", false),
            ("198.51.100.7", false),
            ("203.0.113.9", false),
            ("224.0.0.1", false),
            ("239.255.255.250", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("2606:4700:4700::1111", true),
            ("2a00:1450:4001:81c::200e", true),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::808:808", true),
            ("2002:808:808::1", true),
            ("::", false),
            ("::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:0.0.0.0", false),
            ("::127.0.0.1", false),
            ("64:ff9b::7f00:1", false),
            ("64:ff9b:1::1", false),
            ("2002:7f00:1::1", false),
            ("2002:a00:1::1", false),
            ("100::1", false),
            ("2001::1", false),
            ("2001:db8::1", false),
            ("3fff::1", false),
            ("fc00::1", false),
            ("fd12:3456:789a::1", false),
            ("fe80::1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("ff0e::1", false),
        ];
        for &(text, public) in table {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(is_public_ip(ip), public, "{text}");
        }
    }

    #[test]
    fn urls_are_checked() {
        let ok = check_webhook_url("https://hooks.example.com:8443/coffer?x=1", false).unwrap();
        assert_eq!(ok.host_str(), Some("hooks.example.com"));
        assert!(check_webhook_url("https://8.8.8.8/hook", false).is_ok());
        let cases: &[(&str, UrlProblem)] = &[
            ("not a url", UrlProblem::Invalid),
            ("/relative/path", UrlProblem::Invalid),
            ("https://", UrlProblem::Invalid),
            ("http://hooks.example.com/", UrlProblem::NotHttps),
            ("ftp://hooks.example.com/", UrlProblem::NotHttps),
            ("file:///etc/passwd", UrlProblem::NotHttps),
            ("https://user:pass@hooks.example.com/", UrlProblem::Credentials),
            ("https://user@hooks.example.com/", UrlProblem::Credentials),
            ("https://127.0.0.1/", UrlProblem::Private),
            ("https://127.1/", UrlProblem::Private),
            ("https://0x7f000001/", UrlProblem::Private),
            ("https://2130706433/", UrlProblem::Private),
            ("https://[::1]/", UrlProblem::Private),
            ("https://[::ffff:127.0.0.1]/", UrlProblem::Private),
            ("https://169.254.169.254/latest/meta-data/", UrlProblem::Private),
            ("https://10.0.0.1/", UrlProblem::Private),
            ("https://100.64.0.1/", UrlProblem::Private),
            ("https://[fd00::1]/", UrlProblem::Private),
            ("https://0.0.0.0/", UrlProblem::Private),
            ("https://255.255.255.255/", UrlProblem::Private),
        ];
        for &(url, problem) in cases {
            assert_eq!(check_webhook_url(url, false).unwrap_err(), problem, "{url}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check_webhook_url(&long, false).unwrap_err(), UrlProblem::TooLong);
        let at_limit = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN - 26));
        assert_eq!(at_limit.len(), MAX_URL_LEN);
        assert!(check_webhook_url(&at_limit, false).is_ok());
    }

    #[test]
    fn allow_private_opens_http_and_private_addresses_but_not_credentials() {
        assert!(check_webhook_url("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check_webhook_url("https://[::1]/", true).is_ok());
        assert!(check_webhook_url("http://localhost/", true).is_ok());
        assert_eq!(check_webhook_url("ftp://127.0.0.1/", true).unwrap_err(), UrlProblem::NotHttps);
        assert_eq!(check_webhook_url("http://u:p@127.0.0.1/", true).unwrap_err(), UrlProblem::Credentials);
    }

    #[test]
    fn problems_have_stable_codes_and_never_echo_the_url() {
        let secret_url = "https://alice:hunter2@10.0.0.1/hook?token=abc";
        let problem = check_webhook_url(secret_url, false).unwrap_err();
        assert_eq!(problem.code(), "webhook_url_credentials");
        let message = problem.to_string();
        for part in ["hunter2", "10.0.0.1", "token", "abc", "alice"] {
            assert!(!message.contains(part), "{message}");
        }
        assert_eq!(UrlProblem::Private.code(), "webhook_url_private");
        assert_eq!(UrlProblem::NotHttps.code(), "webhook_url_not_https");
        assert_eq!(UrlProblem::Invalid.code(), "webhook_url_invalid");
    }

    #[test]
    fn defaults_and_success_rule() {
        let settings = SenderSettings::default();
        assert!(!settings.allow_private);
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.max_response_bytes, 65_536);
        let outcome = |status, error| AttemptOutcome { status, error, elapsed_ms: 1 };
        assert!(outcome(Some(200), None).succeeded());
        assert!(outcome(Some(204), None).succeeded());
        assert!(!outcome(Some(199), None).succeeded());
        assert!(!outcome(Some(302), None).succeeded());
        assert!(!outcome(Some(500), None).succeeded());
        assert!(!outcome(None, Some(AttemptError::Timeout)).succeeded());
        assert_eq!(AttemptError::PrivateDestination.as_str(), "private_destination");
    }
}
