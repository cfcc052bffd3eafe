//! `faultproxy`: the fault proxy server as a process, a drop-in for `toxiproxy-server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use faultproxy::model::NewProxy;
use faultproxy::Server;
use tracing_subscriber::EnvFilter;

const ABOUT: &str = "A TCP fault proxy speaking Toxiproxy's HTTP API (2.x).";

const LONG_ABOUT: &str = "\
A TCP fault proxy speaking Toxiproxy's HTTP API (2.x): any Toxiproxy client drives it.

Toxics: latency {latency, jitter ms}, bandwidth {rate KB/s}, slow_close {delay ms},
timeout {timeout ms}, reset_peer {timeout ms}, slicer {average_size, size_variation bytes,
delay us}, limit_data {bytes}, noop; each on stream upstream (client to server) or
downstream, with a toxicity (probability, drawn per connection).

Differences from Toxiproxy:
  - Toxic changes reach open connections at once, idle ones included, and never drop or
    reorder bytes in flight.
  - timeout with timeout=0 HOLDS the data (stops reading; TCP backpressure) instead of
    dropping it: removing the toxic resumes a consistent byte stream, so a long-lived
    connection (AMQP) survives a short blackhole. With timeout>0 the connection is closed
    after that many ms, as in Toxiproxy.
  - reset_peer resets both sides (TCP RST) timeout ms after it starts applying to a
    connection, without waiting for traffic; data passes until then.
  - latency delays each chunk from its own arrival: pipelined chunks do not stack.
  - A proxy without listen address gets 127.0.0.1:0; answers show the bound port.
  - Toxicity outside [0, 1] and negative attributes are refused with 400.

Logs go to stderr; RUST_LOG sets the filter (default info).";

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "faultproxy", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Args {
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8474", env = "FAULTPROXY_LISTEN")]
    listen: SocketAddr,
    /// JSON file with an array of proxies to create at start, as POST /populate takes
    /// (Toxiproxy's -config): [{"name", "listen", "upstream", "enabled"?}, ...].
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let server = Server::start(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    if let Some(path) = &args.config {
        let proxies = populate(&server, path).await?;
        eprintln!("created {proxies} proxies from {}", path.display());
    }
    println!("faultproxy listening on {}", server.url());
    shutdown_signal().await?;
    server.shutdown().await;
    Ok(())
}

async fn populate(server: &Server, path: &PathBuf) -> anyhow::Result<usize> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let proxies: Vec<NewProxy> = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a JSON array of proxies", path.display()))?;
    let created = server
        .populate(proxies)
        .await
        .with_context(|| format!("cannot create the proxies of {}", path.display()))?;
    Ok(created.len())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
