//! Property scenarios for "API publishes, workers consume" systems, run by `cargo test`.
//!
//! The properties live in `tests/properties/`; this library holds what they share: the
//! proptest configuration ([`config`]), requests generated from the contract's OpenAPI
//! document ([`contract`]), the live system a property runs against ([`world`]),
//! the task lifecycle's reference model ([`lifecycle`]), and the run directory every property
//! writes its verdict into ([`report`]).

pub mod config;
pub mod contract;
pub mod lifecycle;
pub mod report;
pub mod world;
