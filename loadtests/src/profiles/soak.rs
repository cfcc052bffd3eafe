//! `loadtests soak`: a long run at a fixed rate with housekeeping on a short retention,
//! sampling what must not keep growing once retention applies: the processes' memory, the
//! store's rows and bytes, the outbox; and the log volume, which grows with traffic until the
//! operator's rotation takes it, so what must stay flat is its rate.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::Args;
use goose::config::GooseConfiguration;
use reports::{load::Soak, LoadReport, RunReport, Series, Verdict};

use crate::{
    attack::Step,
    session::{summary_line, Common, Session},
    workload::Mix,
};

#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub common: Common,

    /// How long the load runs.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m", help_heading = "Soak")]
    pub duration: Duration,

    /// Requests per second offered (half the knee `capacity` found is a good choice).
    #[arg(long, default_value_t = 500, help_heading = "Soak")]
    pub rate: usize,

    /// The reference's --dedupe-retention, --idempotency-ttl and --task-retention for the run:
    /// short, so that retention applies within it.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m", help_heading = "Soak")]
    pub retention: Duration,

    /// How often the sizes are sampled.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s", help_heading = "Soak")]
    pub sample_every: Duration,

    /// Transaction weights: cached, after-write, list, create, submit, balance, e2e. No
    /// creates by default: users are kept until deleted, so they would grow by design.
    #[arg(long, default_value_t = Mix::STEADY, help_heading = "Workload")]
    pub mix: Mix,

    #[command(flatten)]
    pub goose: GooseConfiguration,
}

/// Growth allowed between the two windows the verdict compares, beyond this share.
const GROWTH: f64 = 0.10;

/// What one sample reads.
struct Probe {
    http: reqwest::Client,
    base_url: String,
    pids: Vec<(String, i32)>,
    /// The reference's directory (store file, logs), when the harness started it.
    dir: Option<PathBuf>,
}

fn rss_bytes(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

fn file_bytes(paths: impl Iterator<Item = PathBuf>) -> f64 {
    paths
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len() as f64)
        .sum()
}

/// The gauges of `/metrics` this soak follows, by series name.
fn gauges(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if let Some(labels) = key.strip_prefix("reference_store_rows{") {
            let table = labels
                .trim_end_matches('}')
                .trim_start_matches("table=\"")
                .trim_end_matches('"');
            out.push((format!("rows: {table}"), value));
        } else if key == "reference_store_bytes" {
            out.push(("store bytes".into(), value));
        } else if key == "reference_outbox_backlog" && value.is_finite() {
            out.push(("outbox backlog".into(), value));
        }
    }
    out
}

