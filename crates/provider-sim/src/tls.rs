//! TLS for the simulators: `https://` and `wss://` as the real providers serve them, with a
//! certificate from a test CA (`scripts/test-ca.sh`). A client under test is told to trust that
//! CA (`TLS_EXTRA_CA_FILE`) exactly as a user behind a private CA would be.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// A server certificate chain and its key.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity")
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain and a PEM (PKCS#8, PKCS#1 or SEC1) key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> std::io::Result<Self> {
        let bad = |what: &Path, e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", what.display()))
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad(cert, &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(cert, &e))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(cert, &e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| bad(cert, &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { config: Arc::new(config) })
    }
}

/// A TCP listener whose connections are TLS: handshakes run in their own tasks (a client that
/// never finishes one holds up nobody) and finished ones are handed to axum.
pub(crate) struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, identity: &TlsIdentity, stop: CancellationToken) -> std::io::Result<Self> {
        let addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(identity.config.clone());
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    r = tcp.accept() => match r {
                        Ok(c) => c,
                        Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue; }
                    },
                    () = stop.cancelled() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    // A failed handshake (a client that does not trust the CA) just ends here.
                    if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(Self { addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The acceptor stopped (shutdown): wait for axum's graceful shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// The test CA of `scripts/test-ca.sh` (`.local/test-ca`), made on first use if `make test`
/// has not made it yet.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: std::path::PathBuf,
}

impl TestCa {
    /// The test CA, running `scripts/test-ca.sh` if its files are missing.
    pub fn get() -> std::io::Result<Self> {
        static MADE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _once = MADE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = std::env::var_os("TEST_CA_DIR").map_or_else(|| repo.join(".local/test-ca"), Into::into);
        // The marker of the current recipe (scripts/test-ca.sh makes an older folder again).
        if !dir.join("done-v2").is_file() {
            let status =
                std::process::Command::new(repo.join("scripts/test-ca.sh")).env("TEST_CA_DIR", &dir).status()?;
            if !status.success() {
                return Err(std::io::Error::other(format!("scripts/test-ca.sh failed: {status}")));
            }
        }
        Ok(Self { dir })
    }

    /// The CA certificate clients are told to trust (`TLS_EXTRA_CA_FILE`).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server identity for localhost / 127.0.0.1 (and data.example, cdn.example,
    /// evil.example, internal.example, which tests resolve to loopback) signed by the test CA.
    pub fn identity(&self) -> std::io::Result<TlsIdentity> {
        TlsIdentity::from_pem_files(&self.dir.join("server.pem"), &self.dir.join("server.key"))
    }

    /// A server identity for localhost / 127.0.0.1 signed by a CA nobody trusts.
    pub fn untrusted_identity(&self) -> std::io::Result<TlsIdentity> {
        TlsIdentity::from_pem_files(&self.dir.join("untrusted-server.pem"), &self.dir.join("untrusted-server.key"))
    }
}
