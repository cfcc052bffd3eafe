//! The system's own signals, sampled at the caller's interval (500 ms in experiments): what its
//! `/metrics` says (outbox backlog, broker connection, task counters), what its `/readyz` says
//! (ready, broker blocked by flow control), and its task queue as the broker sees it (the messages ready for
//! a consumer, by a passive declare: exact, unlike the management API's figures, which lag by
//! seconds), and the messages consumers hold unacknowledged, which AMQP cannot tell, from the
//! broker's own Prometheus endpoint when the harness started the broker (refreshed every
//! second). A reader can then tell whether the system's own metrics showed a fault, and how
//! the backlog grew and drained.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use contract::topology::Names;
use lapin::options::QueueDeclareOptions;
use reports::Series;
use tokio_util::sync::CancellationToken;

/// Gauges and counters of the reference's `/metrics` the samples keep (another system may
/// have none of them; counters are summed over their labels).
const METRICS: [(&str, &str); 5] = [
    ("reference_outbox_backlog", "outbox backlog"),
    ("reference_broker_connected", "broker connected"),
    ("reference_tasks_succeeded_total", "tasks succeeded"),
    ("reference_tasks_failed_total", "tasks failed"),
    ("reference_tasks_retried_total", "tasks retried"),
];

/// One sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Seconds since sampling began.
    pub t: f64,
    /// Values by series name (what could not be read is absent).
    pub values: BTreeMap<String, f64>,
    pub ready: Option<bool>,
    pub broker_blocked: bool,
}

impl Sample {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// Work accepted and not yet taken by a worker; `None` when nothing could be read.
    pub fn backlog(&self) -> Option<f64> {
        match (self.get("outbox backlog"), self.get("task queue depth")) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        }
    }
}

/// Where to read the signals.
#[derive(Clone)]
pub struct Source {
    pub base_url: String,
    pub token: Option<String>,
    pub amqp_url: Option<String>,
    pub names: Option<Names>,
    /// The broker's Prometheus endpoints (`Broker::metrics_urls`); empty: not read.
    pub broker_metrics: Vec<String>,
}

/// A sampler running in the background.
pub struct Sampler {
    pub started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Samples `source` every `every`.
    pub fn start(source: Source, every: Duration) -> Sampler {
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = {
            let (samples, stop) = (samples.clone(), stop.clone());
            tokio::spawn(async move {
                let reader = Reader::new(source).await;
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    // Stamped when the read began: a read takes a while (an AMQP connect, two
                    // HTTP calls), and what it reports was true from then on.
                    let t = started.elapsed().as_secs_f64();
                    let mut s = reader.read().await;
                    s.t = t;
                    samples.lock().expect("samples lock").push(s);
                }
            })
        };
        Sampler {
            started,
            samples,
            stop,
            task,
        }
    }

    /// Seconds since sampling began.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("samples lock").clone()
    }

    /// The latest sample, if any.
    pub fn last(&self) -> Option<Sample> {
        self.samples.lock().expect("samples lock").last().cloned()
    }

    /// Waits until the backlog is empty, at most `limit`; returns the seconds it took.
    pub async fn wait_drained(&self, limit: Duration) -> Option<f64> {
        let from = self.now();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let drained = self
                .samples()
                .iter()
                .rev()
                .find(|s| s.t > from)
                .and_then(Sample::backlog)
                .is_some_and(|b| b == 0.0);
            if drained {
                return Some(self.now() - from);
            }
        }
        None
    }

    /// Stops sampling; returns every sample.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.cancel();
        let samples = self.samples.clone();
        let _ = self.task.await;
        let all = samples.lock().expect("samples lock").clone();
        all
    }
}

/// The samples as series to chart: one per value ever read, `t` against the value.
pub fn series(samples: &[Sample]) -> Vec<Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for s in samples {
        for (name, v) in &s.values {
            out.entry(name.clone())
                .or_insert_with(|| Series::new(name, "s", unit(name)))
                .push(s.t, *v);
        }
        if let Some(ready) = s.ready {
            out.entry("ready".into())
                .or_insert_with(|| Series::new("ready", "s", "0/1"))
                .push(s.t, f64::from(u8::from(ready)));
        }
    }
    out.into_values().collect()
}

fn unit(name: &str) -> &'static str {
    match name {
        "outbox backlog" => "rows",
        "broker connected" => "0/1",
        n if n.starts_with("tasks") => "tasks",
        _ => "messages",
    }
}

struct Reader {
    source: Source,
    http: reqwest::Client,
    /// Connected again after a broker fault closed it.
    amqp: tokio::sync::Mutex<Option<lapin::Connection>>,
}

impl Reader {
    async fn new(source: Source) -> Reader {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client builds");
        Reader {
            source,
            http,
            amqp: Default::default(),
        }
    }

    /// A channel on a live connection, connecting (again) when needed.
    async fn channel(&self) -> Option<lapin::Channel> {
        let mut amqp = self.amqp.lock().await;
        if !amqp.as_ref().is_some_and(|c| c.status().connected()) {
            let url = self.source.amqp_url.as_deref()?;
            let connect = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
            *amqp = tokio::time::timeout(Duration::from_secs(2), connect)
                .await
                .ok()?
                .ok();
        }
        amqp.as_ref()?.create_channel().await.ok()
    }

