//! Reference implementation of the seed article's architecture: an HTTP API (axum) that
//! accepts work and publishes it to RabbitMQ (lapin), and workers that process it, with
//! validation, one JSON envelope, middleware, caching, publisher confirms and a transactional
//! outbox, manual acks, retries with backoff and a dead-letter queue, task status and
//! callbacks, idempotency, and Prometheus metrics.
//!
//! Every robustness decision is a switch ([`config::Strategies`]) so that a harness can run the
//! seed's naive variants beside the robust defaults and show which survive which faults.

pub mod app;
pub mod backoff;
pub mod broker;
pub mod cache;
pub mod callbacks;
pub mod config;
pub mod dispatch;
pub mod envelope;
pub mod http;
pub mod idempotency;
pub mod message;
pub mod metrics;
pub mod model;
pub mod publisher;
pub mod relay;
pub mod store;
pub mod validation;
pub mod worker;

pub use app::{start, Running};
pub use config::{Config, Mode};
