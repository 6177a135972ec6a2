//! altdata-producer's library: user-configured sources, no code change per source.
//!
//! - [`config`]: the `altdata:` section (sources, host allow-list, private-address allowances).
//! - [`custom`]: a configured source as a poller (JSON Pointer, CSV column or CSS selector
//!   mapping, paging, auth from the environment, content-hash ids).
//! - [`html`]: CSS-selector scraping of `kind: html` pages.
//! - [`ssrf`]: the guard every URL goes through (DNS-time address checks, redirects, IP
//!   literals), with an injectable lookup and a tripwire for tests.
//! - [`group`]: the sources in one exactly-once group; each has its own breaker, so a failing
//!   source does not hold the others back.

pub mod config;
pub mod custom;
pub mod html;
pub mod ssrf;

use std::sync::Arc;

use ingest_core::config::Config;
use ingest_core::poll::{PollGroup, PollSettings};

/// Name of the polling group.
pub const GROUP: &str = "altdata";

/// The configured sources, resolving names with `lookup` (the system resolver in production),
/// reaching them through `proxy` (the environment's `HTTPS_PROXY`/`NO_PROXY` in production) and
/// reporting every address let through to `tripwire` (tests).
///
/// Through a proxy, a source's target is resolved and checked by the SSRF guard before the
/// proxy is asked to reach it; the proxy then resolves the name itself. The proxy's own host is
/// the operator's and is let through the guard.
pub fn group(
    cfg: &Config<config::AltDataConfig>,
    producer: &str,
    lookup: Arc<dyn ssrf::Lookup>,
    tripwire: Option<ssrf::Tripwire>,
    proxy: &ingest_core::proxy::ProxyEnv,
) -> PollGroup {
    let a = &cfg.section;
    let (mut allowed_hosts, mut allow_private) = (a.allowed_hosts.clone(), a.allow_private.clone());
    if !allowed_hosts.is_empty() {
        allowed_hosts.extend(proxy.hosts());
    }
    allow_private.extend(proxy.hosts());
    let policy = Arc::new(ssrf::Policy { allowed_hosts, allow_private });
    let resolver = ssrf::GuardedResolver::new(lookup, policy, tripwire);
    let mut group = PollGroup::new(GROUP, cfg.core.runtime.group_settings(producer, GROUP));
    for s in &a.sources {
        // Sources on one host share its rate limit (5 requests/s, served in turn); each source
        // has its own breaker and backoff, so a failing one does not hold the others back.
        let host = url::Url::parse(&s.url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        let poll = PollSettings {
            rate_per_second: 5.0,
            rate_burst: 5,
            limit_key: Some(format!("altdata:{}", host.unwrap_or_default())),
            ..PollSettings::default()
        };
        group.add(custom::CustomSource::new(s.clone(), resolver.clone(), proxy.clone()), poll);
    }
    group
}
