//! The wire-level contract of design §2 that is not HTTP routes: the AMQP topology's names, the
//! header names, and the callback signature. Systems implement it; harnesses observe it.

pub mod message;
pub mod openapi;
pub mod signature;
pub mod topology;

/// Request header carrying the client's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Response header set to `true` on a replayed response.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// Callback header: the event's id, the same on every delivery of one event.
pub const EVENT_ID: &str = "x-event-id";
/// Callback header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub const SIGNATURE: &str = "x-signature";
