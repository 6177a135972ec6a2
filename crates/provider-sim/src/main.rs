//! `provider-sim`: the provider simulators on one port, for demo mode and manual testing.
//!
//! ```text
//! provider-sim --listen 127.0.0.1:9400 --polygon-key demo --firehose-symbols AAPL,MSFT --firehose-fps 20
//! ```
//! Polygon/Massive WebSocket at `ws://<listen>/stocks` (and `/crypto`); NewsAPI at
//! `http://<listen>/v2/...` and Alpha Vantage at `http://<listen>/query`, serving demo stories
//! (a new one every `--news-every-secs`); SEC EDGAR's feed at `/cgi-bin/browse-edgar` and
//! submissions at `/submissions/…` (a new filing every `--sec-every-secs`); Reddit's token and
//! listings at `/api/v1/access_token` and `/r/{sub}/new` and StockTwits at
//! `/api/2/streams/symbol/…` (new posts every `--social-every-secs`); the altdata example sites
//! at `/altdata/…` (JSON, CSV, HTML; new content every `--altdata-every-secs`);
//! `GET /_sim/requests` shows what clients sent.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use provider_sim::altdata::AltDataHandle;
use provider_sim::edgar::{EdgarConfig, EdgarHandle, demo_filing};
use provider_sim::news::{NewsConfig, NewsHandle, demo_article};
use provider_sim::polygon::{Firehose, PolygonConfig, PolygonHandle};
use provider_sim::social::{SimTweet, SocialConfig, SocialHandle, demo_reddit_post, demo_twit};

