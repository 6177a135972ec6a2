//! Gap repair: every stream gap the runner publishes is filled from the provider's REST trade
//! history, with exactly the trades that were not received live (issue #21).
//!
//! - [`Repairing`] wraps the stream's output: it follows each symbol's live trades (the
//!   millisecond being received and the identities in it), and when the runner publishes a gap
//!   it hands the repair task a job with the last millisecond received before it and, as they
//!   arrive, the first received after it. Its hot-path work is a map lookup and one key per trade;
//!   a full repair queue is reported, never waited on: repair never slows the live stream.
//! - [`run`] is the repair task: one gap at a time, its symbols `concurrency` at once, through
//!   the history client's rate limiter, until `deadline_secs` after the gap ended. Repaired
//!   trades go to `market.ticks.raw` keyed by symbol like live ones, with `backfill: true`,
//!   through the sink's backpressure; then one `gap_repaired` event (or `gap_unrepaired` with
//!   the reason) with the gap's window and epoch.
//!
//! Which trades are missing: the window of one symbol in provider time and the deduplication
//! at its two edges.
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
//!
//! After a crash the first gap runs from the spool's unclean stop, and this process never saw
//! its near edge: the window is then deduplicated against every trade of it already in the
//! ticks topic, read back once the previous process's spool is sent and acknowledged.
//!
//! A symbol whose last live trade is older than the gap's start by more than [`EDGE_MARGIN_NS`]
//! (or that had none) starts at the gap's start less that margin: no trade of it was received
//! in that span, and the margin covers trades in flight when the connection dropped. A symbol
//! with no live trade within `settle_secs` after the stream resumed ends at the resumption.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::BoxFuture;
use ingest_core::record::{Code, MarketTick, RepairCounts, TickType};
use ingest_core::source::SourceCtx;
use ingest_core::telemetry::events::{GapRepairEnded, InternalEvent};
use ingest_core::telemetry::handles::RepairCounters;
use ingest_core::ws::emit::TickOutput;
use ingest_core::ws::gap::{Gap, Unrepaired};
use ingest_core::ws::{WsError, WsOutput};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::RepairConfig;
use crate::history::{HistoryBar, HistoryError, HistoryQuote, HistoryTrade, exchange_code};
use crate::repair_state::{Change, Counts, Store, StoreError, StoreNames, StoredGap};

/// How far before a gap's start a symbol without a recent live trade is repaired from: trades
/// in flight when the connection dropped (their SIP time before the last frame received).
pub(crate) const EDGE_MARGIN_NS: i64 = 2_000_000_000;

const MINUTE_MS: i64 = 60_000;

/// The minute bars of each symbol received live or repaired: their starts (ms), the last
/// `keep_ms` of them. Shared by the stream and the repair task; one lock per bar (a bar a minute
/// per symbol).
#[derive(Debug, Clone)]
pub(crate) struct SeenBars {
    seen: Arc<Mutex<HashMap<String, std::collections::BTreeSet<i64>>>>,
    keep_ms: i64,
}

impl SeenBars {
    /// Keeping bars for `keep_secs`.
    pub(crate) fn new(keep_secs: u64) -> Self {
        Self { seen: Arc::default(), keep_ms: i64::try_from(keep_secs).unwrap_or(i64::MAX / 1000) * 1000 }
    }

    /// A bar of `symbol` starting at `start_ms` was received or repaired.
    pub(crate) fn insert(&self, symbol: &str, start_ms: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let starts = match seen.get_mut(symbol) {
            Some(s) => s,
            None => seen.entry(symbol.to_string()).or_default(),
        };
        starts.insert(start_ms);
        let oldest = starts.last().copied().unwrap_or(start_ms).saturating_sub(self.keep_ms);
        while starts.first().is_some_and(|&f| f < oldest) {
            starts.pop_first();
        }
    }

    /// The starts seen of `symbol` in `[from_ms, to_ms]`.
    fn between(&self, symbol: &str, from_ms: i64, to_ms: i64) -> HashSet<i64> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.get(symbol).map(|s| s.range(from_ms..=to_ms).copied().collect()).unwrap_or_default()
    }
}

/// Whether a bar tick is a minute bar (Polygon's `AM`/`XA`: its window is one minute).
fn is_minute_bar(t: &MarketTick<'_>) -> bool {
    t.event_type == TickType::Bar
        && t.window_start.zip(t.window_end).is_some_and(|(s, e)| (e - s).num_milliseconds() == MINUTE_MS)
}

/// The minute bars of a window to publish: those of `history` not in `seen` (received live,
/// repaired or in the topic), each start once, oldest first.
fn missing_bars(mut history: Vec<HistoryBar>, seen: &HashSet<i64>) -> Vec<HistoryBar> {
    history.sort_by_key(|b| b.t);
    history.dedup_by_key(|b| b.t);
    history.retain(|b| !seen.contains(&b.t));
    history
}

/// A provider's REST trade history, as the repair needs it.
pub(crate) trait TradeHistory: Send + Sync + std::fmt::Debug {
    /// Every trade of `symbol` with SIP time in `[from_ns, to_ns)`, or why not (by `deadline`).
    fn trades<'a>(
        &'a self,
        symbol: &'a str,
        from_ns: i64,
        to_ns: i64,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<HistoryTrade>, HistoryError>>;

    /// The tick of a history trade, as the stream would have made it, marked `backfill`.
    fn tick<'a>(
        &self,
        symbol: &'a str,
        trade: &'a HistoryTrade,
        conditions: Option<&'a RawValue>,
        received_at: DateTime<Utc>,
    ) -> Option<MarketTick<'a>>;

    /// How late a trade may arrive after a later one (in the stream's time), when the stream's
    /// time is the exchanges' and not one feed's (Polygon's crypto cluster); `None`: the
    /// stream's time is in arrival order, so each window's edges are milliseconds.
    fn lateness_ms(&self) -> Option<i64> {
        None
    }

    /// Whether quotes can be repaired from this history (then [`Self::quotes`] and
    /// [`Self::quote_tick`] serve them).
    fn has_quotes(&self) -> bool {
        false
    }

    /// Every quote of `symbol` with SIP time in `[from_ns, to_ns)`, or why not (by `deadline`).
    fn quotes<'a>(
        &'a self,
        _symbol: &'a str,
        _from_ns: i64,
        _to_ns: i64,
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<HistoryQuote>, HistoryError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The tick of a history quote, as the stream would have made it, marked `backfill`.
    fn quote_tick<'a>(
        &self,
        _symbol: &'a str,
        _quote: &'a HistoryQuote,
        _received_at: DateTime<Utc>,
    ) -> Option<MarketTick<'a>> {
        None
    }

    /// Whether minute bars can be repaired from this history (then [`Self::bars`] and
    /// [`Self::bar_tick`] serve them).
    fn has_bars(&self) -> bool {
        false
    }

    /// Every minute bar of `symbol` starting in `[from_ms, to_ms]`, or why not (by `deadline`).
    fn bars<'a>(
        &'a self,
        _symbol: &'a str,
        _from_ms: i64,
        _to_ms: i64,
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<HistoryBar>, HistoryError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The tick of a history minute bar, as the stream would have made it, marked `backfill`.
    fn bar_tick<'a>(
        &self,
        _symbol: &'a str,
        _bar: &'a HistoryBar,
        _received_at: DateTime<Utc>,
    ) -> Option<MarketTick<'a>> {
        None
    }
}

/// A trade's (or a quote's) identity within one symbol and day. A trade's id is kept as its
/// 64-bit FNV-1a hash (of its decimal text when it is a number), so that following the live
/// edges allocates nothing per trade; two trades of one symbol, exchange and TRF would have to
/// collide in 64 bits within one window to be confused (about 1 in 10^7 for a window of 10^6
/// trades). A quote's is its sequence number (exchange and TRF 0); trade and quote keys are
/// never compared with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TickKey {
    /// Exchange id (`x`).
    pub(crate) exchange: i64,
    /// Trade reporting facility (`trfi`), 0 for none.
    pub(crate) trf: i64,
    /// Trade id (`i`), hashed.
    pub(crate) id: u64,
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The hash of an integer id's decimal text, without allocating.
fn int_id(i: i64) -> u64 {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut n = i.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if i < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    fnv1a(&buf[at..])
}

impl TickKey {
    /// The key of a history trade.
    pub(crate) fn of(t: &HistoryTrade) -> Self {
        Self { exchange: t.exchange, trf: t.trf_id.unwrap_or(0), id: fnv1a(t.id.as_bytes()) }
    }

