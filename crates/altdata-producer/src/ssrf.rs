//! The SSRF guard of user-configured sources: their URLs are user input, so every address the
//! client would connect to is checked — after DNS resolution, on redirects, and for IP
//! literals — against a policy:
//!
//! - only `http`/`https`;
//! - when `allowed_hosts` is not empty, the host must be one of them (or a subdomain of a
//!   `.`-prefixed entry);
//! - addresses that are not public — loopback, private (RFC 1918, ULA), link-local (incl. the
//!   cloud metadata address 169.254.169.254), CGNAT, unspecified, multicast, broadcast,
//!   documentation and benchmarking ranges, IPv4-mapped forms of those — are refused unless the
//!   host or address is listed in `allow_private`.
//!
//! The guard sits in the HTTP client's DNS resolver ([`GuardedResolver`]), so a name that
//! resolves to a private address is refused at connect time, whatever the URL looked like, and
//! in the redirect policy and a pre-check for IP literals (which skip DNS). Tests inject the
//! resolver and a tripwire that fails them if an address that is not loopback ever gets
//! through: a broken guard fails loudly instead of reaching the network.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;

pub use ingest_core::http::{Refused, refused_in};

/// What may be fetched.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Hosts that may be fetched (exact, or `.example.com` for subdomains); empty: any host.
    pub allowed_hosts: Vec<String>,
    /// Hosts or IP addresses allowed although they are not public (e.g. a local simulator).
    pub allow_private: Vec<String>,
}

/// True for addresses that are not on the public internet.
pub fn is_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 (may reach private v4)
                || (s[0] == 0x2002) // 6to4 (may embed private v4)
        }
    }
}

fn non_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240 // reserved
}

impl Policy {
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.is_empty()
            || self.allowed_hosts.iter().any(|a| {
                let a = a.to_ascii_lowercase();
                match a.strip_prefix('.') {
                    Some(suffix) => host == suffix || host.ends_with(&format!(".{suffix}")),
                    None => host == a,
                }
            })
    }

    fn private_allowed(&self, host: &str, ip: IpAddr) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_private.iter().any(|a| a.eq_ignore_ascii_case(&host) || a.parse::<IpAddr>().ok() == Some(ip))
    }

    /// Checks a URL before it is fetched (and each redirect target): scheme, host allow-list,
    /// and the address when the host is an IP literal.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::ssrf(format!("scheme `{}` is not http(s)", url.scheme())));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => return self.check_ip(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => return self.check_ip(&ip.to_string(), IpAddr::V6(ip)),
            None => return Err(Refused::ssrf("URL has no host")),
        };
        if !self.host_allowed(&host) {
            return Err(Refused::ssrf(format!("host `{host}` is not in altdata.allowed_hosts")));
        }
        Ok(())
    }

    /// Checks one address `host` resolved to (or an IP literal).
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        if !self.host_allowed(host) {
            return Err(Refused::ssrf(format!("host `{host}` is not in altdata.allowed_hosts")));
        }
        if is_non_public(ip) && !self.private_allowed(host, ip) {
            return Err(Refused::ssrf(format!(
                "`{host}` resolves to {ip}, which is not a public address (list it in altdata.allow_private to allow it)"
            )));
        }
        Ok(())
    }
}

/// Resolves host names (the system resolver in production; a fixed table in tests).
pub trait Lookup: Send + Sync + std::fmt::Debug {
    /// The addresses of `host`.
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The operating system's resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let host = host.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// Called with every address the guard lets through, just before the client connects; `false`
/// stops the connection. Tests use it to record and block anything but loopback, so even a
/// broken guard cannot reach the network.
pub type Tripwire = Arc<dyn Fn(&str, IpAddr) -> bool + Send + Sync>;

/// A `reqwest` resolver that refuses names resolving to addresses the policy does not allow.
#[derive(Clone)]
pub struct GuardedResolver {
    lookup: Arc<dyn Lookup>,
    policy: Arc<Policy>,
    tripwire: Option<Tripwire>,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("lookup", &self.lookup)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    /// A resolver over `lookup` enforcing `policy`; `tripwire` (tests) sees every address let through.
    pub fn new(lookup: Arc<dyn Lookup>, policy: Arc<Policy>, tripwire: Option<Tripwire>) -> Self {
        Self { lookup, policy, tripwire }
    }

    /// The addresses of `host` the policy allows, all of them or an error: one refused address
    /// refuses the name (a DNS answer mixing public and private addresses is an attack).
    pub async fn resolve_checked(&self, host: &str) -> Result<Vec<IpAddr>, Refused> {
        let ips = self.lookup.lookup(host).await.map_err(|e| Refused::ssrf(format!("cannot resolve `{host}`: {e}")))?;
        if ips.is_empty() {
            return Err(Refused::ssrf(format!("`{host}` has no address")));
        }
        for ip in &ips {
            self.policy.check_ip(host, *ip)?;
        }
        if let Some(t) = &self.tripwire {
            for ip in &ips {
                if !t(host, *ip) {
                    return Err(Refused::ssrf(format!("test tripwire: {host} -> {ip}")));
                }
            }
        }
        Ok(ips)
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The tripwire, for the IP-literal pre-check.
    pub fn tripwire(&self) -> Option<&Tripwire> {
        self.tripwire.as_ref()
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let ips = this
                .resolve_checked(&host)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let addrs: reqwest::dns::Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug)]
    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl Lookup for Table {
        fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
            let r = self.0.get(host).cloned().ok_or_else(|| std::io::Error::other("NXDOMAIN"));
            Box::pin(async move { r })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_ranges() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "2001:db8::1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_non_public(ip(a)), "{a}");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "100.128.0.1"] {
            assert!(!is_non_public(ip(a)), "{a}");
        }
    }

