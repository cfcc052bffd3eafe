//! The test bed for "HTTP API publishes work to RabbitMQ, background workers process it"
//! systems, in Jepsen's vocabulary:
//!
//! - [`infra`]: real dependencies (brokers from the environment, private nodes and clusters,
//!   containers) and the fault proxies between the parts;
//! - [`proc`]: the OS processes the harness starts;
//! - [`history`]: every operation as invoke, then ok / fail / info.
//!
//! The harness speaks the contract (design §2), not any implementation's internals.

pub mod history;
pub mod infra;
pub mod proc;