    /// The key of a trade tick, live or read back from the topic (where codes are strings);
    /// `None` without an id.
    pub(crate) fn of_tick(t: &MarketTick<'_>) -> Option<Self> {
        // Alpaca's crypto trades name no exchange: one venue.
        let exchange = match &t.exchange_code {
            None => 0,
            Some(Code::Int(i)) => *i,
            Some(Code::Str(s)) => exchange_code(s)?,
        };
        let id = match t.trade_id.as_ref()? {
            Code::Str(s) => fnv1a(s.as_bytes()),
            Code::Int(i) => int_id(*i),
        };
        Some(Self { exchange, trf: t.trf_id.unwrap_or(0), id })
    }

    /// The key of a quote: its sequence number.
    pub(crate) fn of_quote(sequence_number: u64) -> Self {
        Self { exchange: 0, trf: 0, id: sequence_number }
    }

    /// The key of a quote tick, live or read back; `None` without a sequence number.
    pub(crate) fn of_quote_tick(t: &MarketTick<'_>) -> Option<Self> {
        t.sequence.map(Self::of_quote)
    }
}

/// A tick of a history, as a window sees it: its SIP time, an order within one time, its key.
pub(crate) trait HistoryTick {
    fn sip_ns(&self) -> i64;
    fn order(&self) -> u64;
    fn key(&self) -> TickKey;
}

impl HistoryTick for HistoryTrade {
    fn sip_ns(&self) -> i64 {
        self.sip_timestamp
    }
    fn order(&self) -> u64 {
        self.sequence_number
    }
    fn key(&self) -> TickKey {
        TickKey::of(self)
    }
}

impl HistoryTick for HistoryQuote {
    fn sip_ns(&self) -> i64 {
        self.sip_timestamp
    }
    fn order(&self) -> u64 {
        self.sequence_number
    }
    fn key(&self) -> TickKey {
        TickKey::of_quote(self.sequence_number)
    }
}

/// The live trades of one symbol in one millisecond of SIP time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EdgeMs {
    /// The millisecond (`t`).
    pub(crate) ms: i64,
    /// The trades received in it.
    pub(crate) keys: HashSet<TickKey>,
}

/// Follows one symbol's live trades, keeping the millisecond being received (its set is
/// cleared and reused for the next one: no allocation per trade once it has grown).
#[derive(Debug, Default)]
pub(crate) struct EdgeTracker {
    current: Option<EdgeMs>,
}

impl EdgeTracker {
    /// A live trade at millisecond `ms`. A trade older than the current millisecond (the feed
    /// is not strictly ordered) joins it only if it is the same millisecond; older ones cannot
    /// be at an edge that is still open and are not kept.
    pub(crate) fn trade(&mut self, ms: i64, key: TickKey) {
        match &mut self.current {
            Some(cur) if cur.ms == ms => {
                cur.keys.insert(key);
            }
            Some(cur) if ms < cur.ms => {}
            Some(cur) => {
                cur.ms = ms;
                cur.keys.clear();
                cur.keys.insert(key);
            }
            None => self.current = Some(EdgeMs { ms, keys: HashSet::from([key]) }),
        }
    }

    /// The millisecond being received (complete once the connection ended).
    #[cfg(test)]
    pub(crate) fn last(&self) -> Option<&EdgeMs> {
        self.current.as_ref()
    }

    /// The last millisecond received, once the connection ended.
    fn into_last(self) -> Option<EdgeMs> {
        self.current
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
    /// Trades of the window already in the topic, at any millisecond (after a restart, whose
    /// near edge this process never saw: read back from Kafka).
    pub(crate) delivered: HashSet<TickKey>,
}

/// What a window's history comes to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Repair<T> {
    /// The ticks never received live, oldest first.
    pub(crate) missing: Vec<T>,
    /// History trades that had arrived live (at an edge) or were repeated in the history.
    pub(crate) duplicates: usize,
}

impl Window {
    /// The SIP-time range to ask the history for: `[from, to)` in ns.
    pub(crate) fn range_ns(&self) -> (i64, i64) {
        let from = self.before.as_ref().map_or(self.start_ns, |b| b.ms * 1_000_000);
        (from, (self.after.ms + 1) * 1_000_000)
    }

    /// The missing ticks of `history` (the window's trades or quotes, in any order).
    pub(crate) fn missing<T: HistoryTick>(&self, mut history: Vec<T>) -> Repair<T> {
        history.sort_by_key(|t| (t.sip_ns(), t.order()));
        let (from, to) = self.range_ns();
        let mut seen: HashSet<TickKey> = HashSet::new();
        let mut duplicates = 0;
        let mut missing = Vec::with_capacity(history.len());
        for t in history {
            if t.sip_ns() < from || t.sip_ns() >= to {
                continue;
            }
            let ms = t.sip_ns().div_euclid(1_000_000);
            let key = t.key();
            let live = |edge: Option<&EdgeMs>| edge.is_some_and(|e| e.ms == ms && e.keys.contains(&key));
            if live(self.before.as_ref())
                || live(Some(&self.after))
                || self.delivered.contains(&key)
                || !seen.insert(key)
            {
                duplicates += 1;
                continue;
            }
            missing.push(t);
        }
        Repair { missing, duplicates }
    }
}

/// The far edges of one gap, filled by the stream while the repair task settles.
#[derive(Debug, Default)]
pub(crate) struct AfterEdges {
    /// Each symbol's first millisecond received after the gap (complete or still arriving).
    edges: HashMap<String, EdgeMs>,
    /// Symbols whose first millisecond is complete (a later one arrived).
    complete: usize,
    /// The task took the edges: the stream stops filling them.
    closed: bool,
}

/// One published gap handed to the repair task.
#[derive(Debug)]
pub(crate) struct Job {
    gap: Gap,
    epoch: u64,
    /// Each symbol's last millisecond received before the gap.
    before: HashMap<String, EdgeMs>,
    after: Arc<Mutex<AfterEdges>>,
    /// The same of the quotes, when they are repaired.
    quote_before: HashMap<String, EdgeMs>,
    quote_after: Arc<Mutex<AfterEdges>>,
    /// When the stream was live again (the gap's end); for a gap an earlier process left
    /// waiting, when this one took it up.
    resumed: Instant,
    /// As stored in `ingest.state`, once stored; with symbols done when an earlier process
    /// left it waiting.
    stored: Option<StoredGap>,
    /// Left waiting by an earlier process: no edges, the whole window read back from the topic.
    earlier: bool,
    /// When this process's repair task started (ms): no trade before it was received live here.
    started_ms: i64,
}

impl Job {
    /// A gap an earlier process stored and did not answer.
    fn earlier(stored: StoredGap, started: DateTime<Utc>) -> Self {
        Self {
            started_ms: started.timestamp_millis(),
            gap: stored.gap(),
            epoch: stored.epoch,
            before: HashMap::new(),
            after: Arc::default(),
            quote_before: HashMap::new(),
            quote_after: Arc::default(),
            resumed: Instant::now(),
            stored: Some(stored),
            earlier: true,
        }
    }

    /// The millisecond a window ends at (inclusive) without a live trade after the gap: its end.
    /// For a gap an earlier process left, the margin after it (whatever that process received
    /// then is in the topic), but never past this process's start: what this process receives
    /// live may not be in the topic yet when it is read, and its own first gap (after a crash)
    /// begins there.
    fn far_ms(&self) -> i64 {
        let to = self.gap.to.timestamp_millis();
        if self.earlier { (to + EDGE_MARGIN_NS / 1_000_000).min(self.started_ms.max(to)) } else { to }
    }

    /// The starts (ms, inclusive) of the minute bars the gap may have lost: every minute that
    /// ended after the gap began (less the margin) and by its end. A bar is sent when its minute
    /// ends; the bars that ended by the gap's end and still arrived live are received by the
    /// time the repair runs (`settle_secs` after it), and are not repaired.
    fn bar_range(&self) -> (i64, i64) {
        let from_ms = (self.gap.from.timestamp_nanos_opt().unwrap_or(0) - EDGE_MARGIN_NS).div_euclid(1_000_000);
        (from_ms - MINUTE_MS + 1, self.far_ms() - MINUTE_MS)
    }

    /// Whether the window is deduplicated against the topic: after a restart (this process
    /// never saw the near edge) and for a gap an earlier process left.
    fn reads_back(&self) -> bool {
        self.earlier || !self.gap.why.is_empty()
    }
}

