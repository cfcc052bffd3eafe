//! RabbitMQ brokers in containers through testcontainers, for machines where an engine runs
//! (design §4: after URLs from the environment and private nodes).
//!
//! Every container uses the host network. With podman, published ports come back with an empty
//! host IP that testcontainers skips, and the engines set up by `scripts/docker.sh` run without a
//! bridge, so instead each broker listens on loopback ports chosen here (never 5672 or 25672,
//! which the machine's shared broker holds), under its own node name, registered with the host's
//! epmd like any other node.
//!
//! Where no registry is reachable the image comes from `scripts/rabbitmq-image.sh`
//! ([`LOCAL_IMAGE`]). The official image ([`DEFAULT_IMAGE`]) works as well where it can be
//! pulled: both honour the same `RABBITMQ_*` variables.
//!
//! testcontainers 0.28 speaks Docker API 1.53 and never negotiates down, so engines that stop
//! below it (Debian bookworm's Docker 20.10 stops at 1.41) are reported as unusable;
//! `scripts/docker.sh` serves podman's compatible API instead.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};
use testcontainers::core::logs::LogFrame;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

/// The image used when neither the caller nor [`IMAGE_ENV`] names one and [`LOCAL_IMAGE`] has
/// not been built: the official image, for machines that reach a registry.
pub const DEFAULT_IMAGE: &str = "rabbitmq:3";
/// The image `scripts/rabbitmq-image.sh` builds locally (Debian bookworm, RabbitMQ 3.10, tini).
pub const LOCAL_IMAGE: &str = "rmq-harness/rabbitmq:3.10-bookworm";
/// Environment variable naming the image when the caller does not.
pub const IMAGE_ENV: &str = "HARNESS_RABBITMQ_IMAGE";
/// How long a broker may take from its container's start to accepting AMQP connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long pulling a missing image may take before giving up.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// The Docker API version testcontainers 0.28 (bollard 0.21) sends on every request.
const TESTCONTAINERS_API: &str = "1.53";
/// Where testcontainers looks first when `DOCKER_HOST` is unset (it ignores podman's sockets).
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// Timeout of each request this module sends to the engine itself.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How much of the container's output errors quote.
const LOG_TAIL_LINES: usize = 40;

/// Why a broker container could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Nothing answers where testcontainers looks.
    #[error(
        "no container engine answers (DOCKER_HOST, {DEFAULT_SOCKET} or a podman socket): run \
         scripts/docker.sh to get one, or set AMQP_URL to use a running broker, or install \
         rabbitmq-server for private nodes"
    )]
    NoEngine,
    /// An engine answers, but testcontainers cannot use it.
    #[error("the container engine at {host} ({server}) cannot be used: {reason}")]
    EngineUnusable {
        /// Where it answers.
        host: String,
        /// What answers.
        server: String,
        /// Why it cannot be used, with what to do.
        reason: String,
    },
    /// The image is neither local nor pullable.
    #[error(
        "image {image} is not available ({detail}); build the local one with \
         scripts/rabbitmq-image.sh (then {IMAGE_ENV}={LOCAL_IMAGE} or no {IMAGE_ENV} at all \
         selects it), or make a registry reachable"
    )]
    ImageMissing {
        /// The image asked for.
        image: String,
        /// What the engine said.
        detail: String,
    },
    /// The engine did not create and start the container in time.
    #[error("the engine did not create and start a container from {image} within {secs} s")]
    EngineTimeout {
        /// The image asked for.
        image: String,
        /// Seconds waited.
        secs: u64,
    },
    /// The engine refused to create or start the container, or the container ended at once.
    #[error("starting a container from {image} failed: {reason}; its output:\n{logs}")]
    Start {
        /// The image asked for.
        image: String,
        /// testcontainers' error, explained where it needs to be.
        reason: String,
        /// The tail of the container's output, if it printed any.
        logs: String,
    },
    /// The broker did not accept AMQP in time, or its container ended first.
    #[error(
        "the broker in container {container} ({image}) did not accept AMQP on {url} within {secs} s \
         ({why}); last lines of its output:\n{logs}"
    )]
    StartTimeout {
        /// Container id.
        container: String,
        /// The image asked for.
        image: String,
        /// The AMQP URL polled.
        url: String,
        /// Seconds waited.
        secs: u64,
        /// The last connection error, or how the container ended.
        why: String,
        /// The tail of the container's output.
        logs: String,
    },
    /// Stopping or removing the container failed.
    #[error("stopping container {container} failed: {source}")]
    Stop {
        /// Container id.
        container: String,
        /// testcontainers' error.
        #[source]
        source: testcontainers::TestcontainersError,
    },
    /// Choosing free loopback ports failed.
    #[error("choosing free loopback ports failed: {0}")]
    Ports(#[source] io::Error),
}

