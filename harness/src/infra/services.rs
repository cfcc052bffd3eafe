//! MySQL/MariaDB and Redis for runs that ask for them, in the order of the broker's: a URL from
//! the environment (`DATABASE_URL` naming a `mysql://` server, `REDIS_URL`), else a private
//! server started from the local installation, else a clear error.
//!
//! Each run gets a database of its own (created here, dropped when the handle goes), so runs
//! sharing a server never see each other's rows.

use std::{path::Path, process::Command, time::Duration};

use crate::proc::Proc;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "no MySQL: set DATABASE_URL=mysql://user:pass@host:port, or install mariadb-server \
         (scripts/services.sh does) for a private server"
    )]
    NoMysql,
    #[error("no Redis: set REDIS_URL, or install redis-server (scripts/services.sh does) for a private server")]
    NoRedis,
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
}

fn failed(what: &str, detail: impl std::fmt::Display) -> ServiceError {
    ServiceError::Failed {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

fn free_port() -> Result<u16, ServiceError> {
    super::free_port().map_err(|e| failed("free port", e))
}

fn installed(program: &str) -> bool {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .any(|d| Path::new(d).join(program).is_file())
}

/// Waits until `127.0.0.1:port` accepts connections, while `proc` runs.
async fn wait_listening(proc: &Proc, port: u16, what: &str) -> Result<(), ServiceError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if !proc.is_running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(failed(
        what,
        format!("did not listen on {port}; log:\n{}", proc.log_tail(15)),
    ))
}

/// A MySQL database for one run.
pub struct Mysql {
    server: url::Url,
    database: String,
    _private: Option<PrivateServer>,
}

/// A private server and its data directory, removed after the server stops. The data lives
/// in a short temporary path rather than the run directory: a Unix socket path must fit in
/// 107 bytes, which a run directory under a deep checkout does not, and a report's artifacts
/// should list logs, not database files. The server's log stays in the run directory.
struct PrivateServer {
    _proc: Proc,
    _data: tempfile::TempDir,
}

fn data_dir(service: &str) -> Result<tempfile::TempDir, ServiceError> {
    tempfile::Builder::new()
        .prefix(&format!("rmqh-{service}"))
        .tempdir()
        .map_err(|e| failed("a data directory", e))
}

impl Mysql {
    /// `DATABASE_URL` when it is a `mysql://` URL, else a private server in `dir`.
    pub async fn provision(dir: &Path) -> Result<Mysql, ServiceError> {
        let (server, private) = match std::env::var("DATABASE_URL") {
            Ok(url) if url.starts_with("mysql://") => (
                url::Url::parse(&url).map_err(|e| failed("DATABASE_URL", e))?,
                None,
            ),
            _ if installed("mariadbd") => {
                let (url, private) = start_private_mysql(dir).await?;
                (url, Some(private))
            }
            _ => return Err(ServiceError::NoMysql),
        };
        let database = format!("h_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let db = Mysql {
            server,
            database,
            _private: private,
        };
        db.sql(&format!("CREATE DATABASE {}", db.database))?;
        Ok(db)
    }

    /// The run's database URL.
    pub fn url(&self) -> String {
        let mut u = self.server.clone();
        u.set_path(&format!("/{}", self.database));
        u.to_string()
    }

    /// Runs a statement with the `mariadb` client.
    fn sql(&self, statement: &str) -> Result<(), ServiceError> {
        let s = &self.server;
        let mut cmd = Command::new("mariadb");
        cmd.args([
            "-h",
            s.host_str().unwrap_or("127.0.0.1"),
            "-P",
            &s.port().unwrap_or(3306).to_string(),
        ])
        .args([
            "-u",
            if s.username().is_empty() {
                "root"
            } else {
                s.username()
            },
            "-e",
            statement,
        ]);
        if let Some(p) = s.password() {
            cmd.env("MYSQL_PWD", p);
        }
        let out = cmd
            .output()
            .map_err(|e| failed("mariadb client (package mariadb-client)", e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failed(statement, String::from_utf8_lossy(&out.stderr)))
        }
    }
}

impl Drop for Mysql {
    fn drop(&mut self) {
        if self._private.is_none() {
            let _ = self.sql(&format!("DROP DATABASE IF EXISTS {}", self.database));
        }
    }
}

async fn start_private_mysql(dir: &Path) -> Result<(url::Url, PrivateServer), ServiceError> {
    std::fs::create_dir_all(dir).map_err(|e| failed("the services directory", e))?;
    let tmp = data_dir("mysql")?;
    let data = tmp.path().join("data");
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or("root".into(), |u| u.name);
    let small_logs = "--innodb-log-file-size=8M";
    let install = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            &format!("--datadir={}", data.display()),
            "--auth-root-authentication-method=normal",
        ])
        .args(["--skip-test-db", &format!("--user={user}"), small_logs])
        .output()
        .map_err(|e| failed("mariadb-install-db", e))?;
    if !install.status.success() {
        return Err(failed(
            "mariadb-install-db",
            String::from_utf8_lossy(&install.stderr),
        ));
    }
    let port = free_port()?;
    let mut cmd = Command::new("/usr/sbin/mariadbd");
    cmd.args([
        "--no-defaults",
        &format!("--datadir={}", data.display()),
        &format!("--port={port}"),
    ])
    .args([
        "--bind-address=127.0.0.1",
        &format!("--socket={}", tmp.path().join("mysqld.sock").display()),
    ])
    .args([&format!("--user={user}"), "--skip-log-bin", small_logs]);
    let proc = Proc::spawn("mariadbd", cmd, &dir.join("mariadbd.log"))
        .map_err(|e| failed("mariadbd", e))?;
    wait_listening(&proc, port, "private mariadbd").await?;
    let url = url::Url::parse(&format!("mysql://root@127.0.0.1:{port}")).expect("valid URL");
    Ok((
        url,
        PrivateServer {
            _proc: proc,
            _data: tmp,
        },
    ))
}

/// A Redis for one run.
pub struct Redis {
    url: String,
    _private: Option<PrivateServer>,
}

impl Redis {
    /// `REDIS_URL` when set, else a private server in `dir`.
    pub async fn provision(dir: &Path) -> Result<Redis, ServiceError> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            if !url.is_empty() {
                return Ok(Redis {
                    url,
                    _private: None,
                });
            }
        }
        if !installed("redis-server") {
            return Err(ServiceError::NoRedis);
        }
        let port = free_port()?;
        std::fs::create_dir_all(dir).map_err(|e| failed("the services directory", e))?;
        let data = data_dir("redis")?;
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--dir", &data.path().display().to_string()]);
        let proc = Proc::spawn("redis-server", cmd, &dir.join("redis.log"))
            .map_err(|e| failed("redis-server", e))?;
        wait_listening(&proc, port, "private redis-server").await?;
        Ok(Redis {
            url: format!("redis://127.0.0.1:{port}"),
            _private: Some(PrivateServer {
                _proc: proc,
                _data: data,
            }),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}
