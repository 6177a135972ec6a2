//! When a market is open, so that a silent feed is told apart from a broken one.
//!
//! A US-equities WebSocket is quiet at night, at weekends and on exchange holidays; a crypto
//! feed never closes; spot forex trades from Sunday 17:00 to Friday 17:00 New York time. The
//! WebSocket runner asks [`MarketSession::state_at`] before it calls a silence stale, and the
//! gap it publishes covers only time the market was open.
//!
//! US equities (America/New_York, DST handled by `chrono-tz`'s IANA database): pre-market from
//! 04:00, regular 09:30–16:00, after-hours to 20:00; NYSE holidays and 13:00 early closes
//! (after-hours then ends at 17:00) come from one data file, `data/nyse-calendar.csv`, compiled
//! in. [`MarketSession::UsEquitiesRegular`] counts only the regular session.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::America::New_York;

/// Which trading hours a feed follows (`market.session`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketSession {
    /// Never closed (crypto; tests).
    Always,
    /// US equities with extended hours: 04:00–20:00 New York on NYSE trading days.
    UsEquities,
    /// US equities, regular session only: 09:30–16:00 (13:00 on early-close days).
    UsEquitiesRegular,
    /// Spot forex: Sunday 17:00 to Friday 17:00 New York.
    Forex,
}

impl MarketSession {
    /// The config name of this session kind.
    pub fn name(self) -> &'static str {
        match self {
            MarketSession::Always => "always",
            MarketSession::UsEquities => "us_equities",
            MarketSession::UsEquitiesRegular => "us_equities_regular",
            MarketSession::Forex => "forex",
        }
    }

    /// Whether the market is open at `t`, until when, and in which phase.
    pub fn state_at(self, t: DateTime<Utc>) -> MarketState {
        match self {
            MarketSession::Always => MarketState { open: true, until: None, phase: "always open".into() },
            MarketSession::UsEquities => us_equities(t, false),
            MarketSession::UsEquitiesRegular => us_equities(t, true),
            MarketSession::Forex => forex(t),
        }
    }
}

/// A market's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketState {
    /// Trading now.
    pub open: bool,
    /// When this state ends (the next open or close), if ever.
    pub until: Option<DateTime<Utc>>,
    /// `pre-market`, `regular`, `after-hours`, `weekend`, `overnight`, a holiday's name, …
    pub phase: String,
}

impl MarketState {
    /// A line for `/ready` and logs: `market closed (weekend) until 2026-12-07T09:00:00Z`.
    pub fn describe(&self) -> String {
        let what = if self.open { "market open" } else { "market closed" };
        match self.until {
            Some(u) => format!("{what} ({}) until {}", self.phase, u.format("%Y-%m-%dT%H:%M:%SZ")),
            None => format!("{what} ({})", self.phase),
        }
    }
}

/// The first moment in `[from, to)` at which `session` is open, if any.
pub fn first_open_in(session: MarketSession, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut t = from;
    // Each step jumps to the next transition; a week has at most ~15 of them.
    for _ in 0..64 {
        if t >= to {
            return None;
        }
        let s = session.state_at(t);
        if s.open {
            return Some(t);
        }
        t = s.until?;
    }
    None
}

/// An NYSE day that is not a plain trading day.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Special {
    Closed(String),
    EarlyClose(NaiveTime, String),
}

const CALENDAR: &str = include_str!("../data/nyse-calendar.csv");

fn parse_line(line: &str) -> Option<Result<(NaiveDate, Special), String>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut parts = line.splitn(3, ',');
    let (date, kind, name) = (parts.next()?, parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
    let Ok(date) = NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
        return Some(Err(format!("bad date in `{line}`")));
    };
    let special = match kind {
        "closed" => Special::Closed(name),
        t => match NaiveTime::parse_from_str(t, "%H:%M") {
            Ok(at) => Special::EarlyClose(at, name),
            Err(_) => return Some(Err(format!("bad kind in `{line}` (closed or HH:MM)"))),
        },
    };
    Some(Ok((date, special)))
}

fn calendar() -> &'static HashMap<NaiveDate, Special> {
    static DAYS: OnceLock<HashMap<NaiveDate, Special>> = OnceLock::new();
    // Malformed lines are refused by a unit test; at run time they are skipped.
    DAYS.get_or_init(|| CALENDAR.lines().filter_map(parse_line).filter_map(Result::ok).collect())
}

/// The calendar years the NYSE data file covers (any row in the year).
pub fn calendar_years() -> std::collections::BTreeSet<i32> {
    calendar().keys().map(Datelike::year).collect()
}

fn ny(date: NaiveDate, h: u32, m: u32) -> DateTime<Utc> {
    let naive = date.and_time(NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default());
    // 04:00–20:00 never falls in a DST fold or gap (those are at 01:00–03:00).
    New_York.from_local_datetime(&naive).earliest().map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc))
}

