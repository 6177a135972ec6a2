//! The market tape: the trades the Polygon simulator streams over the WebSocket *and* serves as
//! REST history (`/v3/trades/{ticker}`), one deterministic sequence per symbol, so that what a
//! client missed while disconnected, stalled or killed is exactly what the history returns.
//!
//! Trade `n` (1, 2, …) of a symbol happens at `start + n × period` (plus the symbol's index in
//! nanoseconds, so no two symbols share a timestamp), whether or not anyone is connected: the
//! tape is a clock, not a queue. Its fields follow Polygon's (docs/providers.md): a string `id`
//! unique per symbol but unrelated to the sequence number, an exchange, a per-symbol increasing
//! `sequence_number`, SIP and participant timestamps in nanoseconds (the WebSocket's `t` is the
//! SIP time in milliseconds, so many trades share one `t` at high rates), price and size.
//!
//! Quote `n` comes half a period after trade `n`, with its own sequence number; a minute bar
//! aggregates the trades of its minute (a minute without trades has none).

use std::collections::HashMap;
use std::ops::Bound;

/// At most this many of one symbol's trades (or quotes) are sent in one frame.
pub const MAX_DUE: u64 = 5000;

/// One trade of the tape.
#[derive(Debug, Clone, PartialEq)]
pub struct TapeTrade {
    /// Its place in the symbol's tape, from 1.
    pub n: u64,
    /// Polygon's trade id: a string, unique per symbol here (Polygon: per symbol and exchange).
    pub id: String,
    /// Exchange id.
    pub exchange: u32,
    /// Per-symbol sequence number (`q` on the WebSocket).
    pub sequence_number: u64,
    /// When the SIP received it, ns since the Unix epoch.
    pub sip_ns: i64,
    /// When the exchange made it, ns.
    pub participant_ns: i64,
    /// Price in cents (exact; rendered with two decimals).
    pub cents: u64,
    /// Shares.
    pub size: u64,
}

/// One NBBO quote of the tape: quote `n` of a symbol comes half a period after its trade `n`,
/// with its own per-symbol sequence number; sizes are in round lots (as Polygon's quotes).
#[derive(Debug, Clone, PartialEq)]
pub struct TapeQuote {
    /// Its place in the symbol's quotes, from 1.
    pub n: u64,
    /// Per-symbol quote sequence number (`q` on the WebSocket).
    pub sequence_number: u64,
    /// SIP time, ns.
    pub sip_ns: i64,
    /// Exchange time, ns.
    pub participant_ns: i64,
    /// Bid and ask in cents.
    pub bid_cents: u64,
    pub ask_cents: u64,
    /// Bid and ask sizes in round lots.
    pub bid_size: u64,
    pub ask_size: u64,
    /// Bid and ask exchanges.
    pub bid_exchange: u32,
    pub ask_exchange: u32,
}

/// One minute bar of the tape: the trades of one symbol whose SIP time is in its minute
/// (`[start, start + 60 s)`), as Polygon aggregates them (a minute without trades has no bar).
#[derive(Debug, Clone, PartialEq)]
pub struct TapeBar {
    /// The minute's start, ms.
    pub start_ms: i64,
    /// Open, high, low, close in cents.
    pub open: u64,
    pub high: u64,
    pub low: u64,
    pub close: u64,
    /// Shares.
    pub volume: u64,
    /// Volume-weighted average price (dollars, 4 decimals).
    pub vwap: f64,
    /// Trades in it.
    pub trades: u64,
}

/// The tape of a set of symbols.
#[derive(Debug, Clone)]
pub struct Tape {
    symbols: Vec<String>,
    start_ns: i64,
    period_ns: i64,
    total: u64,
}

impl Tape {
    /// A tape for `symbols` starting at `start_ns`, `per_second` trades per second of each
    /// symbol, `total` trades of each in all (0 = endless).
    pub fn new(symbols: Vec<String>, start_ns: i64, per_second: u64, total: u64) -> Self {
        let period_ns = i64::try_from(1_000_000_000 / per_second.max(1)).unwrap_or(1).max(1);
        Self { symbols, start_ns, period_ns, total }
    }

