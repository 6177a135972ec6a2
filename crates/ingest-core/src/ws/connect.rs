//! Opening a WebSocket: the URL as users write it, TCP (directly, or tunnelled through the
//! `HTTPS_PROXY`/`HTTP_PROXY` of the environment unless `NO_PROXY` names the host, see
//! [`crate::proxy`]), TLS with the process's roots ([`crate::tls`]), and the HTTP upgrade.
//!
//! TLS is done here with rustls rather than by tokio-tungstenite's optional TLS features, so
//! that `wss://` always works, trusts the same roots as every HTTPS client of the process and
//! reports a certificate problem with the host and rustls' reason.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{WsError, classify};

/// A byte stream a WebSocket can run over (TCP, TLS over TCP, an in-memory pipe in tests).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open WebSocket over any [`Io`].
pub type WsStream = WebSocketStream<Box<dyn Io>>;

/// Opens connections for the runner. Production uses [`Dialer`]; tests may connect to an
/// in-memory server.
pub trait Connector: Send + Sync {
    /// Opens one connection (TCP, TLS, upgrade) with `config`.
    fn connect(&self, config: WebSocketConfig) -> BoxFuture<'_, Result<WsStream, WsError>>;
}

/// A parsed `ws://` or `wss://` URL.
#[derive(Clone)]
pub struct Target {
    url: url::Url,
    host: String,
    port: u16,
    tls: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("host", &self.host).field("port", &self.port).field("tls", &self.tls).finish()
    }
}

impl Target {
    /// Parses `url`. A URL without a path (`wss://ws.finnhub.io?token=…`, as Finnhub documents
    /// it) gets the root path, so the request line is `GET /?token=… HTTP/1.1`.
    pub fn parse(url: &str) -> Result<Self, WsError> {
        let url = url::Url::parse(url).map_err(|e| WsError::Connect(format!("not a URL: {e}")))?;
        let tls = match url.scheme() {
            "wss" => true,
            "ws" => false,
            other => return Err(WsError::Connect(format!("unsupported scheme `{other}` (ws or wss)"))),
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(WsError::Connect("the URL has no host".into())),
        };
        let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { url, host, port, tls })
    }

    /// The host name (or address) connected to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The request URI: always with a path (`/`), query kept.
    pub fn request_uri(&self) -> String {
        let path = if self.url.path().is_empty() { "/" } else { self.url.path() };
        match self.url.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        }
    }
}

/// Connects to a real server: TCP, then TLS for `wss://` with [`crate::tls::client_config`].
#[derive(Debug, Clone)]
pub struct Dialer {
    target: Target,
    tls: Arc<rustls::ClientConfig>,
    proxy: crate::proxy::ProxyEnv,
}

impl Dialer {
    /// A dialer for `url` with the process's TLS configuration.
    pub fn new(url: &str) -> Result<Self, WsError> {
        Ok(Self {
            target: Target::parse(url)?,
            tls: crate::tls::client_config(),
            proxy: crate::proxy::ProxyEnv::from_env(),
        })
    }

    /// The same, trusting `tls` instead (tests).
    pub fn with_tls(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self, WsError> {
        Ok(Self { target: Target::parse(url)?, tls, proxy: crate::proxy::ProxyEnv::from_env() })
    }

    async fn open(&self, config: WebSocketConfig) -> Result<WsStream, WsError> {
        let t = &self.target;
        let tcp = match self.proxy.for_host(t.tls, &t.host) {
            Some(proxy) => crate::proxy::connect_tunnel(proxy, &t.host, t.port).await.map_err(WsError::Connect)?,
            None => tokio::net::TcpStream::connect((t.host.as_str(), t.port))
                .await
                .map_err(|e| WsError::Connect(format!("{}:{}: {e}", t.host, t.port)))?,
        };
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if t.tls {
            let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                .map_err(|e| WsError::Connect(format!("`{}` is not a valid TLS server name: {e}", t.host)))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|e| {
                WsError::Tls {
                    host: t.host.clone(),
                    reason: crate::tls::describe_failure(&t.host, &e),
                    certificate: crate::tls::is_certificate_error(&e),
                }
            })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        // The request is built from the URL with its path made explicit; tungstenite adds the
        // Host header (with the port when it is not the default) and the upgrade headers.
        let mut url = t.url.clone();
        if url.path().is_empty() {
            url.set_path("/");
        }
        let request = url.as_str().into_client_request().map_err(|e| WsError::Connect(e.to_string()))?;
        let limit = config.max_message_size.unwrap_or(usize::MAX);
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
            .await
            .map_err(|e| classify(e, limit))?;
        Ok(ws)
    }
}

impl Connector for Dialer {
    fn connect(&self, config: WebSocketConfig) -> BoxFuture<'_, Result<WsStream, WsError>> {
        Box::pin(self.open(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_as_users_write_them() {
        let f = Target::parse("wss://ws.finnhub.io?token=abc").expect("finnhub form");
        assert_eq!((f.host(), f.port, f.tls), ("ws.finnhub.io", 443, true));
        assert_eq!(f.request_uri(), "/?token=abc", "never `GET ?token=`");
        let p = Target::parse("wss://socket.massive.com/stocks").expect("polygon");
        assert_eq!((p.request_uri().as_str(), p.port), ("/stocks", 443));
        let a = Target::parse("wss://stream.data.alpaca.markets/v2/iex").expect("alpaca");
        assert_eq!(a.request_uri(), "/v2/iex");
        let local = Target::parse("ws://127.0.0.1:9400/stocks").expect("local");
        assert_eq!((local.host(), local.port, local.tls), ("127.0.0.1", 9400, false));
        assert!(Target::parse("https://socket.massive.com/stocks").is_err());
        assert!(Target::parse("wss://").is_err());
    }
}
