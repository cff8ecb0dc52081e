//! Direct TLS serving: a listener for `axum::serve` that terminates TLS with rustls, and reloads
//! of the certificate and key without a restart.
//!
//! The accept loop hands each TCP connection to its own handshake task, so a slow or silent
//! client never holds up the next one. Each handshake uses the server configuration current at
//! that moment. A reload swaps that configuration: connections already open keep the old one,
//! and new connections get the new one. A new pair that does not load is logged, and the old one
//! stays in use.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::telemetry::Metrics;

/// How long a client may take to finish the TLS handshake before its connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for the HTTP server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// A TLS setting that cannot be used. `setting` names the configuration key, and `reason`
/// includes the file's path.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct TlsError {
    pub setting: &'static str,
    pub reason: String,
}

/// Checks the `tls_cert_file` and `tls_key_file` settings: both or neither, and a pair that
/// loads.
pub fn check_settings(cert: Option<&Path>, key: Option<&Path>) -> Result<(), TlsError> {
    let missing = |setting| TlsError {
        setting,
        reason: "is missing: tls_cert_file and tls_key_file must be set together".into(),
    };
    match (cert, key) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(missing("tls_key_file")),
        (None, Some(_)) => Err(missing("tls_cert_file")),
        (Some(cert), Some(key)) => load_server_config(cert, key).map(|_| ()),
    }
}

/// The PEM files of the certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Loads both files into a server configuration, checking that the key belongs to the
    /// certificate.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        load_server_config(&self.cert, &self.key)
    }

    /// Hashes both files' contents with SHA-256, so a change is noticed even when the mtimes
    /// do not change (Kubernetes updates a mounted Secret by swapping a symlink).
    fn fingerprint(&self) -> io::Result<[u8; 32]> {
        let mut hasher = Sha256::new();
        hasher.update(std::fs::read(&self.cert)?);
        hasher.update([0]);
        hasher.update(std::fs::read(&self.key)?);
        Ok(hasher.finalize().into())
    }
}

/// Builds a rustls server configuration from a PEM certificate chain (leaf first) and a PEM
/// private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_error = |reason: String| TlsError {
        setting: "tls_cert_file",
        reason: format!("{}: {reason}", cert.display()),
    };
    let key_error = |reason: String| TlsError {
        setting: "tls_key_file",
        reason: format!("{}: {reason}", key.display()),
    };

    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|err| cert_error(format!("cannot read the certificate: {err}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| cert_error(format!("invalid PEM: {err}")))?;
    if chain.is_empty() {
        return Err(cert_error(
            "contains no CERTIFICATE block; expected a PEM certificate chain, leaf first".into(),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|err| {
        key_error(format!(
            "cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1): {err}"
        ))
    })?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| cert_error(format!("no usable TLS protocol version: {err}")))?
        .with_no_client_auth()
        // rustls checks here that the key's public key matches the leaf certificate.
        .with_single_cert(chain, private_key)
        .map_err(|err| {
            key_error(format!(
                "cannot be used with the certificate in tls_cert_file: {err}"
            ))
        })?;
    // axum serves HTTP/1.1 only (its http2 feature is off).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server configuration used for new handshakes, swapped by reloads.
#[derive(Clone)]
pub struct CurrentConfig(Arc<RwLock<Arc<ServerConfig>>>);

impl CurrentConfig {
    pub fn new(config: Arc<ServerConfig>) -> CurrentConfig {
        CurrentConfig(Arc::new(RwLock::new(config)))
    }

    fn get(&self) -> Arc<ServerConfig> {
        self.0.read().unwrap_or_else(|err| err.into_inner()).clone()
    }

    fn set(&self, config: Arc<ServerConfig>) {
        *self.0.write().unwrap_or_else(|err| err.into_inner()) = config;
    }
}

/// A listener for `axum::serve` that yields connections after a successful TLS handshake.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`. Each handshake uses the configuration that `current` contains
    /// when its connection arrives.
    pub fn start(tcp: TcpListener, current: CurrentConfig, metrics: Arc<Metrics>) -> TlsListener {
        let local_addr = tcp
            .local_addr()
            .expect("a bound TCP listener has a local address");
        let (sender, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(accept_loop(tcp, current, metrics, sender));
        TlsListener {
            accepted,
            local_addr,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(connection) => connection,
            // The accept loop ends only when this receiver is dropped, so this branch is never
            // reached while `self` exists. Waiting forever keeps the trait's contract.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    current: CurrentConfig,
    metrics: Arc<Metrics>,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(connection) => connection,
            Err(err) => {
                // Typically EMFILE: too many open files. Waiting lets connections close.
                tracing::error!(error = %err, "accepting a TCP connection failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if sender.is_closed() {
            return;
        }
        let acceptor = TlsAcceptor::from(current.get());
        let sender = sender.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = sender.send((tls, peer)).await;
                }
                Ok(Err(err)) => {
                    count_handshake_failure(&metrics, "error");
                    tracing::debug!(error = %err, "TLS handshake failed");
                }
                Err(_) => {
                    count_handshake_failure(&metrics, "timeout");
                    tracing::debug!("TLS handshake timed out");
                }
            }
        });
    }
}

fn count_handshake_failure(metrics: &Metrics, reason: &str) {
    metrics.inc(
        "bouncewatch_tls_handshake_failures_total",
        "TLS handshakes that failed or timed out (scanners, clients that distrust the certificate).",
        &[("reason", reason)],
        1,
    );
}

/// Reloads the certificate and key when their contents change (checked every `interval`, when
/// not zero) and on SIGHUP. Runs until the process ends.
pub fn spawn_reloader(
    files: TlsFiles,
    current: CurrentConfig,
    interval: Duration,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut seen = files.fingerprint().ok();
    tokio::spawn(async move {
        let mut ticker = (!interval.is_zero()).then(|| {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        loop {
            let forced = tokio::select! {
                _ = hangup.recv() => true,
                _ = tick(&mut ticker) => false,
            };
            let fingerprint = match files.fingerprint() {
                Ok(fingerprint) => fingerprint,
                Err(err) => {
                    // This includes the moment between deleting and rewriting a file. The next
                    // check reads the finished files.
                    tracing::error!(error = %err, cert = %files.cert.display(), key = %files.key.display(), "cannot read the TLS certificate or key; keeping the loaded pair");
                    count_reload(&metrics, "failed");
                    continue;
                }
            };
            if !forced && seen == Some(fingerprint) {
                continue;
            }
            // Recorded even when the load fails, so a bad pair is logged once, not every check.
            seen = Some(fingerprint);
            match files.load() {
                Ok(config) => {
                    current.set(config);
                    count_reload(&metrics, "loaded");
                    tracing::info!(cert = %files.cert.display(), forced, "TLS certificate and key reloaded");
                }
                Err(err) => {
                    count_reload(&metrics, "failed");
                    tracing::error!(error = %err, "new TLS certificate or key rejected; keeping the loaded pair");
                }
            }
        }
    });
    Ok(())
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn count_reload(metrics: &Metrics, result: &str) {
    metrics.inc(
        "bouncewatch_tls_reloads_total",
        "Attempts to load a changed TLS certificate and key, by result (loaded, failed).",
        &[("result", result)],
        1,
    );
}
