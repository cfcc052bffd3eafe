//! What the reference is compared against, on the same machine in the same run.

pub mod bare;
pub mod raw_pair;