    /// The symbols.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    fn index(&self, sym: &str) -> Option<i64> {
        self.symbols.iter().position(|s| s == sym).and_then(|i| i64::try_from(i).ok())
    }

    fn time_of(&self, index: i64, n: u64) -> i64 {
        self.start_ns + i64::try_from(n).unwrap_or(i64::MAX / 2).saturating_mul(self.period_ns) + index
    }

    /// Trade `n` of `sym`; `None` for an unknown symbol, `n == 0` or beyond the total.
    pub fn trade(&self, sym: &str, n: u64) -> Option<TapeTrade> {
        let index = self.index(sym)?;
        if n == 0 || (self.total > 0 && n > self.total) {
            return None;
        }
        let sip_ns = self.time_of(index, n);
        let seed = hash(sym) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let level = 2_000 + hash(sym) % 60_000;
        let cents = level + (mix(seed) % 200) - 100;
        Some(TapeTrade {
            n,
            id: (n * 104_729 + hash(sym) % 1000).to_string(),
            exchange: 10 + u32::try_from(n % 4).unwrap_or(0),
            sequence_number: n,
            sip_ns,
            participant_ns: sip_ns - 150_000,
            cents,
            size: if mix(seed ^ 7).is_multiple_of(3) {
                1 + mix(seed ^ 11) % 99
            } else {
                100 * (1 + mix(seed ^ 13) % 5)
            },
        })
    }

    /// How many trades of each symbol have happened by `now_ns` (the last `n` at or before it).
    pub fn count_at(&self, sym: &str, now_ns: i64) -> u64 {
        let Some(index) = self.index(sym) else { return 0 };
        let since = now_ns - self.start_ns - index;
        if since < self.period_ns {
            return 0;
        }
        let n = u64::try_from(since / self.period_ns).unwrap_or(0);
        if self.total > 0 { n.min(self.total) } else { n }
    }

    /// The trades of `sym` whose SIP time is within (`lo`, `hi`), that have happened by
    /// `now_ns`: the first and last `n`, or `None` when there are none.
    pub fn range(&self, sym: &str, lo: Bound<i64>, hi: Bound<i64>, now_ns: i64) -> Option<(u64, u64)> {
        let index = self.index(sym)?;
        let last_happened = self.count_at(sym, now_ns);
        // The first n with time(n) >= lo (or > lo), the last with time(n) <= hi (or < hi).
        let at_or_after = |t: i64| -> u64 {
            let since = t - self.start_ns - index;
            if since <= self.period_ns {
                1
            } else {
                u64::try_from((since + self.period_ns - 1) / self.period_ns).unwrap_or(1)
            }
        };
        let at_or_before = |t: i64| -> u64 {
            let since = t - self.start_ns - index;
            if since < self.period_ns { 0 } else { u64::try_from(since / self.period_ns).unwrap_or(0) }
        };
        let first = match lo {
            Bound::Included(t) => at_or_after(t),
            Bound::Excluded(t) => at_or_after(t.saturating_add(1)),
            Bound::Unbounded => 1,
        };
        let last = match hi {
            Bound::Included(t) => at_or_before(t),
            Bound::Excluded(t) => at_or_before(t.saturating_sub(1)),
            Bound::Unbounded => u64::MAX,
        }
        .min(last_happened);
        (first <= last).then_some((first, last))
    }
}

/// How much later than its exchange a crypto trade reaches the feed, by exchange (10–13): the
/// crypto cluster's `t` is the exchange's time, so the feed's trades are not in `t` order.
pub const CRYPTO_LAG_MS: [i64; 4] = [0, 450, 900, 1350];

impl Tape {
    /// A trade's time as its crypto exchange has it: its feed (SIP) time less the exchange's lag
    /// ([`CRYPTO_LAG_MS`]).
    pub fn crypto_ns(trade: &TapeTrade) -> i64 {
        let lag = CRYPTO_LAG_MS[usize::try_from(trade.exchange.saturating_sub(10)).unwrap_or(0) % CRYPTO_LAG_MS.len()];
        trade.sip_ns - lag * 1_000_000
    }

    /// Quote `n` of `sym` (half a period after trade `n`); `None` as for [`Tape::trade`].
    pub fn quote(&self, sym: &str, n: u64) -> Option<TapeQuote> {
        let trade = self.trade(sym, n)?;
        let seed = hash(sym) ^ n.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        let spread = 1 + mix(seed) % 4;
        let sip_ns = trade.sip_ns + self.period_ns / 2;
        Some(TapeQuote {
            n,
            sequence_number: 1_000_000 + n,
            sip_ns,
            participant_ns: sip_ns - 120_000,
            bid_cents: trade.cents - spread / 2,
            ask_cents: trade.cents - spread / 2 + spread,
            bid_size: 1 + mix(seed ^ 3) % 9,
            ask_size: 1 + mix(seed ^ 5) % 9,
            bid_exchange: 11 + u32::try_from(mix(seed ^ 7) % 4).unwrap_or(0),
            ask_exchange: 11 + u32::try_from(mix(seed ^ 9) % 4).unwrap_or(0),
        })
    }

