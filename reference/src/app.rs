//! Wiring: starts the parts a mode needs and stops them in order.
//!
//! Shutdown runs in two phases. First the intake stops: the HTTP server finishes its requests
//! and the worker stops consuming and settles what it holds. Then the background parts stop: the
//! relay flushes the outbox (which the last requests may have filled), callbacks pause, and the
//! broker and store connections close.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    backoff,
    broker::{topology::Names, Broker, Topology},
    cache::UserCache,
    callbacks::AllowList,
    config::{CallbackConfig, Config, DbIndexes, Mode, PublishStrategy},
    dispatch::Dispatcher,
    http::{self, ApiParts, ApiState, OpsState, Tokens},
    metrics,
    model::now_ms,
    publisher::Publisher,
    relay::Relay,
    store::{Store, StoreError},
    worker::{Processor, Worker},
};

/// How much longer an Idempotency-Key reservation lasts than the submission holding it may run:
/// room for undoing a submission that timed out, and for clock steps between API processes.
const KEY_LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The share of `--request-timeout` a submission may take once its key is reserved: it gives
/// up before the request's own timeout answers, so that its client hears how it ended.
const SUBMIT_SHARE: f64 = 0.8;

/// A started process: its HTTP address and the handles to stop it.
pub struct Running {
    pub http_addr: SocketAddr,
    intake: CancellationToken,
    background: CancellationToken,
    intake_parts: JoinSet<&'static str>,
    background_parts: JoinSet<&'static str>,
    broker: Broker,
    store: Store,
    publisher: Option<Publisher>,
    shutdown_timeout: Duration,
}

/// Starts `mode` with `config`; returns once every part runs.
pub async fn start(config: Config, mode: Mode) -> anyhow::Result<Running> {
    config.validate()?;
    tracing::info!(?mode, config = ?config, "starting");
    if !config.callbacks.allow.is_empty()
        && config.callbacks.secret == CallbackConfig::DEFAULT_SECRET
    {
        tracing::warn!("callbacks are signed with the default secret; set --callback-secret");
    }
    metrics::handle();
    let tuning = &config.tuning;
    let intake = CancellationToken::new();
    let background = CancellationToken::new();

    let store = Store::connect_with(
        &config.database_url,
        tuning.connect_timeout,
        tuning.sqlite_synchronous.durability(),
    )
    .await
    .with_context(|| {
        format!(
            "cannot open the store at {}",
            crate::config::redact_url(&config.database_url)
        )
    })?;
    store
        .set_secondary_indexes(tuning.db_indexes == DbIndexes::Full)
        .await
        .context("cannot apply --db-indexes")?;
    let names = Names {
        prefix: config.prefix.clone(),
        retry_delays: tuning.retry_delays.clone(),
    };
    let topology = Topology {
        names,
        queue_type: config.strategies.queue_type,
    };
    let name = format!("reference-{}-{}", config.prefix, mode_name(mode));
    let broker = Broker::connect(
        &config.broker.amqp_url,
        config.broker.tls()?,
        &name,
        topology,
        tuning.connect_timeout,
        background.clone(),
    )
    .await?;
    let redis = connect_redis(&config).await?;
    let addr = config.http_addr_for(mode);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--http-addr)"))?;
    let http_addr = listener.local_addr()?;

    let mut running = Running {
        http_addr,
        intake,
        background,
        intake_parts: JoinSet::new(),
        background_parts: JoinSet::new(),
        broker: broker.clone(),
        store: store.clone(),
        publisher: None,
        shutdown_timeout: tuning.shutdown_timeout,
    };
    let ops = OpsState {
        store: store.clone(),
        broker: broker.clone(),
        redis: redis.clone(),
        broker_required: mode.runs_worker() || config.strategies.publish != PublishStrategy::Outbox,
    };
    let router = if mode.runs_api() {
        running.start_api(&config, &store, &broker, redis.clone(), ops)
    } else {
        http::worker_router(ops, tuning)
    };
    let stop = running.intake.clone();
    running.intake_parts.spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server failed");
        }
        "http server"
    });
    if mode.runs_worker() {
        running.start_worker(&config, &store, &broker, redis);
    }
    tracing::info!(%http_addr, ?mode, "ready");
    Ok(running)
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Api => "api",
        Mode::Worker => "worker",
        Mode::All => "all",
    }
}

