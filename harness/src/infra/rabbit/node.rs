//! One private RabbitMQ node and the faults on it.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use lapin::{Connection, ConnectionProperties};

use super::{installed, tool, RabbitError, START_TIMEOUT};
use crate::proc::Proc;

/// Limit for one CLI call (each starts an Erlang VM: 0.3–1 s on a busy machine).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the node is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Interval between readiness probes.
const POLL: Duration = Duration::from_millis(250);
/// RabbitMQ's default `vm_memory_high_watermark`, restored to clear the alarm.
const DEFAULT_WATERMARK: &str = "0.4";
/// RabbitMQ's default `disk_free_limit`, restored to clear the alarm.
const DEFAULT_DISK_FREE_LIMIT: &str = "50MB";
/// Last lines of the server's output quoted when it fails to start.
const LOG_TAIL_LINES: usize = 25;
/// First error lines of a failed boot quoted before them.
const FIRST_ERROR_LINES: usize = 12;
/// Distribution ports of our CLI calls: each CLI VM listens on the first free one. The default
/// 35672–35682 allows only 11 CLI calls at once on the whole machine (every test process and
/// the machine broker's tools share it); a cluster's start alone runs several.
const CTL_DIST_PORTS: (u16, u16) = (36000, 36999);
/// Fresh ports to try when another process took a port between our check and the VM's bind.
const PORT_ATTEMPTS: usize = 3;

/// A resource alarm of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    Memory,
    Disk,
}

impl Alarm {
    fn command(self, on: bool) -> &'static [&'static str] {
        match (self, on) {
            (Alarm::Memory, true) => &["set_vm_memory_high_watermark", "absolute", "1"],
            (Alarm::Memory, false) => &["set_vm_memory_high_watermark", DEFAULT_WATERMARK],
            (Alarm::Disk, true) => &["set_disk_free_limit", "100000GB"],
            (Alarm::Disk, false) => &["set_disk_free_limit", DEFAULT_DISK_FREE_LIMIT],
        }
    }

    /// How `rabbitmq-diagnostics alarms` names it.
    fn label(self) -> &'static str {
        match self {
            Alarm::Memory => "Memory",
            Alarm::Disk => "Free disk space",
        }
    }
}

/// What differs between nodes beyond their ports and directories.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Erlang cookie; nodes of one cluster (and the CLI calls to them) must share it.
    pub cookie: String,
    /// Plugins enabled at boot.
    pub plugins: Vec<String>,
    /// Extra lines for the node's `rabbitmq.conf` (new-style `key = value`).
    pub config: Vec<String>,
    /// Loopback address the node's outgoing distribution connections come from, so that a
    /// firewall rule can tell one member's inter-node traffic from another's (partitions).
    pub dist_source: Option<std::net::Ipv4Addr>,
}

impl Default for NodeOptions {
    /// A fresh random cookie, `rabbitmq_management_agent`, without which a quorum queue led
    /// by the node shows no message count in `list_queues`, and `rabbitmq_prometheus`, which
    /// tells what AMQP cannot: the messages consumers hold unacknowledged.
    fn default() -> Self {
        let cookie = (0..24)
            .map(|_| char::from(b'A' + rand::random_range(0..26u8)))
            .collect();
        NodeOptions {
            cookie,
            plugins: vec![
                "rabbitmq_management_agent".into(),
                "rabbitmq_prometheus".into(),
            ],
            config: Vec::new(),
            dist_source: None,
        }
    }
}

/// A private RabbitMQ node on loopback: its own ports, data, logs, HOME and cookie.
///
/// Methods take `&self` so a node can be shared (`Arc<Node>`) between a test and the faults it
/// injects. The VM is killed when the `Node` is dropped and when the harness exits.
#[derive(Debug)]
pub struct Node {
    name: String,
    port: u16,
    dist_port: u16,
    /// Where `rabbitmq_prometheus` answers, when enabled.
    metrics_port: u16,
    dist_source: Option<std::net::Ipv4Addr>,
    dir: PathBuf,
    /// The running server (the `rabbitmq-server` script and the VM in its process group).
    proc: Mutex<Option<Arc<Proc>>>,
    paused: AtomicBool,
    alarm: AtomicBool,
    disk_alarm: AtomicBool,
    /// Serializes stop and start so two of them never race on one data directory.
    lifecycle: tokio::sync::Mutex<()>,
    last_start: Mutex<Option<Duration>>,
    /// Length of the server log when the current process was spawned.
    log_start: AtomicU64,
}

