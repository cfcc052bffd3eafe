//! The test bed for "HTTP API publishes work to RabbitMQ, background workers process it"
//! systems, in Jepsen's vocabulary:
//!
//! - [`infra`]: real dependencies (brokers from the environment, private nodes and clusters,
//!   containers) and the fault proxies between the parts;
//! - [`proc`]: the OS processes the harness starts;
//! - [`history`]: every operation as invoke, then ok / fail / info;
//! - [`final_state`]: what the final read observed once the system settled;
//! - [`checker`]: verdicts over a history and a final state.
//!
//! The harness speaks the contract (design §2), not any implementation's internals.

pub mod checker;
pub mod client;
pub mod conformance;
pub mod duration;
pub mod experiment;
pub mod final_read;
pub mod final_state;
pub mod history;
pub mod infra;
pub mod links;
pub mod nemesis;
pub mod ops;
pub mod proc;
pub mod redelivery;
pub mod run;
pub mod signals;
pub mod sink;
pub mod sut;
pub mod workload;

/// Logs of a command-line tool: `RUST_LOG`, else `default`, on stderr (coloured on a terminal).
pub fn init_cli_tracing(default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Logs of a test process: `RUST_LOG` (default `warn`), through the test harness's capture.
pub fn init_test_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