/// The trading window of `date` in UTC, if it is a trading day.
fn us_window(date: NaiveDate, regular_only: bool) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
        return None;
    }
    let early = match calendar().get(&date) {
        Some(Special::Closed(_)) => return None,
        Some(Special::EarlyClose(at, _)) => Some(*at),
        None => None,
    };
    let open = if regular_only { ny(date, 9, 30) } else { ny(date, 4, 0) };
    let close = match (regular_only, early) {
        (true, Some(at)) => ny(date, at.hour(), at.minute()),
        (true, None) => ny(date, 16, 0),
        (false, Some(_)) => ny(date, 17, 0),
        (false, None) => ny(date, 20, 0),
    };
    Some((open, close))
}

fn closed_phase(date: NaiveDate) -> String {
    match calendar().get(&date) {
        Some(Special::Closed(name)) => format!("holiday: {name}"),
        _ if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) => "weekend".into(),
        _ => "overnight".into(),
    }
}

fn us_equities(t: DateTime<Utc>, regular_only: bool) -> MarketState {
    let today = t.with_timezone(&New_York).date_naive();
    let mut date = today;
    for _ in 0..14 {
        if let Some((open, close)) = us_window(date, regular_only) {
            if t < open {
                // Before today's open, or after a close with the next open on `date`: named
                // after the first closed day in between (Friday night is the weekend).
                let tomorrow = today.succ_opt().unwrap_or(today);
                let phase = if us_window(today, regular_only).is_none() {
                    closed_phase(today)
                } else if date <= tomorrow {
                    "overnight".into()
                } else {
                    closed_phase(tomorrow)
                };
                return MarketState { open: false, until: Some(open), phase };
            }
            if t < close {
                let local = t.with_timezone(&New_York).time();
                let phase = if local < NaiveTime::from_hms_opt(9, 30, 0).unwrap_or_default() {
                    "pre-market"
                } else if t < us_window(date, true).map_or(close, |(_, c)| c) {
                    "regular"
                } else {
                    "after-hours"
                };
                return MarketState { open: true, until: Some(close), phase: phase.into() };
            }
        }
        date = date.succ_opt().unwrap_or(date);
    }
    MarketState { open: false, until: None, phase: closed_phase(today) }
}

