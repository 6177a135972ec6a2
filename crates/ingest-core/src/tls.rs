//! The one TLS client configuration of the process: every HTTPS client (reqwest) and every
//! `wss://` connection (the WebSocket runner) trusts the same roots.
//!
//! Roots, in this order: the Mozilla set compiled in (`webpki-roots`, so a minimal image without
//! a CA package still connects), the platform's store (`/etc/ssl/certs`, `SSL_CERT_FILE`,
//! `SSL_CERT_DIR`: what an operator installs), and one optional extra PEM bundle,
//! `tls.extra_ca_file` (`TLS_EXTRA_CA_FILE`), for a corporate TLS-inspecting proxy or a private
//! CA. [`install`] builds it once at start (a missing or empty bundle is a config error);
//! [`client_config`] hands it out (built from the defaults if nothing was installed, as in
//! unit tests).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// `tls:` of the config file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// A PEM file of extra CA certificates trusted by every HTTPS and WSS client, besides the
    /// built-in and the system roots (`TLS_EXTRA_CA_FILE`). Empty: none.
    pub extra_ca_file: String,
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("tls.extra_ca_file {path}: {reason}")]
pub struct TlsConfigError {
    /// The bundle's path.
    pub path: String,
    /// What was wrong with it.
    pub reason: String,
}

static INSTALLED: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Builds the process's TLS client configuration from `cfg` and makes it the one
/// [`client_config`] returns. The first call wins (a process has one configuration).
pub fn install(cfg: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let built = build(cfg)?;
    Ok(INSTALLED.get_or_init(|| built).clone())
}

/// The process's TLS client configuration (ALPN `http/1.1`, which both reqwest without HTTP/2
/// and the WebSocket upgrade speak).
pub fn client_config() -> Arc<rustls::ClientConfig> {
    // Without an extra bundle, building cannot fail; the compiled-in roots are the floor anyway.
    INSTALLED
        .get_or_init(|| build(&TlsConfig::default()).unwrap_or_else(|_| Arc::new(with_roots(webpki_store()))))
        .clone()
}

fn webpki_store() -> rustls::RootCertStore {
    rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

fn with_roots(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| rustls::ClientConfig::builder())
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c
}

/// Builds a configuration (without installing it): built-in + system roots + `cfg`'s bundle.
pub fn build(cfg: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = webpki_store();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system CA certificate could not be read");
    }
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if !cfg.extra_ca_file.is_empty() {
        let added = add_bundle(&mut roots, Path::new(&cfg.extra_ca_file))?;
        tracing::info!(path = cfg.extra_ca_file, certificates = added, "trusting the extra CA bundle");
    }
    Ok(Arc::new(with_roots(roots)))
}

/// Adds every certificate of the PEM bundle at `path`; an unreadable file, a file without a
/// certificate or a certificate rustls refuses is an error naming the file.
pub fn add_bundle(roots: &mut rustls::RootCertStore, path: &Path) -> Result<usize, TlsConfigError> {
    let err = |reason: String| TlsConfigError { path: path.display().to_string(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("not a PEM bundle: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no certificate".into()));
    }
    let n = certs.len();
    for c in certs {
        roots.add(c).map_err(|e| err(format!("certificate refused: {e}")))?;
    }
    Ok(n)
}

/// Describes a TLS failure for an operator: the host and rustls' reason, e.g.
/// `TLS with ws.finnhub.io failed: invalid peer certificate: UnknownIssuer`.
pub fn describe_failure(host: &str, error: &std::io::Error) -> String {
    let reason = error.get_ref().map_or_else(|| error.to_string(), ToString::to_string);
    format!("TLS with {host} failed: {reason}")
}

/// True when `error` (from a TLS handshake) is a certificate problem: retrying the same
/// server will give the same answer until someone changes the trust store or the server.
pub fn is_certificate_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_trust_the_public_roots() {
        let c = build(&TlsConfig::default()).expect("defaults");
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_bad_extra_bundle_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("missing.pem");
        let e = build(&TlsConfig { extra_ca_file: missing.display().to_string() }).expect_err("missing");
        assert!(e.to_string().contains("missing.pem") && e.to_string().contains("cannot read"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").expect("write");
        let e = build(&TlsConfig { extra_ca_file: empty.display().to_string() }).expect_err("empty");
        assert!(e.to_string().contains("holds no certificate"), "{e}");
    }
}