impl Node {
    /// Starts node number `index` under `base` with [`NodeOptions::default`] and waits until it
    /// accepts AMQP connections (at most a minute).
    pub async fn start(base: &Path, index: usize) -> Result<Node, RabbitError> {
        Node::start_with(base, index, &NodeOptions::default()).await
    }

    /// Starts a node with explicit options (a cluster passes one cookie to all its nodes).
    pub async fn start_with(
        base: &Path,
        index: usize,
        opts: &NodeOptions,
    ) -> Result<Node, RabbitError> {
        if !installed() {
            return Err(RabbitError::NotInstalled(tool("rabbitmq-server")));
        }
        let mut attempt = 1;
        loop {
            let node = Node::prepare(base, index, opts)?;
            match node.boot().await {
                Ok(()) => return Ok(node),
                Err(e) if attempt < PORT_ATTEMPTS && node.lost_port_race() => {
                    tracing::warn!(
                        node = %node.name, error = %e,
                        "a port was taken before the node bound it; retrying on other ports"
                    );
                    let dir = node.dir.clone();
                    drop(node);
                    let _ = fs::remove_dir_all(dir);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Picks a name and ports and writes the node's files; starts nothing.
    fn prepare(base: &Path, index: usize, opts: &NodeOptions) -> Result<Node, RabbitError> {
        static SEQ: AtomicUsize = AtomicUsize::new(1);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let short = format!("h{index}-{}-{seq}", std::process::id());
        let node = Node {
            name: format!("{short}@localhost"),
            port: free_port()?,
            dist_port: free_port()?,
            metrics_port: free_port()?,
            dist_source: opts.dist_source,
            dir: base.join(&short),
            proc: Mutex::new(None),
            paused: AtomicBool::new(false),
            alarm: AtomicBool::new(false),
            disk_alarm: AtomicBool::new(false),
            lifecycle: tokio::sync::Mutex::new(()),
            last_start: Mutex::new(None),
            log_start: AtomicU64::new(0),
        };
        node.write_files(opts)?;
        Ok(node)
    }

    fn write_files(&self, opts: &NodeOptions) -> Result<(), RabbitError> {
        for sub in ["home", "mnesia", "log"] {
            let path = self.dir.join(sub);
            fs::create_dir_all(&path).map_err(io_error("cannot create", &path))?;
        }
        // Erlang refuses a cookie file others can read; the CLI silently creates a different
        // one when it is missing, so it must exist before the first CLI call.
        let cookie = self.dir.join("home/.erlang.cookie");
        write(&cookie, &opts.cookie)?;
        fs::set_permissions(&cookie, fs::Permissions::from_mode(0o400))
            .map_err(io_error("cannot restrict", &cookie))?;
        // Empty, so the system's rabbitmq-env.conf (NODENAME=rabbit@localhost) is not read.
        write(&self.dir.join("rabbitmq-env.conf"), "")?;
        // Our own config file replaces /etc/rabbitmq/rabbitmq.conf, whose listener is the
        // machine broker's 127.0.0.1:5672. The AMQP listener comes from RABBITMQ_NODE_PORT:
        // naming it here too would bind it twice (eaddrinuse).
        let mut conf = vec![
            "log.console = true".to_string(),
            "log.console.level = info".into(),
            // Per-queue figures, refreshed every second rather than every 5 s: the samplers
            // read a fault's unacknowledged messages from them.
            format!("prometheus.tcp.port = {}", self.metrics_port),
            "prometheus.tcp.ip = 127.0.0.1".into(),
            "prometheus.return_per_object_metrics = true".into(),
            "collect_statistics_interval = 1000".into(),
        ];
        conf.extend(opts.config.iter().cloned());
        write(&self.dir.join("rabbitmq.conf"), &(conf.join("\n") + "\n"))?;
        self.write_plugins(&opts.plugins)
    }

    /// Rewrites the enabled-plugins file; read at boot and by `rabbitmqctl start_app`.
    pub(super) fn write_plugins(&self, plugins: &[String]) -> Result<(), RabbitError> {
        let list = format!("[{}].\n", plugins.join(","));
        write(&self.dir.join("enabled_plugins"), &list)
    }

    /// The environment of the server and of every CLI call to it.
    fn env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &str| self.dir.join(p).display().to_string();
        vec![
            ("HOME", path("home")),
            ("RABBITMQ_NODENAME", self.name.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT", self.port.to_string()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_PID_FILE", path("rabbitmq.pid")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf")),
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", self.erl_args()),
            // A VM that dies early writes erl_crash.dump into its working directory otherwise.
            ("ERL_CRASH_DUMP", path("log/erl_crash.dump")),
        ]
    }

    /// The VM's extra arguments. The broker checks `consumer_timeout` on each channel's tick,
    /// once a minute by default; once a second lets a run's low timeout take effect when it
    /// says. A quorum queue publishes its figures on its own tick, every 5 s by default;
    /// every second, like the other queues' statistics here.
    fn erl_args(&self) -> String {
        let mut args = "-kernel inet_dist_use_interface {127,0,0,1} \
                        -rabbit channel_tick_interval 1000 \
                        -rabbit quorum_tick_interval 1000"
            .to_string();
        if let Some(ip) = self.dist_source {
            let [a, b, c, d] = ip.octets();
            args += &format!(" -kernel inet_dist_connect_options [{{ip,{{{a},{b},{c},{d}}}}}]");
        }
        args
    }

    /// Where the node's outgoing distribution connections come from, if set.
    pub fn dist_source(&self) -> Option<std::net::Ipv4Addr> {
        self.dist_source
    }

    /// The node's name, e.g. `h1-4242-1@localhost`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Erlang distribution (clustering and CLI) port on 127.0.0.1.
    pub fn dist_port(&self) -> u16 {
        self.dist_port
    }

    /// The Prometheus endpoint of `rabbitmq_prometheus` (per-queue figures), when enabled.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` (guest may log in over loopback).
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The node's directory (data, logs, HOME, config).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's console output, kept across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The last `lines` lines of the server's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How long the last start took, from spawn to accepting AMQP connections.
    pub fn last_start_time(&self) -> Option<Duration> {
        *self.last_start.lock().expect("start time lock")
    }

    /// Is the server process alive? A paused node counts as running.
    pub fn is_running(&self) -> bool {
        self.running_proc().is_some()
    }

    /// Is the node stopped with SIGSTOP?
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    fn running_proc(&self) -> Option<Arc<Proc>> {
        let current = self.proc.lock().expect("proc lock").clone();
        current.filter(|p| p.is_running())
    }

    /// Forgets `proc` unless a newer process has replaced it meanwhile.
    fn forget(&self, proc: &Arc<Proc>) {
        let mut current = self.proc.lock().expect("proc lock");
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, proc)) {
            *current = None;
        }
    }

    /// Spawns the server and waits until it serves AMQP; kills it if it does not.
    async fn boot(&self) -> Result<(), RabbitError> {
        let began = Instant::now();
        let proc = Arc::new(self.spawn()?);
        *self.proc.lock().expect("proc lock") = Some(proc.clone());
        // A fresh VM has neither a stop signal pending nor the runtime watermark.
        self.paused.store(false, Ordering::SeqCst);
        self.alarm.store(false, Ordering::SeqCst);
        self.disk_alarm.store(false, Ordering::SeqCst);
        if let Err(e) = self.wait_ready(&proc, began).await {
            proc.kill();
            self.forget(&proc);
            return Err(e);
        }
        let took = began.elapsed();
        *self.last_start.lock().expect("start time lock") = Some(took);
        tracing::info!(node = %self.name, port = self.port, ?took, "RabbitMQ node ready");
        Ok(())
    }

    fn spawn(&self) -> Result<Proc, RabbitError> {
        let server = tool("rabbitmq-server");
        let mut cmd = std::process::Command::new(&server);
        for key in inherited_rabbitmq_vars() {
            cmd.env_remove(key);
        }
        cmd.envs(self.env()).current_dir(&self.dir);
        let logged = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        self.log_start.store(logged, Ordering::SeqCst);
        Proc::spawn(&self.name, cmd, &self.log_path()).map_err(io_error("cannot start", &server))
    }

    async fn wait_ready(&self, proc: &Proc, began: Instant) -> Result<(), RabbitError> {
        let deadline = began + START_TIMEOUT;
        self.await_startup(proc, deadline).await?;
        self.await_amqp(proc, deadline).await
    }

    async fn await_startup(&self, proc: &Proc, deadline: Instant) -> Result<(), RabbitError> {
        // Each CLI call boots an Erlang VM (0.3–1 s of CPU that the booting node wants), and
        // `await_startup` fails at once until the node has registered with epmd, which it does
        // right after opening its distribution port: wait for that port first, for free.
        while !listening_on_loopback(self.dist_port) && Instant::now() < deadline {
            self.check_booting(proc)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut last = String::from("not tried");
        loop {
            self.check_booting(proc)?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.start_error(format!(
                    "`rabbitmqctl await_startup` did not succeed within {START_TIMEOUT:?}; last: {last}"
                )));
            }
            // Exits 69 at once until the VM has registered with epmd, then blocks until boot
            // completes.
            let secs = left.as_secs().max(1).to_string();
            let limit = left + Duration::from_secs(5);
            match self
                .run("rabbitmqctl", &["await_startup", "--timeout", &secs], limit)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn await_amqp(&self, proc: &Proc, deadline: Instant) -> Result<(), RabbitError> {
        loop {
            self.check_booting(proc)?;
            let props = ConnectionProperties::default();
            let url = self.amqp_url();
            let attempt = Connection::connect(&url, props);
            let error = match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close(200, "ready".into()).await;
                    return Ok(());
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 5 s".into(),
            };
            if Instant::now() >= deadline {
                return Err(self.start_error(format!(
                    "AMQP on 127.0.0.1:{} refuses connections: {error}",
                    self.port
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn check_booting(&self, proc: &Proc) -> Result<(), RabbitError> {
        match proc.try_status() {
            Some(status) => {
                Err(self.start_error(format!("the server exited ({status}) while booting")))
            }
            None => Ok(()),
        }
    }

    fn start_error(&self, reason: String) -> RabbitError {
        RabbitError::Start {
            node: self.name.clone(),
            reason,
            log: self.log_path(),
            excerpt: boot_excerpt(&self.this_boot_log()),
        }
    }

    /// The server's output since the latest spawn (the log file is kept across restarts).
    fn this_boot_log(&self) -> String {
        let all = fs::read(self.log_path()).unwrap_or_default();
        let from = usize::try_from(self.log_start.load(Ordering::SeqCst)).unwrap_or(0);
        String::from_utf8_lossy(all.get(from..).unwrap_or_default()).into_owned()
    }

    fn lost_port_race(&self) -> bool {
        self.this_boot_log().contains("eaddrinuse")
    }

    /// Runs `rabbitmqctl -n <node> <args>` with this node's HOME and cookie; returns stdout.
    pub async fn ctl(&self, args: &[&str]) -> Result<String, RabbitError> {
        self.run("rabbitmqctl", args, CLI_TIMEOUT).await
    }

    /// Runs `rabbitmq-queues -n <node> <args>` (quorum queue membership and status).
    pub async fn queues(&self, args: &[&str]) -> Result<String, RabbitError> {
        self.run("rabbitmq-queues", args, CLI_TIMEOUT).await
    }

    /// Runs `rabbitmq-diagnostics -n <node> <args>` (alarms, health checks).
    pub async fn diagnostics(&self, args: &[&str]) -> Result<String, RabbitError> {
        self.run("rabbitmq-diagnostics", args, CLI_TIMEOUT).await
    }

    async fn run(&self, name: &str, args: &[&str], limit: Duration) -> Result<String, RabbitError> {
        let fail = |detail: String| RabbitError::Cli {
            node: self.name.clone(),
            command: format!("{name} {}", args.join(" ")),
            detail,
        };
        let mut cmd = tokio::process::Command::new(tool(name));
        for key in inherited_rabbitmq_vars() {
            cmd.env_remove(key);
        }
        cmd.arg("-n")
            .arg(&self.name)
            .args(args)
            .envs(self.env())
            .env("RABBITMQ_CTL_DIST_PORT_MIN", CTL_DIST_PORTS.0.to_string())
            .env("RABBITMQ_CTL_DIST_PORT_MAX", CTL_DIST_PORTS.1.to_string())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(limit, cmd.output()).await {
            Err(_) => return Err(fail(format!("no answer within {limit:?}"))),
            Ok(Err(e)) => return Err(fail(format!("cannot run it: {e}"))),
            Ok(Ok(out)) => out,
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(fail(format!(
            "{}: {}",
            out.status,
            first_lines(&format!("{stderr}\n{stdout}"), 12)
        )))
    }

    /// Graceful stop (`rabbitmqctl stop`), waiting for the process to exit. A node that does not
    /// exit within a minute is killed and reported. Stopping a stopped node does nothing.
    pub async fn stop(&self) -> Result<(), RabbitError> {
        let _one = self.lifecycle.lock().await;
        let Some(proc) = self.running_proc() else {
            return Ok(());
        };
        self.resume(); // a stopped VM cannot be asked to stop
        let asked = self.ctl(&["stop"]).await;
        let exited = match asked {
            Ok(_) => proc.wait(STOP_TIMEOUT).await,
            // SIGTERM makes RabbitMQ stop gracefully too; `terminate` kills after the grace.
            Err(_) => proc.terminate(Duration::from_secs(15)).await,
        };
        let result = match (asked, exited) {
            (_, Some(_)) => Ok(()),
            (Ok(_), None) => {
                proc.kill();
                Err(self.error(format!(
                    "still running {STOP_TIMEOUT:?} after `rabbitmqctl stop`; killed it"
                )))
            }
            (Err(e), None) => Err(e),
        };
        self.forget(&proc);
        tracing::info!(node = %self.name, graceful = result.is_ok(), "RabbitMQ node stopped");
        result
    }

    /// Starts a stopped or killed node again with the same name, ports and data, so it keeps
    /// its durable queues, persistent messages and cluster membership.
    pub async fn start_again(&self) -> Result<(), RabbitError> {
        let _one = self.lifecycle.lock().await;
        if self.running_proc().is_some() {
            return Err(self.error("cannot start it again: it is running".into()));
        }
        self.boot().await
    }

    /// Graceful stop, then start again.
    pub async fn restart(&self) -> Result<(), RabbitError> {
        self.stop().await?;
        self.start_again().await
    }

    /// kill -9 of the VM (and its start script); returns once it is gone (at once). Does
    /// nothing to a node that is not running.
    pub fn kill(&self) {
        let proc = self.proc.lock().expect("proc lock").take();
        self.paused.store(false, Ordering::SeqCst);
        if let Some(proc) = proc.filter(|p| p.is_running()) {
            proc.kill();
            tracing::info!(node = %self.name, "RabbitMQ node killed (SIGKILL)");
        }
    }

    /// SIGSTOP: the node keeps its sockets open but answers nothing, like a hung VM. Does
    /// nothing to a node that is not running.
    pub fn pause(&self) {
        if let Some(proc) = self.running_proc() {
            proc.pause();
            self.paused.store(true, Ordering::SeqCst);
        }
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&self) {
        if let Some(proc) = self.running_proc() {
            proc.resume();
        }
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Raises or clears a resource alarm, which blocks every publishing connection of the
    /// node (of the whole cluster, in a cluster): memory by a watermark of 1 byte (cleared by
    /// the default 0.4 of RAM), disk by a free-space limit no disk meets (cleared by the
    /// default 50 MB). Returns once the node reports the alarm in the requested state. A
    /// restart clears it.
    pub async fn set_alarm(&self, alarm: Alarm, on: bool) -> Result<(), RabbitError> {
        self.ctl(alarm.command(on)).await?;
        let flag = match alarm {
            Alarm::Memory => &self.alarm,
            Alarm::Disk => &self.disk_alarm,
        };
        flag.store(on, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.alarm_active(alarm).await? == on {
                tracing::info!(node = %self.name, ?alarm, on, "alarm set");
                return Ok(());
            }
            if Instant::now() >= deadline {
                let state = if on { "not raised" } else { "still raised" };
                return Err(self.error(format!("{alarm:?} alarm {state} 10 s after setting it")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Raises or clears a memory alarm (see [`Node::set_alarm`]).
    pub async fn set_memory_alarm(&self, on: bool) -> Result<(), RabbitError> {
        self.set_alarm(Alarm::Memory, on).await
    }

    /// Does the node report a memory alarm of its own?
    pub async fn memory_alarm_active(&self) -> Result<bool, RabbitError> {
        self.alarm_active(Alarm::Memory).await
    }

    /// Does the node report this alarm of its own?
    pub async fn alarm_active(&self, alarm: Alarm) -> Result<bool, RabbitError> {
        let out = self
            .diagnostics(&["alarms", "--formatter", "json", "--quiet"])
            .await?;
        Ok(out.contains(&format!("{} alarm on node {}", alarm.label(), self.name)))
    }

    /// Undoes what a fault may have left: resumes a paused node, starts a dead one again,
    /// clears a memory alarm. Returns whether the node had to be started.
    pub async fn heal(&self) -> Result<bool, RabbitError> {
        if self.is_paused() {
            self.resume();
        }
        if !self.is_running() {
            self.start_again().await?;
            return Ok(true);
        }
        if self.alarm.load(Ordering::SeqCst) {
            self.set_alarm(Alarm::Memory, false).await?;
        }
        if self.disk_alarm.load(Ordering::SeqCst) {
            self.set_alarm(Alarm::Disk, false).await?;
        }
        Ok(false)
    }

    fn error(&self, detail: String) -> RabbitError {
        RabbitError::Node {
            node: self.name.clone(),
            detail,
        }
    }
}

/// Does a socket listen on 127.0.0.1:`port`? Read from `/proc/net/tcp`, so the probe starts
/// no VM and opens no connection; `true` when that file cannot be read (the CLI then decides).
fn listening_on_loopback(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return true;
    };
    let local = format!("0100007F:{port:04X}");
    table.lines().any(|line| {
        let mut fields = line.split_whitespace();
        // fields: slot, local address, remote address, state (0A = LISTEN), …
        fields.nth(1) == Some(local.as_str()) && fields.nth(1) == Some("0A")
    })
}

/// `RABBITMQ_*` variables of the harness's own environment: dropped so that, say, an exported
/// `RABBITMQ_USE_LONGNAME` cannot change how a private node names itself.
fn inherited_rabbitmq_vars() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("RABBITMQ_"))
        .collect()
}

/// What explains a failed boot: its first error lines (the cause; a crash report of dozens of
/// lines follows and would push it out of a plain tail), then its last lines.
fn boot_excerpt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let tail_from = lines.len().saturating_sub(LOG_TAIL_LINES);
    let first_errors: Vec<&str> = lines[..tail_from]
        .iter()
        .copied()
        .filter(|l| l.contains("[error]"))
        .take(FIRST_ERROR_LINES)
        .collect();
    let tail = lines[tail_from..].join("\n");
    if first_errors.is_empty() {
        tail
    } else {
        format!("{}\n…\n{tail}", first_errors.join("\n"))
    }
}

fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out = lines[..lines.len().min(n)].join("\n");
    if lines.len() > n {
        out.push_str("\n…");
    }
    out
}

fn free_port() -> Result<u16, RabbitError> {
    crate::infra::free_port().map_err(|_| RabbitError::NoFreePort)
}

fn write(path: &Path, text: &str) -> Result<(), RabbitError> {
    fs::write(path, text).map_err(io_error("cannot write", path))
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RabbitError {
    let path = path.to_path_buf();
    move |source| RabbitError::Io { what, path, source }
}