// ---------------------------------------------------------------------------------------------
// The engine

/// A Docker-compatible engine that answers where testcontainers would look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    /// Where it answers, as a `DOCKER_HOST` value (`unix:///var/run/docker.sock`).
    pub host: String,
    /// What answers, e.g. "Podman Engine 4.3.1" or "Engine 20.10.24 (API 1.41)".
    pub server: String,
    /// Why testcontainers cannot use it, with what to do; `None` when it can.
    pub problem: Option<String>,
}

impl Engine {
    /// Whether testcontainers 0.28 can drive this engine.
    pub fn is_usable(&self) -> bool {
        self.problem.is_none()
    }
}

/// The container engine testcontainers would use, if one answers: the one at `DOCKER_HOST`
/// when that is set, else at `/var/run/docker.sock` or a rootless Docker socket; failing those,
/// a podman socket is reported with an [`Engine::problem`] saying how to point testcontainers
/// at it. Blocking but cheap (local sockets, 2 s timeouts); never panics.
pub fn engine() -> Option<Engine> {
    let docker_host = std::env::var("DOCKER_HOST").ok();
    if let Some(host) = docker_host.filter(|h| !h.trim().is_empty()) {
        // testcontainers uses DOCKER_HOST alone when it is set.
        return probe(&host);
    }
    if let Some(found) = docker_sockets().iter().find_map(|p| probe(&unix_host(p))) {
        return Some(found);
    }
    podman_sockets().iter().find_map(|p| {
        let mut found = probe(&unix_host(p))?;
        found.problem.get_or_insert_with(|| {
            format!(
                "testcontainers does not look there: export DOCKER_HOST={} (scripts/docker.sh \
                 links {DEFAULT_SOCKET} to it instead)",
                found.host
            )
        });
        Some(found)
    })
}

/// The sockets testcontainers tries when `DOCKER_HOST` is unset, in its order.
fn docker_sockets() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(DEFAULT_SOCKET)];
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        paths.push(PathBuf::from(dir).join(".docker/run/docker.sock"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        paths.push(home.join(".docker/run/docker.sock"));
        paths.push(home.join(".docker/desktop/docker.sock"));
    }
    paths
}

fn podman_sockets() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("/run/podman/podman.sock")];
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        paths.push(PathBuf::from(dir).join("podman/podman.sock"));
    }
    paths
}

fn unix_host(path: &Path) -> String {
    format!("unix://{}", path.display())
}

/// Asks the engine for its version the way testcontainers would (versioned path), and again
/// unversioned when refused, to say what answers. `None` when nothing answers.
fn probe(host: &str) -> Option<Engine> {
    let Some(versioned) = engine_get(host, &format!("/v{TESTCONTAINERS_API}/version")) else {
        // https or ssh: not worth a TLS handshake here; testcontainers reports its failures.
        return Some(Engine {
            host: host.to_string(),
            server: "not probed".into(),
            problem: None,
        });
    };
    let (status, body) = versioned.ok()?;
    if status == 200 {
        return Some(Engine {
            host: host.to_string(),
            server: server_name(&body, false),
            problem: None,
        });
    }
    let refusal = body["message"].as_str().unwrap_or("no reason given");
    let server = match engine_get(host, "/version") {
        Some(Ok((200, plain))) => server_name(&plain, true),
        _ => "unknown engine".into(),
    };
    Some(Engine {
        host: host.to_string(),
        server,
        problem: Some(format!(
            "it refuses Docker API {TESTCONTAINERS_API}, which testcontainers 0.28 speaks and \
             cannot negotiate down (\"{refusal}\"); use a newer engine or podman: stop this one \
             and run scripts/docker.sh"
        )),
    })
}

