//! Toxic types, their attributes as the API spells them, and the arithmetic each one applies
//! to the chunks of a stream.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;

/// The direction a toxic acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client → upstream server.
    Upstream,
    /// Upstream server → client.
    Downstream,
}

impl FromStr for Stream {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "upstream" => Ok(Stream::Upstream),
            "downstream" => Ok(Stream::Downstream),
            _ => Err(Error::InvalidStream),
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        })
    }
}

/// A toxic installed on a proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    /// Unique on its proxy, across both streams.
    pub name: String,
    /// The direction it acts on.
    pub stream: Stream,
    /// The probability that it applies to a given connection.
    pub toxicity: f32,
    /// What it does.
    pub kind: ToxicKind,
    /// Identifies the toxic across updates, for the state connections keep about it.
    pub(crate) id: u64,
    /// Changes on every update, so that connections apply the toxic afresh.
    pub(crate) revision: u64,
}

/// A toxic's type and attributes, serialized as Toxiproxy's `"type"` and `"attributes"`.
///
/// Every attribute is optional in requests and defaults to 0, as in Toxiproxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "attributes", rename_all = "snake_case")]
pub enum ToxicKind {
    /// Does nothing; Toxiproxy has it, so clients may create it.
    Noop(Noop),
    /// Delays every chunk.
    Latency(Latency),
    /// Limits throughput.
    Bandwidth(Bandwidth),
    /// Delays the close that follows the end of the stream.
    SlowClose(SlowClose),
    /// Stops the stream; optionally closes the connection after a while.
    Timeout(Timeout),
    /// Resets the connection (TCP RST) after a while.
    ResetPeer(ResetPeer),
    /// Cuts chunks into small writes.
    Slicer(Slicer),
    /// Closes the connection after some bytes.
    LimitData(LimitData),
}

/// Attributes of the `noop` toxic: none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noop {}

/// Attributes of the `latency` toxic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Milliseconds added to every chunk, counted from the chunk's arrival.
    pub latency: u64,
    /// Up to this many milliseconds more or less, drawn per chunk.
    pub jitter: u64,
}

/// Attributes of the `bandwidth` toxic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bandwidth {
    /// KB/s (1 KB = 1000 bytes, as in Toxiproxy); 0 means unlimited.
    pub rate: u64,
}

/// Attributes of the `slow_close` toxic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlowClose {
    /// Milliseconds between the end of the stream and its close on the other side.
    pub delay: u64,
}

/// Attributes of the `timeout` toxic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeout {
    /// Milliseconds until the connection is closed; 0 holds the data until the toxic goes.
    pub timeout: u64,
}

/// Attributes of the `reset_peer` toxic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResetPeer {
    /// Milliseconds until both sides are reset; 0 resets at once.
    pub timeout: u64,
}

/// Attributes of the `slicer` toxic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Slicer {
    /// Average size of a write, in bytes.
    pub average_size: u64,
    /// A write is `average_size` plus or minus up to this many bytes.
    pub size_variation: u64,
    /// Microseconds between writes.
    pub delay: u64,
}

/// Attributes of the `limit_data` toxic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitData {
    /// Bytes that may pass in the toxic's direction before the connection is closed.
    pub bytes: u64,
}

impl ToxicKind {
    /// Builds a toxic from its type name and (possibly partial) attributes.
    pub fn parse(type_name: &str, attributes: Option<&Value>) -> Result<ToxicKind, Error> {
        // Decoding the type with empty attributes first tells an unknown type (its own error
        // in Toxiproxy) from bad attributes, without listing the types a second time.
        from_parts(type_name, Map::new()).map_err(|_| Error::InvalidToxicType)?;
        from_parts(type_name, attribute_map(attributes)?)
            .map_err(|e| Error::BadRequestBody(e.to_string()))
    }

    /// The same toxic with the given attributes changed and the others kept.
    pub fn updated(&self, attributes: Option<&Value>) -> Result<ToxicKind, Error> {
        let mut current = match serde_json::to_value(self) {
            Ok(Value::Object(mut o)) => match o.remove("attributes") {
                Some(Value::Object(a)) => a,
                _ => Map::new(),
            },
            _ => Map::new(),
        };
        current.extend(attribute_map(attributes)?);
        from_parts(self.type_name(), current).map_err(|e| Error::BadRequestBody(e.to_string()))
    }

    /// The type name as the API spells it.
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Noop(_) => "noop",
            ToxicKind::Latency(_) => "latency",
            ToxicKind::Bandwidth(_) => "bandwidth",
            ToxicKind::SlowClose(_) => "slow_close",
            ToxicKind::Timeout(_) => "timeout",
            ToxicKind::ResetPeer(_) => "reset_peer",
            ToxicKind::Slicer(_) => "slicer",
            ToxicKind::LimitData(_) => "limit_data",
        }
    }
}

fn attribute_map(attributes: Option<&Value>) -> Result<Map<String, Value>, Error> {
    match attributes {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(other) => Err(Error::BadRequestBody(format!(
            "attributes must be an object, not {other}"
        ))),
    }
}

fn from_parts(type_name: &str, attributes: Map<String, Value>) -> serde_json::Result<ToxicKind> {
    let mut tagged = Map::new();
    tagged.insert("type".into(), Value::String(type_name.into()));
    tagged.insert("attributes".into(), Value::Object(attributes));
    serde_json::from_value(Value::Object(tagged))
}

impl Latency {
    /// The delay of one chunk, given the chunk's draw in [-1, 1).
    pub fn delay(&self, draw: f64) -> Duration {
        let ms = self.latency as f64 + draw * self.jitter as f64;
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }
}

