//! OS processes the harness starts (SUT processes, broker nodes, servers).
//!
//! Each runs in its own process group, so a signal reaches the whole tree (a start script and
//! the VM it launched). None outlives the harness: each is spawned from one long-lived thread
//! with `PR_SET_PDEATHSIG`, so it is killed if the harness dies, and every live group is killed
//! when the harness exits normally (`atexit`), which also removes registered directories.
//! Output goes to a log file in the run directory.

use std::{
    collections::BTreeSet,
    fs::OpenOptions,
    io,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Mutex, OnceLock},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};

/// Process groups alive now; killed at exit.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Directories to delete at exit (e.g. broker data of nodes shared by a test run).
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn at_exit() {
    let groups: Vec<i32> = LIVE
        .lock()
        .map(|l| l.iter().copied().collect())
        .unwrap_or_default();
    for pgid in groups {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    let dirs: Vec<PathBuf> = DIRS.lock().map(|d| d.clone()).unwrap_or_default();
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// The thread every child is forked from. `PR_SET_PDEATHSIG` fires when the forking *thread*
/// exits, so it must be one that lives as long as the process (a test's runtime threads do not).
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        // SAFETY: registering a plain extern "C" fn that only signals and deletes files.
        unsafe { libc::atexit(at_exit) };
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread starts");
        Mutex::new(tx)
    })
}

/// The last `lines` lines of a log file (empty when unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Deletes `dir` when the harness exits.
pub fn remove_at_exit(dir: &Path) {
    spawner(); // installs the exit hook
    DIRS.lock().expect("dirs lock").push(dir.to_path_buf());
}

/// A started OS process and its process group.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pid: i32,
    child: Mutex<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> io::Result<Proc> {
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setpgid(0, 0) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        spawner()
            .lock()
            .expect("spawner lock")
            .send((cmd, tx))
            .expect("spawner thread alive");
        let child = rx.recv().expect("spawner replies")?;
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        LIVE.lock().expect("live lock").insert(pid);
        Ok(Proc {
            name: name.to_string(),
            pid,
            child: Mutex::new(child),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn signal(&self, sig: Signal) {
        let _ = nix::sys::signal::killpg(Pid::from_raw(self.pid), sig);
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        let status = self
            .child
            .lock()
            .expect("child lock")
            .try_wait()
            .ok()
            .flatten();
        if status.is_some() {
            LIVE.lock().expect("live lock").remove(&self.pid);
        }
        status
    }

    pub fn is_running(&self) -> bool {
        self.try_status().is_none()
    }

    /// kill -9 of the whole group; returns once the process is reaped.
    pub fn kill(&self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.lock().expect("child lock").wait();
        LIVE.lock().expect("live lock").remove(&self.pid);
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    ///
    /// Returns once the process is stopped: a signal is delivered asynchronously, and a
    /// busy machine could otherwise serve a request after `pause` has returned.
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
        self.await_stopped(true);
    }

    /// SIGCONT after [`Proc::pause`]; returns once the process runs again.
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
        self.await_stopped(false);
    }

    /// Polls `/proc/<pid>/stat` until the process is (or is no longer) stopped, for up to 2 s.
    fn await_stopped(&self, stopped: bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
            // The state letter follows the command name, which is in parentheses.
            let state = stat
                .rsplit(") ")
                .next()
                .and_then(|rest| rest.chars().next());
            match state {
                None => return, // gone
                Some(s) if (s == 'T') == stopped => return,
                Some(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub async fn wait(&self, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Returns the exit status of a
    /// graceful exit, `None` when it had to be killed.
    pub async fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
        self.resume(); // a paused process cannot handle SIGTERM
        self.signal(Signal::SIGTERM);
        let status = self.wait(grace).await;
        if status.is_none() {
            self.kill();
        }
        status
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[tokio::test]
    async fn signals_reach_the_process_and_its_log_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("p.log");
        let p = Proc::spawn("sleeper", sh("echo started; exec sleep 30"), &log).unwrap();
        for _ in 0..100 {
            if p.log_tail(1).contains("started") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(p.is_running());
        p.pause();
        let state = || std::fs::read_to_string(format!("/proc/{}/stat", p.pid())).unwrap();
        assert!(
            state().rsplit(") ").next().unwrap().starts_with('T'),
            "stopped once pause returns"
        );
        p.resume();
        assert!(
            !state().rsplit(") ").next().unwrap().starts_with('T'),
            "running once resume returns"
        );
        let status = p.terminate(Duration::from_secs(5)).await;
        assert!(
            status.is_some_and(|s| !s.success()),
            "SIGTERM ends sleep: {status:?}"
        );
        assert!(
            p.log_tail(5).contains("started"),
            "output is captured in the log"
        );
    }

    #[tokio::test]
    async fn kill_takes_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let p = Proc::spawn("tree", sh(&script), &dir.path().join("t.log")).unwrap();
        let mut grandchild = None;
        for _ in 0..100 {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                grandchild = Some(pid);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grandchild = grandchild.expect("grandchild started");
        p.kill();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Gone, or a zombie waiting for init to reap it.
        let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let alive = state
            .split(") ")
            .nth(1)
            .is_some_and(|rest| !rest.starts_with('Z'));
        assert!(!alive, "the grandchild died with its group: {state}");
    }
}