    async fn read(&self) -> Sample {
        let (metrics, queue, unacked, readiness) = tokio::join!(
            self.metrics(),
            self.queue(),
            self.unacked(),
            self.readiness()
        );
        let mut values = metrics;
        if let Some(depth) = queue {
            values.insert("task queue depth".into(), depth);
        }
        if let Some(held) = unacked {
            values.insert("task queue unacked".into(), held);
        }
        let (ready, broker_blocked) = readiness.unwrap_or((None, false));
        Sample {
            t: 0.0,
            values,
            ready,
            broker_blocked,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(format!("{}{path}", self.source.base_url));
        match &self.source.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn metrics(&self) -> BTreeMap<String, f64> {
        let text = match self.get("/metrics").send().await {
            Ok(res) => res.text().await.unwrap_or_default(),
            Err(_) => return BTreeMap::new(),
        };
        METRICS
            .iter()
            .filter_map(|(metric, name)| Some((name.to_string(), sum(&text, metric)?)))
            .collect()
    }

    /// The task queue's ready messages (AMQP's declare-ok does not count those consumers
    /// hold unacknowledged).
    async fn queue(&self) -> Option<f64> {
        let names = self.source.names.as_ref()?;
        let ch = self.channel().await?;
        let opts = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare(names.task_queue().as_str().into(), opts, Default::default())
            .await
            .ok()?;
        let _ = ch.close(200, "read".into()).await;
        Some(f64::from(q.message_count()))
    }

    /// The task queue's messages delivered and not yet acknowledged, summed over the broker's
    /// endpoints; `None` when none answered with the figure.
    async fn unacked(&self) -> Option<f64> {
        let queue = &self.source.names.as_ref()?.task_queue();
        let reads = self.source.broker_metrics.iter().map(|url| async move {
            let text = self.http.get(url).send().await.ok()?.text().await.ok()?;
            sum_where(&text, "rabbitmq_queue_messages_unacked", "queue", queue)
        });
        let found: Vec<f64> = futures_util::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect();
        (!found.is_empty()).then(|| found.iter().sum())
    }

    async fn readiness(&self) -> Option<(Option<bool>, bool)> {
        let res = self.get("/readyz").send().await.ok()?;
        let ready = res.status().is_success();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        let blocked = body.pointer("/data/broker").and_then(|v| v.as_str()) == Some("blocked");
        Some((Some(ready), blocked))
    }
}

/// The sum of a metric's samples (over its labels) in Prometheus text; `None` when absent or
/// not a number.
fn sum(text: &str, name: &str) -> Option<f64> {
    sum_matching(text, name, |_| true)
}

/// The sum of a metric's samples whose label `label` is `value`.
fn sum_where(text: &str, name: &str, label: &str, value: &str) -> Option<f64> {
    let wanted = format!("{label}=\"{value}\"");
    sum_matching(text, name, |labels| {
        labels
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .any(|l| l == wanted)
    })
}

/// The sum of a metric's samples whose label set (`{...}`, or empty) passes `keep`.
fn sum_matching(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, labels) = key.split_at(key.find('{').unwrap_or(key.len()));
            (metric == name && keep(labels)).then(|| value.trim().parse::<f64>().ok())?
        })
        .filter(|v| v.is_finite())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_and_summed_over_labels() {
        let text = "# TYPE reference_outbox_backlog gauge\nreference_outbox_backlog 42\n\
                    reference_tasks_succeeded_total{type=\"echo\"} 3\n\
                    reference_tasks_succeeded_total{type=\"credit\"} 4\n";
        assert_eq!(sum(text, "reference_outbox_backlog"), Some(42.0));
        assert_eq!(sum(text, "reference_tasks_succeeded_total"), Some(7.0));
        assert_eq!(
            sum("reference_outbox_backlog NaN\n", "reference_outbox_backlog"),
            None
        );
    }

    #[test]
    fn a_queues_unacked_messages_are_read_by_its_label() {
        let text = "rabbitmq_queue_messages_unacked{vhost=\"/\",queue=\"t.tasks\"} 7\n\
                    rabbitmq_queue_messages_unacked{vhost=\"/\",queue=\"t.tasks.dlq\"} 2\n\
                    rabbitmq_queue_messages_unacked_total 9\n";
        let unacked = |q| sum_where(text, "rabbitmq_queue_messages_unacked", "queue", q);
        assert_eq!(unacked("t.tasks"), Some(7.0));
        assert_eq!(unacked("t.tasks.dlq"), Some(2.0));
        assert_eq!(unacked("other"), None);
        assert_eq!(sum("", "reference_outbox_backlog"), None);
    }

    #[test]
    fn backlog_adds_what_was_read() {
        let mut s = Sample::default();
        assert_eq!(s.backlog(), None);
        s.values.insert("outbox backlog".into(), 3.0);
        assert_eq!(s.backlog(), Some(3.0));
        s.values.insert("task queue depth".into(), 2.0);
        assert_eq!(s.backlog(), Some(5.0));
        let series = series(&[s]);
        assert_eq!(series.len(), 2);
    }
}
