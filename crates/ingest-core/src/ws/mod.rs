//! A reconnecting WebSocket client for streaming sources.
//!
//! The runner owns the connection lifecycle; a provider implements [`WsSession`] (what to send
//! on open, what each frame means). The runner guarantees:
//! - reconnect with jittered exponential backoff that resets only after a connection stayed
//!   healthy for `healthy_after`;
//! - on every connection: a new connection epoch (told to the [`WsOutput`]), [`WsSession::on_open`] (auth, subscribe), and a
//!   `connected` event; after a disconnect (once a subscription had been live), a `gap` event
//!   from the last frame received before it to the moment the new subscription is live (see
//!   [`gap`]: windows never overlap, closed-market time is left out, and
//!   `producer_ws_gap_seconds_total` is the sum of the published windows);
//! - WebSocket pings every `ping_interval`; a connection with no frame at all (pongs included)
//!   for `dead_after` is dropped, whether the market is open or not;
//! - a session-aware staleness watchdog: subscribed, the feed's market open (see
//!   [`crate::market_hours`]) and no data for `stale_after` (counted from the later of the last
//!   data, the subscription and the market's open) → not ready, reconnect. While the market is
//!   closed silence is expected: no reconnect, no gap, `/ready` stays ready and says
//!   "market closed"; `producer_market_open` tells alert rules the same;
//! - `wss://` over rustls with the process's roots ([`crate::tls`]); a certificate the roots do
//!   not trust is an ERROR naming the host and the reason, counted in
//!   `producer_ws_connect_errors_total{reason="tls_certificate"}`, and retried only at the
//!   longest backoff delay;
//! - a handshake deadline: not subscribed within `handshake_timeout` → reconnect;
//! - frames larger than `max_frame_bytes` are refused by the WebSocket layer (the connection is
//!   failed, the output told via [`WsOutput::transport_error`]);
//! - HTTP 401/403 on the upgrade, or [`Step::Fatal`] from the session, stop the source (exit 1).
//!
//! Text frames with invalid UTF-8 fail the connection (RFC 6455 §8.1); the session hears about
//! it and the gap is published like any other disconnect.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use prometheus::IntGauge;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

pub mod connect;
pub mod emit;
pub mod frame;
pub mod gap;
pub mod recording;

pub use connect::{Connector, Dialer, WsStream};

use crate::clock::Clock;
use crate::market_hours::MarketSession;
use crate::resilience::{Backoff, BackoffConfig};
use crate::source::{FatalError, SourceCtx};
use crate::telemetry::events::{InternalEvent, StreamConnected, StreamDisconnected, StreamGap, StreamResubscribed};
use crate::telemetry::handles::StreamCounters;

/// Connection settings of a streaming source.
#[derive(Clone)]
pub struct WsSettings {
    /// Where to connect. May hold a credential in its query (Finnhub): never logged; see
    /// [`WsSettings::display_url`].
    pub url: String,
    /// Largest accepted frame/message, in bytes.
    pub max_frame_bytes: usize,
    /// How often to send a WebSocket ping.
    pub ping_interval: Duration,
    /// No frame at all (data, control, pong) for this long: the connection is dead.
    pub dead_after: Duration,
    /// Subscribed but no data for this long: stale (not ready, reconnect).
    pub stale_after: Duration,
    /// TCP + TLS + upgrade deadline.
    pub connect_timeout: Duration,
    /// Connected but not subscribed within this: reconnect.
    pub handshake_timeout: Duration,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// A connection that stayed subscribed this long resets the backoff.
    pub healthy_after: Duration,
    /// Record every data frame received to this file (see [`recording`]).
    pub record_to: Option<std::path::PathBuf>,
    /// The trading hours of the feed's market: staleness is checked only while it is open.
    pub session: MarketSession,
    /// Wall-clock time (the calendar, event times); tests anchor it on tokio's paused clock.
    pub clock: Clock,
}

impl std::fmt::Debug for WsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSettings")
            .field("url", &self.display_url())
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("stale_after", &self.stale_after)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl WsSettings {
    /// The URL without its query string (which may carry a token), for logs and events.
    pub fn display_url(&self) -> &str {
        self.url.split('?').next().unwrap_or_default()
    }
}