    /// How many quotes of `sym` have happened by `now_ns`.
    pub fn quotes_at(&self, sym: &str, now_ns: i64) -> u64 {
        self.count_at(sym, now_ns - self.period_ns / 2)
    }

    /// The quotes of `sym` whose SIP time is within (`lo`, `hi`), that have happened by
    /// `now_ns`: the first and last `n`.
    pub fn quote_range(&self, sym: &str, lo: Bound<i64>, hi: Bound<i64>, now_ns: i64) -> Option<(u64, u64)> {
        let half = self.period_ns / 2;
        let shift = |b: Bound<i64>| match b {
            Bound::Included(t) => Bound::Included(t - half),
            Bound::Excluded(t) => Bound::Excluded(t - half),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.range(sym, shift(lo), shift(hi), now_ns - half)
    }

    /// The trades that happened by `now_ns` of each symbol followed in `next` (its next `n` to
    /// send), at most [`MAX_DUE`] of each, in time order; `next` moves past them.
    pub fn due_trades(&self, next: &mut HashMap<String, u64>, now_ns: i64) -> Vec<(String, TapeTrade)> {
        let mut due = self.due(next, now_ns, Self::count_at, Self::trade);
        due.sort_by_key(|(_, t)| t.sip_ns);
        due
    }

    /// The same of the quotes.
    pub fn due_quotes(&self, next: &mut HashMap<String, u64>, now_ns: i64) -> Vec<(String, TapeQuote)> {
        let mut due = self.due(next, now_ns, Self::quotes_at, Self::quote);
        due.sort_by_key(|(_, q)| q.sip_ns);
        due
    }

    fn due<T>(
        &self,
        next: &mut HashMap<String, u64>,
        now_ns: i64,
        happened: fn(&Self, &str, i64) -> u64,
        get: fn(&Self, &str, u64) -> Option<T>,
    ) -> Vec<(String, T)> {
        let mut out = Vec::new();
        for (s, n) in next.iter_mut() {
            let upto = happened(self, s, now_ns).min(*n + MAX_DUE - 1);
            while *n <= upto {
                out.extend(get(self, s, *n).map(|t| (s.clone(), t)));
                *n += 1;
            }
        }
        out
    }

    /// The minute bar of `sym` starting at `start_ms`, once that minute has ended by `now_ns`;
    /// `None` before, or for a minute without trades.
    pub fn minute_bar(&self, sym: &str, start_ms: i64, now_ns: i64) -> Option<TapeBar> {
        let (lo, hi) = (start_ms * 1_000_000, (start_ms + 60_000) * 1_000_000);
        if now_ns < hi {
            return None;
        }
        let (first, last) = self.range(sym, Bound::Included(lo), Bound::Excluded(hi), now_ns)?;
        let open = self.trade(sym, first)?.cents;
        let mut bar = TapeBar { start_ms, open, high: open, low: open, close: open, volume: 0, vwap: 0.0, trades: 0 };
        let mut notional: u128 = 0;
        for n in first..=last {
            let t = self.trade(sym, n)?;
            (bar.high, bar.low, bar.close) = (bar.high.max(t.cents), bar.low.min(t.cents), t.cents);
            bar.volume += t.size;
            bar.trades += 1;
            notional += u128::from(t.cents) * u128::from(t.size);
        }
        let vwap_cents = notional as f64 / bar.volume.max(1) as f64;
        bar.vwap = (vwap_cents * 100.0).round() / 10_000.0;
        Some(bar)
    }
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn mix(seed: u64) -> u64 {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_765_000_000_000_000_000;

    fn tape() -> Tape {
        Tape::new(vec!["AAPL".into(), "MSFT".into()], S, 1000, 0)
    }

    #[test]
    fn trades_are_deterministic_and_happen_on_the_clock() {
        let t = tape();
        assert_eq!(t.trade("AAPL", 5), t.trade("AAPL", 5));
        let a = t.trade("AAPL", 5).unwrap();
        assert_eq!((a.sip_ns, a.sequence_number), (S + 5_000_000, 5));
        assert_ne!(a.id, "5", "ids are not sequence numbers");
        assert_eq!(t.trade("MSFT", 5).unwrap().sip_ns, S + 5_000_001, "no two symbols share a time");
        assert_eq!(t.trade("TSLA", 1), None);
        assert_eq!(t.trade("AAPL", 0), None);
        assert_eq!(t.count_at("AAPL", S + 4_999_999), 4);
        assert_eq!(t.count_at("AAPL", S + 5_000_000), 5);
        assert_eq!(t.count_at("AAPL", S - 1), 0);
        let ids: std::collections::HashSet<String> = (1..5000).map(|n| t.trade("AAPL", n).unwrap().id).collect();
        assert_eq!(ids.len(), 4999, "ids unique per symbol");
    }

    #[test]
    fn ranges_follow_the_bounds_and_the_present() {
        let t = tape();
        let now = S + 100_000_000; // 100 trades of AAPL so far
        let at = |n: i64| S + n * 1_000_000;
        assert_eq!(t.range("AAPL", Bound::Included(at(10)), Bound::Excluded(at(20)), now), Some((10, 19)));
        assert_eq!(t.range("AAPL", Bound::Excluded(at(10)), Bound::Included(at(20)), now), Some((11, 20)));
        assert_eq!(t.range("AAPL", Bound::Included(at(10) + 1), Bound::Included(at(10) + 2), now), None);
        assert_eq!(t.range("AAPL", Bound::Included(at(90)), Bound::Unbounded, now), Some((90, 100)), "not the future");
        assert_eq!(t.range("AAPL", Bound::Unbounded, Bound::Included(at(3)), now), Some((1, 3)));
        assert_eq!(t.range("MSFT", Bound::Included(at(10)), Bound::Included(at(10)), now), None, "MSFT is 1 ns later");
        assert_eq!(t.range("NOPE", Bound::Unbounded, Bound::Unbounded, now), None);
        let finite = Tape::new(vec!["AAPL".into()], S, 1000, 50);
        assert_eq!(finite.range("AAPL", Bound::Unbounded, Bound::Unbounded, now), Some((1, 50)));
    }

    #[test]
    fn a_minute_bar_aggregates_the_minutes_trades_once_it_has_ended() {
        let start_ms = 1_765_000_020_000; // a minute's start
        let t = Tape::new(vec!["AAPL".into()], start_ms * 1_000_000 - 500_000_000, 10, 0);
        let end_ns = (start_ms + 60_000) * 1_000_000;
        assert_eq!(t.minute_bar("AAPL", start_ms, end_ns - 1), None, "not before the minute ends");
        let bar = t.minute_bar("AAPL", start_ms, end_ns).unwrap();
        let (first, last) =
            t.range("AAPL", Bound::Included(start_ms * 1_000_000), Bound::Excluded(end_ns), end_ns).unwrap();
        let trades: Vec<TapeTrade> = (first..=last).map(|n| t.trade("AAPL", n).unwrap()).collect();
        assert_eq!(bar.trades, 600);
        assert_eq!(bar.open, trades[0].cents);
        assert_eq!(bar.close, trades.last().unwrap().cents);
        assert_eq!(bar.high, trades.iter().map(|t| t.cents).max().unwrap());
        assert_eq!(bar.volume, trades.iter().map(|t| t.size).sum::<u64>());
        assert_eq!(t.minute_bar("AAPL", start_ms - 120_000, end_ns), None, "no trades: no bar");
    }

    #[test]
    fn quotes_come_between_trades_with_their_own_sequence() {
        let t = tape();
        let q = t.quote("AAPL", 5).unwrap();
        assert_eq!(q.sip_ns, S + 5_500_000);
        assert!(q.bid_cents < q.ask_cents);
        assert_eq!(t.quotes_at("AAPL", S + 5_499_999), 4);
        assert_eq!(t.quotes_at("AAPL", S + 5_500_000), 5);
        let now = S + 100_000_000;
        assert_eq!(
            t.quote_range("AAPL", Bound::Included(S + 10_500_000), Bound::Excluded(S + 20_500_000), now),
            Some((10, 19))
        );
        assert_eq!(
            t.quote_range("AAPL", Bound::Included(S + 99_000_000), Bound::Unbounded, now),
            Some((99, 99)),
            "not the future"
        );
    }

    #[test]
    fn crypto_times_lag_the_feed_by_exchange_so_they_arrive_out_of_order() {
        let t = tape();
        let times: Vec<i64> = (1..=8).map(|n| Tape::crypto_ns(&t.trade("AAPL", n).unwrap())).collect();
        assert!(times.windows(2).any(|w| w[1] < w[0]), "not in feed order: {times:?}");
        let tr = t.trade("AAPL", 5).unwrap();
        let lag = CRYPTO_LAG_MS[(tr.exchange - 10) as usize] * 1_000_000;
        assert_eq!(Tape::crypto_ns(&tr), tr.sip_ns - lag);
    }

    #[test]
    fn a_finite_tape_still_ranges() {
        let now = S + 100_000_000;
        let finite = Tape::new(vec!["AAPL".into()], S, 1000, 50);
        assert_eq!(finite.range("AAPL", Bound::Unbounded, Bound::Unbounded, now), Some((1, 50)));
    }
}