fn forex(t: DateTime<Utc>) -> MarketState {
    let local = t.with_timezone(&New_York);
    let (date, wd) = (local.date_naive(), local.weekday().num_days_from_monday());
    let after_five = local.time() >= NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default();
    let closed = (wd == 4 && after_five) || wd == 5 || (wd == 6 && !after_five);
    if closed {
        let sunday = date + Duration::days(i64::from(6 - wd));
        MarketState { open: false, until: Some(ny(sunday, 17, 0)), phase: "weekend".into() }
    } else {
        let days = if wd == 6 { 5 } else { 4 - wd };
        let friday = date + Duration::days(i64::from(days));
        MarketState { open: true, until: Some(ny(friday, 17, 0)), phase: "trading week".into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::utc;

    #[test]
    fn the_data_file_parses_and_covers_this_year_and_the_next() {
        let bad: Vec<String> = CALENDAR.lines().filter_map(parse_line).filter_map(Result::err).collect();
        assert!(bad.is_empty(), "{bad:?}");
        let years = calendar_years();
        let this_year = Utc::now().year();
        for y in [this_year, this_year + 1] {
            assert!(
                years.contains(&y),
                "data/nyse-calendar.csv has no NYSE holidays for {y}: add them (covered: {years:?})"
            );
            // Every year has New Year/Christmas-season and Thanksgiving rows at least.
            let rows = calendar().keys().filter(|d| d.year() == y).count();
            assert!(rows >= 9, "only {rows} rows for {y}");
        }
    }

    #[test]
    fn us_sessions_across_a_regular_day() {
        let s = MarketSession::UsEquities;
        // Wednesday 2026-12-02 (EST, UTC-5).
        let pre = s.state_at(utc("2026-12-02T09:00:00Z"));
        assert_eq!((pre.open, pre.phase.as_str()), (true, "pre-market"));
        assert_eq!(pre.until, Some(utc("2026-12-03T01:00:00Z")), "open until 20:00 New York");
        assert_eq!(s.state_at(utc("2026-12-02T15:00:00Z")).phase, "regular");
        assert_eq!(s.state_at(utc("2026-12-02T21:30:00Z")).phase, "after-hours");
        assert_eq!(s.state_at(utc("2026-12-05T02:00:00Z")).phase, "weekend", "Friday night");
        assert_eq!(s.state_at(utc("2026-11-26T02:00:00Z")).phase, "holiday: Thanksgiving", "the eve");
        let night = s.state_at(utc("2026-12-03T02:00:00Z"));
        assert_eq!((night.open, night.phase.as_str()), (false, "overnight"));
        assert_eq!(night.until, Some(utc("2026-12-03T09:00:00Z")));
        let regular = MarketSession::UsEquitiesRegular.state_at(utc("2026-12-02T14:00:00Z"));
        assert_eq!((regular.open, regular.until), (false, Some(utc("2026-12-02T14:30:00Z"))));
    }

    #[test]
    fn weekends_holidays_and_early_closes() {
        let s = MarketSession::UsEquities;
        let sat = s.state_at(utc("2026-12-05T15:00:00Z"));
        assert_eq!((sat.open, sat.phase.as_str()), (false, "weekend"));
        assert_eq!(sat.until, Some(utc("2026-12-07T09:00:00Z")), "Monday 04:00 EST");
        // Thanksgiving 2026-11-26, then the 13:00 early close on the 27th (after-hours to 17:00).
        let tg = s.state_at(utc("2026-11-26T16:00:00Z"));
        assert_eq!((tg.open, tg.phase.as_str()), (false, "holiday: Thanksgiving"));
        assert_eq!(tg.until, Some(utc("2026-11-27T09:00:00Z")));
        let fri = s.state_at(utc("2026-11-27T19:00:00Z"));
        assert_eq!((fri.open, fri.phase.as_str(), fri.until), (true, "after-hours", Some(utc("2026-11-27T22:00:00Z"))));
        assert!(!s.state_at(utc("2026-11-27T22:30:00Z")).open, "closed after 17:00 on an early-close day");
        assert!(!MarketSession::UsEquitiesRegular.state_at(utc("2026-11-27T18:30:00Z")).open, "regular ends 13:00");
        // Independence Day observed on Friday 2026-07-03: closed from Thursday 20:00 to Monday 04:00.
        let july = s.state_at(utc("2026-07-03T15:00:00Z"));
        assert_eq!((july.open, july.until), (false, Some(utc("2026-07-06T08:00:00Z"))));
        // The ad-hoc closure of 2025-01-09.
        assert!(!s.state_at(utc("2025-01-09T15:00:00Z")).open);
    }

    #[test]
    fn both_dst_switches() {
        let s = MarketSession::UsEquities;
        // Spring forward on Sunday 2026-03-08: Monday opens at 04:00 EDT = 08:00 UTC.
        assert_eq!(s.state_at(utc("2026-03-08T12:00:00Z")).until, Some(utc("2026-03-09T08:00:00Z")));
        assert!(s.state_at(utc("2026-03-09T08:00:00Z")).open);
        assert!(!s.state_at(utc("2026-03-09T07:59:00Z")).open);
        // Fall back on Sunday 2026-11-01: Monday opens at 04:00 EST = 09:00 UTC.
        assert_eq!(s.state_at(utc("2026-11-01T12:00:00Z")).until, Some(utc("2026-11-02T09:00:00Z")));
        assert!(!s.state_at(utc("2026-11-02T08:30:00Z")).open);
        // Forex follows New York too: the week opens Sunday 17:00 EDT = 21:00 UTC in March.
        assert_eq!(MarketSession::Forex.state_at(utc("2026-03-08T20:00:00Z")).until, Some(utc("2026-03-08T21:00:00Z")));
    }

    #[test]
    fn forex_week_and_always() {
        let fx = MarketSession::Forex;
        let wed = fx.state_at(utc("2026-12-02T12:00:00Z"));
        assert_eq!((wed.open, wed.until), (true, Some(utc("2026-12-04T22:00:00Z"))));
        let fri_late = fx.state_at(utc("2026-12-04T22:00:00Z"));
        assert_eq!((fri_late.open, fri_late.until), (false, Some(utc("2026-12-06T22:00:00Z"))));
        let sun_open = fx.state_at(utc("2026-12-06T22:30:00Z"));
        assert_eq!((sun_open.open, sun_open.until), (true, Some(utc("2026-12-11T22:00:00Z"))));
        assert!(MarketSession::Always.state_at(utc("2026-12-05T03:00:00Z")).open);
    }

    #[test]
    fn first_open_in_a_window() {
        let s = MarketSession::UsEquities;
        // Friday 21:00 EST → Monday 08:00 EST: closed throughout.
        assert_eq!(
            first_open_in(s, utc("2026-12-05T02:00:00Z"), utc("2026-12-07T13:00:00Z")),
            Some(utc("2026-12-07T09:00:00Z"))
        );
        assert_eq!(first_open_in(s, utc("2026-12-05T02:00:00Z"), utc("2026-12-07T08:00:00Z")), None);
        assert_eq!(
            first_open_in(s, utc("2026-12-02T15:00:00Z"), utc("2026-12-02T16:00:00Z")),
            Some(utc("2026-12-02T15:00:00Z"))
        );
    }
}
