//! `provider-sim --listen 127.0.0.1:9400`: runs the simulator harness for demo mode and manual
//! testing. Each provider's simulator is mounted here as it is implemented; `GET /_sim/requests`
//! shows what the producers sent.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;

/// Local simulators of the data providers.
#[derive(Debug, Parser)]
#[command(name = "provider-sim", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9400", env = "PROVIDER_SIM_LISTEN")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let sim = match provider_sim::Sim::start(cli.listen, axum::Router::new()).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("provider-sim: cannot listen on {}: {e}", cli.listen);
            return ExitCode::from(1);
        }
    };
    eprintln!("provider-sim: listening on {} (request log: {}/_sim/requests)", sim.addr, sim.http_url());
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    match sim.stop().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("provider-sim: {e}");
            ExitCode::from(1)
        }
    }
}