async fn connect_redis(config: &Config) -> anyhow::Result<Option<redis::aio::ConnectionManager>> {
    let Some(url) = &config.redis_url else {
        return Ok(None);
    };
    let client = redis::Client::open(url.as_str())?;
    let conn = backoff::retry_for(config.tuning.connect_timeout, "redis", || {
        redis::aio::ConnectionManager::new(client.clone())
    })
    .await
    .with_context(|| {
        format!(
            "cannot connect to Redis at {}",
            crate::config::redact_url(url)
        )
    })?;
    Ok(Some(conn))
}

impl Running {
    fn start_api(
        &mut self,
        config: &Config,
        store: &Store,
        broker: &Broker,
        redis: Option<redis::aio::ConnectionManager>,
        ops: OpsState,
    ) -> axum::Router {
        let tuning = &config.tuning;
        let publisher = Publisher::new(config.strategies.publish, store.clone(), broker.clone());
        self.publisher = Some(publisher.clone());
        if config.strategies.publish == PublishStrategy::Outbox {
            let relay = Relay {
                store: store.clone(),
                broker: broker.clone(),
                wakeup: publisher.relay_wakeup(),
                poll_interval: tuning.poll_interval,
                shutdown_timeout: tuning.shutdown_timeout,
            };
            let stop = self.background.clone();
            self.background_parts.spawn(async move {
                relay.run(stop).await;
                "outbox relay"
            });
        }
        let stop = self.background.clone();
        let housekeeping_store = store.clone();
        let retention = Retention {
            key_ttl: tuning.idempotency_ttl,
            dedupe: tuning.dedupe_retention,
            tasks: tuning.task_retention,
        };
        self.background_parts.spawn(async move {
            housekeeping(housekeeping_store, retention, stop).await;
            "housekeeping"
        });
        let state = ApiState::new(ApiParts {
            store: store.clone(),
            cache: UserCache::new(
                config.strategies.cache,
                tuning.cache_ttl,
                redis,
                &config.prefix,
            ),
            publisher,
            allow: Arc::new(AllowList::parse(&config.callbacks.allow)),
            key_lease: tuning.request_timeout + KEY_LEASE_MARGIN,
            submit_timeout: tuning.request_timeout.mul_f64(SUBMIT_SHARE),
        });
        let tokens = Tokens::new(config.token.as_deref(), config.read_token.as_deref());
        http::api_router(state, ops, tokens, tuning)
    }

    fn start_worker(
        &mut self,
        config: &Config,
        store: &Store,
        broker: &Broker,
        redis: Option<redis::aio::ConnectionManager>,
    ) {
        let tuning = &config.tuning;
        let deliveries_owed = Arc::new(tokio::sync::Notify::new());
        let processor = Processor {
            deliveries_owed: deliveries_owed.clone(),
            store: store.clone(),
            topology: broker.topology().clone(),
            dedupe: config.strategies.dedupe,
            retry: config.strategies.retry,
            redis,
        };
        let worker = Worker {
            broker: broker.clone(),
            processor: Arc::new(processor),
            ack: config.strategies.ack,
            prefetch: tuning.prefetch,
            concurrency: tuning.concurrency,
            shutdown_timeout: tuning.shutdown_timeout,
        };
        let stop = self.intake.clone();
        self.intake_parts.spawn(async move {
            worker.run(stop).await;
            "worker"
        });
        let dispatcher = Dispatcher::new(
            store.clone(),
            broker.clone(),
            config.callbacks.clone(),
            tuning.poll_interval,
            deliveries_owed,
        );
        let stop = self.background.clone();
        self.background_parts.spawn(async move {
            dispatcher.run(stop).await;
            "callback dispatcher"
        });
    }

    /// Runs until `stop` resolves (a signal) or a part ends by itself, then shuts down.
    /// A part ending by itself is an error: the process should exit and be restarted.
    pub async fn run_until(mut self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let unexpected = tokio::select! {
            _ = stop => None,
            Some(part) = self.intake_parts.join_next() => Some(part),
            Some(part) = self.background_parts.join_next() => Some(part),
        };
        self.shutdown().await;
        match unexpected {
            None => Ok(()),
            Some(Ok(part)) => anyhow::bail!("{part} stopped unexpectedly"),
            Some(Err(e)) => anyhow::bail!("a part panicked: {e}"),
        }
    }

