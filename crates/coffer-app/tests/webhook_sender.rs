//! The webhook sender against real receivers on the loopback interface:
//! small HTTP/1.1 servers written on tokio's `TcpListener`, each answering
//! in one way (verify and 200, 500, never, a 50 MB body, a redirect) and
//! counting the connections that reach it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use coffer_app::webhooks::sender::{
    AttemptError, AttemptOutcome, SenderSettings, UrlProblem, WebhookSender, check_webhook_url,
};
use coffer_crypto::{new_webhook_secret, verify_webhook_signature};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &[u8] = br#"{"id":"evt_01","type":"order.paid","data":{"order_id":"ord_01"}}"#;
const FIFTY_MB: usize = 50 * 1024 * 1024;

#[derive(Clone)]
enum Answer {
    /// Verifies `Coffer-Signature` with this secret: 200 when it holds, 401 otherwise.
    Verify(String),
    Status(u16),
    /// Reads the request, then keeps the connection open without a word.
    Never,
    /// 200 with a 50 MB body, written until the client goes away.
    Stream,
    Redirect(String),
    /// Answers a plain-text line at once, without reading (not TLS).
    NotTls,
}

#[derive(Clone, Debug)]
struct Recorded {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    signature_valid: bool,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    body_bytes_written: AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
}

struct Receiver {
    port: u16,
    seen: Arc<Seen>,
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let counted = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                counted.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle(stream, answer.clone(), counted.clone()));
            }
        });
        Receiver { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/coffer?tenant=7", self.port)
    }

    fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.seen.requests.lock().unwrap().clone()
    }
}

async fn handle(mut stream: TcpStream, answer: Answer, seen: Arc<Seen>) {
    if let Answer::NotTls = answer {
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
        let _ = stream.shutdown().await;
        return;
    }
    let Some((headers, body)) = read_request(&mut stream).await else { return };
    let signature = headers.iter().find(|(key, _)| key == "coffer-signature").map(|(_, value)| value.clone());
    let signature_valid = match (&answer, &signature) {
        (Answer::Verify(secret), Some(header)) => verify_webhook_signature(secret, header, &body, now(), 300),
        _ => false,
    };
    seen.requests.lock().unwrap().push(Recorded { headers, body, signature_valid });
    let head = match &answer {
        Answer::Verify(_) if signature_valid => status_line(200, "ok"),
        Answer::Verify(_) => status_line(401, "bad signature"),
        Answer::Status(status) => status_line(*status, "nope"),
        Answer::Never => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        Answer::Stream => format!("HTTP/1.1 200 OK\r\nContent-Length: {FIFTY_MB}\r\nConnection: close\r\n\r\n"),
        Answer::NotTls => return,
        Answer::Redirect(to) => {
            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if let Answer::Stream = answer {
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0;
        while written < FIFTY_MB {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            written += chunk.len();
            seen.body_bytes_written.store(written, Ordering::SeqCst);
        }
    }
    let _ = stream.shutdown().await;
}

fn status_line(status: u16, body: &str) -> String {
    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
}

/// One HTTP/1.1 request: lower-cased headers and the body (Content-Length).
async fn read_request(stream: &mut TcpStream) -> Option<(Vec<(String, String)>, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut part = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut part).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&part[..read]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize =
        headers.iter().find(|(key, _)| key == "content-length").and_then(|(_, value)| value.parse().ok()).unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut part).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&part[..read]);
    }
    Some((headers, buffer[head_end..head_end + length].to_vec()))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn local_sender(timeout: Duration) -> WebhookSender {
    WebhookSender::new(SenderSettings { allow_private: true, timeout, ..SenderSettings::default() }).unwrap()
}

fn guarded_sender() -> WebhookSender {
    WebhookSender::new(SenderSettings { timeout: Duration::from_secs(5), ..SenderSettings::default() }).unwrap()
}

async fn send(sender: &WebhookSender, url: &str, secret: &str) -> AttemptOutcome {
    sender.send(url, secret, "evt_01", "order.paid", BODY, now()).await
}

#[tokio::test]
async fn a_verified_delivery_succeeds_with_every_header() {
    let secret = new_webhook_secret().unwrap();
    let receiver = Receiver::start(Answer::Verify(secret.clone())).await;
    let outcome = send(&local_sender(Duration::from_secs(5)), &receiver.url(), &secret).await;
    assert_eq!(outcome.status, Some(200), "{outcome:?}");
    assert_eq!(outcome.error, None);
    assert!(outcome.succeeded());
    assert!(outcome.elapsed_ms >= 0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(request.signature_valid, "the receiver verified Coffer-Signature");
    assert_eq!(request.body, BODY);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("coffer-event-id"), Some("evt_01"));
    assert_eq!(request.header("coffer-event-type"), Some("order.paid"));
    assert_eq!(request.header("user-agent"), Some("Coffer-Webhooks/1"));
    let signature = request.header("coffer-signature").unwrap();
    assert!(signature.starts_with("t=") && signature.contains(",v1="), "{signature}");
}

#[tokio::test]
async fn a_delivery_signed_with_another_secret_is_refused_by_the_receiver() {
    let receiver = Receiver::start(Answer::Verify(new_webhook_secret().unwrap())).await;
    let outcome = send(&local_sender(Duration::from_secs(5)), &receiver.url(), &new_webhook_secret().unwrap()).await;
    assert_eq!(outcome.status, Some(401));
    assert!(!outcome.succeeded());
    assert!(!receiver.requests()[0].signature_valid);
}

