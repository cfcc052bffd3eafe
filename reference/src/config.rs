//! Typed configuration: every option is a flag with an environment equivalent.
//!
//! The strategy switches default to the robust variants; the naive ones reproduce the seed
//! article's snippets so that the harness can show how they fail.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

/// How the API hands a task to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishStrategy {
    /// Robust: task and outbox row in one transaction; a relay publishes with confirms.
    Outbox,
    /// Seed-style: publish inside the request and wait for the broker's confirm.
    Confirm,
    /// Naive: publish without confirms; a message lost on the wire goes unnoticed.
    FireAndForget,
}

/// When the worker acknowledges a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckStrategy {
    /// Robust: ack after the effect is committed.
    Manual,
    /// Naive: the broker forgets the message on delivery; a crash loses it.
    Auto,
}

/// How the worker avoids applying a redelivered message twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DedupeStrategy {
    /// Robust: effect and "processed" mark in one store transaction.
    Store,
    /// Seed 4.4: Redis SETNX before processing; a crash after it loses the task.
    RedisSetnx,
    /// Naive: no deduplication; a redelivery applies the effect again.
    None,
}

/// What the worker does with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RetryStrategy {
    /// Robust: delay queues (1 s, 2 s, 4 s by default), then the dead-letter queue.
    Backoff,
    /// Seed's first snippet: nack with requeue, immediately and without limit.
    Requeue,
}

/// The type of the task queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueType {
    /// Robust: replicated Raft queue (one member on a single node).
    Quorum,
    /// Classic queue: a single copy on the node that declared it.
    Classic,
}

/// Where `GET /api/v1/users/{id}` is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheStrategy {
    /// In-process cache, invalidated on write.
    Memory,
    /// Redis, shared by API processes, invalidated on write.
    Redis,
    /// No cache.
    Off,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How log lines (one per request: the access log) reach standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogWriter {
    /// Each line is written by the thread that logs it, inside the request.
    Blocking,
    /// Lines are queued to a writer thread (the seed's "asynchronous log writing"); a full
    /// queue makes the logger wait rather than drop lines, and a kill -9 loses the lines
    /// still queued.
    NonBlocking,
}

/// Whether responses are gzip-compressed for clients that accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Gzip,
    Off,
}

/// What a SQLite commit waits for (`PRAGMA synchronous`; the store runs in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqliteSynchronous {
    /// Each commit is on disk before it returns: a power loss loses nothing committed.
    Full,
    /// Commits reach the disk at checkpoints: a killed process loses nothing, a power loss
    /// may lose the last commits.
    Normal,
}

impl SqliteSynchronous {
    pub fn durability(self) -> crate::store::Durability {
        match self {
            SqliteSynchronous::Full => crate::store::Durability::Full,
            SqliteSynchronous::Normal => crate::store::Durability::Normal,
        }
    }
}

/// The store's secondary indexes: those of the outbox relay's, the callback dispatcher's
/// and housekeeping's queries. Keys and unique constraints are never dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DbIndexes {
    /// Created when missing.
    Full,
    /// Dropped: those queries scan their tables (the seed's "before" schema).
    None,
}

/// Options shared by all modes.
#[derive(Clone, Args)]
pub struct Config {
    /// Address of the HTTP server [default: 127.0.0.1:8080 for api/all, 127.0.0.1:8081 for worker]
    #[arg(long, env = "REFERENCE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,

    #[command(flatten)]
    pub broker: BrokerArgs,

    /// Store URL: `sqlite://FILE` (created if missing) or `mysql://USER:PASS@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://reference.db")]
    pub database_url: String,

    /// Redis URL; needed by `--cache redis` and `--dedupe redis-setnx`.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every AMQP exchange and queue name, and of Redis keys.
    #[arg(long, env = "REFERENCE_PREFIX", default_value = "reference")]
    pub prefix: String,

    /// Bearer token allowed to read and write. Without any token, the API is open.
    #[arg(long, env = "REFERENCE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Bearer token allowed to read only (403 on writes).
    #[arg(long, env = "REFERENCE_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,

    #[command(flatten)]
    pub strategies: Strategies,

    #[command(flatten)]
    pub tuning: Tuning,

    #[command(flatten)]
    pub callbacks: CallbackConfig,

    /// Log format (the filter is read from RUST_LOG, default `info`).
    #[arg(long, env = "REFERENCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log writing: non-blocking (a writer thread) | blocking (in the request).
    #[arg(long, env = "REFERENCE_LOG_WRITER", value_enum, default_value_t = LogWriter::NonBlocking)]
    pub log_writer: LogWriter,
}

