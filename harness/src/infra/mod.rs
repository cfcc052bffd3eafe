//! Real dependencies, provisioned in the order of design §4: URLs from the environment, private
//! nodes started from a local installation, containers where an engine runs, else a clear error.

pub mod container;
pub mod rabbit;