/// "Podman Engine 4.3.1", or with the API version for an engine that refused ours.
fn server_name(version: &serde_json::Value, with_api: bool) -> String {
    let name = version["Components"][0]["Name"]
        .as_str()
        .unwrap_or("engine");
    let number = version["Version"].as_str().unwrap_or("?");
    match (with_api, version["ApiVersion"].as_str()) {
        (true, Some(api)) => format!("{name} {number} (API {api})"),
        _ => format!("{name} {number}"),
    }
}

/// Whether the engine has the image locally; `None` when it could not tell.
fn image_present(host: &str, image: &str) -> Option<bool> {
    match engine_get(host, &format!("/v{TESTCONTAINERS_API}/images/{image}/json"))? {
        Ok((200, _)) => Some(true),
        Ok((404, _)) => Some(false),
        _ => None,
    }
}

/// How a container that no longer runs ended, read directly: podman reports states (such as
/// "stopped") that testcontainers' own inspection cannot parse.
fn container_ended(host: &str, id: &str) -> Option<String> {
    let (status, body) = engine_get(
        host,
        &format!("/v{TESTCONTAINERS_API}/containers/{id}/json"),
    )?
    .ok()?;
    let state = &body["State"];
    match (status, state["Running"].as_bool()) {
        (404, _) => Some("the container is gone".into()),
        (200, Some(false)) => Some(format!(
            "the container ended: {}, exit status {}",
            state["Status"].as_str().unwrap_or("?"),
            state["ExitCode"]
        )),
        _ => None,
    }
}

/// One GET on the engine's API over a fresh connection; `None` for hosts it does not speak
/// to (https, ssh).
fn engine_get(host: &str, path: &str) -> Option<io::Result<(u16, serde_json::Value)>> {
    if let Some(socket) = host.strip_prefix("unix://") {
        let stream = UnixStream::connect(socket).and_then(|s| {
            s.set_read_timeout(Some(PROBE_TIMEOUT))?;
            s.set_write_timeout(Some(PROBE_TIMEOUT))?;
            Ok(s)
        });
        return Some(stream.and_then(|s| http_get(s, path)));
    }
    let addr = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))?
        .trim_end_matches('/');
    Some(connect_tcp(addr).and_then(|s| http_get(s, path)))
}

fn connect_tcp(addr: &str) -> io::Result<TcpStream> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address")))?;
    let stream = TcpStream::connect_timeout(&sock, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    Ok(stream)
}

/// One HTTP/1.0 GET: the server closes the connection after the response, so there is no
/// framing to parse. Returns the status and the JSON body (`Null` when it is not JSON).
fn http_get(mut stream: impl Read + Write, path: &str) -> io::Result<(u16, serde_json::Value)> {
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: engine\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP response"))?;
    Ok((status, serde_json::from_str(body).unwrap_or_default()))
}

// ---------------------------------------------------------------------------------------------
// The broker

/// A RabbitMQ broker running in a container. Dropping it removes the container (inside a tokio
/// runtime, as testcontainers requires); [`BrokerContainer::stop`] stops it gracefully first.
pub struct BrokerContainer {
    // Boxed: the container request inside is ~900 bytes, too large to move around in enums.
    container: Box<ContainerAsync<GenericImage>>,
    engine: String,
    image: String,
    node: String,
    port: u16,
    output: Output,
}

impl std::fmt::Debug for BrokerContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerContainer")
            .field("id", &self.id())
            .field("engine", &self.engine)
            .field("image", &self.image)
            .field("node", &self.node)
            .field("port", &self.port)
            .finish()
    }
}

impl BrokerContainer {
    /// The AMQP URL of the broker (guest on the default vhost, over loopback).
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The container id, as the engine knows it.
    pub fn id(&self) -> &str {
        self.container.id()
    }