    /// Stops intake, then background parts, then closes connections.
    pub async fn shutdown(mut self) {
        tracing::info!("shutting down");
        let margin = self.shutdown_timeout + Duration::from_secs(5);
        self.intake.cancel();
        join_within(&mut self.intake_parts, margin).await;
        self.background.cancel();
        join_within(&mut self.background_parts, margin).await;
        if let Some(publisher) = &self.publisher {
            publisher.close().await;
        }
        self.broker.close().await;
        self.store.close().await;
        tracing::info!("stopped");
    }

    /// The broker link, for tests that observe the connection.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }
}

async fn join_within(parts: &mut JoinSet<&'static str>, limit: Duration) {
    let all = async { while parts.join_next().await.is_some() {} };
    if tokio::time::timeout(limit, all).await.is_err() {
        tracing::warn!(
            left = parts.len(),
            "parts did not stop in time; aborting them"
        );
        parts.abort_all();
    }
}

/// Rows one retention statement deletes, and statements per table per sweep: a sweep stays
/// short beside the workers' writes, and a backlog of old rows is worked off over a few sweeps.
const RETENTION_BATCH: u32 = 1000;
const RETENTION_MAX_BATCHES: u32 = 100;

/// Publishes the outbox backlog gauge and, every minute, forgets expired idempotency keys and
/// deletes dedupe records, finished deliveries and finished tasks older than their retention.
async fn housekeeping(store: Store, retention: Retention, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.outbox_backlog().await {
            Ok(n) => metrics::outbox_backlog(Some(n)),
            Err(e) => {
                // Once per tick at most; a stale number would claim the outbox is drained.
                tracing::warn!(error = %e, "cannot read the outbox backlog");
                metrics::outbox_backlog(None);
            }
        }
        ticks += 1;
        if ticks % 60 == 1 {
            sweep_retention(&store, &retention).await;
            match store.size().await {
                Ok(size) => metrics::store_size(&size),
                Err(e) => tracing::warn!(error = %e, "cannot measure the store"),
            }
        }
    }
}

/// How long housekeeping keeps what it deletes.
struct Retention {
    /// `--idempotency-ttl`.
    key_ttl: Duration,
    /// `--dedupe-retention`: dedupe records and finished deliveries.
    dedupe: Duration,
    /// `--task-retention`: finished tasks.
    tasks: Duration,
}

/// The time before which rows older than `age` were written.
fn cutoff(age: Duration) -> i64 {
    now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
}

/// Counts what one table's sweep deleted, or warns that it could not.
fn swept(table: &'static str, flag: &str, result: Result<(u64, bool), StoreError>) {
    match result {
        Ok((0, _)) => {}
        Ok((rows, more)) => {
            metrics::retention_deleted(table, rows);
            tracing::debug!(table, rows, more, "retention sweep");
        }
        Err(e) => tracing::warn!(error = %e, table, "cannot delete rows past {flag}"),
    }
}

async fn sweep_retention(store: &Store, retention: &Retention) {
    let (batch, max) = (RETENTION_BATCH, RETENTION_MAX_BATCHES);
    let keys = store.sweep_expired_keys(cutoff(retention.key_ttl), batch, max);
    swept("idempotency_keys", "--idempotency-ttl", keys.await);
    let tasks = store.sweep_finished_tasks(cutoff(retention.tasks), batch, max);
    swept("tasks", "--task-retention", tasks.await);
    match store
        .sweep_retention(cutoff(retention.dedupe), batch, max)
        .await
    {
        Ok(swept) => {
            if swept.processed > 0 {
                metrics::retention_deleted("processed_messages", swept.processed);
            }
            if swept.deliveries > 0 {
                metrics::retention_deleted("deliveries", swept.deliveries);
            }
            tracing::debug!(
                processed_messages = swept.processed,
                deliveries = swept.deliveries,
                more = swept.more,
                "retention sweep"
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot delete rows past --dedupe-retention"),
    }
}
