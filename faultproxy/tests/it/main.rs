//! Integration tests of the fault proxy: real sockets, local test servers, the HTTP API, and
//! the unmodified `toxiproxy_rust` client.

mod api;
mod client;
mod integrity;
mod support;
mod toxics;