/// What a previous process delivered to the ticks topic in a window, per symbol.
#[derive(Debug, Default)]
struct Delivered {
    trades: HashMap<String, HashSet<TickKey>>,
    quotes: HashMap<String, HashSet<TickKey>>,
    /// Minute bar starts, ms.
    bars: HashMap<String, HashSet<i64>>,
}

/// One kind of tick's edges of a gap (trades or quotes): the near edges, the far edges, and
/// what the topic already holds.
type KindEdges<'a> = (&'a HashMap<String, EdgeMs>, HashMap<String, EdgeMs>, HashMap<String, HashSet<TickKey>>);

/// One symbol's fetched history.
#[derive(Debug, Default)]
struct Fetched {
    trades: Vec<HistoryTrade>,
    quotes: Vec<HistoryQuote>,
    bars: Vec<HistoryBar>,
    /// Quotes or bars that could not be fetched, and why.
    lost: Vec<(Unrepaired, String)>,
}

/// The gap whose far edges the stream is still filling.
#[derive(Debug)]
struct Pending {
    after: Arc<Mutex<AfterEdges>>,
    /// Symbols whose first millisecond is complete (no lock needed for them any more).
    done: HashSet<String>,
}

impl Pending {
    /// A live trade after the gap; false once the task has taken the edges.
    fn observe(&mut self, symbol: &str, ms: i64, key: &TickKey) -> bool {
        let mut after = self.after.lock().unwrap_or_else(PoisonError::into_inner);
        if after.closed {
            return false;
        }
        match after.edges.get_mut(symbol) {
            None => {
                after.edges.insert(symbol.to_string(), EdgeMs { ms, keys: HashSet::from([*key]) });
            }
            Some(e) if e.ms == ms => {
                e.keys.insert(*key);
            }
            Some(e) if ms > e.ms => {
                after.complete += 1;
                self.done.insert(symbol.to_string());
            }
            Some(_) => {}
        }
        true
    }
}

/// The live edges of every symbol across connections: what a gap's repair needs to know of the
/// stream.
#[derive(Debug, Default)]
pub(crate) struct LiveEdges {
    /// Each symbol's millisecond being received on this connection.
    live: HashMap<String, EdgeTracker>,
    /// Each symbol's last millisecond of an earlier connection, until a gap takes them.
    before: HashMap<String, EdgeMs>,
    /// The latest gap, while its far edges are being received.
    pending: Option<Pending>,
}

impl LiveEdges {
    /// A live trade tick.
    #[cfg(test)]
    pub(crate) fn trade(&mut self, t: &MarketTick<'_>) {
        if let Some(key) = TickKey::of_tick(t) {
            self.tick(t, key);
        }
    }

    /// A live trade (or quote) with its key.
    pub(crate) fn tick(&mut self, t: &MarketTick<'_>, key: TickKey) {
        let ms = t.timestamp.timestamp_millis();
        let symbol: &str = &t.symbol;
        if let Some(p) = &mut self.pending
            && !p.done.contains(symbol)
            && !p.observe(symbol, ms, &key)
        {
            self.pending = None;
        }
        match self.live.get_mut(symbol) {
            Some(edge) => edge.trade(ms, key),
            None => {
                let mut edge = EdgeTracker::default();
                edge.trade(ms, key);
                self.live.insert(symbol.to_string(), edge);
            }
        }
    }

    /// A new connection: the previous one's last milliseconds become the near edges of the next
    /// gap, and a gap still waiting for far edges takes no more of them (they would come after
    /// another gap).
    pub(crate) fn connected(&mut self) {
        for (symbol, edge) in self.live.drain() {
            if let Some(last) = edge.into_last() {
                self.before.insert(symbol, last);
            }
        }
        self.pending = None;
    }

    /// A gap was published: its near edges, and the far edges the stream fills from now on.
    pub(crate) fn gap(&mut self) -> (HashMap<String, EdgeMs>, Arc<Mutex<AfterEdges>>) {
        let after = Arc::new(Mutex::new(AfterEdges::default()));
        self.pending = Some(Pending { after: after.clone(), done: HashSet::new() });
        (std::mem::take(&mut self.before), after)
    }
}

/// The live trades of a feed timed by its exchanges (Polygon's crypto cluster), where a trade
/// may arrive after later ones, so a window's edges cannot be milliseconds: each symbol's trades
/// of the last `keep_ms` of its time, all of which a gap's window is deduplicated against, and
/// every trade received after the gap until the repair takes them.
#[derive(Debug)]
pub(crate) struct LateTrades {
    keep_ms: i64,
    recent: HashMap<String, Recent>,
    /// The latest gap's far side, until the repair task takes it.
    pending: Option<Arc<Mutex<AfterEdges>>>,
}

/// One symbol's recent live trades, in arrival order.
#[derive(Debug, Default)]
struct Recent {
    max_ms: i64,
    keys: std::collections::VecDeque<(i64, TickKey)>,
}

impl LateTrades {
    /// Trades may arrive `late_ms` late.
    pub(crate) fn new(late_ms: i64) -> Self {
        Self { keep_ms: 2 * late_ms + EDGE_MARGIN_NS / 1_000_000, recent: HashMap::new(), pending: None }
    }

    /// A live trade with its key.
    pub(crate) fn tick(&mut self, t: &MarketTick<'_>, key: TickKey) {
        let ms = t.timestamp.timestamp_millis();
        let symbol: &str = &t.symbol;
        if let Some(after) = &self.pending {
            let mut after = after.lock().unwrap_or_else(PoisonError::into_inner);
            if after.closed {
                drop(after);
                self.pending = None;
            } else {
                match after.edges.get_mut(symbol) {
                    Some(e) => {
                        e.keys.insert(key);
                    }
                    None => {
                        after.edges.insert(symbol.to_string(), EdgeMs { ms, keys: HashSet::from([key]) });
                    }
                }
            }
        }
        let recent = match self.recent.get_mut(symbol) {
            Some(r) => r,
            None => self.recent.entry(symbol.to_string()).or_default(),
        };
        recent.max_ms = recent.max_ms.max(ms);
        recent.keys.push_back((ms, key));
        while recent.keys.front().is_some_and(|(t, _)| *t < recent.max_ms - self.keep_ms) {
            recent.keys.pop_front();
        }
    }

    /// A gap was published: every symbol's recent trades (as one "edge" at its latest time), and
    /// the far side the stream fills from now on.
    pub(crate) fn gap(&mut self) -> (HashMap<String, EdgeMs>, Arc<Mutex<AfterEdges>>) {
        let after = Arc::new(Mutex::new(AfterEdges::default()));
        self.pending = Some(after.clone());
        let before = self
            .recent
            .iter()
            .map(|(s, r)| (s.clone(), EdgeMs { ms: r.max_ms, keys: r.keys.iter().map(|(_, k)| *k).collect() }))
            .collect();
        (before, after)
    }
}

/// How a stream's live trades are followed: by their edge milliseconds, or (timed by their
/// exchanges) all of the recent ones.
#[derive(Debug)]
enum TradeEdges {
    Exact(LiveEdges),
    Late(LateTrades),
}

/// The kinds of ticks a feed subscribes that gap repair can fill.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Kinds {
    pub(crate) trades: bool,
    pub(crate) quotes: bool,
    pub(crate) bars: bool,
}

/// What a stream's repair follows live.
#[derive(Debug, Clone, Default)]
pub(crate) struct Follow {
    /// The trades' edges.
    pub(crate) trades: bool,
    /// Trades may arrive this late (ms): follow them as [`LateTrades`].
    pub(crate) late_ms: Option<i64>,
    /// The quotes' edges.
    pub(crate) quotes: bool,
    /// The minute bars received.
    pub(crate) bars: Option<SeenBars>,
}

/// The stream's output with gap repair: follows the live trades' edges and hands each published
/// gap to the repair task (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Repairing<O> {
    inner: O,
    /// The repair task's queue; `None` with repair off.
    jobs: Option<mpsc::Sender<Job>>,
    /// The trades, when followed (not when the provider has no history to repair from).
    trades: Option<TradeEdges>,
    /// The quotes' edges, when quotes are repaired.
    quote_edges: Option<LiveEdges>,
    /// The minute bars received, when they are repaired.
    bars: Option<SeenBars>,
    /// For a gap the queue cannot take.
    ctx: SourceCtx,
    counters: RepairCounters,
}

