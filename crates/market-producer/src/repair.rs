//! Which trades of a gap's history are missing: the window of one symbol in provider time and
//! the deduplication at its two edges (issue #21's "exactly the missing ticks").
//!
//! The stream and the history meet at two milliseconds. The WebSocket's `t` is the SIP time in
//! milliseconds and at busy times many trades share one, so a window cannot be cut between two
//! trades by time alone. It runs instead from the last millisecond received live before the
//! gap to the first millisecond received live after it, both inclusive, and the trades of those
//! two milliseconds that did arrive live are recognised by Polygon's identity of a trade:
//! (exchange, TRF id or 0, trade id) within the symbol and day (docs/providers.md: an id is
//! unique per ticker, exchange and TRF; sequence numbers have been seen repeated and going
//! backwards live, so they are a cross-check, not the key). Everything strictly between the
//! edges was never received. The history's own duplicates (byte-identical prints have been
//! seen) are published once.

use std::collections::HashSet;

use crate::polygon::history::HistoryTrade;

/// A trade's identity within one symbol and day.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TradeKey {
    /// Exchange id (`x`).
    pub(crate) exchange: i64,
    /// Trade reporting facility (`trfi`), 0 for none.
    pub(crate) trf: i64,
    /// Trade id (`i`).
    pub(crate) id: String,
}

impl TradeKey {
    /// The key of a history trade.
    pub(crate) fn of(t: &HistoryTrade) -> Self {
        Self { exchange: t.exchange, trf: t.trf_id.unwrap_or(0), id: t.id.clone() }
    }
}

/// The live trades of one symbol in one millisecond of SIP time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EdgeMs {
    /// The millisecond (`t`).
    pub(crate) ms: i64,
    /// The trades received in it.
    pub(crate) keys: HashSet<TradeKey>,
}

/// Follows one symbol's live trades, keeping the millisecond being received.
#[derive(Debug, Default)]
pub(crate) struct EdgeTracker {
    current: Option<EdgeMs>,
}

impl EdgeTracker {
    /// A live trade at millisecond `ms`. Returns the previous millisecond once it is complete
    /// (a trade of a later one arrived). A trade older than the current millisecond (the feed
    /// is not strictly ordered) joins it only if it is the same millisecond; older ones cannot
    /// be at an edge that is still open and are not kept.
    pub(crate) fn trade(&mut self, ms: i64, key: TradeKey) -> Option<EdgeMs> {
        match &mut self.current {
            Some(cur) if cur.ms == ms => {
                cur.keys.insert(key);
                None
            }
            Some(cur) if ms < cur.ms => None,
            _ => {
                let done = self.current.take();
                self.current = Some(EdgeMs { ms, keys: HashSet::from([key]) });
                done
            }
        }
    }

    /// The millisecond being received (complete once the connection ended).
    pub(crate) fn last(&self) -> Option<&EdgeMs> {
        self.current.as_ref()
    }
}

/// One symbol's repair window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    /// The last millisecond received before the gap; `None` when the symbol had no live trade
    /// since the stream started (then the window starts at `start_ns`).
    pub(crate) before: Option<EdgeMs>,
    /// Where the window starts without a live trade before it: the gap's start, ns.
    pub(crate) start_ns: i64,
    /// The first millisecond received after the gap, complete.
    pub(crate) after: EdgeMs,
}

/// What a window's history comes to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Repair {
    /// The trades never received live, oldest first.
    pub(crate) missing: Vec<HistoryTrade>,
    /// History trades that had arrived live (at an edge) or were repeated in the history.
    pub(crate) duplicates: usize,
}

impl Window {
    /// The SIP-time range to ask the history for: `[from, to)` in ns.
    pub(crate) fn range_ns(&self) -> (i64, i64) {
        let from = self.before.as_ref().map_or(self.start_ns, |b| b.ms * 1_000_000);
        (from, (self.after.ms + 1) * 1_000_000)
    }

