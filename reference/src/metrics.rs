//! Prometheus metrics: names in one place, a process-wide recorder, histograms with buckets.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `reference_http_requests_total` | counter | method, route, status |
//! | `reference_http_request_duration_seconds` | histogram | method, route, status |
//! | `reference_tasks_published_total` | counter | strategy |
//! | `reference_tasks_publish_failed_total` | counter | strategy |
//! | `reference_tasks_delivered_total` | counter | |
//! | `reference_tasks_duplicates_skipped_total` | counter | dedupe |
//! | `reference_tasks_retried_total` | counter | type |
//! | `reference_tasks_dead_lettered_total` | counter | reason |
//! | `reference_tasks_succeeded_total` / `_failed_total` | counter | type |
//! | `reference_task_processing_seconds` | histogram | type, outcome |
//! | `reference_outbox_backlog` | gauge | |
//! | `reference_outbox_relay_interruptions_total` | counter | |
//! | `reference_retention_deleted_total` | counter | table |
//! | `reference_callbacks_total` | counter | kind, outcome |
//! | `reference_broker_connected` | gauge | |
//! | `reference_store_commits_total` | counter | outcome |
//! | `reference_store_commit_writes_total` | counter | |
//! | `reference_store_commit_seconds` | histogram | |
//! | `reference_store_rows` | gauge | table |
//! | `reference_store_bytes` | gauge | |
//!
//! `reference_outbox_backlog` is the whole shared outbox as one API process counts it (every
//! replica reports the same number: aggregate with max), NaN while the store cannot be read.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder's handle, installed on first use. Several in-process apps (tests)
/// share it.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("buckets are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder (a host application's) may already be installed; then ours
            // renders only what it records itself, which is nothing, and /metrics says so.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            describe();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// `# HELP` lines, for metrics whose meaning a dashboard could get wrong.
fn describe() {
    metrics::describe_gauge!(
        "reference_outbox_backlog",
        "Outbox rows not yet published, counted over the whole shared store by this API process \
         (so every API replica reports the same global backlog: aggregate with max, not sum); \
         NaN while the store cannot be read"
    );
    metrics::describe_counter!(
        "reference_outbox_relay_interruptions_total",
        "Times the outbox relay stopped on an error (broker gone, confirms missing) and started \
         again with a fresh channel after a backoff; 0 on a healthy broker"
    );
    metrics::describe_counter!(
        "reference_retention_deleted_total",
        "Rows deleted by the retention sweep (--dedupe-retention, --task-retention), by table"
    );
}

/// Histograms keep raw samples until upkeep folds them; without a scraper they would grow.
fn spawn_upkeep(handle: PrometheusHandle) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
}

pub fn http_request(method: &str, route: &str, status: u16, seconds: f64) {
    let labels = [
        ("method", method.to_string()),
        ("route", route.to_string()),
        ("status", status.to_string()),
    ];
    metrics::counter!("reference_http_requests_total", &labels).increment(1);
    metrics::histogram!("reference_http_request_duration_seconds", &labels).record(seconds);
}

pub fn published(strategy: &'static str, n: u64) {
    metrics::counter!("reference_tasks_published_total", "strategy" => strategy).increment(n);
}

pub fn publish_failed(strategy: &'static str, n: u64) {
    metrics::counter!("reference_tasks_publish_failed_total", "strategy" => strategy).increment(n);
}

pub fn relay_interrupted() {
    metrics::counter!("reference_outbox_relay_interruptions_total").increment(1);
}

pub fn delivered() {
    metrics::counter!("reference_tasks_delivered_total").increment(1);
}

pub fn duplicate_skipped(dedupe: &'static str) {
    metrics::counter!("reference_tasks_duplicates_skipped_total", "dedupe" => dedupe).increment(1);
}

pub fn retried(kind: &'static str) {
    metrics::counter!("reference_tasks_retried_total", "type" => kind).increment(1);
}

pub fn dead_lettered(reason: &'static str) {
    metrics::counter!("reference_tasks_dead_lettered_total", "reason" => reason).increment(1);
}

pub fn finished(kind: &'static str, succeeded: bool, seconds: f64) {
    let (name, outcome) = if succeeded {
        ("reference_tasks_succeeded_total", "success")
    } else {
        ("reference_tasks_failed_total", "failure")
    };
    metrics::counter!(name, "type" => kind).increment(1);
    metrics::histogram!("reference_task_processing_seconds", "type" => kind, "outcome" => outcome)
        .record(seconds);
}

pub fn attempt_failed(kind: &'static str, seconds: f64) {
    metrics::histogram!("reference_task_processing_seconds", "type" => kind, "outcome" => "attempt_failed")
        .record(seconds);
}

/// The outbox backlog; `None` when it could not be read, exported as NaN so that a store
/// outage does not leave the last value (often 0) standing.
pub fn outbox_backlog(rows: Option<i64>) {
    metrics::gauge!("reference_outbox_backlog").set(rows.map_or(f64::NAN, |n| n as f64));
}

pub fn retention_deleted(table: &'static str, rows: u64) {
    metrics::counter!("reference_retention_deleted_total", "table" => table).increment(rows);
}

pub fn callback(kind: &str, outcome: &'static str) {
    metrics::counter!("reference_callbacks_total", "kind" => kind.to_string(), "outcome" => outcome).increment(1);
}

pub fn broker_connected(up: bool) {
    metrics::gauge!("reference_broker_connected").set(if up { 1.0 } else { 0.0 });
}

/// The store's size, measured by API housekeeping once a minute.
pub fn store_size(size: &crate::store::Size) {
    for (table, rows) in &size.rows {
        metrics::gauge!("reference_store_rows", "table" => *table).set(*rows as f64);
    }
    metrics::gauge!("reference_store_bytes").set(size.bytes as f64);
}

/// A group commit of the store: how many writes it carried and how long it took.
pub fn store_commit(writes: usize, seconds: f64, ok: bool) {
    let outcome = if ok { "committed" } else { "failed" };
    metrics::counter!("reference_store_commits_total", "outcome" => outcome).increment(1);
    metrics::counter!("reference_store_commit_writes_total").increment(writes as u64);
    metrics::histogram!("reference_store_commit_seconds").record(seconds);
}

#[cfg(test)]
mod tests {
    /// A backlog that cannot be read is exported as NaN, not as the last value, and the help
    /// text says how to aggregate it.
    #[test]
    fn unreadable_backlog_is_nan_and_described() {
        let handle = super::handle();
        super::outbox_backlog(Some(7));
        assert!(handle.render().contains("reference_outbox_backlog 7\n"));
        super::outbox_backlog(None);
        let shown = handle.render();
        assert!(shown.contains("reference_outbox_backlog NaN\n"), "{shown}");
        let help = shown
            .lines()
            .find(|l| l.starts_with("# HELP reference_outbox_backlog"))
            .unwrap_or_else(|| panic!("no help line: {shown}"));
        assert!(help.contains("max, not sum"), "{help}");
    }
}