/// A received data frame.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    /// A text frame (valid UTF-8, checked by the WebSocket layer).
    Text(&'a str),
    /// A binary frame (any bytes).
    Binary(&'a [u8]),
}

impl Frame<'_> {
    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Frame::Text(s) => s.as_bytes(),
            Frame::Binary(b) => b,
        }
    }
}

/// What a frame meant, as far as the connection is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing for the runner to do.
    Continue,
    /// The frame carried data (freshness).
    Data,
    /// The subscription is live now (readiness; end of a gap).
    Subscribed,
    /// Drop this connection and reconnect (with backoff), for this reason.
    Reconnect(String),
    /// Drop this connection and reconnect no sooner than after this delay (plus jitter): the
    /// provider refuses a new connection while it still counts the old one (Alpaca 406).
    ReconnectAfter(String, Duration),
    /// Stop the source: retrying cannot help (bad credentials, plan without access).
    Fatal(String),
}

/// Where a session's records and dead letters go: owned by the source that runs the session,
/// which does the I/O (the sink, backpressure). The runner tells it about connections.
pub trait WsOutput: Send {
    /// A new connection is open (`epoch` counts connections from 1): records that follow came
    /// over it.
    fn connected(&mut self, epoch: u64);

    /// The connection failed with `error` (after which the runner reconnects): record what must
    /// be kept, e.g. a dead letter for a refused oversized frame.
    fn transport_error(&mut self, error: &WsError);

    /// A gap was published (its `gap` event is out) for the connection `epoch`, whose
    /// subscription is live now: an output that repairs gaps starts here. Nothing by default.
    fn gap(&mut self, gap: &gap::Gap, epoch: u64) {
        let _ = (gap, epoch);
    }
}

/// A provider's protocol over the connection, pure: it turns frames into protocol replies
/// (`replies`), a [`Step`] for the runner, and records and dead letters handed to `output`. It
/// does no I/O of its own, so its handshake and error table are tested without a socket or
/// Kafka.
pub trait WsSession: Send {
    /// What the session's records and dead letters are handed to.
    type Output: WsOutput + ?Sized;

    /// Provider label (events, logs).
    fn provider(&self) -> &str;

    /// A new connection is open. Push the first messages (auth, subscriptions) to `replies`, or
    /// nothing if the server speaks first. Return [`Step::Subscribed`] for protocols without a
    /// subscription acknowledgement.
    fn on_open(&mut self, replies: &mut Vec<String>) -> Step;

    /// One frame.
    fn on_frame(
        &mut self,
        frame: Frame<'_>,
        received_at: DateTime<Utc>,
        replies: &mut Vec<String>,
        output: &mut Self::Output,
    ) -> Step;
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// Could not connect or upgrade.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The TLS handshake failed (`certificate`: the server's certificate was not trusted).
    #[error("{reason}")]
    Tls {
        /// The host connected to.
        host: String,
        /// Host and rustls' reason, for operators.
        reason: String,
        /// The certificate was refused (unknown issuer, expired, wrong name…).
        certificate: bool,
    },
    /// The upgrade was refused with this HTTP status.
    #[error("upgrade refused with HTTP {0}")]
    Http(u16),
    /// A frame exceeded the limit.
    #[error("frame larger than {limit} bytes refused")]
    FrameTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A text frame was not valid UTF-8.
    #[error("text frame with invalid UTF-8")]
    InvalidUtf8,
    /// Any other WebSocket protocol or I/O error.
    #[error("connection error: {0}")]
    Protocol(String),
    /// The server closed the connection.
    #[error("server closed the connection ({0})")]
    Closed(String),
    /// Nothing received for the dead-connection limit.
    #[error("no frame for {0:?}")]
    Dead(Duration),
    /// Subscribed, but no data for the staleness limit.
    #[error("no data for {0:?} while subscribed")]
    Stale(Duration),
    /// Not subscribed in time.
    #[error("not subscribed within {0:?}")]
    HandshakeTimeout(Duration),
    /// The session asked to reconnect.
    #[error("{0}")]
    Session(String),
}

impl WsError {
    /// The `reason` label of `producer_ws_connect_errors_total` for a connection that could not
    /// be opened; `None` for one that ended after it was open.
    fn connect_reason(&self) -> Option<&'static str> {
        Some(match self {
            WsError::Tls { certificate: true, .. } => "tls_certificate",
            WsError::Tls { .. } => "tls",
            WsError::Http(_) => "http",
            WsError::Connect(m) if m.starts_with("timed out") => "timeout",
            WsError::Connect(_) => "connect",
            _ => return None,
        })
    }
}