impl<O> Repairing<O> {
    /// `inner` with repairs queued to `jobs` (`None`: repair off); `follow`: what is repaired
    /// (the edges of trades and quotes to follow, the minute bars to note).
    pub(crate) fn new(
        inner: O,
        jobs: Option<mpsc::Sender<Job>>,
        follow: Follow,
        ctx: &SourceCtx,
        provider: &str,
    ) -> Self {
        let Follow { trades, late_ms, quotes, bars } = follow;
        let trades = trades && jobs.is_some();
        Self {
            inner,
            trades: trades.then(|| match late_ms {
                None => TradeEdges::Exact(LiveEdges::default()),
                Some(ms) => TradeEdges::Late(LateTrades::new(ms)),
            }),
            quote_edges: (quotes && jobs.is_some()).then(LiveEdges::default),
            bars: bars.filter(|_| jobs.is_some()),
            jobs,
            ctx: ctx.clone(),
            counters: RepairCounters::new(&ctx.metrics, provider),
        }
    }
}

impl<O: WsOutput> WsOutput for Repairing<O> {
    fn connected(&mut self, epoch: u64) {
        if let Some(TradeEdges::Exact(edges)) = &mut self.trades {
            edges.connected();
        }
        if let Some(edges) = &mut self.quote_edges {
            edges.connected();
        }
        self.inner.connected(epoch);
    }

    fn transport_error(&mut self, error: &WsError) {
        self.inner.transport_error(error);
    }

    fn gap(&mut self, gap: &Gap, epoch: u64) {
        self.inner.gap(gap, epoch);
        let Some(jobs) = &self.jobs else { return };
        let (before, after) = match &mut self.trades {
            Some(TradeEdges::Exact(edges)) => edges.gap(),
            Some(TradeEdges::Late(late)) => late.gap(),
            None => Default::default(),
        };
        let (quote_before, quote_after) = self.quote_edges.as_mut().map(LiveEdges::gap).unwrap_or_default();
        let job = Job {
            gap: gap.clone(),
            epoch,
            before,
            after,
            quote_before,
            quote_after,
            resumed: Instant::now(),
            stored: None,
            earlier: false,
            started_ms: 0,
        };
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                let detail = format!("{} gaps already wait for repair (market.repair.queue)", jobs.max_capacity());
                ended(&self.ctx, &self.counters, &job, Some((Unrepaired::Failed, detail)), RepairCounts::default());
            }
            // The task ended: the source is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

impl<O: TickOutput> TickOutput for Repairing<O> {
    fn tick(&mut self, tick: &MarketTick<'_>, raw: &[u8]) {
        self.inner.tick(tick, raw);
        if let Some(trades) = &mut self.trades
            && tick.event_type == TickType::Trade
            && let Some(key) = TickKey::of_tick(tick)
        {
            match trades {
                TradeEdges::Exact(edges) => edges.tick(tick, key),
                TradeEdges::Late(late) => late.tick(tick, key),
            }
        }
        if let Some(edges) = &mut self.quote_edges
            && tick.event_type == TickType::Quote
            && let Some(key) = TickKey::of_quote_tick(tick)
        {
            edges.tick(tick, key);
        }
        if let Some(bars) = &self.bars
            && is_minute_bar(tick)
            && let Some(start) = tick.window_start
        {
            bars.insert(&tick.symbol, start.timestamp_millis());
        }
    }

    fn dead_letter(&mut self, raw: &[u8], reason: &str, received_at: DateTime<Utc>) {
        self.inner.dead_letter(raw, reason, received_at);
    }
}

/// Publishes the end of `job`'s repair.
fn ended(
    ctx: &SourceCtx,
    counters: &RepairCounters,
    job: &Job,
    unrepaired: Option<(Unrepaired, String)>,
    counts: RepairCounts,
) {
    let (from, to, epoch, lag) = (job.gap.from, job.gap.to, Some(job.epoch), job.resumed.elapsed());
    GapRepairEnded { counters, from, to, epoch, unrepaired, counts, lag }.emit(ctx);
}

/// The repair task's settings and means.
#[derive(Debug)]
pub(crate) struct Repairer {
    /// The history, or why this feed's gaps cannot be repaired.
    pub(crate) history: Result<Box<dyn TradeHistory>, (Unrepaired, String)>,
    pub(crate) cfg: RepairConfig,
    /// The subscribed symbols (empty for a wildcard: the symbols seen at the edges).
    pub(crate) symbols: Vec<String>,
    pub(crate) provider: &'static str,
    /// Where each symbol's last window ended (ns, exclusive): the next one starts no earlier,
    /// so that windows never overlap (gaps in a row, the margin reaching into the last one).
    repaired_to: Mutex<HashMap<String, i64>>,
    /// The same of the quotes.
    quotes_repaired_to: Mutex<HashMap<String, i64>>,
    /// Trades are repaired (the trade channel is subscribed).
    pub(crate) trades: bool,
    /// How late a trade may arrive (the history's [`TradeHistory::lateness_ms`]).
    late_ms: Option<i64>,
    /// Quotes are repaired (subscribed, `market.repair.quotes`, and the history has them).
    pub(crate) quotes: bool,
    /// Minute bars are repaired, and those received so far.
    pub(crate) bars: Option<SeenBars>,
}

/// The repair task: the gaps an earlier process left waiting, then each job in turn until the
/// queue closes or shutdown. With a history, every gap is stored in `ingest.state` before it
/// waits, and leaves it when answered (`repair_state`): one still there at shutdown or a crash
/// is repaired by the next process. Without one, each gap is answered at once.
pub(crate) async fn run(jobs: mpsc::Receiver<Job>, ctx: SourceCtx, r: Repairer, names: StoreNames) {
    let counters = RepairCounters::new(&ctx.metrics, r.provider);
    if let Err(why) = &r.history {
        return answer_all(jobs, &ctx, &counters, why.clone()).await;
    }
    let started = Utc::now();
    let (store, waiting) = match Store::open(&ctx, names.key, names.transactional_id, r.provider).await {
        Ok(Some(opened)) => opened,
        Ok(None) => return answer_all(jobs, &ctx, &counters, stopped_before()).await,
        Err(e) => {
            tracing::error!(error = %e, "gap repair is unavailable");
            return answer_all(jobs, &ctx, &counters, (Unrepaired::Failed, e)).await;
        }
    };
    let store = Arc::new(tokio::sync::Mutex::new(store));
    let (queue, mut queued) = mpsc::unbounded_channel();
    for stored in waiting {
        let _ = queue.send(Job::earlier(stored, started));
    }
    let intake = tokio::spawn(intake(jobs, queue, store.clone(), ctx.clone(), counters.clone(), r.cfg.clone()));
    loop {
        let job = tokio::select! {
            job = queued.recv() => match job {
                Some(job) => job,
                None => break,
            },
            () = ctx.shutdown.cancelled() => break,
        };
        let (unrepaired, counts) = tokio::select! {
            done = r.repair(&job, &ctx, &store) => done,
            () = ctx.shutdown.cancelled() => break,
        };
        if let Some(stored) = &job.stored {
            let deadline = Instant::now() + Duration::from_secs(r.cfg.deadline_secs);
            let removed = store.lock().await.commit_until(&[], Change::Remove(&stored.id()), deadline).await;
            if let Err(e) = removed {
                // The next process repairs it again: harmless (read back from the topic).
                tracing::warn!(error = %e, "a repaired gap could not be removed from the repair state");
            }
        }
        ended(&ctx, &counters, &job, unrepaired, counts);
    }
    let _ = intake.await;
    let left = store.lock().await.waiting();
    if left > 0 {
        tracing::info!(gaps = left, "gaps left waiting for repair; the next start repairs them");
    }
}

/// Closes the queue and answers the jobs left in it: the producer stopped before them.
fn answer_stopped(mut jobs: mpsc::Receiver<Job>, ctx: &SourceCtx, counters: &RepairCounters) {
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        ended(ctx, counters, &job, Some(stopped_before()), RepairCounts::default());
    }
}

fn stopped_before() -> (Unrepaired, String) {
    (Unrepaired::Failed, "the producer stopped before the repair".to_string())
}

/// Answers every job with `why` until the queue closes or shutdown (and the jobs left then).
async fn answer_all(
    mut jobs: mpsc::Receiver<Job>,
    ctx: &SourceCtx,
    counters: &RepairCounters,
    why: (Unrepaired, String),
) {
    loop {
        let job = tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
            () = ctx.shutdown.cancelled() => break,
        };
        ended(ctx, counters, &job, Some(why.clone()), RepairCounts::default());
    }
    answer_stopped(jobs, ctx, counters);
}

