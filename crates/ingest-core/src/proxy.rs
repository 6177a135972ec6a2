//! Egress through an HTTP proxy, as corporate networks require: `HTTPS_PROXY` (or
//! `https_proxy`) for `https://` and `wss://`, `HTTP_PROXY` for `http://` and `ws://`, and
//! `NO_PROXY` (comma-separated hosts, `.domain` or `domain` for a domain and its subdomains,
//! `*` for everything) for the hosts reached directly.
//!
//! reqwest clients read the same variables themselves. The WebSocket dialer tunnels through
//! [`connect_tunnel`] (HTTP `CONNECT`). The altdata producer gets a [`ProxyEnv`] injected, so
//! that its SSRF guard can check a target before the proxy is asked to reach it.

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy to tunnel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The proxy's URL as configured (`http://user:pass@proxy.corp:3128`).
    pub url: url::Url,
}

impl Proxy {
    fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(3128)
    }

    /// The URL without credentials, for logs and errors.
    pub fn display(&self) -> String {
        format!("{}:{}", self.host(), self.port())
    }

    /// `Proxy-Authorization` for credentials in the URL, if any.
    fn authorization(&self) -> Option<String> {
        if self.url.username().is_empty() {
            return None;
        }
        let user = percent(self.url.username());
        let pass = percent(self.url.password().unwrap_or_default());
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))))
    }
}

fn percent(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// The proxy settings of the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    https: Option<Proxy>,
    http: Option<Proxy>,
    no_proxy: Vec<String>,
}

impl ProxyEnv {
    /// From the process environment (upper case first, then lower case).
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// From `get` (tests): `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` and their lower-case forms.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| get(name).or_else(|| get(&name.to_lowercase())).filter(|v| !v.trim().is_empty());
        let proxy = |name: &str| {
            let raw = var(name)?;
            // `proxy.corp:3128` without a scheme is common: read it as http://.
            let with_scheme = if raw.contains("://") { raw } else { format!("http://{raw}") };
            url::Url::parse(&with_scheme).ok().filter(|u| u.host_str().is_some()).map(|url| Proxy { url })
        };
        let no_proxy = var("NO_PROXY")
            .map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Self { https: proxy("HTTPS_PROXY"), http: proxy("HTTP_PROXY"), no_proxy }
    }

    /// The proxy for a connection to `host` (`secure`: https/wss), or `None` to go direct.
    pub fn for_host(&self, secure: bool, host: &str) -> Option<&Proxy> {
        let proxy = if secure { self.https.as_ref() } else { self.http.as_ref() }?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let bypass = self.no_proxy.iter().any(|entry| {
            let entry = entry.split(':').next().unwrap_or(entry);
            let domain = entry.trim_start_matches("*.").trim_start_matches('.');
            entry == "*" || host == domain || host.ends_with(&format!(".{domain}"))
        });
        (!bypass).then_some(proxy)
    }

    /// The proxies' host names (an operator's own infrastructure, reached by name).
    pub fn hosts(&self) -> Vec<String> {
        [&self.https, &self.http].into_iter().flatten().map(|p| p.host().to_ascii_lowercase()).collect()
    }

    /// True when some proxy is configured.
    pub fn any(&self) -> bool {
        self.https.is_some() || self.http.is_some()
    }

    /// The reqwest proxy setting equal to this one (for a client built with `no_proxy()`).
    pub fn reqwest_proxies(&self) -> Vec<reqwest::Proxy> {
        let no = reqwest::NoProxy::from_string(&self.no_proxy.join(","));
        let mut out = Vec::new();
        if let Some(p) = &self.https
            && let Ok(r) = reqwest::Proxy::https(p.url.as_str())
        {
            out.push(r.no_proxy(no.clone()));
        }
        if let Some(p) = &self.http
            && let Ok(r) = reqwest::Proxy::http(p.url.as_str())
        {
            out.push(r.no_proxy(no));
        }
        out
    }
}

/// Opens a TCP connection to `host:port` through `proxy` with HTTP `CONNECT`.
pub async fn connect_tunnel(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, String> {
    let mut tcp = TcpStream::connect((proxy.host(), proxy.port()))
        .await
        .map_err(|e| format!("proxy {}: {e}", proxy.display()))?;
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = proxy.authorization() {
        req.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.map_err(|e| format!("proxy {}: {e}", proxy.display()))?;
    // The answer's head, byte by byte up to the blank line (the tunnel's bytes follow it).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 {
            return Err(format!("proxy {}: answer head too long", proxy.display()));
        }
        let b = tcp.read_u8().await.map_err(|e| format!("proxy {}: {e}", proxy.display()))?;
        head.push(b);
    }
    let status = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("proxy {} refused CONNECT {target}: {status}", proxy.display()));
    }
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        ProxyEnv::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_string()))
    }

    #[test]
    fn https_proxy_and_no_proxy() {
        let e = env(&[("HTTPS_PROXY", "proxy.corp:3128"), ("no_proxy", "localhost, .internal.corp,example.org")]);
        let p = e.for_host(true, "socket.massive.com").expect("proxied");
        assert_eq!(p.display(), "proxy.corp:3128");
        assert_eq!(e.for_host(false, "socket.massive.com"), None, "no HTTP_PROXY: plain goes direct");
        for direct in ["localhost", "a.internal.corp", "internal.corp", "example.org", "www.example.org"] {
            assert_eq!(e.for_host(true, direct), None, "{direct}");
        }
        assert!(e.for_host(true, "notexample.org").is_some(), "a suffix is a domain, not a substring");
        assert_eq!(env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")]).for_host(true, "x.y"), None);
        assert!(!env(&[]).any());
        let auth = env(&[("HTTPS_PROXY", "http://user:p%40ss@p:1")]).for_host(true, "x").unwrap().authorization();
        assert_eq!(auth.as_deref(), Some("Basic dXNlcjpwQHNz"), "user:p@ss");
    }
}
