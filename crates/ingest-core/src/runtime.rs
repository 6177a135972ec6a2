//! Process wiring: CLI, config, telemetry, the sink, the sources, signals and shutdown.
//!
//! A producer binary is `fn main() -> ExitCode { ingest_core::main(SPEC, build_sources) }`.
//! Exit codes (docs/contracts.md, Operation): 0 clean stop, 1 fatal runtime error (fatal Kafka error, fatal
//! source error, records left undelivered at shutdown, port taken), 2 usage or config error.
//!
//! Shutdown (SIGTERM/SIGINT, or a fatal error): readiness turns false, sources are cancelled and
//! awaited, a `stopped` event is queued, Kafka is flushed, servers stop; all within
//! `runtime.shutdown_timeout_secs`. A second signal exits at once with 1.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError, DEFAULT_CONFIG_PATH, Section};
use crate::kafka::admin::{design_topics, ensure_topics};
use crate::kafka::{Sink, SinkError, SpoolLeft};
use crate::source::{Source, SourceCtx};
use crate::telemetry::events::{InternalEvent, ProcessStarted, ProcessStopped};
use crate::telemetry::handles::provider_enabled;
use crate::telemetry::{self, Health, Metrics, ServerAddrs, logging};

/// Identity of a producer binary.
#[derive(Debug, Clone, Copy)]
pub struct ProducerSpec {
    /// Binary and `producer` label (`market-producer`).
    pub name: &'static str,
    /// Version (`env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
}

/// The commit the binary was built from (ingest-core's build script: `FINSTREAM_REVISION`, or
/// the checkout's `git rev-parse`, or "unknown").
pub const REVISION: &str = env!("FINSTREAM_REVISION");

/// Provider label of the process's own lifecycle events.
pub use crate::telemetry::events::PROCESS_PROVIDER;

/// The flags every producer has, plus its own (`A`).
#[derive(Debug, Parser)]
struct Cli<A: Args> {
    /// Config file (YAML). Environment variables override it; see README.
    #[arg(long, value_name = "PATH", env = "FINSTREAM_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Validate the configuration (file + environment) and exit: 0 if valid, 2 if not.
    #[arg(long)]
    check_config: bool,
    #[command(flatten)]
    extra: A,
}

/// No producer-specific flags.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct NoArgs {}

/// Why a run ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration discovered while starting (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Anything else (exit 1).
    #[error("{0}")]
    Fatal(String),
}

impl RunError {
    fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Config(_) => ExitCode::from(2),
            RunError::Fatal(_) => ExitCode::from(1),
        }
    }
}