/// Takes each gap from the stream as it comes and stores it before it waits (so that a crash
/// cannot lose it); a gap that cannot be stored, or finds `queue` gaps waiting, is answered
/// unrepaired.
async fn intake(
    mut jobs: mpsc::Receiver<Job>,
    queue: mpsc::UnboundedSender<Job>,
    store: Arc<tokio::sync::Mutex<Store>>,
    ctx: SourceCtx,
    counters: RepairCounters,
    cfg: RepairConfig,
) {
    loop {
        let mut job = tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
            () = ctx.shutdown.cancelled() => break,
        };
        let stored = StoredGap::new(&job.gap, job.epoch);
        let mut s = store.lock().await;
        if s.waiting() >= cfg.queue {
            let detail = format!("{} gaps already wait for repair (market.repair.queue)", s.waiting());
            ended(&ctx, &counters, &job, Some((Unrepaired::Failed, detail)), RepairCounts::default());
            continue;
        }
        let deadline = job.resumed + Duration::from_secs(cfg.deadline_secs);
        match s.commit_until(&[], Change::Add(&stored), deadline).await {
            Ok(_) => {
                job.stored = Some(stored);
                if let Err(mpsc::error::SendError(job)) = queue.send(job) {
                    ended(&ctx, &counters, &job, Some(stopped_before()), RepairCounts::default());
                }
            }
            Err(StoreError::ShutDown) => {
                ended(&ctx, &counters, &job, Some(stopped_before()), RepairCounts::default());
                break;
            }
            Err(e) => {
                let detail = format!("the gap could not be stored for repair: {e}");
                ended(&ctx, &counters, &job, Some((Unrepaired::Failed, detail)), RepairCounts::default());
            }
        }
    }
    answer_stopped(jobs, &ctx, &counters);
}

impl From<&HistoryError> for Unrepaired {
    fn from(e: &HistoryError) -> Self {
        match e {
            HistoryError::NoHistory(_) => Unrepaired::NoHistory,
            HistoryError::Deadline { rate_limited: true, .. } => Unrepaired::RateLimited,
            HistoryError::Deadline { rate_limited: false, .. } => Unrepaired::Failed,
            HistoryError::Unauthorized(_) | HistoryError::Refused(_) => Unrepaired::Refused,
            HistoryError::Malformed(_) => Unrepaired::Failed,
        }
    }
}

impl Repairer {
    /// `subscribed`: what `market.channels` subscribes of what can be repaired; quotes and bars
    /// are repaired when also configured (`market.repair.quotes`, `market.repair.bars`) and the
    /// history has them. Nothing to repair: every gap is answered `unsupported`.
    pub(crate) fn new(
        history: Result<Box<dyn TradeHistory>, (Unrepaired, String)>,
        cfg: RepairConfig,
        symbols: Vec<String>,
        provider: &'static str,
        subscribed: Kinds,
    ) -> Self {
        let has = |f: fn(&dyn TradeHistory) -> bool| history.as_ref().is_ok_and(|h| f(h.as_ref()));
        let quotes = subscribed.quotes && cfg.quotes && has(|h| h.has_quotes());
        let bars =
            (subscribed.bars && cfg.bars && has(|h| h.has_bars())).then(|| SeenBars::new(cfg.max_window_secs + 600));
        let history = match history {
            Ok(_) if !subscribed.trades && !quotes && bars.is_none() => Err((
                Unrepaired::Unsupported,
                "gap repair fills trades, and quotes and minute bars where the history has them (Polygon/Massive, with market.repair.quotes and market.repair.bars); market.channels subscribes none of those".into(),
            )),
            other => other,
        };
        let late_ms = history.as_ref().ok().and_then(|h| h.lateness_ms());
        Self {
            history,
            late_ms,
            cfg,
            symbols,
            provider,
            repaired_to: Mutex::default(),
            quotes_repaired_to: Mutex::default(),
            trades: subscribed.trades,
            quotes,
            bars,
        }
    }

    /// What the stream follows live for this repairer.
    pub(crate) fn follow(&self) -> Follow {
        let on = self.history.is_ok();
        Follow { trades: on && self.trades, late_ms: self.late_ms, quotes: on && self.quotes, bars: self.bars.clone() }
    }

