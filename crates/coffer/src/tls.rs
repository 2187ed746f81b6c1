//! Built-in HTTPS: a listener that accepts TCP connections and completes
//! each TLS handshake on its own task (a slow client holds up nobody), with
//! TLS 1.2 and 1.3 only (rustls offers nothing older) and HTTP/1.1 by ALPN.
//! The certificate and key are read again on SIGHUP; a pair that does not
//! load leaves the old one serving and says why in the log.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 256;

/// The server's TLS settings from a certificate chain and key in PEM.
pub fn server_config(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("reading the TLS certificate {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the TLS certificate {}", cert_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the TLS private key {}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("choosing the TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and private key do not make a pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepted, handshaken TLS connections for `axum::serve`.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS on `tcp` with the given files; SIGHUP reloads them.
    pub fn new(tcp: TcpListener, cert_file: PathBuf, key_file: PathBuf) -> anyhow::Result<TlsListener> {
        let local = tcp.local_addr().context("reading the listening address")?;
        let acceptor = Arc::new(RwLock::new(TlsAcceptor::from(server_config(&cert_file, &key_file)?)));
        tokio::spawn(reload_on_hangup(acceptor.clone(), cert_file, key_file));
        let (sender, ready) = tokio::sync::mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(tcp, acceptor, sender));
        Ok(TlsListener { ready, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: Arc<RwLock<TlsAcceptor>>,
    ready: tokio::sync::mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(current) = acceptor.read().map(|a| a.clone()) else { return };
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, current.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                // Plain HTTP to the HTTPS port, scanners, slow clients:
                // closed; nothing about the client is logged.
                Ok(Err(e)) => tracing::debug!(error = %e, "a TLS handshake failed"),
                Err(_) => tracing::debug!("a TLS handshake timed out"),
            }
        });
    }
}

async fn reload_on_hangup(acceptor: Arc<RwLock<TlsAcceptor>>, cert_file: PathBuf, key_file: PathBuf) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("SIGHUP cannot be watched; the TLS certificate is read at start only");
        return;
    };
    while hangups.recv().await.is_some() {
        match server_config(&cert_file, &key_file) {
            Ok(config) => {
                if let Ok(mut current) = acceptor.write() {
                    *current = TlsAcceptor::from(config);
                    tracing::info!("TLS certificate reloaded");
                }
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "TLS certificate not reloaded; the old one serves on"),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended: no more connections will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
