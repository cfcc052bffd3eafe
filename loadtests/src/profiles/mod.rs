//! The named profiles: each a subcommand of `loadtests`.

pub mod ab;
pub mod capacity;
pub mod compare;
pub mod e2e;
pub mod run;
pub mod seed_table;
pub mod soak;