/// Runs a producer binary to completion. `build` turns the loaded config (and the producer's
/// own flags) into its sources; a `ConfigError` from it exits 2.
pub fn main<S, A, F>(spec: ProducerSpec, build: F) -> ExitCode
where
    S: Section,
    A: Args,
    F: FnOnce(&Config<S>, &A) -> Result<Vec<Box<dyn Source>>, ConfigError>,
{
    // `--version`: "market-producer 0.1.0 (commit 3c5c6ee0a1b2)"; built once per process.
    let version: &'static str = Box::leak(format!("{} (commit {REVISION})", spec.version).into_boxed_str());
    let cmd = Cli::<A>::command().name(spec.name).bin_name(spec.name).version(version).about(spec.about);
    let cli = match cmd.try_get_matches().and_then(|m| Cli::<A>::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let loaded = config::load_dotenv().and_then(|()| config::load::<S>(&cli.config));
    let cfg = match loaded {
        Ok(cfg) => cfg,
        // A value from the environment is not the file's fault: name only the variable.
        Err(e) if e.env_var.is_some() => {
            logging::stderr_line(&format!("{}: {e}", spec.name));
            return ExitCode::from(2);
        }
        Err(e) => {
            logging::stderr_line(&format!("{}: {}: {e}", spec.name, cli.config.display()));
            return ExitCode::from(2);
        }
    };
    let sources = match build(&cfg, &cli.extra) {
        Ok(s) => s,
        Err(e) => {
            logging::stderr_line(&format!("{}: {}: {e}", spec.name, cli.config.display()));
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        // Sources as the user configured them: a poll group counts each of its pollers.
        let count: usize = sources.iter().map(|s| s.members()).sum();
        let disabled: Vec<String> = cfg
            .section
            .providers()
            .iter()
            .filter_map(|p| p.disabled_for().map(|var| format!("{} ({var} is not set)", p.name)))
            .collect();
        let disabled = if disabled.is_empty() { String::new() } else { format!("; disabled: {}", disabled.join(", ")) };
        let mut out = std::io::stdout();
        let _ = writeln!(
            out,
            "{}: {}: configuration is valid (section `{}`, {count} source(s){disabled})",
            spec.name,
            cli.config.display(),
            S::NAME,
        );
        return ExitCode::SUCCESS;
    }
    logging::init(&cfg.core.telemetry.log_level, cfg.core.telemetry.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name(spec.name).build() {
        Ok(rt) => rt,
        Err(e) => {
            logging::stderr_line(&format!("{}: cannot start the async runtime: {e}", spec.name));
            return ExitCode::from(1);
        }
    };
    let timeout = Duration::from_secs(cfg.core.runtime.shutdown_timeout_secs);
    let result = rt.block_on(async move {
        // Registered before anything starts: a signal during startup is buffered and then
        // shuts down gracefully instead of killing the process with the default action.
        let signals =
            Signals::install().map_err(|e| RunError::Fatal(format!("cannot install signal handlers: {e}")))?;
        let running = start(spec, &cfg, sources).await?;
        tokio::spawn(signals.handle(running.shutdown_token(), timeout));
        // However the stop begins (a signal, a fatal error), the process ends within the
        // timeout. Only here, in the binary: tests run producers inside their own process.
        let stopping = running.stopping.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            arm_stop_deadline(timeout);
        });
        running.wait().await
    });
    // Tasks still blocked in a client call (a transaction init against an unreachable broker)
    // are left behind rather than waited for: the stop is bounded by the shutdown timeout.
    rt.shutdown_timeout(Duration::from_millis(200));
    let code = match result {
        Ok(()) => {
            tracing::info!(producer = spec.name, "stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(producer = spec.name, error = %e, "stopped with an error");
            logging::flush(Duration::from_millis(500));
            logging::stderr_line(&format!("{}: {e}", spec.name));
            e.exit_code()
        }
    };
    logging::flush(Duration::from_millis(500));
    code
}

/// Once shutdown began, the process ends within `timeout` whatever is stuck: a plain thread
/// (not a task of the runtime it watches) exits with 1 when the graceful stop overran. Armed
/// once; later calls do nothing.
fn arm_stop_deadline(timeout: Duration) {
    static ARMED: std::sync::Once = std::sync::Once::new();
    ARMED.call_once(|| {
        let _ = std::thread::Builder::new().name("stop-deadline".into()).spawn(move || {
            crate::blocking::sleep(timeout);
            logging::stderr_line(&format!(
                "the graceful stop did not finish within runtime.shutdown_timeout_secs ({}s); exiting",
                timeout.as_secs()
            ));
            std::process::exit(1);
        });
    });
}

/// How much of the shutdown timeout the sources and the flush may use: the rest is for closing
/// the spool and the servers before the stop deadline.
fn graceful_budget(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 5).min(Duration::from_secs(2)))
}