    /// The image the container runs.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The RabbitMQ node name (unique per container).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the broker printed so far (its log goes to stdout), the last 256 KiB at most.
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Stops the broker (SIGTERM through the init, 10 s before SIGKILL) and removes the
    /// container with its anonymous volumes.
    pub async fn stop(self) -> Result<(), ContainerError> {
        let id = self.id().to_string();
        let failed = |source| ContainerError::Stop {
            container: id.clone(),
            source,
        };
        self.container
            .stop_with_timeout(Some(10))
            .await
            .map_err(failed)?;
        self.container.rm().await.map_err(failed)
    }
}

/// A container's output as it arrives, bounded; it outlives the container, so even one that
/// ended at once can be explained.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    const LIMIT: usize = 256 * 1024;

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(bytes);
        let excess = buf.len().saturating_sub(Self::LIMIT);
        buf.drain(..excess);
    }

    fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn tail(&self) -> String {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        match &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
            [] => "(no output)".into(),
            tail => tail.join("\n"),
        }
    }
}

/// Starts RabbitMQ in a container and waits until it accepts AMQP connections.
///
/// The image is `image`, else `$HARNESS_RABBITMQ_IMAGE`, else [`LOCAL_IMAGE`] when
/// `scripts/rabbitmq-image.sh` built it on this engine, else the official `rabbitmq:3` (pulled
/// when missing). The broker runs on the host network on free loopback ports with a unique node
/// name. Fails with a [`ContainerError`] saying what to do when no usable engine answers, the
/// image is missing, or the broker does not serve within [`START_TIMEOUT`] (with the tail of its
/// output).
pub async fn start_rabbitmq(image: Option<&str>) -> Result<BrokerContainer, ContainerError> {
    let engine = blocking(engine).await.ok_or(ContainerError::NoEngine)?;
    if let Some(reason) = engine.problem {
        return Err(ContainerError::EngineUnusable {
            host: engine.host,
            server: engine.server,
            reason,
        });
    }
    let (image, present) = choose_image(&engine.host, image).await;
    let node = format!(
        "rmq-harness-{}@localhost",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let ports = free_ports().map_err(ContainerError::Ports)?;
    let output = Output::default();
    let container = run(&image, &node, &ports, present, &output).await?;
    let broker = BrokerContainer {
        container: Box::new(container),
        engine: engine.host,
        image,
        node,
        port: ports.amqp,
        output,
    };
    wait_until_serving(&broker).await?;
    tracing::info!(container = broker.id(), node = %broker.node, url = %broker.amqp_url(),
        "broker container serving");
    Ok(broker)
}

/// Runs blocking engine requests off the async runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Option<T> + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok().flatten()
}