pub(crate) fn classify(e: tungstenite::Error, limit: usize) -> WsError {
    use tungstenite::error::{CapacityError, Error as E};
    match e {
        E::Capacity(CapacityError::MessageTooLong { .. }) => WsError::FrameTooLarge { limit },
        E::Capacity(other) => WsError::Protocol(other.to_string()),
        E::Utf8(_) => WsError::InvalidUtf8,
        E::Http(resp) => WsError::Http(resp.status().as_u16()),
        E::ConnectionClosed | E::AlreadyClosed => WsError::Closed("connection closed".into()),
        other => WsError::Protocol(other.to_string()),
    }
}

/// Runs `session` until shutdown (`Ok`) or a fatal condition (`Err`), connecting to
/// `settings.url` over TCP (and TLS for `wss://`).
pub async fn run<S: WsSession + ?Sized>(
    session: &mut S,
    output: &mut S::Output,
    settings: &WsSettings,
    ctx: &SourceCtx,
) -> Result<(), FatalError> {
    let dialer = Dialer::new(&settings.url).map_err(|e| FatalError {
        source_name: session.provider().to_string(),
        message: format!("cannot use {}: {e}", settings.display_url()),
    })?;
    run_with(session, output, settings, ctx, &dialer).await
}

/// As [`run`], opening connections with `connector`.
pub async fn run_with<S: WsSession + ?Sized>(
    session: &mut S,
    output: &mut S::Output,
    settings: &WsSettings,
    ctx: &SourceCtx,
    connector: &dyn Connector,
) -> Result<(), FatalError> {
    let provider = session.provider().to_string();
    let fatal = |message: String| FatalError { source_name: provider.clone(), message };
    let counters = StreamCounters::new(&ctx.metrics, &provider);
    let mut backoff = Backoff::new(settings.backoff);
    let mut epoch = 0u64;
    // After a crash of the previous process, the first gap starts where its unacknowledged data
    // did (see `SourceCtx::restart_gap`).
    let mut tracker = gap::GapTracker::new(settings.session, ctx.restart_gap());
    let mut market = MarketWatch::new(settings, ctx, &provider, counters.market_open());
    let config = WebSocketConfig::default()
        .max_message_size(Some(settings.max_frame_bytes))
        .max_frame_size(Some(settings.max_frame_bytes));
    let mut out = Vec::new();
    let mut recorder = match &settings.record_to {
        Some(path) => Some(
            recording::Recorder::create(path, &provider)
                .map_err(|e| fatal(format!("cannot create the recording {}: {e}", path.display())))?,
        ),
        None => None,
    };
    loop {
        if ctx.shutdown.is_cancelled() {
            return Ok(());
        }
        epoch += 1;
        market.update();
        let mut min_delay = None;
        let connected = tokio::select! {
            r = tokio::time::timeout(settings.connect_timeout, connector.connect(config)) => r,
            () = ctx.shutdown.cancelled() => return Ok(()),
        };
        let ended = match connected {
            Err(_) => WsError::Connect(format!("timed out after {:?}", settings.connect_timeout)),
            Ok(Err(WsError::Http(code @ (401 | 403)))) => {
                counters.connect_error("http");
                ctx.health.set_connected(false, format!("upgrade refused with HTTP {code}"));
                return Err(fatal(format!(
                    "{} refused the connection with HTTP {code}: check the API key",
                    settings.display_url()
                )));
            }
            Ok(Err(e)) => e,
            Ok(Ok(mut ws)) => {
                StreamConnected { provider: &provider, url: settings.display_url(), epoch: Some(epoch) }.emit(ctx);
                out.clear();
                output.connected(epoch);
                let mut pending = Some(session.on_open(&mut out));
                let now = Instant::now();
                let mut conn = Conn {
                    opened: now,
                    last_frame: now,
                    subscribed_at: None,
                    last_data: None,
                    next_ping: now + settings.ping_interval,
                };
                let ended = 'conn: loop {
                    for m in out.drain(..) {
                        if let Err(e) = ws.send(Message::text(m)).await {
                            break 'conn classify(e, settings.max_frame_bytes);
                        }
                    }
                    let tick = conn.next_deadline(settings, &market);
                    tokio::select! {
                        // The step of on_open first (without reading), then frames.
                        msg = async { match pending.take() { Some(step) => Err(step), None => Ok(ws.next().await) } } => {
                            let now = Instant::now();
                            let received_at = settings.clock.now();
                            let step = match msg {
                                Err(from_open) => from_open,
                                Ok(Some(Ok(Message::Text(t)))) => {
                                    conn.last_frame = now;
                                    tracker.frame(received_at);
                                    recording::record(&mut recorder, Frame::Text(t.as_str()), received_at, epoch);
                                    session.on_frame(Frame::Text(t.as_str()), received_at, &mut out, output)
                                }
                                Ok(Some(Ok(Message::Binary(b)))) => {
                                    conn.last_frame = now;
                                    tracker.frame(received_at);
                                    recording::record(&mut recorder, Frame::Binary(&b), received_at, epoch);
                                    session.on_frame(Frame::Binary(&b), received_at, &mut out, output)
                                }
                                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {
                                    conn.last_frame = now;
                                    tracker.frame(received_at);
                                    Step::Continue
                                }
                                Ok(Some(Ok(Message::Close(frame)))) => {
                                    let why = frame.map_or_else(|| "no close frame".to_string(), |f| format!("code {}: {}", u16::from(f.code), f.reason));
                                    break 'conn WsError::Closed(why);
                                }
                                Ok(Some(Err(e))) => break 'conn classify(e, settings.max_frame_bytes),
                                Ok(None) => break 'conn WsError::Closed("stream ended".into()),
                            };
                            match step {
                                Step::Continue => {}
                                Step::Data => {
                                    conn.last_data = Some(now);
                                    ctx.health.mark_data();
                                }
                                Step::Subscribed => {
                                    if conn.subscribed_at.is_none() {
                                        conn.subscribed_at = Some(now);
                                        ctx.health.set_connected(true, format!("subscribed (epoch {epoch})"));
                                        ctx.health.mark_data();
                                        if let Some(gap) = tracker.resumed(received_at) {
                                            let plain_disconnect = "disconnect to resubscribe; WebSocket feeds cannot replay";
                                            StreamGap { counters: &counters, epoch: Some(epoch), gap: gap.clone(), plain_disconnect }.emit(ctx);
                                            output.gap(&gap, epoch);
                                        }
                                        if epoch > 1 {
                                            StreamResubscribed { provider: &provider, epoch }.emit(ctx);
                                        }
                                    }
                                }
                                Step::Reconnect(why) => break 'conn WsError::Session(why),
                                Step::ReconnectAfter(why, at_least) => {
                                    min_delay = Some(at_least);
                                    break 'conn WsError::Session(why);
                                }
                                Step::Fatal(why) => {
                                    let _ = ws.close(None).await;
                                    ctx.health.set_connected(false, why.clone());
                                    return Err(fatal(why));
                                }
                            }
                        }
                        () = tokio::time::sleep_until(tick) => {
                            market.update();
                            if let Some(e) = conn.check(settings, &market) {
                                break 'conn e;
                            }
                            if Instant::now() >= conn.next_ping {
                                conn.next_ping = Instant::now() + settings.ping_interval;
                                if let Err(e) = ws.send(Message::Ping(Default::default())).await {
                                    break 'conn classify(e, settings.max_frame_bytes);
                                }
                            }
                        }
                        () = ctx.shutdown.cancelled() => {
                            let _ = ws.close(None).await;
                            return Ok(());
                        }
                    }
                };
                let _ = ws.close(None).await;
                if let Some(since) = conn.subscribed_at {
                    backoff.reset_if_healthy(since.elapsed(), settings.healthy_after);
                }
                ended
            }
        };
        // Disconnected (or never connected): a gap opens at the last frame received.
        tracker.disconnected(settings.clock.now());
        output.transport_error(&ended);
        let error = ended.to_string();
        ctx.health.set_connected(false, error.clone());
        let mut delay = backoff.next_delay();
        if let Some(reason) = ended.connect_reason() {
            counters.connect_error(reason);
        }
        if let Some(at_least) = min_delay {
            // At least the provider's delay, plus up to half of it again so that replicas that
            // were refused together do not come back together.
            delay = delay.max(at_least.mul_f64(1.0 + rand::random::<f64>() * 0.5));
        }
        let untrusted_certificate = matches!(&ended, WsError::Tls { certificate: true, .. });
        if untrusted_certificate {
            // Retrying will not change the answer until someone fixes the trust store or the
            // server: retry only at the longest delay.
            delay = delay.max(settings.backoff.max);
        }
        StreamDisconnected { counters: &counters, epoch: Some(epoch), error, retry_in: delay, untrusted_certificate }
            .emit(ctx);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.shutdown.cancelled() => return Ok(()),
        }
    }
}

