//! Integration tests of the harness: real brokers, real sockets through the fault proxy, real
//! processes. One binary keeps compile and link times down.

mod containers;
mod experiments;
mod nodes;
mod proxy;
mod support;
mod sut;