impl Probe {
    async fn sample(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = self
            .pids
            .iter()
            .filter_map(|(name, pid)| Some((format!("RSS {name}"), rss_bytes(*pid)?)))
            .collect();
        if let Ok(res) = self
            .http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
        {
            out.extend(gauges(&res.text().await.unwrap_or_default()));
        }
        if let Some(dir) = &self.dir {
            let wal = ["store.db-wal"].iter().map(|f| dir.join(f));
            out.push(("SQLite WAL bytes".into(), file_bytes(wal)));
            let logs = std::fs::read_dir(dir.join("logs"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path());
            out.push((LOG_BYTES.into(), file_bytes(logs)));
        }
        out
    }
}

/// The log's bytes per second between samples: the reference logs to standard error for the
/// operator's collector to rotate, so its volume grows with traffic by nature; a rate that
/// grows at a steady load is what would fill a disk (errors or retries piling up).
fn log_rate(series: &[Series]) -> Option<Series> {
    let logs = series.iter().find(|s| s.name == LOG_BYTES)?;
    let mut rate = Series::new(LOG_RATE, "s", "bytes/s");
    for pair in logs.points.windows(2) {
        let dt = pair[1][0] - pair[0][0];
        if dt > 0.0 {
            rate.push(pair[1][0], (pair[1][1] - pair[0][1]) / dt);
        }
    }
    Some(rate)
}

const LOG_BYTES: &str = "log bytes";
const LOG_RATE: &str = "log bytes/s";

/// Whether a series stopped growing: its mean over the last fifth of the run within
/// [`GROWTH`] of its mean over the fifth before. The log's volume is reported and its rate
/// judged (see [`log_rate`]).
fn judge(series: &[Series]) -> Verdict {
    let mut v = Verdict::new("soak: no growth once retention applies");
    let mut judged = 0;
    for s in series.iter().filter(|s| s.name != LOG_BYTES) {
        let n = s.points.len();
        if n < 10 {
            continue;
        }
        let window = n / 5;
        let mean = |pts: &[[f64; 2]]| pts.iter().map(|p| p[1]).sum::<f64>() / pts.len() as f64;
        let late = mean(&s.points[n - window..]);
        let before = mean(&s.points[n - 2 * window..n - window]);
        judged += 1;
        v.measure(&format!("{} (end)", s.name), late);
        // Small absolute values (an idle outbox) may wobble without growing.
        if late > before * (1.0 + GROWTH) && late - before > 100.0 {
            v.anomaly(
                "still_growing",
                serde_json::json!({"series": s.name, "before": before, "last": late}),
            );
        }
    }
    v.count("series_judged", judged);
    if judged == 0 {
        v.undecided();
        v.summary("too few samples to judge growth (run longer or sample more often)");
    } else {
        v.summary(format!(
            "{judged} series judged: the last fifth of the run within {:.0} % of the fifth before",
            GROWTH * 100.0
        ));
    }
    v
}

pub async fn run(args: SoakArgs) -> anyhow::Result<RunReport> {
    anyhow::ensure!(args.rate > 0, "--rate must be above 0");
    let mut session = Session::start("load-soak", args.common.clone(), args.goose.clone()).await?;
    let retention = humantime::format_duration(args.retention).to_string();
    let spec = session.spec(&[
        "--dedupe-retention".into(),
        retention.clone(),
        "--idempotency-ttl".into(),
        retention.clone(),
        "--task-retention".into(),
        retention,
    ]);
    let loaded = session.load(&spec).await?;
    let names = ["api".to_string()]
        .into_iter()
        .chain((0..).map(|i| format!("worker-{i}")));
    let probe = Probe {
        http: reqwest::Client::new(),
        base_url: loaded.target.base_url.clone(),
        pids: names.zip(loaded.target.pids.iter().copied()).collect(),
        dir: loaded.target.dir.clone(),
    };
    let sampler = tokio::spawn(sample(probe, args.sample_every, args.duration));
    let step = Step {
        label: format!(
            "soak @ {} req/s for {}",
            args.rate,
            humantime::format_duration(args.duration)
        ),
        stem: "soak".into(),
        users: (args.rate / 4).clamp(16, 1024),
        run_time: args.duration,
        rate: Some(args.rate),
        thresholds: Vec::new(),
        abort_on_threshold: false,
        print: false,
        max_requests: None,
    };
    eprintln!(
        "soak: {} (sampled every {:?})",
        step.label, args.sample_every
    );
    let mut runner = session.runner();
    // The run's own bound: what the rate sends in the duration, and a fifth more.
    let expected = args.rate as f64 * args.duration.as_secs_f64() * 1.2;
    runner.max_requests = runner.max_requests.max(expected as u64);
    let result = runner
        .run(&loaded.workload, args.mix, &step, &loaded.target.sut_args)
        .await;
    let mut series = sampler.await?;
    series.extend(log_rate(&series));
    loaded.stop().await;
    let measured = result?;
    eprintln!("{}", summary_line(&measured));
    let verdict = judge(&series);
    for s in &series {
        if let (Some(first), Some(last)) = (s.points.first(), s.points.last()) {
            println!(
                "  {:<28} start {:>14.0}  end {:>14.0}",
                s.name, first[1], last[1]
            );
        }
    }
    let load = LoadReport {
        profile: "soak".into(),
        steps: vec![measured],
        soak: Some(Soak {
            retention_s: args.retention.as_secs_f64(),
            series,
        }),
        ..Default::default()
    };
    let parameters = BTreeMap::from([
        ("rate".to_string(), serde_json::json!(args.rate)),
        (
            "duration_s".to_string(),
            serde_json::json!(args.duration.as_secs()),
        ),
    ]);
    session.finish(parameters, vec![verdict], load, true)
}

/// Samples until the load's duration has passed; the series by name.
async fn sample(probe: Probe, every: Duration, duration: Duration) -> Vec<Series> {
    let started = tokio::time::Instant::now();
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    while started.elapsed() <= duration {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        let sampled = probe.sample().await;
        eprintln!("{}", progress(t, duration, &sampled));
        for (name, value) in sampled {
            series
                .entry(name.clone())
                .or_insert_with(|| Series::new(&name, "s", unit(&name)))
                .push(t, value);
        }
    }
    series.into_values().collect()
}

fn unit(name: &str) -> &'static str {
    if name.starts_with("rows") || name == "outbox backlog" {
        "rows"
    } else {
        "bytes"
    }
}