/// The image the caller or the environment names: `image`, else `$HARNESS_RABBITMQ_IMAGE`.
fn named_image(image: Option<&str>) -> Option<String> {
    let from_env = || {
        std::env::var(IMAGE_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
    };
    image.map(str::to_string).or_else(from_env)
}

/// The image to run and whether the engine has it locally (`None`: could not tell). Unnamed,
/// it is [`LOCAL_IMAGE`] when built here, so no pull is tried; else [`DEFAULT_IMAGE`].
async fn choose_image(host: &str, image: Option<&str>) -> (String, Option<bool>) {
    let has = |image: String| {
        let host = host.to_string();
        blocking(move || image_present(&host, &image))
    };
    if let Some(named) = named_image(image) {
        let present = has(named.clone()).await;
        return (named, present);
    }
    if has(LOCAL_IMAGE.into()).await == Some(true) {
        return (LOCAL_IMAGE.into(), Some(true));
    }
    (DEFAULT_IMAGE.into(), has(DEFAULT_IMAGE.into()).await)
}

/// Splits `registry:5000/name:tag` into name and tag (`latest` when there is none).
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

/// Loopback ports for one broker, distinct from each other and from the machine broker's.
struct Ports {
    amqp: u16,
    dist: u16,
    prometheus: u16,
    management: u16,
}

fn free_ports() -> io::Result<Ports> {
    Ok(Ports {
        amqp: super::free_port()?,
        dist: super::free_port()?,
        prometheus: super::free_port()?,
        management: super::free_port()?,
    })
}

/// The container request: host network, the broker's ports and node name in the environment
/// (honoured by RabbitMQ's own scripts in both the official image and ours), an init, and its
/// output collected.
fn request(
    image: &str,
    node: &str,
    ports: &Ports,
    output: &Output,
) -> ContainerRequest<GenericImage> {
    let (name, tag) = split_image(image);
    // Plugins the official images enable would otherwise bind their fixed ports (15692, 15672)
    // on the host network, where a second broker, or the machine's own, may hold them.
    let erl_args = format!(
        "-kernel inet_dist_use_interface {{127,0,0,1}} \
         -rabbitmq_prometheus tcp_config [{{port,{}}}] \
         -rabbitmq_management tcp_config [{{port,{}}}]",
        ports.prometheus, ports.management
    );
    let output = output.clone();
    GenericImage::new(name, tag)
        .with_container_name(format!(
            "rmq-harness-{}",
            node.split('@').next().unwrap_or(node)
        ))
        .with_label("rmq-harness", "broker")
        .with_env_var("RABBITMQ_NODENAME", node)
        .with_env_var("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .with_env_var("RABBITMQ_NODE_PORT", ports.amqp.to_string())
        .with_env_var("RABBITMQ_DIST_PORT", ports.dist.to_string())
        // An epmd this node has to start itself (none on the host) listens on loopback only.
        .with_env_var("ERL_EPMD_ADDRESS", "127.0.0.1")
        .with_env_var("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", erl_args)
        .with_env_var("RABBITMQ_LOGS", "-")
        .with_log_consumer(move |frame: &LogFrame| output.push(frame.bytes()))
        .with_host_config_modifier(|host| {
            // Set here rather than with `with_network("host")`, which makes testcontainers look
            // for a network named "host" and, under podman (which lists none), try to create one.
            host.network_mode = Some("host".into());
            // testcontainers publishes exposed ports, which means nothing on the host network.
            host.publish_all_ports = Some(false);
            host.port_bindings = None;
            // RabbitMQ as PID 1 ignores SIGTERM; the engine's init forwards it.
            host.init = Some(true);
        })
}

/// Creates and starts the container, pulling the image first when the engine lacks it.
async fn run(
    image: &str,
    node: &str,
    ports: &Ports,
    present: Option<bool>,
    output: &Output,
) -> Result<ContainerAsync<GenericImage>, ContainerError> {
    // Creating and starting take a second; only a pull can hang (an unreachable registry).
    let budget = if present == Some(true) {
        START_TIMEOUT
    } else {
        PULL_TIMEOUT
    };
    let started = request(image, node, ports, output).start();
    let error = match tokio::time::timeout(budget, started).await {
        Ok(Ok(container)) => return Ok(container),
        Ok(Err(error)) => error.to_string(),
        Err(_) if present == Some(true) => {
            return Err(ContainerError::EngineTimeout {
                image: image.to_string(),
                secs: budget.as_secs(),
            })
        }
        Err(_) => format!("not local, and pulling it took over {} s", budget.as_secs()),
    };
    if present != Some(true) {
        return Err(ContainerError::ImageMissing {
            image: image.to_string(),
            detail: error,
        });
    }
    // The container is already removed; its output may still be arriving.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Err(ContainerError::Start {
        image: image.to_string(),
        reason: explain_start_error(error),
        logs: output.tail(),
    })
}

/// testcontainers inspects the container right after starting it, and cannot parse the state
/// podman gives one that has already ended.
fn explain_start_error(error: String) -> String {
    if error.contains("unknown variant `stopped`") {
        format!("the container ended at once (podman reports it \"stopped\", which testcontainers cannot parse: {error})")
    } else {
        error
    }
}