    #[test]
    fn urls_are_checked_before_fetching() {
        let open = Policy::default();
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(open.check_url(&u("https://data.example.org/x.json")).is_ok());
        for bad in [
            "http://127.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:8080/",
            "http://10.0.0.5/",
            "ftp://example.org/x",
            "file:///etc/passwd",
        ] {
            let err = open.check_url(&u(bad)).unwrap_err();
            assert!(err.to_string().starts_with("refused by the SSRF guard"), "{bad}: {err}");
        }
        let listed =
            Policy { allowed_hosts: vec!["api.example.org".into(), ".data.example.com".into()], allow_private: vec![] };
        assert!(listed.check_url(&u("https://api.example.org/")).is_ok());
        assert!(listed.check_url(&u("https://x.data.example.com/")).is_ok());
        assert!(listed.check_url(&u("https://data.example.com/")).is_ok());
        assert!(listed.check_url(&u("https://evil.example.org/")).is_err());
        assert!(listed.check_url(&u("https://notdata.example.com/")).is_err());
        let local = Policy { allowed_hosts: vec![], allow_private: vec!["127.0.0.1".into()] };
        assert!(local.check_url(&u("http://127.0.0.1:9400/feed")).is_ok(), "explicitly allowed");
        assert!(local.check_url(&u("http://169.254.169.254/")).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_and_nothing_else_gets_through() {
        let table = Table(HashMap::from([
            ("public.example", vec![ip("93.184.216.34")]),
            ("internal.example", vec![ip("10.0.0.5")]),
            ("mixed.example", vec![ip("93.184.216.34"), ip("127.0.0.1")]),
            ("metadata.example", vec![ip("169.254.169.254")]),
            ("sim.example", vec![ip("127.0.0.1")]),
        ]));
        let passed = Arc::new(Mutex::new(Vec::new()));
        let p = passed.clone();
        let tripwire: Tripwire = Arc::new(move |host: &str, ip: IpAddr| {
            p.lock().unwrap().push((host.to_string(), ip));
            ip.is_loopback() || host == "public.example"
        });
        let policy = Policy { allowed_hosts: vec![], allow_private: vec!["sim.example".into()] };
        let r = GuardedResolver::new(Arc::new(table), Arc::new(policy), Some(tripwire));
        assert_eq!(r.resolve_checked("public.example").await.unwrap(), [ip("93.184.216.34")]);
        assert_eq!(r.resolve_checked("sim.example").await.unwrap(), [ip("127.0.0.1")]);
        for refused in ["internal.example", "mixed.example", "metadata.example", "nxdomain.example"] {
            let e = r.resolve_checked(refused).await.unwrap_err();
            assert!(e.0.contains(refused), "{e}");
        }
        let through: Vec<String> = passed.lock().unwrap().iter().map(|(h, _)| h.clone()).collect();
        assert_eq!(through, ["public.example", "sim.example"], "only allowed addresses reach the connector");
        // The error survives reqwest's wrapping and can be found again.
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Refused("x".into()));
        let outer = std::io::Error::other(boxed);
        assert_eq!(refused_in(&outer), Some(Refused("x".into())));
    }

    /// The guard inside a real reqwest client: the allowed name reaches a local server, the
    /// private one fails with the guard's error before any connection, and the tripwire
    /// (which fails the test for any address that is not loopback) never fires.
    #[tokio::test]
    async fn inside_a_reqwest_client() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            }
        });
        let table =
            Table(HashMap::from([("sim.example", vec![ip("127.0.0.1")]), ("internal.example", vec![ip("10.0.0.5")])]));
        let tripwire: Tripwire = Arc::new(|host: &str, ip: IpAddr| {
            assert!(ip.is_loopback(), "the guard let {host} -> {ip} through: a test must never leave loopback");
            ip.is_loopback()
        });
        let policy = Policy { allowed_hosts: vec![], allow_private: vec!["sim.example".into()] };
        let resolver = GuardedResolver::new(Arc::new(table), Arc::new(policy), Some(tripwire));
        let client = reqwest::Client::builder().dns_resolver(Arc::new(resolver)).no_proxy().build().unwrap();
        let ok = client.get(format!("http://sim.example:{port}/")).send().await.unwrap();
        assert_eq!(ok.text().await.unwrap(), "ok");
        let err = client.get(format!("http://internal.example:{port}/")).send().await.unwrap_err();
        let refused = refused_in(&err).expect("the guard's error in the chain");
        assert!(refused.0.contains("10.0.0.5"), "{refused}");
    }
}
