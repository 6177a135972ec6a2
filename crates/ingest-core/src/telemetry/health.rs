//! Liveness and readiness state. Sources update their cell with atomics (cheap enough for the
//! hot path); the `/ready` handler reads everything and says why it is not ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Shared health of one producer process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    producer: String,
    version: String,
    started: Instant,
    stopping: AtomicBool,
    fatal: Mutex<Option<String>>,
    kafka: Mutex<(bool, String)>,
    sources: Mutex<BTreeMap<String, Arc<SourceCell>>>,
}

#[derive(Debug)]
struct SourceCell {
    connected: AtomicBool,
    /// Milliseconds since `Inner::started` of the last data, +1 (0 = never).
    last_data_ms: AtomicU64,
    stale_after: Duration,
    detail: Mutex<String>,
    /// `Some(why)` while the source's market is closed: silence is then expected.
    market_closed: Mutex<Option<String>>,
    /// Milliseconds since `Inner::started` when the market last opened, +1 (0 = never closed):
    /// freshness counts from then, not from the last trade of the previous session.
    reopened_ms: AtomicU64,
    /// How many independent members the source runs (a poll group's pollers; 1 otherwise), and
    /// which of them a provider refused (member → why): while some member can still run, the
    /// source is degraded, not stopped.
    members: AtomicU64,
    blocked: Mutex<BTreeMap<String, String>>,
}

/// A source's handle on its own health.
#[derive(Debug, Clone)]
pub struct SourceHealth {
    cell: Arc<SourceCell>,
    started: Instant,
}

impl SourceHealth {
    /// Connected (or, for polled sources, the last poll succeeded) or not, with a reason.
    pub fn set_connected(&self, connected: bool, detail: impl Into<String>) {
        self.cell.connected.store(connected, Ordering::Release);
        *self.cell.detail.lock().unwrap_or_else(PoisonError::into_inner) = detail.into();
    }

    /// Data arrived now. Two atomic stores; call it per frame or per batch.
    pub fn mark_data(&self) {
        self.cell.last_data_ms.store(self.now_ms(), Ordering::Release);
    }

    /// The source's market closed (`Some(why)`, e.g. `market closed (weekend) until …`) or
    /// opened (`None`). While closed, silence is not staleness; freshness counts again from the
    /// moment it opens.
    pub fn set_market_closed(&self, why: Option<String>) {
        let mut closed = self.cell.market_closed.lock().unwrap_or_else(PoisonError::into_inner);
        if closed.is_some() && why.is_none() {
            self.cell.reopened_ms.store(self.now_ms(), Ordering::Release);
        }
        *closed = why;
    }

    /// The source runs `n` independent members (a poll group's pollers).
    pub fn set_members(&self, n: usize) {
        self.cell.members.store(u64::try_from(n).unwrap_or(u64::MAX).max(1), Ordering::Release);
    }

