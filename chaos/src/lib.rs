//! Chaos experiments for API + RabbitMQ worker systems, built on the harness's experiment
//! format, runner, nemesis and checkers: the catalogue (`chaos/experiments/*.json`), the chaos
//! week (the catalogue split into daily slices), the strategy × fault matrix (the same
//! experiments against the robust defaults and each naive strategy, with predictions written
//! down before the run) and the recovery table set beside the seed's.

pub mod catalogue;
pub mod matrix;
pub mod recovery;
pub mod suite;
pub mod week;