/// SIGTERM and SIGINT streams.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// First SIGTERM/SIGINT: graceful shutdown, bounded by `timeout`. Second: exit 1 at once.
    /// The stop is started before anything is logged: logging can never keep it from happening.
    async fn handle(mut self, shutdown: CancellationToken, timeout: Duration) {
        let name = tokio::select! { _ = self.term.recv() => "SIGTERM", _ = self.int.recv() => "SIGINT" };
        shutdown.cancel();
        arm_stop_deadline(timeout);
        tracing::info!(signal = name, "shutting down");
        tokio::select! { _ = self.term.recv() => {}, _ = self.int.recv() => {} }
        tracing::error!("second signal: exiting without waiting for the flush");
        logging::flush(Duration::from_millis(200));
        std::process::exit(1);
    }
}

/// A started producer: servers bound, sink created, sources running.
#[derive(Debug)]
pub struct Running {
    /// Where metrics and health are served.
    pub addrs: ServerAddrs,
    /// The sink (tests use it to send through the same producer).
    pub sink: Sink,
    /// Health state.
    pub health: Health,
    /// Metrics.
    pub metrics: Metrics,
    shutdown: CancellationToken,
    /// Fires when the stop begins, whatever began it.
    stopping: CancellationToken,
    supervisor: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Running {
    /// Cancelling it starts the graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the producer stopped (after shutdown or a fatal error).
    pub async fn wait(self) -> Result<(), RunError> {
        self.supervisor.await.unwrap_or_else(|e| Err(RunError::Fatal(format!("supervisor panicked: {e}"))))
    }
}

/// Starts a producer in this process: binds the telemetry servers, creates the sink (and the
/// topics if configured), starts the Kafka readiness probe and the sources.
pub async fn start<S: Section>(
    spec: ProducerSpec,
    cfg: &Config<S>,
    sources: Vec<Box<dyn Source>>,
) -> Result<Running, RunError> {
    let core = &cfg.core;
    // One set of trust roots for every HTTPS and WSS client of the process.
    crate::tls::install(&core.tls).map_err(|e| RunError::Config(ConfigError::key("tls.extra_ca_file", e.reason)))?;
    let metrics = Metrics::new(spec.name, spec.version);
    let health = Health::new(spec.name, spec.version);
    metrics.watch_sources(&health);
    let shutdown = CancellationToken::new();
    let fatal = CancellationToken::new();
    let made = if core.kafka.spool.enabled {
        let settings = core.kafka.spool.settings(spec.name);
        Sink::spooled(&core.kafka, spec.name, settings, metrics.clone(), health.clone(), fatal.clone()).map(|(s, _)| s)
    } else {
        Sink::new(&core.kafka, spec.name, metrics.clone(), health.clone(), fatal.clone())
    };
    let sink = made.map_err(|e| match e {
        SinkError::Config(c) => RunError::Config(c),
        SinkError::Create(m) | SinkError::Spool(m) => RunError::Fatal(m),
    })?;
    if !core.kafka.schema_registry_url.is_empty() {
        tracing::info!(url = %core.kafka.schema_registry_url, "schema registry configured; records carry a `schema` header (registration not implemented yet)");
    }
    if core.kafka.create_topics {
        match ensure_topics(
            &core.kafka.connection_properties(),
            core.kafka.replication_factor,
            &design_topics(&core.kafka),
        )
        .await
        {
            Ok(created) if !created.is_empty() => tracing::info!(?created, "created missing topics"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not create topics; readiness will report missing ones"),
        }
    }
    let servers_stop = CancellationToken::new();
    let mut servers = JoinSet::new();
    let addrs = telemetry::serve(&core.telemetry, metrics.clone(), health.clone(), servers_stop.clone(), &mut servers)
        .await
        .map_err(|e| RunError::Fatal(e.to_string()))?;
    tracing::info!(producer = spec.name, version = spec.version, revision = REVISION, metrics = %addrs.metrics, health = %addrs.health, brokers = %core.kafka.brokers, "starting");

    ProcessStarted { version: spec.version }.emit(&sink);
    for p in cfg.section.providers() {
        provider_enabled(&metrics, p.name).set(i64::from(p.runs()));
        if let Some(var) = p.disabled_for() {
            tracing::warn!(
                provider = p.name,
                key = p.missing.unwrap_or_default(),
                "{} is disabled: {var} is not set; the other providers run",
                p.name
            );
        }
    }

    let probe_stop = CancellationToken::new();
    tokio::spawn(kafka_probe(Probe {
        sink: sink.clone(),
        every: Duration::from_secs(core.kafka.healthcheck_interval_secs),
        startup_timeout: (core.kafka.startup_timeout_secs > 0)
            .then(|| Duration::from_secs(core.kafka.startup_timeout_secs)),
        brokers: core.kafka.brokers.clone(),
        health: health.clone(),
        fatal: fatal.clone(),
        stop: probe_stop.clone(),
    }));

    let sources_stop = CancellationToken::new();
    let mut running = JoinSet::new();
    if sources.is_empty() {
        tracing::info!(
            producer = spec.name,
            "no sources configured: the producer is idle (ready while Kafka answers); only lifecycle events are produced"
        );
    }
    // Every source is registered (with its member count) before any runs: whether anything is
    // left to run is then never judged on a half-registered process.
    let registered: Vec<_> = sources
        .into_iter()
        .map(|source| {
            let name = source.name().to_string();
            let cell = health.register_source(&name, source.stale_after());
            cell.set_members(source.members());
            let ctx = SourceCtx {
                producer: spec.name.to_string(),
                sink: sink.clone(),
                health: cell,
                metrics: metrics.clone(),
                shutdown: sources_stop.clone(),
                kafka: core.kafka.clone(),
                process_health: health.clone(),
            };
            (name, source, ctx)
        })
        .collect();
    for (name, source, ctx) in registered {
        running.spawn(async move { (name, source.run(ctx).await) });
    }

    let stopping = CancellationToken::new();
    let supervisor = tokio::spawn(supervise(Supervised {
        stopping: stopping.clone(),
        timeout: Duration::from_secs(core.runtime.shutdown_timeout_secs),
        sink: sink.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
        fatal,
        sources_stop,
        probe_stop,
        servers_stop,
        running,
        servers,
    }));
    Ok(Running { addrs, sink, health, metrics, shutdown, stopping, supervisor })
}

/// What the Kafka probe watches with.
struct Probe {
    sink: Sink,
    every: Duration,
    /// Some broker must answer within this long after start (`None`: wait forever).
    startup_timeout: Option<Duration>,
    brokers: String,
    health: Health,
    fatal: CancellationToken,
    stop: CancellationToken,
}

/// Watches Kafka: fatal client state on every client error (at once), reachability and topics
/// every `every`, and the start-up timeout (no broker ever answered: fatal, exit 1).
async fn kafka_probe(p: Probe) {
    let Probe { sink, every, startup_timeout, brokers, health, fatal, stop } = p;
    let started = Instant::now();
    let mut was_ok = None;
    let mut next_check = Instant::now();
    let startup_deadline = startup_timeout.map(|t| started + t);
    loop {
        if sink.check_fatal().is_some() {
            return;
        }
        if let Some(limit) = startup_timeout
            && !sink.broker_answered()
            && started.elapsed() >= limit
        {
            let why = health.kafka_detail();
            health.set_fatal(format!(
                "no Kafka broker answered within {}s of start at `{brokers}` ({why}); check KAFKA_BROKERS (kafka.brokers), the network and the security settings, or set kafka.startup_timeout_secs to 0 to wait forever",
                limit.as_secs()
            ));
            fatal.cancel();
            return;
        }
        if Instant::now() >= next_check {
            let outcome = sink.check_kafka(Duration::from_secs(5)).await;
            if was_ok != Some(outcome.is_ok()) {
                match &outcome {
                    Ok(detail) => tracing::info!(%detail, "Kafka reachable"),
                    Err(error) => tracing::warn!(%error, "Kafka not ready"),
                }
                was_ok = Some(outcome.is_ok());
            }
            next_check = Instant::now() + every;
        }
        let wake = match startup_deadline {
            Some(d) if !sink.broker_answered() => next_check.min(d),
            _ => next_check,
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = sink.client_error() => {}
            () = stop.cancelled() => return,
        }
    }
}

struct Supervised {
    stopping: CancellationToken,
    timeout: Duration,
    sink: Sink,
    health: Health,
    shutdown: CancellationToken,
    fatal: CancellationToken,
    sources_stop: CancellationToken,
    probe_stop: CancellationToken,
    servers_stop: CancellationToken,
    running: JoinSet<(String, Result<(), crate::source::FatalError>)>,
    servers: JoinSet<()>,
}

async fn supervise(mut s: Supervised) -> Result<(), RunError> {
    let mut failure: Option<String> = None;
    let mut reason = "shutdown requested".to_string();
    // A producer whose sources all finished (a replay) stops by itself; one that never had a
    // source runs until it is told to stop.
    let had_sources = !s.running.is_empty();
    loop {
        tokio::select! {
            () = s.shutdown.cancelled() => break,
            () = s.fatal.cancelled() => {
                failure = s.health.fatal().or(Some("fatal Kafka error".into()));
                reason = "fatal Kafka error".into();
                break;
            }
            Some(done) = s.running.join_next(), if !s.running.is_empty() => match done {
                Ok((name, Err(e))) => {
                    tracing::error!(source = %name, error = %e, "source stopped with a fatal error");
                    s.health.set_fatal(e.to_string());
                    reason = format!("source {name} failed");
                    failure = Some(e.to_string());
                    break;
                }
                Ok((name, Ok(()))) => {
                    tracing::info!(source = %name, "source finished");
                    if had_sources && s.running.is_empty() {
                        reason = "all sources finished".into();
                        break;
                    }
                }
                Err(e) => {
                    s.health.set_fatal(format!("a source panicked: {e}"));
                    failure = Some(format!("a source panicked: {e}"));
                    reason = "source panicked".into();
                    break;
                }
            },
        }
    }
    s.stopping.cancel();
    let deadline = Instant::now() + graceful_budget(s.timeout);
    s.health.set_stopping();
    s.sources_stop.cancel();
    s.probe_stop.cancel();
    if tokio::time::timeout_at(deadline, async { while s.running.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!("sources did not stop in time; aborting them");
        s.running.abort_all();
    }
    ProcessStopped { reason: &reason }.emit(&s.sink);
    // Failed without a broker ever answering (the start-up timeout): waiting for one now is
    // pointless; what the client holds goes to the spool (or is counted) at once.
    let flush_for = if failure.is_some() && !s.sink.broker_answered() {
        Duration::ZERO
    } else {
        deadline.saturating_duration_since(Instant::now())
    };
    let in_flight = s.sink.flush(flush_for).await;
    // Spooled records not acknowledged stay in the spool for the next start, and records held
    // only in the Kafka client are taken back into it: not lost.
    let left = match s.sink.close_spool().await {
        Some(kept) => {
            warn_kept(kept);
            usize::try_from(kept.lost).unwrap_or(usize::MAX)
        }
        None => in_flight,
    };
    s.servers_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(250), async { while s.servers.join_next().await.is_some() {} })
        .await;
    match (failure, left) {
        (Some(f), _) => Err(RunError::Fatal(f)),
        (None, 0) => Ok(()),
        (None, n) => {
            Err(RunError::Fatal(format!("{n} record(s) were not acknowledged by Kafka before the shutdown timeout")))
        }
    }
}

fn warn_kept(kept: SpoolLeft) {
    if kept.unsent + kept.unacknowledged > 0 {
        tracing::warn!(
            unsent = kept.unsent,
            unacknowledged = kept.unacknowledged,
            taken_back = kept.taken_back,
            "Kafka did not take everything before the shutdown timeout; the spool keeps these records for the next start"
        );
    }
}