/// Where the broker is and whom to trust on the way.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// AMQP broker URL; `amqps://` connects with TLS.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// PEM file of CA certificates to trust for an `amqps://` URL, besides the system's.
    #[arg(long, env = "AMQP_CA_FILE")]
    pub amqp_ca_file: Option<PathBuf>,
}

impl BrokerArgs {
    /// Checks the URL and the CA file without connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.amqp_url
            .parse::<lapin::uri::AMQPUri>()
            .map_err(ConfigError::BadAmqpUrl)?;
        self.tls().map(drop)
    }

    /// The TLS settings for the broker connection: the CA file's certificates, checked here
    /// because the TLS layer skips what it cannot parse and would fail later, vaguely, at the
    /// handshake.
    pub fn tls(&self) -> Result<lapin::tcp::OwnedTLSConfig, ConfigError> {
        let Some(path) = &self.amqp_ca_file else {
            return Ok(lapin::tcp::OwnedTLSConfig::default());
        };
        if !self.amqp_url.starts_with("amqps://") {
            return Err(ConfigError::CaFileWithoutTls);
        }
        let bad = |why: String| ConfigError::BadCaFile {
            path: path.display().to_string(),
            why,
        };
        let pem = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        if read_certificates(&pem).map_err(bad)? == 0 {
            return Err(bad("holds no PEM certificate".into()));
        }
        Ok(lapin::tcp::OwnedTLSConfig {
            identity: None,
            cert_chain: Some(pem),
        })
    }
}

/// How many certificates a PEM bundle holds, or why it cannot be read.
fn read_certificates(pem: &str) -> Result<usize, String> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .try_fold(0, |n, cert| cert.map(|_| n + 1))
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))
}

/// The robustness switches of design §3. Defaults are the robust variants.
#[derive(Debug, Clone, Args)]
pub struct Strategies {
    /// Publishing: outbox (robust) | confirm (seed-style) | fire-and-forget (naive).
    #[arg(long, env = "REFERENCE_PUBLISH", value_enum, default_value_t = PublishStrategy::Outbox)]
    pub publish: PublishStrategy,

    /// Consumer acknowledgement: manual (robust) | auto (naive).
    #[arg(long, env = "REFERENCE_ACK", value_enum, default_value_t = AckStrategy::Manual)]
    pub ack: AckStrategy,

    /// Deduplication: store (robust) | redis-setnx (seed 4.4, naive) | none (naive).
    #[arg(long, env = "REFERENCE_DEDUPE", value_enum, default_value_t = DedupeStrategy::Store)]
    pub dedupe: DedupeStrategy,

    /// Failed attempts: backoff queues then dead-letter (robust) | requeue forever (naive).
    #[arg(long, env = "REFERENCE_RETRY", value_enum, default_value_t = RetryStrategy::Backoff)]
    pub retry: RetryStrategy,

    /// Task queue type: quorum (robust) | classic.
    #[arg(long, env = "REFERENCE_QUEUE_TYPE", value_enum, default_value_t = QueueType::Quorum)]
    pub queue_type: QueueType,

    /// Cache of GET /api/v1/users/{id}: memory | redis | off.
    #[arg(long, env = "REFERENCE_CACHE", value_enum, default_value_t = CacheStrategy::Memory)]
    pub cache: CacheStrategy,
}

/// The default of `--body-limit`; the contract document states it.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Limits and timings; the defaults suit a small production deployment.
#[derive(Debug, Clone, Args)]
pub struct Tuning {
    /// Delays of the retry queues, comma-separated; their count is the number of retries.
    #[arg(long, env = "REFERENCE_RETRY_DELAYS", value_parser = parse_duration, value_delimiter = ',', default_value = "1s,2s,4s")]
    pub retry_delays: Vec<Duration>,

    /// Unacknowledged deliveries the broker sends a worker ahead of time.
    #[arg(long, env = "REFERENCE_PREFETCH", default_value_t = 256, value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

    /// Tasks a worker processes at once.
    #[arg(long, env = "REFERENCE_CONCURRENCY", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,

    /// Time to live of cached users.
    #[arg(long, env = "REFERENCE_CACHE_TTL", value_parser = parse_duration, default_value = "30s")]
    pub cache_ttl: Duration,

    /// Server-side limit on a request's handling (503 UNAVAILABLE past it).
    #[arg(long, env = "REFERENCE_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,

    /// Largest accepted request body in bytes (413 past it).
    #[arg(long, env = "REFERENCE_BODY_LIMIT", default_value_t = DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,