/// Local simulators of the data providers.
#[derive(Debug, Parser)]
#[command(name = "provider-sim", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("FINSTREAM_REVISION"), ")"), about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9400", env = "PROVIDER_SIM_LISTEN")]
    listen: SocketAddr,
    /// Also serve the same simulators over TLS (https://, wss://) on this address, with
    /// --tls-cert and --tls-key (e.g. .local/test-ca/server.pem and server.key from
    /// scripts/test-ca.sh).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_listen: Option<SocketAddr>,
    /// PEM certificate chain for --tls-listen.
    #[arg(long)]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-listen.
    #[arg(long)]
    tls_key: Option<std::path::PathBuf>,
    /// API key the Polygon simulator accepts.
    #[arg(long, default_value = "demo")]
    polygon_key: String,
    /// Stream generated trades for these symbols to subscribed Polygon clients (comma-separated).
    #[arg(long, value_delimiter = ',')]
    firehose_symbols: Vec<String>,
    /// Firehose frames per second (0 = as fast as the client reads).
    #[arg(long, default_value_t = 20)]
    firehose_fps: u64,
    /// Trades per firehose frame.
    #[arg(long, default_value_t = 5)]
    firehose_events_per_frame: usize,
    /// Stop after this many trades per connection (0 = endless).
    #[arg(long, default_value_t = 0)]
    firehose_total: u64,
    /// API key the NewsAPI simulator accepts.
    #[arg(long, default_value = "demo")]
    newsapi_key: String,
    /// API key the Alpha Vantage simulator accepts.
    #[arg(long, default_value = "demo")]
    alphavantage_key: String,
    /// Publish a new demo story every this many seconds (0 = only the five at start).
    #[arg(long, default_value_t = 20)]
    news_every_secs: u64,
    /// File a new demo SEC filing every this many seconds (0 = only the five at start).
    #[arg(long, default_value_t = 20)]
    sec_every_secs: u64,
    /// Reddit client id and secret the simulator accepts.
    #[arg(long, default_value = "demo")]
    reddit_client_id: String,
    /// Reddit client secret the simulator accepts.
    #[arg(long, default_value = "demo")]
    reddit_client_secret: String,
    /// X bearer token the simulator accepts.
    #[arg(long, default_value = "demo")]
    x_bearer_token: String,
    /// Add a demo Reddit post and StockTwits message every this many seconds (0 = only the
    /// ones at start).
    #[arg(long, default_value_t = 10)]
    social_every_secs: u64,
    /// Add a demo rate (and every fifth time a calendar event) to the altdata sites every this
    /// many seconds (0 = only the ones at start).
    #[arg(long, default_value_t = 30)]
    altdata_every_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let polygon = PolygonHandle::new(PolygonConfig {
        api_key: cli.polygon_key.clone(),
        auth_timeout: Duration::from_secs(10),
        max_connections: 1,
        ..PolygonConfig::default()
    });
    if !cli.firehose_symbols.is_empty() {
        polygon.firehose(Firehose {
            symbols: cli.firehose_symbols.clone(),
            events_per_frame: cli.firehose_events_per_frame,
            frames_per_sec: cli.firehose_fps,
            total: cli.firehose_total,
            demo: true,
        });
    }
    let news = NewsHandle::new(NewsConfig {
        newsapi_key: cli.newsapi_key.clone(),
        alphavantage_key: cli.alphavantage_key.clone(),
        alphavantage_daily_limit: None,
    });
    let start = chrono::Utc::now();
    for n in 0..5u32 {
        news.publish(demo_article(u64::from(n), start - chrono::Duration::minutes(i64::from(50 - n * 10))));
    }
    if cli.news_every_secs > 0 {
        let (news, every) = (news.clone(), Duration::from_secs(cli.news_every_secs));
        tokio::spawn(async move {
            for n in 5u64.. {
                tokio::time::sleep(every).await;
                news.publish(demo_article(n, chrono::Utc::now()));
            }
        });
    }
    let edgar = EdgarHandle::new(EdgarConfig { max_per_second: 10, block: Duration::from_secs(600), recent_max: 1000 });
    for n in 0..5u32 {
        edgar.file(demo_filing(u64::from(n), start - chrono::Duration::minutes(i64::from(50 - n * 10))));
    }
    if cli.sec_every_secs > 0 {
        let (edgar, every) = (edgar.clone(), Duration::from_secs(cli.sec_every_secs));
        tokio::spawn(async move {
            for n in 5u64.. {
                tokio::time::sleep(every).await;
                edgar.file(demo_filing(n, chrono::Utc::now()));
            }
        });
    }
    let social = SocialHandle::new(SocialConfig {
        window_requests: 1000,
        ..SocialConfig::new(&cli.reddit_client_id, &cli.reddit_client_secret, &cli.x_bearer_token)
    });
    for n in 0..6u32 {
        let at = start - chrono::Duration::minutes(i64::from(30 - n * 5));
        social.post(demo_reddit_post(u64::from(n), at));
        social.twit(demo_twit(u64::from(n), at));
    }
    if cli.social_every_secs > 0 {
        let (feed, every) = (social.clone(), Duration::from_secs(cli.social_every_secs));
        tokio::spawn(async move {
            for n in 6u64.. {
                tokio::time::sleep(every).await;
                let now = chrono::Utc::now();
                feed.post(demo_reddit_post(n, now));
                feed.twit(demo_twit(n, now));
                let tweet = SimTweet {
                    id: 1_700_000_000_000_000_000 + n,
                    // Unescaped: the simulator HTML-escapes the text once, as X does.
                    text: format!(
                        "${} moving on volume & news (demo {n})",
                        ["AAPL", "TSLA", "NVDA"][usize::try_from(n % 3).unwrap_or(0)]
                    ),
                    author_id: 100 + n % 4,
                    username: format!("demo_x_{}", n % 4),
                    created: now,
                };
                feed.tweet(tweet.clone());
                feed.stream_line(&tweet.stream_line());
            }
        });
        // X sends a keep-alive about every 20 s on the filtered stream.
        let alive = social.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(20)).await;
                alive.stream_keepalive();
            }
        });
    }
    let altdata = AltDataHandle::new();
    for n in 0..6u32 {
        altdata.demo_tick(u64::from(n), start - chrono::Duration::minutes(i64::from(30 - n * 5)));
    }
    if cli.altdata_every_secs > 0 {
        let (sites, every) = (altdata.clone(), Duration::from_secs(cli.altdata_every_secs));
        tokio::spawn(async move {
            for n in 6u64.. {
                tokio::time::sleep(every).await;
                sites.demo_tick(n, chrono::Utc::now());
            }
        });
    }
    let routes =
        polygon.router().merge(news.router()).merge(edgar.router()).merge(social.router()).merge(altdata.router());
    let tls_sim = match (cli.tls_listen, &cli.tls_cert, &cli.tls_key) {
        (Some(addr), Some(cert), Some(key)) => {
            let started = match provider_sim::tls::TlsIdentity::from_pem_files(cert, key) {
                Ok(identity) => provider_sim::Sim::start_tls(addr, routes.clone(), &identity).await,
                Err(e) => Err(e),
            };
            match started {
                Ok(sim) => {
                    eprintln!("provider-sim: TLS on {} (wss://localhost:{}/stocks)", sim.addr, sim.addr.port());
                    Some(sim)
                }
                Err(e) => {
                    eprintln!("provider-sim: cannot serve TLS on {addr}: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        _ => None,
    };
    let sim = match provider_sim::Sim::start(cli.listen, routes).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("provider-sim: cannot listen on {}: {e}", cli.listen);
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "provider-sim: listening on {} (polygon: ws://{}/stocks; newsapi: {u}/v2/everything; alphavantage: {u}/query; edgar: {u}/cgi-bin/browse-edgar; request log: {u}/_sim/requests)",
        sim.addr,
        sim.addr,
        u = sim.http_url()
    );
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    if let Some(t) = tls_sim {
        let _ = t.stop().await;
    }
    match sim.stop().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provider-sim: {e}");
            ExitCode::from(1)
        }
    }
}