/// The feed's market: open or closed now, since when, until when. Publishes changes to
/// `/ready` (via the source's health) and to `producer_market_open`.
struct MarketWatch {
    session: MarketSession,
    clock: Clock,
    health: crate::telemetry::SourceHealth,
    gauge: prometheus::IntGauge,
    provider: String,
    /// The state last published (`None` before the first look).
    last: Option<crate::market_hours::MarketState>,
    /// When the market last opened (or the watch started): staleness counts from no earlier.
    opened_at: Instant,
    /// The next transition, if any.
    until: Option<Instant>,
}

impl MarketWatch {
    fn new(settings: &WsSettings, ctx: &SourceCtx, provider: &str, gauge: IntGauge) -> Self {
        Self {
            session: settings.session,
            clock: settings.clock,
            health: ctx.health.clone(),
            gauge,
            provider: provider.to_string(),
            last: None,
            opened_at: Instant::now(),
            until: None,
        }
    }

    fn is_open(&self) -> bool {
        self.last.as_ref().is_none_or(|s| s.open)
    }

    /// Looks at the calendar; publishes what changed (open/closed, or the closed phase).
    fn update(&mut self) {
        let state = self.session.state_at(self.clock.now());
        self.until = state.until.map(|u| self.clock.instant_at(u));
        if self.last.as_ref() == Some(&state) {
            return;
        }
        let (provider, session) = (self.provider.as_str(), self.session.name());
        let was_open = self.last.as_ref().map(|s| s.open);
        if state.open {
            self.health.set_market_closed(None);
            if was_open != Some(true) {
                self.opened_at = Instant::now();
                if was_open.is_some() || self.session != MarketSession::Always {
                    tracing::info!(provider, session, state = state.describe(), "market open");
                }
            }
        } else {
            self.health.set_market_closed(Some(state.describe()));
            if was_open != Some(false) {
                tracing::info!(
                    provider,
                    session,
                    state = state.describe(),
                    "market closed: silence is expected, the connection is kept and checked with pings"
                );
            }
        }
        self.gauge.set(i64::from(state.open));
        self.last = Some(state);
    }
}