    /// Requests per second allowed by the rate limiter (429 past it); off when absent.
    #[arg(long, env = "REFERENCE_RATE_LIMIT")]
    pub rate_limit: Option<std::num::NonZeroU32>,

    /// Burst size of the rate limiter [default: the rate].
    #[arg(long, env = "REFERENCE_RATE_BURST")]
    pub rate_burst: Option<std::num::NonZeroU32>,

    /// Origins allowed by CORS, comma-separated; `*` allows any.
    #[arg(
        long,
        env = "REFERENCE_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub cors_origins: Vec<String>,

    /// How long an Idempotency-Key and its stored response are kept.
    #[arg(long, env = "REFERENCE_IDEMPOTENCY_TTL", value_parser = parse_duration, default_value = "24h")]
    pub idempotency_ttl: Duration,

    /// How long a processed message's dedupe record, and a finished callback or event
    /// delivery, are kept before housekeeping deletes them. Must exceed the longest a
    /// redelivery can lag behind the first delivery (an outbox backlog while the broker is
    /// away, a broker redelivery after a worker or connection loss): a message redelivered
    /// after its dedupe record is gone is applied again.
    #[arg(long, env = "REFERENCE_DEDUPE_RETENTION", value_parser = parse_duration, default_value = "7d")]
    pub dedupe_retention: Duration,

    /// How long a finished task (SUCCESS or FAILED) is kept after its submission before
    /// housekeeping deletes it, with its status and result: without a bound the tasks table
    /// grows with every submission forever. A task still running is never deleted; a copy of
    /// a deleted task's message is dead-lettered as unknown, never applied. At least
    /// `--idempotency-ttl`, so a replayed key never names a deleted task.
    #[arg(long, env = "REFERENCE_TASK_RETENTION", value_parser = parse_duration, default_value = "30d")]
    pub task_retention: Duration,

    /// How long start-up waits for the store and the broker before giving up.
    #[arg(long, env = "REFERENCE_CONNECT_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub connect_timeout: Duration,

    /// How long a graceful shutdown waits for in-flight work and the outbox.
    #[arg(long, env = "REFERENCE_SHUTDOWN_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub shutdown_timeout: Duration,

    /// Idle polling interval of the outbox relay and the callback dispatcher.
    #[arg(long, env = "REFERENCE_POLL_INTERVAL", value_parser = parse_duration, default_value = "200ms")]
    pub poll_interval: Duration,

    /// Response compression for clients that accept it: gzip | off.
    #[arg(long, env = "REFERENCE_COMPRESSION", value_enum, default_value_t = Compression::Gzip)]
    pub compression: Compression,

    /// Secondary indexes of the store: full | none (dropped at start-up; keys stay).
    #[arg(long, env = "REFERENCE_DB_INDEXES", value_enum, default_value_t = DbIndexes::Full)]
    pub db_indexes: DbIndexes,

    /// SQLite commits: full (on disk before they return; survives power loss) | normal
    /// (survives a killed process, not a power loss).
    #[arg(long, env = "REFERENCE_SQLITE_SYNCHRONOUS", value_enum, default_value_t = SqliteSynchronous::Full)]
    pub sqlite_synchronous: SqliteSynchronous,
}

/// Result callbacks to `callback_url`.
#[derive(Clone, Args)]
pub struct CallbackConfig {
    /// Hosts (`host` or `host:port`) callbacks may be sent to, comma-separated; none by default.
    #[arg(
        long = "callback-allow",
        env = "REFERENCE_CALLBACK_ALLOW",
        value_delimiter = ','
    )]
    pub allow: Vec<String>,

    /// Secret of the HMAC-SHA256 signature in the `X-Signature` header.
    #[arg(
        long = "callback-secret",
        env = "REFERENCE_CALLBACK_SECRET",
        hide_env_values = true,
        default_value = CallbackConfig::DEFAULT_SECRET
    )]
    pub secret: String,

    /// Attempts per callback before it is given up (each retried with exponential backoff).
    #[arg(
        long = "callback-max-attempts",
        env = "REFERENCE_CALLBACK_MAX_ATTEMPTS",
        default_value_t = 10
    )]
    pub max_attempts: u32,

    /// Timeout of one callback request.
    #[arg(long = "callback-timeout", env = "REFERENCE_CALLBACK_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
}

impl CallbackConfig {
    /// The placeholder secret; start-up warns when callbacks are enabled with it.
    pub const DEFAULT_SECRET: &'static str = "change-me";
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like 500ms or 2s: {e}"))
}

