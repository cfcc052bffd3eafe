//! Load tests of "HTTP API publishes work to RabbitMQ, background workers process it"
//! systems, with goose: the seed's QPS/P99 table, a capacity search, end-to-end task latency,
//! comparators and a regression gate. Each run leaves goose's reports and a
//! `reports::RunReport` (suite `loadtests`) in a harness run directory.
//!
//! - [`target`]: the reference started through the harness (links off), or a system by URL;
//! - [`seed`] and [`workload`]: the data and the goose transactions of the seed's traffic;
//! - [`completions`]: when tasks end, from the system's events (or polled);
//! - [`attack`]: one goose run and what it measured;
//! - [`gate`]: the regression gate; [`comparators`] and [`wrk`]: what the reference is
//!   compared against, and the light generator;
//! - [`profiles`]: the subcommands.

pub mod attack;
pub mod comparators;
pub mod completions;
pub mod gate;
pub mod profiles;
pub mod seed;
pub mod session;
pub mod target;
pub mod workload;
pub mod wrk;
