//! The JSON bodies of Toxiproxy's HTTP API, as this server reads and writes them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::toxic::{Stream, Toxic, ToxicKind};

/// A proxy as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyInfo {
    /// Unique name.
    pub name: String,
    /// The address it listens on; the bound port once it has listened on port 0.
    pub listen: String,
    /// Where it connects for every accepted client.
    pub upstream: String,
    /// Whether it listens.
    pub enabled: bool,
    /// Its toxics, upstream ones first.
    pub toxics: Vec<ToxicInfo>,
}

/// A toxic as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToxicInfo {
    /// Unique on its proxy.
    pub name: String,
    /// `type` and `attributes`.
    #[serde(flatten)]
    pub kind: ToxicKind,
    /// The direction it acts on.
    pub stream: Stream,
    /// The probability that it applies to a connection.
    pub toxicity: f32,
}

impl From<&Toxic> for ToxicInfo {
    fn from(t: &Toxic) -> ToxicInfo {
        ToxicInfo {
            name: t.name.clone(),
            kind: t.kind.clone(),
            stream: t.stream,
            toxicity: t.toxicity,
        }
    }
}

/// Body of `POST /proxies`, and one element of `POST /populate` and of `--config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewProxy {
    /// Required.
    #[serde(default)]
    pub name: Option<String>,
    /// Defaults to `127.0.0.1:0` (a free port on loopback).
    #[serde(default)]
    pub listen: Option<String>,
    /// Required.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Defaults to true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Body of `POST /proxies/{proxy}`: the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyUpdate {
    /// A new listen address (the proxy restarts and its connections close).
    #[serde(default)]
    pub listen: Option<String>,
    /// A new upstream (the proxy restarts and its connections close).
    #[serde(default)]
    pub upstream: Option<String>,
    /// Enable or disable.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Body of `POST /proxies/{proxy}/toxics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewToxic {
    /// Defaults to `{type}_{stream}`.
    #[serde(default)]
    pub name: Option<String>,
    /// Required: `latency`, `bandwidth`, `slow_close`, `timeout`, `reset_peer`, `slicer`,
    /// `limit_data` or `noop`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `upstream` or `downstream` (the default).
    #[serde(default)]
    pub stream: Option<String>,
    /// Between 0 and 1; defaults to 1.
    #[serde(default)]
    pub toxicity: Option<f32>,
    /// The type's attributes; missing ones are 0.
    #[serde(default)]
    pub attributes: Option<Value>,
}

/// Body of `POST /proxies/{proxy}/toxics/{toxic}`: the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToxicUpdate {
    /// A new toxicity.
    #[serde(default)]
    pub toxicity: Option<f32>,
    /// Attributes to change; the others keep their values.
    #[serde(default)]
    pub attributes: Option<Value>,
}

/// Body of error answers, as Toxiproxy writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
    /// The HTTP status, repeated.
    pub status: u16,
}