/// Which parts of the system a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Api,
    Worker,
    All,
}

impl Mode {
    pub fn runs_api(self) -> bool {
        matches!(self, Mode::Api | Mode::All)
    }

    pub fn runs_worker(self) -> bool {
        matches!(self, Mode::Worker | Mode::All)
    }

    fn default_http_addr(self) -> SocketAddr {
        let port = if self == Mode::Worker { 8081 } else { 8080 };
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// A configuration problem found before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} needs --redis-url (REDIS_URL)")]
    RedisRequired(&'static str),
    #[error("--prefix must be 1-64 characters of [A-Za-z0-9._-], got `{0}`")]
    BadPrefix(String),
    #[error("--database-url must start with sqlite:// or mysql://, got `{0}`")]
    BadDatabaseUrl(String),
    #[error("--amqp-url is not a valid AMQP URL (amqp://user:pass@host:port/vhost): {0}")]
    BadAmqpUrl(String),
    #[error("--amqp-ca-file applies to amqps:// URLs only")]
    CaFileWithoutTls,
    #[error("--amqp-ca-file {path}: {why}")]
    BadCaFile { path: String, why: String },
    #[error("--redis-url is not a valid Redis URL: {0}")]
    BadRedisUrl(String),
    #[error("--callback-allow entry `{0}` must be a host or host:port")]
    BadAllowEntry(String),
    #[error("--retry-delays needs at least one delay")]
    NoRetryDelays,
    #[error("--read-token needs --token as well")]
    ReadTokenWithoutToken,
    #[error(
        "--dedupe-retention must be longer than zero: dedupe records must outlive any redelivery"
    )]
    ZeroDedupeRetention,
    #[error(
        "--task-retention ({task}) is shorter than --idempotency-ttl ({key}): a replayed key would name a deleted task"
    )]
    TaskRetentionBelowKeyTtl { task: String, key: String },
}

impl Config {
    /// The HTTP address for `mode`, explicit or defaulted.
    pub fn http_addr_for(&self, mode: Mode) -> SocketAddr {
        self.http_addr.unwrap_or_else(|| mode.default_http_addr())
    }

    /// Checks what can be checked without connecting to anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.strategies;
        if self.redis_url.is_none() {
            if s.cache == CacheStrategy::Redis {
                return Err(ConfigError::RedisRequired("--cache redis"));
            }
            if s.dedupe == DedupeStrategy::RedisSetnx {
                return Err(ConfigError::RedisRequired("--dedupe redis-setnx"));
            }
        }
        let prefix_ok = (1..=64).contains(&self.prefix.len())
            && self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !prefix_ok {
            return Err(ConfigError::BadPrefix(self.prefix.clone()));
        }
        if !(self.database_url.starts_with("sqlite:") || self.database_url.starts_with("mysql://"))
        {
            return Err(ConfigError::BadDatabaseUrl(self.database_url.clone()));
        }
        self.broker.validate()?;
        if let Some(url) = &self.redis_url {
            redis::Client::open(url.as_str())
                .map_err(|e| ConfigError::BadRedisUrl(e.to_string()))?;
        }
        for entry in &self.callbacks.allow {
            if url::Url::parse(&format!("http://{entry}/")).map(|u| u.path() == "/") != Ok(true) {
                return Err(ConfigError::BadAllowEntry(entry.clone()));
            }
        }
        if self.tuning.retry_delays.is_empty() {
            return Err(ConfigError::NoRetryDelays);
        }
        if self.read_token.is_some() && self.token.is_none() {
            return Err(ConfigError::ReadTokenWithoutToken);
        }
        if self.tuning.dedupe_retention.is_zero() {
            return Err(ConfigError::ZeroDedupeRetention);
        }
        if self.tuning.task_retention < self.tuning.idempotency_ttl {
            let shown = |d| humantime::format_duration(d).to_string();
            return Err(ConfigError::TaskRetentionBelowKeyTtl {
                task: shown(self.tuning.task_retention),
                key: shown(self.tuning.idempotency_ttl),
            });
        }
        Ok(())
    }
}

/// Secrets are never printed, not even in debug logs.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("http_addr", &self.http_addr)
            .field("amqp_url", &redact_url(&self.broker.amqp_url))
            .field("amqp_ca_file", &self.broker.amqp_ca_file)
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("prefix", &self.prefix)
            .field("token", &redact(&self.token))
            .field("read_token", &redact(&self.read_token))
            .field("strategies", &self.strategies)
            .field("tuning", &self.tuning)
            .field("callback_allow", &self.callbacks.allow)
            .field("log_format", &self.log_format)
            .field("log_writer", &self.log_writer)
            .finish()
    }
}