#[tokio::test]
async fn a_500_is_recorded_and_not_a_success() {
    let receiver = Receiver::start(Answer::Status(500)).await;
    let outcome = send(&local_sender(Duration::from_secs(5)), &receiver.url(), "whsec_x").await;
    assert_eq!(outcome.status, Some(500));
    assert_eq!(outcome.error, None);
    assert!(!outcome.succeeded());
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_within_the_setting() {
    let receiver = Receiver::start(Answer::Never).await;
    let started = Instant::now();
    let outcome = send(&local_sender(Duration::from_millis(300)), &receiver.url(), "whsec_x").await;
    let took = started.elapsed();
    assert_eq!(outcome.status, None);
    assert_eq!(outcome.error, Some(AttemptError::Timeout));
    assert_eq!(outcome.error.map(AttemptError::as_str), Some("timeout"));
    assert!(!outcome.succeeded());
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");
    assert_eq!(receiver.requests().len(), 1, "the request did arrive");
}

#[tokio::test]
async fn a_huge_answer_is_not_read_to_its_end() {
    let receiver = Receiver::start(Answer::Stream).await;
    let sender = local_sender(Duration::from_secs(20));
    assert_eq!(sender.settings().max_response_bytes, 64 * 1024);
    let started = Instant::now();
    let outcome = send(&sender, &receiver.url(), "whsec_x").await;
    let took = started.elapsed();
    assert_eq!(outcome.status, Some(200));
    assert!(outcome.succeeded());
    assert!(took < Duration::from_secs(3), "returned without reading 50 MB: {took:?}");
    // Let the receiver notice the closed connection, then check that it
    // could not hand over more than the socket buffers hold.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = receiver.seen.body_bytes_written.load(Ordering::SeqCst);
    assert!(written < FIFTY_MB / 4, "the receiver wrote {written} bytes");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let target = Receiver::start(Answer::Status(200)).await;
    let receiver = Receiver::start(Answer::Redirect(target.url())).await;
    let outcome = send(&local_sender(Duration::from_secs(5)), &receiver.url(), "whsec_x").await;
    assert_eq!(outcome.status, Some(302));
    assert_eq!(outcome.error, None);
    assert!(!outcome.succeeded());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(target.connections(), 0, "the redirect's target was never contacted");
}

#[tokio::test]
async fn host_names_resolve_when_private_destinations_are_allowed() {
    let secret = new_webhook_secret().unwrap();
    let receiver = Receiver::start(Answer::Verify(secret.clone())).await;
    let url = format!("http://localhost:{}/hook", receiver.port);
    let outcome = send(&local_sender(Duration::from_secs(5)), &url, &secret).await;
    assert_eq!(outcome.status, Some(200), "{outcome:?}");
    assert!(outcome.succeeded());
}

#[tokio::test]
async fn https_goes_through_rustls_and_a_peer_without_tls_is_a_connect_error() {
    let receiver = Receiver::start(Answer::NotTls).await;
    let url = format!("https://127.0.0.1:{}/hook", receiver.port);
    let outcome = send(&local_sender(Duration::from_secs(5)), &url, "whsec_x").await;
    assert_eq!(outcome.status, None);
    assert_eq!(outcome.error, Some(AttemptError::Connect), "{outcome:?}");
    assert_eq!(receiver.connections(), 1);
}

#[tokio::test]
async fn private_destinations_are_refused_before_any_connection() {
    let receiver = Receiver::start(Answer::Status(200)).await;
    let port = receiver.port;
    let sender = guarded_sender();

    let plain = format!("http://127.0.0.1:{port}/");
    assert_eq!(check_webhook_url(&plain, false).unwrap_err(), UrlProblem::NotHttps);
    let outcome = send(&sender, &plain, "whsec_x").await;
    assert_eq!((outcome.status, outcome.error), (None, Some(AttemptError::InvalidUrl)));

    let literal = format!("https://127.0.0.1:{port}/");
    assert_eq!(check_webhook_url(&literal, false).unwrap_err(), UrlProblem::Private);
    let outcome = send(&sender, &literal, "whsec_x").await;
    assert_eq!((outcome.status, outcome.error), (None, Some(AttemptError::PrivateDestination)));

    // A host name passes the URL check; its addresses are refused after
    // resolution, at the attempt.
    let by_name = format!("https://localhost:{port}/");
    assert!(check_webhook_url(&by_name, false).is_ok());
    let outcome = send(&sender, &by_name, "whsec_x").await;
    assert_eq!(outcome.status, None);
    assert_eq!(outcome.error, Some(AttemptError::PrivateDestination), "{outcome:?}");
    assert_eq!(outcome.error.map(AttemptError::as_str), Some("private_destination"));
    assert!(!outcome.succeeded());

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.connections(), 0, "nothing reached the listener");
}

#[test]
fn private_literals_are_refused_by_the_url_check() {
    for url in [
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://169.254.169.254/",
        "https://10.0.0.1/",
        "https://192.168.0.10/",
        "https://100.64.1.1/",
        "https://[fc00::1]/",
        "https://[::ffff:169.254.169.254]/",
    ] {
        let problem = check_webhook_url(url, false).unwrap_err();
        assert_eq!(problem, UrlProblem::Private, "{url}");
        assert_eq!(problem.code(), "webhook_url_private");
    }
}
