//! Property scenarios against the live reference, started by the harness on the real broker.
//! Each property says in its doc comment what it checks and why; each writes a run directory
//! under target/harness/runs. One binary keeps compile and link times down.

mod bad_input;
mod contract;
mod exactly_once;
mod idempotency;
mod lifecycle;
mod naive;
mod support;
mod users;