/// Timing state of one connection.
struct Conn {
    opened: Instant,
    last_frame: Instant,
    subscribed_at: Option<Instant>,
    last_data: Option<Instant>,
    next_ping: Instant,
}

impl Conn {
    /// The moment data is overdue, if the staleness watchdog applies now.
    fn stale_at(&self, s: &WsSettings, market: &MarketWatch) -> Option<Instant> {
        let sub = self.subscribed_at?;
        market.is_open().then(|| self.last_data.unwrap_or(sub).max(sub).max(market.opened_at) + s.stale_after)
    }

    /// The next moment a timer must be checked.
    fn next_deadline(&self, s: &WsSettings, market: &MarketWatch) -> Instant {
        let mut t = self.next_ping.min(self.last_frame + s.dead_after);
        if let Some(transition) = market.until {
            t = t.min(transition);
        }
        match self.subscribed_at {
            Some(_) => {
                if let Some(stale) = self.stale_at(s, market) {
                    t = t.min(stale);
                }
            }
            None => t = t.min(self.opened + s.handshake_timeout),
        }
        t
    }

    /// A reason to drop the connection, if a limit passed.
    fn check(&self, s: &WsSettings, market: &MarketWatch) -> Option<WsError> {
        let now = Instant::now();
        if now >= self.last_frame + s.dead_after {
            return Some(WsError::Dead(s.dead_after));
        }
        match self.subscribed_at {
            Some(_) if self.stale_at(s, market).is_some_and(|at| now >= at) => Some(WsError::Stale(s.stale_after)),
            None if now >= self.opened + s.handshake_timeout => Some(WsError::HandshakeTimeout(s.handshake_timeout)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
