//! Gap accounting of a streaming source: the windows in which data may have been missed.
//!
//! A gap runs from the last frame received on the old connection (any frame: data, status,
//! ping, pong) to the moment the subscription is live again. Windows never overlap: a window
//! starts no earlier than the previous one ended. Time in which the feed's market was closed
//! is not part of a gap: a window that starts while closed starts at the next open, and a
//! window in which the market never opened is no gap at all. The published windows are the
//! ones counted in `producer_ws_gap_seconds_total`, so the counter is their exact sum.

use chrono::{DateTime, Utc};

use crate::market_hours::{MarketSession, first_open_in};

/// A window to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End: the subscription was live again.
    pub to: DateTime<Utc>,
    /// Why, when not a plain disconnect (e.g. the previous process crashed).
    pub why: String,
}

impl Gap {
    /// Length in seconds (microsecond precision).
    pub fn secs(&self) -> f64 {
        (self.to - self.from).num_microseconds().unwrap_or(0) as f64 / 1e6
    }
}

/// Why a gap was not repaired from the provider's history (the `outcome` label of
/// `producer_gap_repairs_total` and the reason of a `gap_unrepaired` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrepaired {
    /// The provider has no history for this feed, or the plan does not include it.
    NoHistory,
    /// Still rate limited (or failing) when the repair's deadline came.
    RateLimited,
    /// The window is longer than the configured limit.
    TooLong,
    /// The provider refused the key or a request (401, a symbol it does not know), or a guard of
    /// ours refused a next page.
    Refused,
    /// This kind of gap cannot be repaired exactly (its live edge is unknown).
    Unsupported,
    /// Anything else: an unexpected response, Kafka refusing the repaired ticks, shutdown.
    Failed,
}

impl Unrepaired {
    /// Every reason (their series are created at 0, so that the first one counts in `increase`).
    pub const ALL: [Unrepaired; 6] = [
        Unrepaired::NoHistory,
        Unrepaired::RateLimited,
        Unrepaired::TooLong,
        Unrepaired::Refused,
        Unrepaired::Unsupported,
        Unrepaired::Failed,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Unrepaired::NoHistory => "no_history",
            Unrepaired::RateLimited => "rate_limited",
            Unrepaired::TooLong => "too_long",
            Unrepaired::Refused => "refused",
            Unrepaired::Unsupported => "unsupported",
            Unrepaired::Failed => "failed",
        }
    }
}

/// The gap state of one streaming source across its connections.
#[derive(Debug)]
pub struct GapTracker {
    session: MarketSession,
    /// An open window: its start and reason.
    open: Option<(DateTime<Utc>, String)>,
    last_frame: Option<DateTime<Utc>>,
    last_end: Option<DateTime<Utc>>,
    ever_live: bool,
}

impl GapTracker {
    /// A tracker for a feed following `session`; `restart` is the window left open by a
    /// previous process that died (see `SourceCtx::restart_gap`).
    pub fn new(session: MarketSession, restart: Option<(DateTime<Utc>, String)>) -> Self {
        Self { session, open: restart, last_frame: None, last_end: None, ever_live: false }
    }

    /// A frame (any frame) arrived at `at`.
    pub fn frame(&mut self, at: DateTime<Utc>) {
        self.last_frame = Some(at);
    }

    /// The connection ended (or failed) at `now`. Opens a window if the subscription had ever
    /// been live and none is open.
    pub fn disconnected(&mut self, now: DateTime<Utc>) {
        if !self.ever_live || self.open.is_some() {
            return;
        }
        let mut from = self.last_frame.unwrap_or(now);
        if let Some(end) = self.last_end {
            from = from.max(end);
        }
        self.open = Some((from.min(now), String::new()));
    }

    /// The subscription is live again at `at`: the window to publish, if any.
    pub fn resumed(&mut self, at: DateTime<Utc>) -> Option<Gap> {
        self.ever_live = true;
        self.last_frame = Some(self.last_frame.map_or(at, |f| f.max(at)));
        let (from, why) = self.open.take()?;
        let from = match self.last_end {
            Some(end) => from.max(end),
            None => from,
        };
        self.last_end = Some(at);
        let from = first_open_in(self.session, from, at)?;
        Some(Gap { from, to: at, why })
    }

    /// True while a window is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::utc as t;

    #[test]
    fn windows_start_at_the_last_frame_and_never_overlap() {
        let mut g = GapTracker::new(MarketSession::Always, None);
        g.disconnected(t("2026-12-02T15:00:00Z"));
        assert!(!g.is_open(), "nothing was live yet");
        assert_eq!(g.resumed(t("2026-12-02T15:00:01Z")), None);
        g.frame(t("2026-12-02T15:00:10Z"));
        g.disconnected(t("2026-12-02T15:01:10Z"));
        let first = g.resumed(t("2026-12-02T15:01:12Z")).expect("gap");
        assert_eq!((first.from, first.to), (t("2026-12-02T15:00:10Z"), t("2026-12-02T15:01:12Z")));
        // The new connection stays silent and is dropped again: the next window starts where the
        // previous one ended (the resubscription frame), not at the old last data.
        g.disconnected(t("2026-12-02T15:02:12Z"));
        g.disconnected(t("2026-12-02T15:02:30Z"));
        let second = g.resumed(t("2026-12-02T15:02:40Z")).expect("gap");
        assert_eq!(second.from, t("2026-12-02T15:01:12Z"));
        assert!(second.from >= first.to);
        assert!((first.secs() + second.secs() - (62.0 + 88.0)).abs() < 1e-9);
    }

    #[test]
    fn closed_market_time_is_not_a_gap() {
        let mut g = GapTracker::new(MarketSession::UsEquities, None);
        let _ = g.resumed(t("2026-12-04T20:00:00Z"));
        // Last frame Friday 20:30 EST, after the after-hours close; back on Saturday: no gap.
        g.frame(t("2026-12-05T01:30:00Z"));
        g.disconnected(t("2026-12-05T02:00:00Z"));
        assert_eq!(g.resumed(t("2026-12-05T15:00:00Z")), None);
        // Dropped Sunday, back Monday 04:30 EST: the gap starts at Monday's 04:00 open.
        g.frame(t("2026-12-06T12:00:00Z"));
        g.disconnected(t("2026-12-06T12:00:05Z"));
        let gap = g.resumed(t("2026-12-07T09:30:00Z")).expect("gap");
        assert_eq!((gap.from, gap.to), (t("2026-12-07T09:00:00Z"), t("2026-12-07T09:30:00Z")));
    }

    #[test]
    fn a_restart_window_is_published_at_the_first_subscription() {
        let mut g = GapTracker::new(MarketSession::Always, Some((t("2026-12-02T14:59:00Z"), "crash".into())));
        let gap = g.resumed(t("2026-12-02T15:00:00Z")).expect("gap");
        assert_eq!((gap.from, gap.why.as_str()), (t("2026-12-02T14:59:00Z"), "crash"));
    }
}