impl Slicer {
    /// The size of the next write: the average plus or minus the variation, at least one byte.
    pub fn slice_size(&self, rng: &mut impl Rng) -> usize {
        let average = i128::from(self.average_size);
        let variation = i128::from(self.size_variation);
        let size = average + rng.random_range(-variation..=variation);
        usize::try_from(size.max(1)).unwrap_or(usize::MAX)
    }

    /// The pause after each write.
    pub fn pause(&self) -> Duration {
        Duration::from_micros(self.delay)
    }
}

/// A token bucket that paces one direction of a connection.
///
/// It holds at most 100 ms worth of bytes, so a burst after idle time stays short, and writes
/// are cut to that size, so that chunks of any size pass at low rates (Toxiproxy sends a
/// bandwidth-limited stream in 100 ms pieces too).
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// An empty bucket.
    pub fn new(now: Instant) -> Bucket {
        Bucket {
            tokens: 0.0,
            updated: now,
        }
    }

    /// The largest write allowed at `rate` bytes/s.
    pub fn max_piece(rate: u64) -> usize {
        usize::try_from(rate / 10).unwrap_or(usize::MAX).max(1)
    }

    fn level(&self, now: Instant, rate: u64) -> f64 {
        let refill = now.saturating_duration_since(self.updated).as_secs_f64() * rate as f64;
        (self.tokens + refill).min(Self::max_piece(rate) as f64)
    }

    /// When `len` bytes (at most [`Bucket::max_piece`]) may go at `rate` bytes/s.
    pub fn ready_at(&self, len: usize, rate: u64, now: Instant) -> Instant {
        let missing = len as f64 - self.level(now, rate);
        if missing <= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(missing / rate as f64)
        }
    }

    /// Spends the tokens of a write of `len` bytes made at `now`.
    pub fn take(&mut self, len: usize, rate: u64, now: Instant) {
        self.tokens = self.level(now, rate) - len as f64;
        self.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;
    use serde_json::json;

    #[test]
    fn parses_partial_attributes_with_zero_defaults() {
        let kind = ToxicKind::parse("latency", Some(&json!({"latency": 100}))).unwrap();
        assert_eq!(
            kind,
            ToxicKind::Latency(Latency {
                latency: 100,
                jitter: 0
            })
        );
        assert_eq!(
            ToxicKind::parse("timeout", None).unwrap(),
            ToxicKind::Timeout(Timeout { timeout: 0 })
        );
    }

    #[test]
    fn tells_unknown_types_from_bad_attributes() {
        assert!(matches!(
            ToxicKind::parse("lag", None),
            Err(Error::InvalidToxicType)
        ));
        assert!(matches!(
            ToxicKind::parse("latency", Some(&json!({"latency": -5}))),
            Err(Error::BadRequestBody(_))
        ));
        assert!(matches!(
            ToxicKind::parse("latency", Some(&json!([1]))),
            Err(Error::BadRequestBody(_))
        ));
    }

    #[test]
    fn update_keeps_unnamed_attributes() {
        let kind =
            ToxicKind::parse("slicer", Some(&json!({"average_size": 10, "delay": 5}))).unwrap();
        let updated = kind.updated(Some(&json!({"delay": 7}))).unwrap();
        assert_eq!(
            updated,
            ToxicKind::Slicer(Slicer {
                average_size: 10,
                size_variation: 0,
                delay: 7
            })
        );
    }

    #[test]
    fn serializes_as_toxiproxy_does() {
        let kind = ToxicKind::LimitData(LimitData { bytes: 12 });
        assert_eq!(
            serde_json::to_value(&kind).unwrap(),
            json!({"type": "limit_data", "attributes": {"bytes": 12}})
        );
    }

    #[test]
    fn jitter_never_makes_a_negative_delay() {
        let l = Latency {
            latency: 10,
            jitter: 50,
        };
        assert_eq!(l.delay(-1.0), Duration::ZERO);
        assert_eq!(l.delay(0.5), Duration::from_millis(35));
    }

    #[test]
    fn slices_are_at_least_one_byte_and_within_variation() {
        let mut rng = SmallRng::seed_from_u64(7);
        let s = Slicer {
            average_size: 10,
            size_variation: 3,
            delay: 0,
        };
        for _ in 0..1000 {
            assert!((7..=13).contains(&s.slice_size(&mut rng)));
        }
        let tiny = Slicer {
            average_size: 0,
            size_variation: 5,
            delay: 0,
        };
        for _ in 0..1000 {
            assert!(tiny.slice_size(&mut rng) >= 1);
        }
    }

    #[test]
    fn bucket_paces_at_the_rate_whatever_the_piece_size() {
        let t0 = Instant::now();
        let rate = 1000; // bytes/s: pieces of 100 bytes
        let mut bucket = Bucket::new(t0);
        assert_eq!(Bucket::max_piece(rate), 100);
        let mut now = t0;
        for _ in 0..10 {
            now = bucket.ready_at(100, rate, now);
            bucket.take(100, rate, now);
        }
        let elapsed = now - t0;
        assert!(
            (elapsed.as_secs_f64() - 1.0).abs() < 1e-6,
            "1000 bytes at 1000 B/s took {elapsed:?}"
        );
    }

    #[test]
    fn bucket_handles_extreme_rates() {
        let t0 = Instant::now();
        assert_eq!(Bucket::max_piece(1), 1);
        let bucket = Bucket::new(t0);
        assert_eq!(bucket.ready_at(1, 1, t0), t0 + Duration::from_secs(1));
        let huge = u64::MAX / 2;
        assert!(Bucket::max_piece(huge) > 1 << 40);
        assert!(bucket.ready_at(1 << 30, huge, t0) >= t0);
    }
}
