//! The comparator of the cached user read: a bare axum handler that answers
//! `GET /api/v1/users/{id}` with the same JSON the reference answered, serialised per request
//! as a handler returning `Json(..)` does, and nothing else: no middleware, no store, no
//! cache. Run as its own process (`loadtests serve-bare`), as the reference is.

use std::{net::SocketAddr, path::Path};

use axum::{routing::get, Json, Router};

/// Serves the JSON in `body_file` until the process is stopped.
pub async fn serve(addr: SocketAddr, body_file: &Path) -> anyhow::Result<()> {
    let value = json_of(body_file)?;
    let app = Router::new().route(
        "/api/v1/users/{id}",
        get(move || {
            let value = value.clone();
            async move { Json(value) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn json_of(path: &Path) -> anyhow::Result<serde_json::Value> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", path.display()))
}

/// The bare handler running as its own process.
pub struct BareServer {
    proc: harness::proc::Proc,
    addr: SocketAddr,
}

impl BareServer {
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts `loadtests serve-bare` answering `body`, its files under `run_dir/compare`; returns
/// once it answers.
pub async fn spawn(run_dir: &Path, body: &[u8]) -> anyhow::Result<BareServer> {
    let dir = run_dir.join("compare");
    std::fs::create_dir_all(&dir)?;
    let body_file = dir.join("bare-body.json");
    std::fs::write(&body_file, body)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], harness::infra::free_port()?));
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("serve-bare")
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--body-file")
        .arg(&body_file);
    let proc = harness::proc::Proc::spawn("bare", cmd, &dir.join("bare.log"))?;
    let server = BareServer { proc, addr };
    let url = format!("{}/api/v1/users/1", server.base_url());
    for _ in 0..100 {
        if reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(server);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!(
        "the bare comparator did not answer on {addr}: {}",
        server.proc.log_tail(20)
    )
}
