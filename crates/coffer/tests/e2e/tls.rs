//! Built-in TLS (P10), spoken to by a real TLS client (rustls) on
//! 127.0.0.1: HTTPS only, TLS 1.3 and 1.2, HSTS on every answer, cookies
//! named `__Host-…`, `base_url` on https in the demo credentials, and the
//! certificate read again on SIGHUP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pem {
    cert: String,
    key: String,
}

fn self_signed() -> Pem {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    Pem { cert: made.cert.pem(), key: made.signing_key.serialize_pem() }
}

fn write_pem(dir: &Path, pem: &Pem) {
    std::fs::write(dir.join("cert.pem"), &pem.cert).unwrap();
    std::fs::write(dir.join("key.pem"), &pem.key).unwrap();
}

/// A TLS client that trusts only `cert`, limited to `versions`.
fn client(cert: &str, versions: &[&'static rustls::SupportedProtocolVersion]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Sends one HTTP/1.1 request over TLS; the TLS version and the answer.
async fn request(
    connector: &tokio_rustls::TlsConnector,
    port: u16,
    head: &str,
    body: &str,
) -> std::io::Result<(rustls::ProtocolVersion, String)> {
    request_with(connector, port, head, "", body).await
}

/// As [`request`], with extra header lines (each ending in CRLF).
async fn request_with(
    connector: &tokio_rustls::TlsConnector,
    port: u16,
    head: &str,
    extra: &str,
    body: &str,
) -> std::io::Result<(rustls::ProtocolVersion, String)> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut tls = connector.connect(name, tcp).await?;
    let version = tls.get_ref().1.protocol_version().unwrap();
    let request = format!(
        "{head} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    Ok((version, String::from_utf8_lossy(&answer).into_owned()))
}

fn header<'a>(answer: &'a str, name: &str) -> Vec<&'a str> {
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p10_built_in_tls_serves_https_only_with_hsts_and_host_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed();
    write_pem(dir.path(), &first);
    let data_dir = dir.path().join("data");
    let mut command = Command::new(crate::BIN);
    command
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .arg("--tls-cert")
        .arg(dir.path().join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("key.pem"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("COFFER_") {
            command.env_remove(name);
        }
    }
    let mut child = command.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = String::new();
    for line in stdout.lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("Coffer is listening on ") {
            url = rest.trim().to_owned();
        }
        if line.starts_with("Demo data is loaded") {
            break;
        }
    }
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();

    // TLS 1.3 by default, 1.2 when that is all the client has.
    let modern = client(&first.cert, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let (version, health) = request(&modern, port, "GET /health", "").await.unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert_eq!(header(&health, "strict-transport-security"), ["max-age=63072000; includeSubDomains"]);
    let older = client(&first.cert, &[&rustls::version::TLS12]);
    let (version, _) = request(&older, port, "GET /health", "").await.unwrap();
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);

    // The demo credentials say https, and signing in sets a __Host- cookie.
    let credentials: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("demo-credentials.json")).unwrap()).unwrap();
    assert_eq!(credentials["base_url"].as_str().unwrap(), url);
    let (email, password) =
        (credentials["customer"]["email"].as_str().unwrap(), credentials["customer"]["password"].as_str().unwrap());
    let (_, page) = request(&modern, port, "GET /account", "").await.unwrap();
    let form_cookie = header(&page, "set-cookie")[0].split(';').next().unwrap().to_owned();
    assert!(form_cookie.starts_with("__Host-coffer_form="), "{form_cookie}");
    let token = crate::accounts::field_value(&page, "form_token");
    let form =
        format!("email={}&password={}&form_token={token}", email.replace('@', "%40"), password.replace(' ', "+"));
    let cookie = format!("Cookie: {form_cookie}\r\n");
    let (_, signed_in) = request_with(&modern, port, "POST /account/sign-in", &cookie, &form).await.unwrap();
    assert!(signed_in.starts_with("HTTP/1.1 303"), "{signed_in}");
    let cookies = header(&signed_in, "set-cookie");
    assert!(
        !cookies.is_empty() && cookies.iter().all(|c| c.starts_with("__Host-") && c.contains("Secure")),
        "{cookies:?}"
    );
    assert!(!header(&signed_in, "strict-transport-security").is_empty(), "HSTS on every answer");

    // Plain HTTP to the port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    plain.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"), "HTTPS only");

    // A new certificate in the same files is served after SIGHUP.
    let second = self_signed();
    write_pem(dir.path(), &second);
    let renewed = client(&second.cert, &[&rustls::version::TLS13]);
    assert!(request(&renewed, port, "GET /health", "").await.is_err(), "the old certificate serves until SIGHUP");
    let hup = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    let mut reloaded = false;
    for _ in 0..50 {
        if request(&renewed, port, "GET /health", "").await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the certificate was read again on SIGHUP");
    let _ = child.kill();
    let _ = child.wait();
}

/// Behind a TLS-terminating proxy (`public_url` on https, trusted proxies
/// set), answers carry HSTS and cookies the `__Host-` prefix; without the
/// proxy setting they carry neither (plain local HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p10_behind_a_tls_proxy_cookies_and_hsts_follow_the_public_url() {
    let proxied = coffer_testkit::TestServer::start_with(
        crate::BIN,
        coffer_testkit::TestBackend::Sqlite,
        &[("COFFER_PUBLIC_URL", "https://shop.example.com"), ("COFFER_HTTP__TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await;
    let plain = crate::server(coffer_testkit::TestBackend::Sqlite).await;
    for (server, secure) in [(&proxied, true), (&plain, false)] {
        let health = crate::client().get(server.url("/health")).send().await.unwrap();
        assert_eq!(health.headers().contains_key("strict-transport-security"), secure);
        let pass = crate::form_pass(server, "/account").await;
        assert_eq!(pass.cookie.starts_with("__Host-coffer_form="), secure, "{}", pass.cookie);
        let (email, password) = crate::accounts::demo_customer(server);
        let signed_in = crate::accounts::sign_in(server, &email, &password).await;
        let cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert_eq!(cookie.starts_with("__Host-coffer_session="), secure, "{cookie}");
    }
}
