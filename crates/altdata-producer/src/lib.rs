//! altdata-producer's library.
//!
//! - [`config`]: the `altdata:` section.
//! - [`ssrf`]: the guard every user-configured URL goes through (DNS-time address checks,
//!   redirects, IP literals), with an injectable resolver and a tripwire for tests.
//!
//! The custom-source pollers (JSON, HTML, CSV) that use them are not built yet; the producer
//! says so at start.

pub mod config;
pub mod ssrf;