    /// The missing trades of `history` (the window's trades, in any order).
    pub(crate) fn missing(&self, mut history: Vec<HistoryTrade>) -> Repair {
        history.sort_by_key(|t| (t.sip_timestamp, t.sequence_number));
        let (from, to) = self.range_ns();
        let mut seen: HashSet<TradeKey> = HashSet::new();
        let mut duplicates = 0;
        let mut missing = Vec::with_capacity(history.len());
        for t in history {
            if t.sip_timestamp < from || t.sip_timestamp >= to {
                continue;
            }
            let ms = t.sip_timestamp.div_euclid(1_000_000);
            let key = TradeKey::of(&t);
            let live = |edge: Option<&EdgeMs>| edge.is_some_and(|e| e.ms == ms && e.keys.contains(&key));
            if live(self.before.as_ref()) || live(Some(&self.after)) || !seen.insert(key) {
                duplicates += 1;
                continue;
            }
            missing.push(t);
        }
        Repair { missing, duplicates }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(id: &str, exchange: i64, ns: i64, q: u64) -> HistoryTrade {
        HistoryTrade {
            id: id.into(),
            exchange,
            trf_id: None,
            sequence_number: q,
            sip_timestamp: ns,
            participant_timestamp: None,
            price: 1.0,
            size: 100.0,
            conditions: vec![],
            tape: Some(3),
        }
    }

    fn key(id: &str, exchange: i64) -> TradeKey {
        TradeKey { exchange, trf: 0, id: id.into() }
    }

    const MS: i64 = 1_765_000_000_000;

    /// Before the gap, trades a, b arrived in ms 0 (c of the same ms did not); after it, y
    /// arrived in ms 10 (x of the same ms did not).
    fn window() -> Window {
        Window {
            before: Some(EdgeMs { ms: MS, keys: HashSet::from([key("a", 11), key("b", 12)]) }),
            start_ns: 0,
            after: EdgeMs { ms: MS + 10, keys: HashSet::from([key("y", 11)]) },
        }
    }

    #[test]
    fn the_edges_keep_what_was_not_received_in_their_millisecond() {
        let w = window();
        assert_eq!(w.range_ns(), (MS * 1_000_000, (MS + 11) * 1_000_000));
        let ns = |ms: i64, sub: i64| ms * 1_000_000 + sub;
        let history = vec![
            trade("y", 11, ns(MS + 10, 400), 9), // after edge, received live
            trade("a", 11, ns(MS, 100), 1),      // before edge, received live
            trade("b", 12, ns(MS, 200), 2),      // before edge, received live
            trade("c", 12, ns(MS, 300), 3),      // before edge, missed
            trade("m", 11, ns(MS + 5, 0), 4),    // inside: missed
            trade("m", 11, ns(MS + 5, 0), 4),    // the history repeating a print
            trade("a", 13, ns(MS + 6, 0), 5),    // same id, another exchange: another trade
            trade("x", 11, ns(MS + 10, 100), 8), // after edge, missed
        ];
        let r = w.missing(history);
        let ids: Vec<(&str, i64)> = r.missing.iter().map(|t| (t.id.as_str(), t.exchange)).collect();
        assert_eq!(ids, [("c", 12), ("m", 11), ("a", 13), ("x", 11)], "oldest first, each once");
        assert_eq!(r.duplicates, 4, "a, b, y received live; m repeated");
    }

    #[test]
    fn an_id_received_live_in_another_millisecond_is_not_a_duplicate_at_the_edge() {
        // An edge holds only its own millisecond's live trades, so only a trade of that
        // millisecond can be one of them: the same key at another time was not received.
        let w = window();
        let r = w.missing(vec![trade("a", 11, (MS + 3) * 1_000_000, 7)]);
        assert_eq!(r.missing.len(), 1);
    }

    #[test]
    fn a_symbol_without_live_trades_before_the_gap_starts_at_the_gap() {
        let w = Window { before: None, start_ns: 42 * 1_000_000, after: EdgeMs { ms: 50, keys: HashSet::new() } };
        assert_eq!(w.range_ns(), (42_000_000, 51_000_000));
        let r = w.missing(vec![
            trade("early", 1, 41_999_999, 1),
            trade("in", 1, 42_000_000, 2),
            trade("late", 1, 51_000_000, 3),
        ]);
        assert_eq!(r.missing.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["in"], "only the window");
    }

    #[test]
    fn the_tracker_hands_over_each_millisecond_once_complete() {
        let mut t = EdgeTracker::default();
        assert_eq!(t.trade(5, key("a", 1)), None);
        assert_eq!(t.trade(5, key("b", 1)), None);
        assert_eq!(t.trade(4, key("late", 1)), None, "an older millisecond is not an open edge");
        let done = t.trade(6, key("c", 1)).unwrap();
        assert_eq!((done.ms, done.keys.len()), (5, 2));
        assert_eq!(t.last().map(|e| e.ms), Some(6));
    }
}