/// Polls an AMQP connection until the broker accepts one, its container ends, or
/// [`START_TIMEOUT`] passes.
async fn wait_until_serving(broker: &BrokerContainer) -> Result<(), ContainerError> {
    let url = broker.amqp_url();
    let started = Instant::now();
    let why = loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(5),
            Connection::connect(&url, ConnectionProperties::default()),
        )
        .await;
        let last = match attempt {
            Ok(Ok(conn)) => {
                let _ = conn.close(200, "ready".into()).await;
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connecting timed out".to_string(),
        };
        let (host, id) = (broker.engine.clone(), broker.id().to_string());
        if let Some(ended) = blocking(move || container_ended(&host, &id)).await {
            break ended;
        }
        if started.elapsed() >= START_TIMEOUT {
            break format!("last attempt: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    Err(ContainerError::StartTimeout {
        container: broker.id().to_string(),
        image: broker.image.clone(),
        url,
        secs: started.elapsed().as_secs(),
        why,
        logs: broker.output.tail(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_at_the_tag_only() {
        assert_eq!(split_image("rabbitmq:3"), ("rabbitmq", "3"));
        assert_eq!(
            split_image(LOCAL_IMAGE),
            ("rmq-harness/rabbitmq", "3.10-bookworm")
        );
        assert_eq!(
            split_image("localhost:5000/rabbitmq"),
            ("localhost:5000/rabbitmq", "latest")
        );
        assert_eq!(
            split_image("localhost:5000/rabbitmq:3"),
            ("localhost:5000/rabbitmq", "3")
        );
        assert_eq!(split_image("rabbitmq"), ("rabbitmq", "latest"));
    }

    #[test]
    fn free_ports_are_distinct_and_never_the_shared_brokers() {
        let p = free_ports().unwrap();
        let all = [p.amqp, p.dist, p.prometheus, p.management];
        for (i, a) in all.iter().enumerate() {
            assert!(![5672, 25672, 0].contains(a));
            assert!(!all[i + 1..].contains(a));
        }
    }

    #[test]
    fn server_names_read_docker_and_podman_version_bodies() {
        let podman = serde_json::json!({"Components": [{"Name": "Podman Engine", "Version": "4.3.1"}],
            "Version": "4.3.1", "ApiVersion": "1.41"});
        assert_eq!(server_name(&podman, false), "Podman Engine 4.3.1");
        let docker = serde_json::json!({"Components": [{"Name": "Engine"}], "Version": "20.10.24",
            "ApiVersion": "1.41"});
        assert_eq!(server_name(&docker, true), "Engine 20.10.24 (API 1.41)");
    }

    /// A Docker 20.10 stand-in: refuses the versioned request as dockerd does, answers the
    /// plain one.
    fn old_docker(path: &Path) -> std::thread::JoinHandle<()> {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().unwrap();
                // Read the whole head: closing on unread bytes would reset the connection.
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                    request.push(byte[0]);
                }
                let (status, body) = if request.starts_with(b"GET /v1.53/") {
                    (
                        "400 Bad Request",
                        r#"{"message":"client version 1.53 is too new. Maximum supported API version is 1.41"}"#,
                    )
                } else {
                    (
                        "200 OK",
                        r#"{"Components":[{"Name":"Engine"}],"Version":"20.10.24","ApiVersion":"1.41"}"#,
                    )
                };
                write!(
                    stream,
                    "HTTP/1.0 {status}\r\nContent-Type: application/json\r\n\r\n{body}"
                )
                .unwrap();
            }
        })
    }

    #[test]
    fn an_engine_refusing_the_api_version_is_reported_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let server = old_docker(&path);
        let found = probe(&unix_host(&path)).expect("an engine answers");
        server.join().unwrap();
        assert!(!found.is_usable());
        assert_eq!(found.server, "Engine 20.10.24 (API 1.41)");
        let problem = found.problem.unwrap();
        assert!(
            problem.contains("too new") && problem.contains("scripts/docker.sh"),
            "{problem}"
        );
    }

    #[test]
    fn output_keeps_the_latest_bytes_and_quotes_its_last_lines() {
        let output = Output::default();
        assert_eq!(output.tail(), "(no output)");
        for i in 0..50_000 {
            output.push(format!("line {i}\n").as_bytes());
        }
        assert!(output.text().len() <= Output::LIMIT);
        let tail = output.tail();
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert!(tail.ends_with("line 49999"), "{tail}");
    }

    #[test]
    fn a_dead_socket_is_no_engine() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe(&unix_host(&dir.path().join("none.sock"))), None);
    }
}