/// One line of progress per sample, so a half-hour run shows how it goes.
fn progress(t: f64, duration: Duration, sampled: &[(String, f64)]) -> String {
    let mut sampled: Vec<&(String, f64)> = sampled.iter().collect();
    // `/metrics` lists its series in no fixed order; lines that do are easier to follow.
    sampled.sort_by(|a, b| a.0.cmp(&b.0));
    let values: Vec<String> = sampled
        .into_iter()
        .map(|(name, v)| match unit(name) {
            "rows" => format!("{name} {v:.0}"),
            _ => format!("{name} {:.1} MB", v / 1e6),
        })
        .collect();
    format!(
        "soak {t:.0} s of {} s: {}",
        duration.as_secs(),
        values.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, values: impl Iterator<Item = f64>) -> Series {
        let mut s = Series::new(name, "s", "rows");
        for (i, v) in values.enumerate() {
            s.push(i as f64, v);
        }
        s
    }

    #[test]
    fn a_plateau_passes_and_steady_growth_fails() {
        let flat = series(
            "rows: deliveries",
            (0..50).map(|i| 5000.0 + f64::from(i % 3)),
        );
        assert_eq!(judge(&[flat]).validity, reports::Validity::Valid);
        let growing = series("rows: deliveries", (0..50).map(|i| 1000.0 * f64::from(i)));
        let v = judge(&[growing]);
        assert_eq!(v.anomaly_count("still_growing"), 1);
    }

    #[test]
    fn the_log_is_judged_by_its_rate() {
        let steady = series(LOG_BYTES, (0..50).map(|i| 1e6 * f64::from(i)));
        let rate = log_rate(&[steady]).expect("a rate");
        assert_eq!(rate.points.len(), 49);
        assert_eq!(judge(&[rate]).validity, reports::Validity::Valid);
        let piling_up = series(LOG_BYTES, (0..50).map(|i| 1e4 * f64::from(i * i)));
        let v = judge(&[log_rate(&[piling_up]).expect("a rate")]);
        assert_eq!(v.anomaly_count("still_growing"), 1);
        let alone = series(LOG_BYTES, (0..50).map(|i| 1e6 * f64::from(i)));
        assert_eq!(
            judge(&[alone]).validity,
            reports::Validity::Unknown,
            "the volume alone is not judged"
        );
    }

    #[test]
    fn progress_shows_each_sample_in_its_unit() {
        let sampled = [
            ("rows: deliveries".to_string(), 1234.0),
            ("RSS api".to_string(), 52_400_000.0),
        ];
        assert_eq!(
            progress(61.2, Duration::from_secs(1800), &sampled),
            "soak 61 s of 1800 s: RSS api 52.4 MB, rows: deliveries 1234"
        );
    }

    #[test]
    fn store_gauges_are_read() {
        let text = "reference_store_rows{table=\"deliveries\"} 12\nreference_store_bytes 4096\nreference_outbox_backlog NaN\n";
        assert_eq!(
            gauges(text),
            vec![
                ("rows: deliveries".to_string(), 12.0),
                ("store bytes".to_string(), 4096.0)
            ]
        );
    }
}
