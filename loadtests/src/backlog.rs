//! The system's backlog, sampled once a second beside the load: the outbox backlog its
//! `/metrics` reports, the depth of its task queue (a passive declare, exact), and whether its
//! broker blocks publishers (flow control, as `/readyz` says).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use contract::topology::Names;
use reports::Series;
use tokio_util::sync::CancellationToken;

/// The gauge the reference exports; another system may not have it.
const OUTBOX_GAUGE: &str = "reference_outbox_backlog";

/// One sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Seconds since sampling began.
    pub t: f64,
    pub outbox: Option<f64>,
    pub queue: Option<f64>,
    pub broker_blocked: bool,
}

impl Sample {
    /// Work accepted and not yet taken by a worker; `None` when nothing could be read.
    pub fn backlog(&self) -> Option<f64> {
        match (self.outbox, self.queue) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        }
    }
}

/// Where to read the backlog.
#[derive(Clone)]
pub struct Source {
    pub base_url: String,
    pub token: Option<String>,
    pub amqp_url: Option<String>,
    pub names: Option<Names>,
}

/// A sampler running in the background.
pub struct Sampler {
    pub started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(source: Source) -> Sampler {
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = {
            let (samples, stop) = (samples.clone(), stop.clone());
            tokio::spawn(async move {
                let reader = Reader::new(source).await;
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let mut s = reader.read().await;
                    s.t = started.elapsed().as_secs_f64();
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
        self.samples.lock().expect("samples lock").last().copied()
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

    /// Stops sampling; returns the series to chart.
    pub async fn stop(self) -> Vec<Series> {
        self.stop.cancel();
        let samples = self.samples.clone();
        let _ = self.task.await;
        let all = samples.lock().expect("samples lock").clone();
        series(&all)
    }
}

/// The outbox and queue-depth lines of `samples` (a line only when it was ever read).
pub fn series(samples: &[Sample]) -> Vec<Series> {
    let mut outbox = Series::new("outbox backlog", "s", "rows");
    let mut queue = Series::new("task queue depth", "s", "messages");
    for s in samples {
        if let Some(v) = s.outbox {
            outbox.push(s.t, v);
        }
        if let Some(v) = s.queue {
            queue.push(s.t, v);
        }
    }
    [outbox, queue]
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .collect()
}

struct Reader {
    source: Source,
    http: reqwest::Client,
    amqp: Option<lapin::Connection>,
}

impl Reader {
    async fn new(source: Source) -> Reader {
        let amqp = match &source.amqp_url {
            Some(url) => lapin::Connection::connect(url, lapin::ConnectionProperties::default())
                .await
                .ok(),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client builds");
        Reader { source, http, amqp }
    }

    async fn read(&self) -> Sample {
        let (outbox, queue, blocked) =
            tokio::join!(self.outbox(), self.queue(), self.broker_blocked());
        Sample {
            t: 0.0,
            outbox,
            queue,
            broker_blocked: blocked,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(format!("{}{path}", self.source.base_url));
        match &self.source.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn outbox(&self) -> Option<f64> {
        let text = self.get("/metrics").send().await.ok()?.text().await.ok()?;
        gauge(&text, OUTBOX_GAUGE)
    }

    async fn queue(&self) -> Option<f64> {
        let (conn, names) = (self.amqp.as_ref()?, self.source.names.as_ref()?);
        harness::final_read::depth(conn, &names.task_queue())
            .await
            .ok()
            .map(f64::from)
    }

    async fn broker_blocked(&self) -> bool {
        let Ok(res) = self.get("/readyz").send().await else {
            return false;
        };
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        body.pointer("/data/broker").and_then(|v| v.as_str()) == Some("blocked")
    }
}

/// The value of an unlabelled gauge in Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (metric, value) = l.split_once(' ')?;
            (metric == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_is_read_from_prometheus_text() {
        let text = "# TYPE reference_outbox_backlog gauge\nreference_outbox_backlog 42\nreference_outbox_backlog_x 1\n";
        assert_eq!(gauge(text, OUTBOX_GAUGE), Some(42.0));
        assert_eq!(gauge("reference_outbox_backlog NaN\n", OUTBOX_GAUGE), None);
        assert_eq!(gauge("", OUTBOX_GAUGE), None);
    }

    #[test]
    fn backlog_adds_what_was_read() {
        let s = Sample {
            outbox: Some(3.0),
            queue: None,
            ..Default::default()
        };
        assert_eq!(s.backlog(), Some(3.0));
        assert_eq!(Sample::default().backlog(), None);
    }
}
