use std::process::ExitCode;

/// mimalloc: the request path allocates a great deal (bodies, JSON, envelopes, rows), and
/// glibc's allocator spent ~14 % of the API's time under load (see the README's performance
/// section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use lapin::DefaultConnectionBuilder;
use reference::{
    broker::{topology::Names, Topology},
    config::{BrokerArgs, Config, LogFormat, LogWriter, QueueType},
    Mode,
};
use tracing_subscriber::{fmt::writer::BoxMakeWriter, EnvFilter};

/// API + RabbitMQ worker reference system.
///
/// Strategy switches default to the robust variants; the others reproduce the seed article's
/// naive snippets so that their failures can be demonstrated:
///
///   --publish     outbox (robust) | confirm (seed-style) | fire-and-forget (naive)
///   --ack         manual (robust) | auto (naive)
///   --dedupe      store (robust)  | redis-setnx (seed 4.4, naive) | none (naive)
///   --retry       backoff (robust) | requeue (naive: forever, no delay)
///   --queue-type  quorum (robust) | classic
///   --cache       memory | redis | off
#[derive(Parser)]
#[command(name = "reference", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    mode: ModeCommand,
}

#[derive(Subcommand)]
enum ModeCommand {
    /// The HTTP API and the outbox relay.
    Api(Config),
    /// A worker: consumes tasks, retries, dead-letters, sends callbacks; serves /healthz, /readyz, /metrics.
    Worker(Config),
    /// API and a worker in one process.
    All(Config),
    /// Delete the queues and exchanges under a prefix (they hold messages: stop the system first).
    Teardown(TeardownArgs),
}

#[derive(clap::Args)]
struct TeardownArgs {
    #[command(flatten)]
    broker: BrokerArgs,
    /// Prefix whose topology to delete.
    #[arg(long, env = "REFERENCE_PREFIX")]
    prefix: String,
    /// Delays of the retry queues to delete, as given to the system.
    #[arg(long, env = "REFERENCE_RETRY_DELAYS", value_parser = humantime::parse_duration, value_delimiter = ',', default_value = "1s,2s,4s")]
    retry_delays: Vec<std::time::Duration>,
}

async fn teardown(args: TeardownArgs) -> anyhow::Result<()> {
    let conn = DefaultConnectionBuilder::new()?
        .with_uri_str(args.broker.amqp_url.clone())
        .with_tls_config(args.broker.tls()?)
        .connect()
        .await?;
    let names = Names {
        prefix: args.prefix,
        retry_delays: args.retry_delays,
    };
    let topology = Topology {
        names,
        queue_type: QueueType::Classic,
    };
    topology.delete(&conn).await?;
    conn.close(200, "teardown".into()).await?;
    tracing::info!(prefix = %topology.names.prefix, "topology deleted");
    Ok(())
}

/// Installs the logger; the returned guard flushes a non-blocking writer's queue when dropped,
/// so it lives as long as `main`.
fn init_tracing(
    format: LogFormat,
    writer: LogWriter,
) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (make_writer, guard) = match writer {
        LogWriter::Blocking => (BoxMakeWriter::new(std::io::stderr), None),
        LogWriter::NonBlocking => {
            // Not lossy: a full queue slows the logger down instead of dropping lines.
            let (w, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .finish(std::io::stderr());
            (BoxMakeWriter::new(w), Some(guard))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(make_writer)
        // Colours only for a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mode, config) = match cli.mode {
        ModeCommand::Api(c) => (Mode::Api, c),
        ModeCommand::Worker(c) => (Mode::Worker, c),
        ModeCommand::All(c) => (Mode::All, c),
        ModeCommand::Teardown(args) => {
            let _log = init_tracing(LogFormat::Text, LogWriter::Blocking);
            return exit_code(teardown(args).await);
        }
    };
    let _log = init_tracing(config.log_format, config.log_writer);
    let result = async {
        let running = reference::start(config, mode).await?;
        running.run_until(shutdown_signal()).await
    }
    .await;
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
