//! One process of the system under test: started, killed, paused, restarted on demand, always
//! on the same HTTP address so that clients and links keep working across restarts.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    sync::Mutex,
    time::Duration,
};

use super::SutError;
use crate::proc::Proc;

/// How long a process has to answer `/healthz` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct SutProcess {
    pub name: String,
    pub http_addr: SocketAddr,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    proc: Mutex<Option<Proc>>,
}

impl SutProcess {
    /// Prepares `program args... --http-addr <free port>`, logging to `<log_dir>/<name>.log`.
    pub fn new(
        name: &str,
        program: &Path,
        args: Vec<String>,
        log_dir: &Path,
    ) -> Result<SutProcess, SutError> {
        let http_addr = SocketAddr::from((
            [127, 0, 0, 1],
            crate::infra::free_port().map_err(SutError::Io)?,
        ));
        let mut args = args;
        args.extend(["--http-addr".to_string(), http_addr.to_string()]);
        Ok(SutProcess {
            name: name.to_string(),
            http_addr,
            program: program.to_path_buf(),
            args,
            // The processes' log filter: HARNESS_SUT_LOG, else `info` (every request logged).
            env: vec![(
                "RUST_LOG".into(),
                std::env::var("HARNESS_SUT_LOG").unwrap_or_else(|_| "info".into()),
            )],
            log: log_dir.join(format!("{name}.log")),
            proc: Mutex::new(None),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts the process and waits until it answers `/healthz`.
    pub async fn start(&self) -> Result<(), SutError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let proc = Proc::spawn(&self.name, cmd, &self.log).map_err(SutError::Io)?;
        *self.proc.lock().expect("sut process lock") = Some(proc);
        if self.wait_healthy().await {
            return Ok(());
        }
        let tail = self.log_tail();
        self.kill();
        Err(SutError::Start {
            name: self.name.clone(),
            log_tail: tail,
        })
    }

    async fn wait_healthy(&self) -> bool {
        let url = format!("{}/healthz", self.base_url());
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if !self.is_running() {
                return false;
            }
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn with_proc(&self, act: impl FnOnce(&Proc)) {
        if let Some(p) = self.proc.lock().expect("sut process lock").as_ref() {
            act(p);
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.proc
            .lock()
            .expect("sut process lock")
            .as_ref()
            .map(Proc::pid)
    }

    pub fn is_running(&self) -> bool {
        self.proc
            .lock()
            .expect("sut process lock")
            .as_ref()
            .is_some_and(Proc::is_running)
    }

    /// kill -9.
    pub fn kill(&self) {
        self.with_proc(Proc::kill);
    }

    /// SIGSTOP: the process holds its connections and answers nothing.
    pub fn pause(&self) {
        self.with_proc(Proc::pause);
    }

    pub fn resume(&self) {
        self.with_proc(Proc::resume);
    }

    /// kill -9 if running, then start again.
    pub async fn restart(&self) -> Result<(), SutError> {
        self.kill();
        self.start().await
    }

    /// SIGTERM and wait up to `grace` (then kill -9); the exit status of a graceful exit.
    pub async fn stop(&self, grace: Duration) -> Option<ExitStatus> {
        let proc = self.proc.lock().expect("sut process lock").take();
        match proc {
            Some(p) => p.terminate(grace).await,
            None => None,
        }
    }

    pub fn log_tail(&self) -> String {
        crate::proc::tail(&self.log, 20)
    }
}