    /// Repairs one gap: `None` when every symbol was filled, else why not; and the counts.
    /// Each symbol's trades are committed with the state marking it done.
    async fn repair(
        &self,
        job: &Job,
        ctx: &SourceCtx,
        store: &tokio::sync::Mutex<Store>,
    ) -> (Option<(Unrepaired, String)>, RepairCounts) {
        let mut counts = RepairCounts { symbols: self.symbols.len() as u64, ..RepairCounts::default() };
        let fail = |why: Unrepaired, detail: String, counts: RepairCounts| (Some((why, detail)), counts);
        let history = match &self.history {
            Ok(h) => h,
            Err((why, detail)) => return fail(*why, detail.clone(), counts),
        };
        if job.gap.secs() > self.cfg.max_window_secs as f64 {
            let detail = format!(
                "the window of {:.0} s is longer than market.repair.max_window_secs ({})",
                job.gap.secs(),
                self.cfg.max_window_secs
            );
            return fail(Unrepaired::TooLong, detail, counts);
        }
        let (after, quote_after) = if job.earlier { Default::default() } else { self.settle(job, ctx).await };
        let deadline = job.resumed + Duration::from_secs(self.cfg.deadline_secs);
        // After a restart (the gap has its own reason) the near edge is whatever the previous
        // process delivered: read back from the topic once what it left in the spool is in.
        let Delivered { trades: delivered, quotes: delivered_quotes, bars: mut delivered_bars } = if job.reads_back() {
            match self.delivered(job, ctx, deadline).await {
                Ok(d) => d,
                Err(e) => return fail(Unrepaired::Failed, e, counts),
            }
        } else {
            Delivered::default()
        };
        let done: &[String] = job.stored.as_ref().map_or(&[], |s| &s.done);
        let windows: Vec<(String, Window)> =
            self.windows(job, after, delivered).into_iter().filter(|(symbol, _)| !done.contains(symbol)).collect();
        let mut quote_windows: HashMap<String, Window> = if self.quotes {
            let edges = (&job.quote_before, quote_after, delivered_quotes);
            self.windows_of(job, edges, &self.quotes_repaired_to).into_iter().collect()
        } else {
            HashMap::new()
        };
        let windows: Vec<(String, Window, Option<Window>)> = windows
            .into_iter()
            .map(|(symbol, w)| {
                let q = quote_windows.remove(&symbol);
                (symbol, w, q)
            })
            .collect();
        let bar_range = self.bars.as_ref().map(|_| job.bar_range());
        counts.symbols = (windows.len() + done.len()) as u64;
        if let Some(stored) = &job.stored {
            stored.add_to(&mut counts);
        }
        let id = job.stored.as_ref().map(StoredGap::id).unwrap_or_default();
        let mut fetches = futures::stream::iter(windows)
            .map(|(symbol, window, quote_window)| async move {
                let got =
                    self.fetch(history.as_ref(), &symbol, (&window, quote_window.as_ref()), bar_range, deadline).await;
                (symbol, window, quote_window, got)
            })
            .buffer_unordered(self.cfg.concurrency);
        // Why each failed part failed, and the symbols with a part that failed.
        let mut failed: HashSet<String> = HashSet::new();
        let mut failures: Vec<(Unrepaired, String)> = Vec::new();
        while let Some((symbol, window, quote_window, got)) = fetches.next().await {
            let Fetched { trades, quotes, bars, lost } = match got {
                Ok(got) => got,
                Err(e) => {
                    failures.push((Unrepaired::from(&e), format!("{symbol}: {e}")));
                    failed.insert(symbol);
                    continue;
                }
            };
            let quotes_fetched = quotes.len() as u64;
            let quotes = quote_window.map(|w| w.missing(quotes).missing).unwrap_or_default();
            // The bars received live, repaired by an earlier gap, or in the topic already.
            let bars_fetched = bars.len() as u64;
            let mut seen = match (&self.bars, bar_range) {
                (Some(b), Some((lo, hi))) => b.between(&symbol, lo, hi),
                _ => HashSet::new(),
            };
            seen.extend(delivered_bars.remove(&symbol).unwrap_or_default());
            let bars = missing_bars(bars, &seen);
            let fetched = trades.len() as u64;
            let repair = window.missing(trades);
            let duplicates = repair.duplicates as u64;
            // Each tick as the stream would have made it (its conditions kept raw, as live).
            let conditions: Vec<Option<Box<RawValue>>> =
                repair.missing.iter().map(HistoryTrade::raw_conditions).collect();
            let now = Utc::now();
            let ticks: Vec<(Option<MarketTick<'_>>, Vec<u8>)> = repair
                .missing
                .iter()
                .zip(&conditions)
                .map(|(t, c)| (history.tick(&symbol, t, c.as_deref(), now), serde_json::to_vec(t).unwrap_or_default()))
                .chain(
                    quotes
                        .iter()
                        .map(|q| (history.quote_tick(&symbol, q, now), serde_json::to_vec(q).unwrap_or_default())),
                )
                .chain(
                    bars.iter().map(|b| (history.bar_tick(&symbol, b, now), serde_json::to_vec(b).unwrap_or_default())),
                )
                .collect();
            let done = Counts { fetched, duplicates, quotes_fetched, bars_fetched, ..Counts::default() };
            let change = Change::Done { id: &id, symbol: &symbol, counts: done };
            match store.lock().await.commit_until(&ticks, change, deadline).await {
                Ok(published) => {
                    counts.fetched += fetched;
                    counts.duplicates += duplicates;
                    counts.published += published.trades;
                    counts.quotes_fetched += quotes_fetched;
                    counts.quotes_published += published.quotes;
                    counts.bars_fetched += bars_fetched;
                    counts.bars_published += published.bars;
                    if let Some(seen) = &self.bars {
                        for b in &bars {
                            seen.insert(&symbol, b.t);
                        }
                    }
                }
                Err(e) => {
                    failures.push((
                        Unrepaired::Failed,
                        format!("{symbol}: the repaired ticks could not be committed: {e}"),
                    ));
                    failed.insert(symbol.clone());
                }
            }
            if !lost.is_empty() {
                failed.insert(symbol.clone());
                failures.extend(lost);
            }
        }
        counts.symbols_failed = failed.len() as u64;
        let Some((why, first)) = failures.first().cloned() else { return (None, counts) };
        let more = match failures.len() {
            1 => String::new(),
            n => format!(" (and {} more symbols)", n - 1),
        };
        fail(why, format!("{first}{more}"), counts)
    }

    /// One symbol's trades, quotes and minute bars of its windows (each only when repaired). The
    /// trades failing fails the symbol; quotes or bars failing (a plan with trades but without
    /// quotes, say) leaves the rest to be published, and the failure named in `lost`.
    async fn fetch(
        &self,
        history: &dyn TradeHistory,
        symbol: &str,
        (window, quote_window): (&Window, Option<&Window>),
        bar_range: Option<(i64, i64)>,
        deadline: Instant,
    ) -> Result<Fetched, HistoryError> {
        let mut got = Fetched::default();
        if self.trades {
            let (from, to) = window.range_ns();
            got.trades = history.trades(symbol, from, to, deadline).await?;
        }
        if let Some(w) = quote_window {
            let (from, to) = w.range_ns();
            match history.quotes(symbol, from, to, deadline).await {
                Ok(q) => got.quotes = q,
                Err(e) => got.lost.push((Unrepaired::from(&e), format!("{symbol} quotes: {e}"))),
            }
        }
        if let Some((lo, hi)) = bar_range {
            match history.bars(symbol, lo, hi, deadline).await {
                Ok(b) => got.bars = b,
                Err(e) => got.lost.push((Unrepaired::from(&e), format!("{symbol} minute bars: {e}"))),
            }
        }
        Ok(got)
    }

    /// Waits `settle_secs` after the gap (less when every subscribed symbol's first trade and
    /// quote millisecond is complete), then takes the far edges of the trades and the quotes.
    async fn settle(&self, job: &Job, ctx: &SourceCtx) -> (HashMap<String, EdgeMs>, HashMap<String, EdgeMs>) {
        // Trades that may arrive late are waited for as long as they may be late.
        let late = Duration::from_millis(self.late_ms.unwrap_or(0).try_into().unwrap_or(0));
        let until = job.resumed + Duration::from_secs(self.cfg.settle_secs).max(late);
        let complete = |after: &Mutex<AfterEdges>, followed: bool| {
            !followed || after.lock().unwrap_or_else(PoisonError::into_inner).complete >= self.symbols.len()
        };
        loop {
            let now = Instant::now();
            let all = complete(&job.after, self.trades) && complete(&job.quote_after, self.quotes);
            if now >= until || (!self.symbols.is_empty() && all) {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep((until - now).min(Duration::from_millis(100))) => {}
                () = ctx.shutdown.cancelled() => break,
            }
        }
        let take = |after: &Mutex<AfterEdges>| {
            let mut after = after.lock().unwrap_or_else(PoisonError::into_inner);
            after.closed = true;
            std::mem::take(&mut after.edges)
        };
        (take(&job.after), take(&job.quote_after))
    }

    /// The trades (and minute bars) of this provider already in the ticks topic from the gap's
    /// start (less the margin) on, per symbol: read once the spool a previous process left is sent and
    /// acknowledged, so nothing it held can arrive after the read.
    async fn delivered(&self, job: &Job, ctx: &SourceCtx, deadline: Instant) -> Result<Delivered, String> {
        while !ctx.sink.spool_caught_up() {
            if Instant::now() >= deadline {
                return Err("the previous process's spool was not sent before the repair's deadline".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let start_ms = (job.gap.from.timestamp_nanos_opt().unwrap_or(0) - EDGE_MARGIN_NS).div_euclid(1_000_000)
            - self.late_ms.unwrap_or(0);
        let to_ms = job.far_ms();
        // Kafka timestamps are when a record was produced, after its trade: a minute's slack.
        let since_ms = start_ms - 2 * MINUTE_MS;
        let (kafka, topic, provider) = (ctx.kafka.clone(), ctx.kafka.topics.market_ticks.name.clone(), self.provider);
        let timeout = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(10));
        let bars = job.bar_range();
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Delivered::default();
            ingest_core::kafka::read_committed_since(&kafka, &topic, since_ms, timeout, |value| {
                let Ok(tick) = serde_json::from_slice::<MarketTick<'_>>(value) else {
                    return;
                };
                if tick.provider != provider {
                    return;
                }
                let ms = tick.timestamp.timestamp_millis();
                if tick.event_type == TickType::Trade
                    && (start_ms..=to_ms).contains(&ms)
                    && let Some(key) = TickKey::of_tick(&tick)
                {
                    out.trades.entry(tick.symbol.into_owned()).or_default().insert(key);
                } else if tick.event_type == TickType::Quote
                    && (start_ms..=to_ms).contains(&ms)
                    && let Some(key) = TickKey::of_quote_tick(&tick)
                {
                    out.quotes.entry(tick.symbol.into_owned()).or_default().insert(key);
                } else if is_minute_bar(&tick) && (bars.0..=bars.1).contains(&ms) {
                    out.bars.entry(tick.symbol.into_owned()).or_default().insert(ms);
                }
            })
            .map(|()| out)
        });
        match read.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(format!("could not read what was delivered before the restart: {e}")),
            Err(e) => Err(format!("could not read what was delivered before the restart: {e}")),
        }
    }

    /// Each symbol's window (module documentation: the margins).
    fn windows(
        &self,
        job: &Job,
        after: HashMap<String, EdgeMs>,
        delivered: HashMap<String, HashSet<TickKey>>,
    ) -> Vec<(String, Window)> {
        self.windows_of(job, (&job.before, after, delivered), &self.repaired_to)
    }

    /// Each symbol's window of one kind of tick (trades or quotes): its near and far edges,
    /// what the topic holds, and where its last window ended.
    fn windows_of(
        &self,
        job: &Job,
        (before, mut after, mut delivered): KindEdges<'_>,
        repaired_to: &Mutex<HashMap<String, i64>>,
    ) -> Vec<(String, Window)> {
        let gap_start_ns = job.gap.from.timestamp_nanos_opt().unwrap_or(0) - EDGE_MARGIN_NS;
        let resumed_ms = job.far_ms();
        let late_ns = self.late_ms.map(|ms| ms * 1_000_000);
        let mut repaired_to = repaired_to.lock().unwrap_or_else(PoisonError::into_inner);
        let mut symbols = self.symbols.clone();
        if symbols.is_empty() {
            symbols = before
                .keys()
                .chain(after.keys())
                .chain(delivered.keys())
                .cloned()
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            symbols.sort_unstable();
        }
        symbols
            .into_iter()
            .map(|symbol| {
                let last = repaired_to.get(&symbol).copied().unwrap_or(i64::MIN);
                let after = after.remove(&symbol);
                let mut delivered = delivered.remove(&symbol).unwrap_or_default();
                let window = match late_ns {
                    None => {
                        let start_ns = gap_start_ns.max(last);
                        let before =
                            before.get(&symbol).filter(|b| b.ms.saturating_mul(1_000_000) >= start_ns).cloned();
                        let after = after.unwrap_or(EdgeMs { ms: resumed_ms, keys: HashSet::new() });
                        Window { before, start_ns, after, delivered }
                    }
                    // Trades timed by their exchanges: the window reaches back as far as one may
                    // be late and ends at the resumption, and every trade received around it
                    // (before the gap, and after it until now) is recognised wherever it falls.
                    Some(late_ns) => {
                        let start_ns = (gap_start_ns - late_ns).max(last);
                        delivered.extend(before.get(&symbol).into_iter().flat_map(|b| b.keys.iter().copied()));
                        delivered.extend(after.into_iter().flat_map(|a| a.keys));
                        let after = EdgeMs { ms: resumed_ms, keys: HashSet::new() };
                        Window { before: None, start_ns, after, delivered }
                    }
                };
                let end = window.range_ns().1;
                let to = repaired_to.entry(symbol.clone()).or_insert(end);
                *to = (*to).max(end);
                (symbol, window)
            })
            .collect()
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
            conditions: serde_json::Value::Null,
            tape: Some(3),
        }
    }

    fn key(id: &str, exchange: i64) -> TickKey {
        TickKey { exchange, trf: 0, id: fnv1a(id.as_bytes()) }
    }

    const MS: i64 = 1_765_000_000_000;

    /// Before the gap, trades a, b arrived in ms 0 (c of the same ms did not); after it, y
    /// arrived in ms 10 (x of the same ms did not).
    fn window() -> Window {
        Window {
            before: Some(EdgeMs { ms: MS, keys: HashSet::from([key("a", 11), key("b", 12)]) }),
            start_ns: 0,
            after: EdgeMs { ms: MS + 10, keys: HashSet::from([key("y", 11)]) },
            delivered: HashSet::new(),
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
        let w = Window {
            before: None,
            start_ns: 42 * 1_000_000,
            after: EdgeMs { ms: 50, keys: HashSet::new() },
            delivered: HashSet::from([key("known", 1)]),
        };
        assert_eq!(w.range_ns(), (42_000_000, 51_000_000));
        let r = w.missing(vec![
            trade("early", 1, 41_999_999, 1),
            trade("in", 1, 42_000_000, 2),
            trade("known", 1, 45_000_000, 3),
            trade("late", 1, 51_000_000, 4),
        ]);
        assert_eq!(r.missing.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["in"], "only the window");
        assert_eq!(r.duplicates, 1, "already in the topic, at any millisecond");
    }

    #[test]
    fn the_tracker_keeps_the_millisecond_being_received() {
        let mut t = EdgeTracker::default();
        t.trade(5, key("a", 1));
        t.trade(5, key("b", 1));
        t.trade(4, key("late", 1));
        assert_eq!(t.last().map(|e| (e.ms, e.keys.len())), Some((5, 2)), "an older millisecond is not an open edge");
        t.trade(6, key("c", 1));
        assert_eq!(t.last(), Some(&EdgeMs { ms: 6, keys: HashSet::from([key("c", 1)]) }), "the next millisecond alone");
    }

    fn live(symbol: &str, ms: i64, id: &str) -> MarketTick<'static> {
        let at = DateTime::from_timestamp_millis(ms).unwrap();
        let mut t = MarketTick::new(symbol.to_string().into(), TickType::Trade, at, "polygon".into(), at);
        t.exchange_code = Some(Code::Int(11));
        t.trade_id = Some(Code::Str(id.to_string().into()));
        t
    }

    fn keys(e: &EdgeMs) -> Vec<&'static str> {
        let mut k: Vec<&str> = ["a", "b", "c", "m", "o", "p", "x", "y", "z", "late"]
            .into_iter()
            .filter(|id| e.keys.iter().any(|k| k.id == fnv1a(id.as_bytes())))
            .collect();
        k.sort_unstable();
        assert_eq!(k.len(), e.keys.len(), "every key is one of the test's ids");
        k
    }

    #[test]
    fn a_tick_read_back_from_the_topic_has_the_key_it_had_live() {
        let t = live("AAPL", 5, "a");
        let json = serde_json::to_vec(&t).unwrap();
        let back: MarketTick<'_> = serde_json::from_slice(&json).unwrap();
        assert_eq!(TickKey::of_tick(&back), TickKey::of_tick(&t));
        assert!(TickKey::of_tick(&t).is_some());
    }

    #[test]
    fn a_gap_gets_the_last_millisecond_before_it_and_the_first_after_it() {
        let mut edges = LiveEdges::default();
        for (s, ms, id) in [("AAPL", 4, "o"), ("AAPL", 5, "a"), ("AAPL", 5, "b"), ("MSFT", 4, "m")] {
            edges.trade(&live(s, ms, id));
        }
        edges.connected();
        // A connection that failed before any trade keeps the edges of the one before it.
        edges.connected();
        let (before, after) = edges.gap();
        assert_eq!((before["AAPL"].ms, keys(&before["AAPL"])), (5, vec!["a", "b"]));
        assert_eq!((before["MSFT"].ms, keys(&before["MSFT"])), (4, vec!["m"]));
        for (s, ms, id) in
            [("AAPL", 9, "x"), ("AAPL", 9, "y"), ("AAPL", 10, "z"), ("AAPL", 9, "late"), ("MSFT", 12, "p")]
        {
            edges.trade(&live(s, ms, id));
        }
        let a = after.lock().unwrap();
        assert_eq!((a.edges["AAPL"].ms, keys(&a.edges["AAPL"])), (9, vec!["x", "y"]), "complete at ms 10");
        assert_eq!((a.edges["MSFT"].ms, keys(&a.edges["MSFT"])), (12, vec!["p"]));
        assert_eq!(a.complete, 1, "MSFT's millisecond may still be arriving");
        drop(a);
        // The next gap starts from this connection's last milliseconds.
        edges.connected();
        let (before, _) = edges.gap();
        assert_eq!((before["AAPL"].ms, before["MSFT"].ms), (10, 12));
    }

    #[test]
    fn a_gap_takes_no_far_edges_from_after_the_next_disconnect_or_once_taken() {
        let mut edges = LiveEdges::default();
        edges.trade(&live("AAPL", 1, "a"));
        edges.connected();
        let (_, after) = edges.gap();
        edges.connected();
        edges.trade(&live("AAPL", 50, "b"));
        assert!(after.lock().unwrap().edges.is_empty(), "those trades follow another gap");

        let (_, after) = edges.gap();
        after.lock().unwrap().closed = true;
        edges.trade(&live("AAPL", 60, "c"));
        assert!(after.lock().unwrap().edges.is_empty());
        assert!(edges.pending.is_none(), "no lock taken for it any more");
    }

    #[test]
    fn windows_start_at_a_recent_live_trade_or_the_gap_less_the_margin() {
        let r = Repairer::new(
            Err((Unrepaired::NoHistory, String::new())),
            RepairConfig::default(),
            vec!["AAPL".into(), "MSFT".into(), "IBM".into()],
            "polygon",
            Kinds { trades: true, ..Kinds::default() },
        );
        let from = DateTime::from_timestamp_millis(MS).unwrap();
        let to = from + chrono::Duration::seconds(3);
        let edge = |ms: i64| EdgeMs { ms, keys: HashSet::from([key("a", 11)]) };
        let job = Job {
            gap: Gap { from, to, why: String::new() },
            epoch: 2,
            // AAPL traded 1 s before the gap's start; MSFT an hour before it.
            before: HashMap::from([("AAPL".to_string(), edge(MS - 1000)), ("MSFT".to_string(), edge(MS - 3_600_000))]),
            after: Arc::default(),
            quote_before: HashMap::new(),
            quote_after: Arc::default(),
            resumed: Instant::now(),
            stored: None,
            earlier: false,
            started_ms: 0,
        };
        let after = HashMap::from([("AAPL".to_string(), edge(MS + 3005))]);
        let w: HashMap<String, Window> = r.windows(&job, after, HashMap::new()).into_iter().collect();
        let ns = |ms: i64| ms * 1_000_000;
        assert_eq!(w["AAPL"].range_ns(), (ns(MS - 1000), ns(MS + 3006)));
        assert_eq!(w["MSFT"].range_ns(), (ns(MS) - EDGE_MARGIN_NS, ns(MS + 3001)), "no live trade near the gap");
        assert!(w["MSFT"].before.is_none());
        assert_eq!(w["IBM"].range_ns(), (ns(MS) - EDGE_MARGIN_NS, ns(MS + 3001)), "never traded live");

        // The next gap, right after this one: its margin does not reach back into these
        // windows, and a near edge inside them is not used again.
        let from2 = to + chrono::Duration::milliseconds(500);
        let job2 = Job {
            gap: Gap { from: from2, to: from2 + chrono::Duration::seconds(1), why: String::new() },
            epoch: 3,
            before: HashMap::from([("AAPL".to_string(), edge(MS + 3005))]),
            after: Arc::default(),
            quote_before: HashMap::new(),
            quote_after: Arc::default(),
            resumed: Instant::now(),
            stored: None,
            earlier: false,
            started_ms: 0,
        };
        let w2: HashMap<String, Window> = r.windows(&job2, HashMap::new(), HashMap::new()).into_iter().collect();
        assert_eq!(w2["AAPL"].range_ns().0, ns(MS + 3006), "starts where the last window ended");
        assert!(w2["AAPL"].before.is_none(), "its edge millisecond was repaired with the last window");
        assert_eq!(w2["IBM"].range_ns().0, ns(MS + 3001));
    }

    #[test]
    fn trades_that_may_arrive_late_are_recognised_anywhere_in_a_window_reaching_back_as_far() {
        // Trades timed by their exchanges, up to 1 s late: received in the order 100, 900, 500.
        let mut late = LateTrades::new(1000);
        for (ms, id) in [(MS - 100, "a"), (MS - 900, "b"), (MS - 500, "c")] {
            late.tick(&live("BTC-USD", ms, id), key(id, 11));
        }
        let (before, after) = late.gap();
        assert_eq!(before["BTC-USD"].ms, MS - 100, "the latest time received");
        assert_eq!(before["BTC-USD"].keys.len(), 3, "every recent trade, whatever its time");
        // After the gap: a trade from before it arrives late, then one from after it.
        late.tick(&live("BTC-USD", MS + 200, "d"), key("d", 11));
        late.tick(&live("BTC-USD", MS + 3100, "e"), key("e", 11));
        assert_eq!(after.lock().unwrap().edges["BTC-USD"].keys.len(), 2);
        after.lock().unwrap().closed = true;
        late.tick(&live("BTC-USD", MS + 3200, "f"), key("f", 11));
        assert_eq!(after.lock().unwrap().edges["BTC-USD"].keys.len(), 2, "none once the repair took them");

        let mut r = Repairer::new(
            Err((Unrepaired::NoHistory, String::new())),
            RepairConfig::default(),
            vec!["BTC-USD".into()],
            "polygon",
            Kinds { trades: true, ..Kinds::default() },
        );
        r.late_ms = Some(1000);
        let from = DateTime::from_timestamp_millis(MS).unwrap();
        let job = Job {
            gap: Gap { from, to: from + chrono::Duration::seconds(3), why: String::new() },
            epoch: 2,
            before,
            after: Arc::default(),
            quote_before: HashMap::new(),
            quote_after: Arc::default(),
            resumed: Instant::now(),
            stored: None,
            earlier: false,
            started_ms: 0,
        };
        let taken = std::mem::take(&mut after.lock().unwrap().edges);
        let w = r.windows(&job, taken, HashMap::new()).remove(0).1;
        let ns = |ms: i64| ms * 1_000_000;
        assert_eq!(
            w.range_ns(),
            (ns(MS - 1000) - EDGE_MARGIN_NS, ns(MS + 3001)),
            "back by the lateness and the margin"
        );
        // The history of the window: a, b, c and d arrived live; g (at MS + 100) never did.
        let history = vec![
            trade("b", 11, ns(MS - 900), 0),
            trade("g", 11, ns(MS + 100), 0),
            trade("c", 11, ns(MS - 500), 0),
            trade("a", 11, ns(MS - 100), 0),
            trade("d", 11, ns(MS + 200), 0),
        ];
        let repair = w.missing(history);
        assert_eq!(repair.missing.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), vec!["g"]);
        assert_eq!(repair.duplicates, 4);
    }

    #[test]
    fn the_bars_a_gap_may_lose_are_the_minutes_that_ended_in_it_not_seen_live() {
        let m0 = MS.div_euclid(MINUTE_MS) * MINUTE_MS;
        // A gap from 10:00:30 to 10:03:10 (m0: a minute's start): the bars of the minutes
        // that ended after 10:00:28 (the margin) and by 10:03:10 are 10:00, 10:01 and 10:02.
        let from = DateTime::from_timestamp_millis(m0 + 30_000).unwrap();
        let to = DateTime::from_timestamp_millis(m0 + 190_000).unwrap();
        let job = Job {
            gap: Gap { from, to, why: String::new() },
            epoch: 1,
            before: HashMap::new(),
            after: Arc::default(),
            quote_before: HashMap::new(),
            quote_after: Arc::default(),
            resumed: Instant::now(),
            stored: None,
            earlier: false,
            started_ms: 0,
        };
        let (lo, hi) = job.bar_range();
        let starts: Vec<i64> = (lo..=hi).filter(|t| t % MINUTE_MS == 0).collect();
        assert_eq!(starts, vec![m0, m0 + 60_000, m0 + 120_000]);
        // The 10:02 bar arrived live after the reconnect; the history repeats 10:01.
        let bar = |t: i64| HistoryBar { t, o: 1.0, h: 1.0, l: 1.0, c: 1.0, v: 100.0, vw: None, n: None };
        let history = vec![bar(m0 + 120_000), bar(m0 + 60_000), bar(m0), bar(m0 + 60_000)];
        let missing = missing_bars(history, &HashSet::from([m0 + 120_000]));
        assert_eq!(missing.iter().map(|b| b.t).collect::<Vec<_>>(), vec![m0, m0 + 60_000], "2 of 4 left out");
    }

    #[test]
    fn seen_bars_keep_their_window_and_a_minute_bar_is_told_from_a_second_one() {
        let seen = SeenBars::new(120);
        for i in 0..5 {
            seen.insert("AAPL", MS + i * MINUTE_MS);
        }
        assert_eq!(
            seen.between("AAPL", 0, i64::MAX),
            HashSet::from([MS + 2 * MINUTE_MS, MS + 3 * MINUTE_MS, MS + 4 * MINUTE_MS])
        );
        assert!(seen.between("MSFT", 0, i64::MAX).is_empty());
        let mut t = live("AAPL", MS, "1");
        t.event_type = TickType::Bar;
        t.window_start = DateTime::from_timestamp_millis(MS);
        t.window_end = DateTime::from_timestamp_millis(MS + MINUTE_MS);
        assert!(is_minute_bar(&t));
        t.window_end = DateTime::from_timestamp_millis(MS + 1000);
        assert!(!is_minute_bar(&t), "a second bar");
    }

    #[test]
    fn a_gap_an_earlier_process_left_ends_at_its_margin_but_never_past_this_process_start() {
        let repairer = || {
            Repairer::new(
                Err((Unrepaired::NoHistory, String::new())),
                RepairConfig::default(),
                vec!["AAPL".into()],
                "polygon",
                Kinds { trades: true, ..Kinds::default() },
            )
        };
        let from = DateTime::from_timestamp_millis(MS).unwrap();
        let to = from + chrono::Duration::seconds(1);
        let stored = StoredGap::new(&Gap { from, to, why: String::new() }, 4);
        let ns = |ms: i64| ms * 1_000_000;
        let range = |job: &Job| repairer().windows(job, HashMap::new(), HashMap::new())[0].1.range_ns();

        let long_after = Job::earlier(stored.clone(), to + chrono::Duration::seconds(10));
        assert!(long_after.reads_back(), "no edges: the window is read back from the topic");
        assert_eq!((long_after.epoch, long_after.gap.to), (4, to), "answered with its own window and epoch");
        assert_eq!(range(&long_after), (ns(MS) - EDGE_MARGIN_NS, ns(MS + 1000 + 2000 + 1)));
        // This process started 300 ms after the gap: what it streams live from then on may not
        // be in the topic yet, and its own restart gap covers it.
        let soon_after = Job::earlier(stored, to + chrono::Duration::milliseconds(300));
        assert_eq!(range(&soon_after).1, ns(MS + 1300 + 1));
    }

    #[test]
    fn an_integer_id_has_the_key_of_its_decimal_text() {
        for i in [0, 7, 42, 183_276, -5, i64::MAX, i64::MIN] {
            assert_eq!(int_id(i), fnv1a(i.to_string().as_bytes()), "{i}");
        }
    }
}
