//! The `reference` binary as a real OS process, so that tests can kill -9 it or send SIGTERM.

use std::{
    net::TcpListener,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use nix::{sys::signal, unistd::Pid};

use super::{wait_until, Client};

pub struct Proc {
    child: Child,
    pub client: Client,
    pub log: std::path::PathBuf,
}

/// A port free right now (the process binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Proc {
    /// Starts `reference <mode> <args>` and waits until `/healthz` answers.
    pub async fn start(mode: &str, args: &[String], log_dir: &std::path::Path) -> Proc {
        let port = free_port();
        let log = log_dir.join(format!("{mode}-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut args = args.to_vec();
        super::override_args(&mut args, &["--http-addr", &format!("127.0.0.1:{port}")]);
        let child = Command::new(env!("CARGO_BIN_EXE_reference"))
            .arg(mode)
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("reference binary starts");
        let client = Client::new(format!("http://127.0.0.1:{port}"));
        let mut proc = Proc { child, client, log };
        let probe = proc.client.clone();
        let up = wait_until(Duration::from_secs(20), || {
            let probe = probe.clone();
            async move { probe.http.get(probe.url("/healthz")).send().await.is_ok() }
        })
        .await;
        if !up {
            let _ = proc.child.kill();
            panic!("{mode} did not come up; log:\n{}", proc.log_text());
        }
        proc
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// CPU time the process has used so far (user and system, from `/proc/<pid>/stat`).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the process is running");
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
        let ticks: u64 = after_name
            .split(' ')
            .skip(11)
            .take(2)
            .map(|t| t.parse::<u64>().expect("clock ticks"))
            .sum();
        // In USER_HZ, which Linux fixes at 100 a second for what /proc reports.
        Duration::from_millis(ticks * 10)
    }

    /// kill -9: no chance to settle anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        signal::kill(
            Pid::from_raw(self.child.id() as i32),
            signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit {limit:?} after SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion (start-up errors); returns exit code and stderr.
pub fn run_to_exit(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reference"))
        .args(args)
        .env_remove("AMQP_URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
