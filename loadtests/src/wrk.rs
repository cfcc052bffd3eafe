//! Debian's `wrk`, driven by the tool: the lightest generator at hand (goose spends ~2.7× its
//! CPU per request, which compresses any ratio on 2 cores). Requests come from a Lua script
//! written to a private temporary directory, so the token is never on a command line.

use std::{process::Stdio, time::Duration};

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrkResult {
    pub rps: f64,
    pub p99_ms: Option<f64>,
    pub requests: u64,
    /// Responses other than 2xx/3xx.
    pub non_2xx: u64,
}

/// The request wrk sends.
pub enum Request<'a> {
    Get {
        path: &'a str,
    },
    /// A task submission with a fresh Idempotency-Key each time.
    SubmitTask {
        body: &'a str,
    },
}

/// A run of wrk.
pub struct Wrk<'a> {
    pub base_url: &'a str,
    pub token: Option<&'a str>,
    pub connections: usize,
    pub duration: Duration,
    /// Pin wrk to this CPU (with `taskset`).
    pub cpu: Option<usize>,
}

/// Whether `wrk` is on the PATH.
pub fn available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn lua_string(s: &str) -> String {
    format!("{s:?}")
}

fn script(req: &Request, token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| {
        format!(
            "wrk.headers[\"Authorization\"] = {}\n",
            lua_string(&format!("Bearer {t}"))
        )
    });
    match req {
        Request::Get { path } => format!(
            "wrk.method = \"GET\"\nwrk.path = {}\n{auth}",
            lua_string(path)
        ),
        Request::SubmitTask { body } => format!(
            "{auth}wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             local run = {}\nlocal n = 0\n\
             request = function()\n  n = n + 1\n  \
             wrk.headers[\"Idempotency-Key\"] = run .. \"-\" .. n\n  \
             return wrk.format(\"POST\", \"/api/v1/tasks\", nil, {})\nend\n",
            lua_string(&uuid::Uuid::new_v4().simple().to_string()),
            lua_string(body)
        ),
    }
}

impl Wrk<'_> {
    /// Runs wrk (one thread) with `req`.
    pub async fn run(&self, req: &Request<'_>) -> anyhow::Result<WrkResult> {
        let dir = tempfile::tempdir()?;
        let script_path = dir.path().join("request.lua");
        std::fs::write(&script_path, script(req, self.token))?;
        let mut cmd = match self.cpu {
            Some(cpu) => {
                let mut c = tokio::process::Command::new("taskset");
                c.args(["-c", &cpu.to_string(), "wrk"]);
                c
            }
            None => tokio::process::Command::new("wrk"),
        };
        cmd.args(["-t1", "--latency"])
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .arg("-s")
            .arg(&script_path)
            .arg(self.base_url);
        let out = cmd.output().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot run wrk ({e}); install it (apt-get install wrk) or use --generator goose"
            )
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success(),
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        parse(&text).ok_or_else(|| anyhow::anyhow!("cannot read wrk's output:\n{text}"))
    }
}

/// Reads wrk's report.
fn parse(text: &str) -> Option<WrkResult> {
    let mut rps = None;
    let mut p99 = None;
    let mut requests = None;
    let mut non_2xx = 0;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = duration_ms(v.trim());
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(0);
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next()?.parse().ok();
        }
    }
    Some(WrkResult {
        rps: rps?,
        p99_ms: p99,
        requests: requests?,
        non_2xx,
    })
}

/// `1.23ms`, `456.00us`, `1.50s` in milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// Pins every thread of process `pid` to `cpu` (with `taskset`); false when it could not.
pub fn pin(pid: i32, cpu: usize) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Lets `pid`'s threads run on every CPU again.
pub fn unpin(pid: i32) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let list = format!("0-{}", cpus.saturating_sub(1));
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &list, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 10s test @ http://127.0.0.1:8080
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   660.52us  120.00us   5.00ms   90.00%
  Latency Distribution
     50%  640.00us
     75%  700.00us
     90%  800.00us
     99%    1.21ms
  963201 requests in 10.00s, 200.00MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  96300.12
Transfer/sec:     20.00MB
";

    #[test]
    fn wrk_output_is_read() {
        let r = parse(OUTPUT).unwrap();
        assert_eq!(r.requests, 963_201);
        assert_eq!(r.non_2xx, 3);
        assert!((r.rps - 96300.12).abs() < 1e-6);
        assert!((r.p99_ms.unwrap() - 1.21).abs() < 1e-9);
        assert_eq!(duration_ms("640.00us"), Some(0.64));
        assert_eq!(duration_ms("1.50s"), Some(1500.0));
        assert!(parse("garbage").is_none());
    }

    #[test]
    fn scripts_carry_the_token_and_fresh_keys() {
        let s = script(
            &Request::SubmitTask {
                body: "{\"type\":\"echo\"}",
            },
            Some("t0k"),
        );
        assert!(s.contains("Bearer t0k"));
        assert!(s.contains("Idempotency-Key"));
        assert!(s.contains("\"{\\\"type\\\":\\\"echo\\\"}\""));
        let g = script(
            &Request::Get {
                path: "/api/v1/users/1",
            },
            None,
        );
        assert!(g.contains("wrk.path = \"/api/v1/users/1\"") && !g.contains("Authorization"));
    }
}