    /// Member `member` was refused by its provider (`Some(why)`: it waits and tries again
    /// later) or works again (`None`). `/ready` names every blocked member.
    pub fn set_blocked(&self, member: &str, why: Option<String>) {
        let mut blocked = self.cell.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        match why {
            Some(w) => {
                blocked.insert(member.to_string(), w);
            }
            None => {
                blocked.remove(member);
            }
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }
}

fn since(started: Instant, stamp: u64) -> Option<Duration> {
    match stamp {
        0 => None,
        ms => Some(started.elapsed().saturating_sub(Duration::from_millis(ms - 1))),
    }
}

fn age(cell: &SourceCell, started: Instant) -> Option<Duration> {
    since(started, cell.last_data_ms.load(Ordering::Acquire))
}

/// `/ready` body.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// True when the process should receive traffic / be counted as working.
    pub ready: bool,
    /// Why not, one line per cause.
    pub reasons: Vec<String>,
    /// Kafka reachability and topics.
    pub kafka: ComponentReport,
    /// Every registered source.
    pub sources: Vec<SourceReport>,
    /// Said when the producer has no source at all (an altdata producer without sources): it
    /// is idle, and ready while Kafka answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One component in `/ready`.
#[derive(Debug, Serialize)]
pub struct ComponentReport {
    /// Working.
    pub ok: bool,
    /// Detail.
    pub detail: String,
}

/// One source in `/ready`.
#[derive(Debug, Serialize)]
pub struct SourceReport {
    /// Source name.
    pub name: String,
    /// Connected / last poll succeeded.
    pub connected: bool,
    /// Data arrived within the staleness limit (always true without a limit).
    pub fresh: bool,
    /// Seconds since the last data.
    pub last_data_age_secs: Option<f64>,
    /// `market closed (…) until …` while the source's market is closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub market: Option<String>,
    /// Members refused by their provider, each with why and when it is tried again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<String>,
    /// Detail.
    pub detail: String,
}

/// `/health` body.
#[derive(Debug, Serialize)]
pub struct Liveness {
    /// `ok`, `stopping` or `fatal`.
    pub status: &'static str,
    /// Producer name.
    pub producer: String,
    /// Version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The fatal error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Health {
    /// New state: Kafka not yet checked, no sources.
    pub fn new(producer: &str, version: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                producer: producer.into(),
                version: version.into(),
                started: Instant::now(),
                stopping: AtomicBool::new(false),
                fatal: Mutex::new(None),
                kafka: Mutex::new((false, "not checked yet".into())),
                sources: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Registers a source. `stale_after`: no data for this long while connected → not ready.
    pub fn register_source(&self, name: &str, stale_after: Option<Duration>) -> SourceHealth {
        let cell = Arc::new(SourceCell {
            connected: AtomicBool::new(false),
            last_data_ms: AtomicU64::new(0),
            stale_after: stale_after.unwrap_or(Duration::MAX),
            detail: Mutex::new("starting".into()),
            market_closed: Mutex::new(None),
            reopened_ms: AtomicU64::new(0),
            members: AtomicU64::new(1),
            blocked: Mutex::new(BTreeMap::new()),
        });
        self.inner.sources.lock().unwrap_or_else(PoisonError::into_inner).insert(name.into(), cell.clone());
        SourceHealth { cell, started: self.inner.started }
    }

    /// Records the latest Kafka check.
    pub fn set_kafka(&self, ok: bool, detail: impl Into<String>) {
        *self.inner.kafka.lock().unwrap_or_else(PoisonError::into_inner) = (ok, detail.into());
    }

    /// The latest Kafka check's detail.
    pub fn kafka_detail(&self) -> String {
        self.inner.kafka.lock().unwrap_or_else(PoisonError::into_inner).1.clone()
    }

    /// Records a fatal error: liveness and readiness fail from now on.
    pub fn set_fatal(&self, error: impl Into<String>) {
        let mut f = self.inner.fatal.lock().unwrap_or_else(PoisonError::into_inner);
        if f.is_none() {
            *f = Some(error.into());
        }
    }

    /// The fatal error, if one was recorded.
    pub fn fatal(&self) -> Option<String> {
        self.inner.fatal.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// `Some(why)` when every member of every registered source is blocked (refused by its
    /// provider): the process has nothing left to run. `None` while anything can run, or when
    /// no source is registered.
    pub fn nothing_can_run(&self) -> Option<String> {
        let sources = self.inner.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let mut why = Vec::new();
        for cell in sources.values() {
            let blocked = cell.blocked.lock().unwrap_or_else(PoisonError::into_inner);
            if (blocked.len() as u64) < cell.members.load(Ordering::Acquire) {
                return None;
            }
            why.extend(blocked.iter().map(|(m, w)| format!("{m}: {w}")));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Shutdown began: not ready any more.
    pub fn set_stopping(&self) {
        self.inner.stopping.store(true, Ordering::Release);
    }

    /// The `/health` answer.
    pub fn liveness(&self) -> Liveness {
        let error = self.fatal();
        let status = if error.is_some() {
            "fatal"
        } else if self.inner.stopping.load(Ordering::Acquire) {
            "stopping"
        } else {
            "ok"
        };
        Liveness {
            status,
            producer: self.inner.producer.clone(),
            version: self.inner.version.clone(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            error,
        }
    }

    /// The `/ready` answer.
    pub fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if let Some(f) = self.fatal() {
            reasons.push(format!("fatal: {f}"));
        }
        if self.inner.stopping.load(Ordering::Acquire) {
            reasons.push("shutting down".into());
        }
        let (kafka_ok, kafka_detail) = self.inner.kafka.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if !kafka_ok {
            reasons.push(format!("kafka: {kafka_detail}"));
        }
        let sources: Vec<SourceReport> = self
            .inner
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, cell)| {
                let connected = cell.connected.load(Ordering::Acquire);
                let age = age(cell, self.inner.started);
                let market = cell.market_closed.lock().unwrap_or_else(PoisonError::into_inner).clone();
                // Freshness counts from the later of the last data and the market's last open.
                let reopened = since(self.inner.started, cell.reopened_ms.load(Ordering::Acquire));
                let quiet_for = match (age, reopened) {
                    (Some(a), Some(r)) => Some(a.min(r)),
                    (a, r) => a.or(r),
                };
                let fresh = market.is_some()
                    || match quiet_for {
                        Some(a) => a <= cell.stale_after,
                        None => cell.stale_after == Duration::MAX,
                    };
                let detail = cell.detail.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let blocked: Vec<String> = cell
                    .blocked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .map(|(m, w)| format!("{m}: {w}"))
                    .collect();
                for b in &blocked {
                    reasons.push(format!("source {name}: {b}"));
                }
                if !connected {
                    reasons.push(format!("source {name}: not connected ({detail})"));
                } else if !fresh {
                    reasons.push(format!("source {name}: no data for {:?}", age.unwrap_or_default()));
                }
                SourceReport {
                    name: name.clone(),
                    connected,
                    fresh,
                    last_data_age_secs: age.map(|a| a.as_secs_f64()),
                    market,
                    detail,
                    blocked,
                }
            })
            .collect();
        let note = sources.is_empty().then(|| "no sources configured: idle".to_string());
        Readiness {
            ready: reasons.is_empty(),
            reasons,
            kafka: ComponentReport { ok: kafka_ok, detail: kafka_detail },
            sources,
            note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_kafka_and_connected_fresh_sources() {
        let h = Health::new("p", "1");
        assert!(!h.readiness().ready, "kafka not checked yet");
        h.set_kafka(true, "3 topics present");
        assert!(h.readiness().ready);
        assert_eq!(h.readiness().note.as_deref(), Some("no sources configured: idle"), "no source: ready, and says so");
        let s = h.register_source("polygon", Some(Duration::from_secs(3600)));
        let r = h.readiness();
        assert_eq!(r.note, None);
        assert!(!r.ready);
        assert!(r.reasons[0].contains("not connected (starting)"), "{:?}", r.reasons);
        s.set_connected(true, "subscribed");
        assert!(!h.readiness().ready, "connected but never got data");
        s.mark_data();
        assert!(h.readiness().ready, "{:?}", h.readiness().reasons);
        h.set_stopping();
        assert_eq!(h.readiness().reasons, vec!["shutting down".to_string()]);
    }

    #[test]
    fn stale_source_is_not_ready() {
        let h = Health::new("p", "1");
        h.set_kafka(true, "");
        let s = h.register_source("x", Some(Duration::ZERO));
        s.set_connected(true, "");
        s.mark_data();
        crate::blocking::sleep(Duration::from_millis(5));
        let r = h.readiness();
        assert!(!r.sources[0].fresh && !r.ready, "{r:?}");
    }

    #[test]
    fn a_closed_market_keeps_a_silent_source_ready_and_says_so() {
        let h = Health::new("p", "1");
        h.set_kafka(true, "");
        let s = h.register_source("polygon", Some(Duration::ZERO));
        s.set_connected(true, "subscribed");
        s.mark_data();
        crate::blocking::sleep(Duration::from_millis(5));
        assert!(!h.readiness().ready, "stale while open");
        s.set_market_closed(Some("market closed (weekend) until 2026-12-07T09:00:00Z".into()));
        let r = h.readiness();
        assert!(r.ready && r.sources[0].fresh, "{r:?}");
        assert_eq!(r.sources[0].market.as_deref(), Some("market closed (weekend) until 2026-12-07T09:00:00Z"));
        let h2 = Health::new("p", "1");
        h2.set_kafka(true, "");
        let s2 = h2.register_source("polygon", Some(Duration::from_secs(60)));
        s2.set_connected(true, "subscribed");
        s2.set_market_closed(Some("closed".into()));
        s2.set_market_closed(None);
        assert!(h2.readiness().ready, "freshly reopened: counts from the open, not from never");
    }

    #[test]
    fn fatal_fails_liveness() {
        let h = Health::new("p", "1");
        assert_eq!(h.liveness().status, "ok");
        h.set_fatal("broker fenced us");
        h.set_fatal("second error is ignored");
        let l = h.liveness();
        assert_eq!((l.status, l.error.as_deref()), ("fatal", Some("broker fenced us")));
    }
}