/// Hides the password of a URL for logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Cli::try_parse_from(std::iter::once("reference").chain(args.iter().copied()))
            .map(|c| c.config)
    }

    #[test]
    fn defaults_are_the_robust_strategies() {
        let c = parse(&[]).unwrap();
        let s = &c.strategies;
        assert_eq!(s.publish, PublishStrategy::Outbox);
        assert_eq!(s.ack, AckStrategy::Manual);
        assert_eq!(s.dedupe, DedupeStrategy::Store);
        assert_eq!(s.retry, RetryStrategy::Backoff);
        assert_eq!(s.queue_type, QueueType::Quorum);
        assert_eq!(
            c.tuning.retry_delays,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4)
            ]
        );
        assert!(
            c.tuning.rate_limit.is_none(),
            "rate limiting is off by default"
        );
        assert_eq!(c.tuning.compression, Compression::Gzip);
        assert_eq!(c.tuning.db_indexes, DbIndexes::Full);
        assert_eq!(c.log_writer, LogWriter::NonBlocking);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_switch_value_is_rejected_with_the_choices() {
        let err = parse(&["--ack", "sometimes"]).err().unwrap().to_string();
        assert!(err.contains("manual") && err.contains("auto"), "{err}");
    }

    #[test]
    fn redis_strategies_need_a_redis_url() {
        let c = parse(&["--dedupe", "redis-setnx"]).unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::RedisRequired(_))));
        let c = parse(&["--cache", "redis"]).unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::RedisRequired(_))));
    }

    #[test]
    fn a_ca_file_must_hold_certificates_and_go_with_amqps() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("notes.txt");
        std::fs::write(&not_pem, "no certificate here").unwrap();
        let not_pem = not_pem.to_str().unwrap();
        let amqps = "amqps://guest:guest@127.0.0.1:5671/%2f";
        let check = |args: &[&str]| parse(args).unwrap().validate().unwrap_err().to_string();

        let plain = check(&["--amqp-ca-file", not_pem]);
        assert!(plain.contains("amqps:// URLs only"), "{plain}");
        let missing = check(&["--amqp-url", amqps, "--amqp-ca-file", "/nonexistent/ca.pem"]);
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        let empty = check(&["--amqp-url", amqps, "--amqp-ca-file", not_pem]);
        assert!(empty.contains("no PEM certificate"), "{empty}");
        parse(&["--amqp-url", amqps]).unwrap().validate().unwrap();
    }

    #[test]
    fn bad_urls_and_names_are_reported() {
        let c = parse(&["--amqp-url", "http://nope"]).unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::BadAmqpUrl(_))));
        let c = parse(&["--database-url", "postgres://x"]).unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::BadDatabaseUrl(_))));
        let c = parse(&["--prefix", "a b"]).unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::BadPrefix(_))));
        let c = parse(&["--callback-allow", "http://x/y"]).unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::BadAllowEntry(_))));
        assert!(parse(&["--retry-delays", "1s,soon"]).is_err());
    }

    #[test]
    fn dedupe_retention_defaults_to_a_week_and_must_be_positive() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            c.tuning.dedupe_retention,
            Duration::from_secs(7 * 24 * 3600)
        );
        let c = parse(&["--dedupe-retention", "0s"]).unwrap();
        let err = c.validate().unwrap_err();
        assert!(matches!(err, ConfigError::ZeroDedupeRetention), "{err}");
        assert!(err.to_string().contains("--dedupe-retention"), "{err}");
        let c = parse(&["--dedupe-retention", "36h"]).unwrap();
        assert_eq!(c.tuning.dedupe_retention, Duration::from_secs(36 * 3600));
        c.validate().unwrap();
        assert!(parse(&["--dedupe-retention", "a while"]).is_err());
    }

    #[test]
    fn task_retention_defaults_to_a_month_and_outlives_idempotency_keys() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.tuning.task_retention, Duration::from_secs(30 * 24 * 3600));
        let c = parse(&["--task-retention", "1h"]).unwrap();
        let err = c.validate().unwrap_err();
        assert!(
            matches!(err, ConfigError::TaskRetentionBelowKeyTtl { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("--idempotency-ttl (1day)"),
            "{err}"
        );
        let c = parse(&["--task-retention", "5m", "--idempotency-ttl", "5m"]).unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = parse(&[
            "--token",
            "s3cret-token",
            "--amqp-url",
            "amqp://u:hunter2@h:5672/%2f",
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret-token") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
