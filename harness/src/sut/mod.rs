//! The system under test: the reference started as real OS processes, or any system that
//! speaks the contract, attached by URL.

mod deployment;
mod process;
mod reference;

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

pub use deployment::{Deployment, External};
pub use process::SutProcess;
pub use reference::{link_name, Backends, ReferenceSut, Store, SutConfig};

use crate::links::LinkError;

#[derive(Debug, thiserror::Error)]
pub enum SutError {
    #[error(
        "cannot find the reference binary: {0} (set REFERENCE_BIN, or run inside the workspace so the \
         harness can build it)"
    )]
    Binary(String),
    #[error("{name} did not become healthy; last log lines:\n{log_tail}")]
    Start { name: String, log_tail: String },
    #[error("bad SUT configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Service(#[from] crate::infra::services::ServiceError),
    #[error("I/O: {0}")]
    Io(std::io::Error),
}

/// The `reference` binary: `REFERENCE_BIN`, else built from this workspace (once per process,
/// so a test run never uses a stale binary), else `reference` on `PATH`.
pub fn reference_binary() -> Result<PathBuf, SutError> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY.get_or_init(locate).clone().map_err(SutError::Binary)
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("REFERENCE_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("REFERENCE_BIN={} is not a file", path.display()))
        };
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    if let Some(ws) = workspace.filter(|ws| ws.join("reference/Cargo.toml").is_file()) {
        return build_in(&ws);
    }
    which("reference").ok_or_else(|| "not in REFERENCE_BIN, the workspace, or PATH".to_string())
}

/// Builds the binary with the profile this harness was built with, and with the whole
/// workspace's features: `-p reference` unifies features differently, so it would rebuild
/// dependencies the workspace's build already made (minutes here) and swap the binary it made.
fn build_in(workspace: &Path) -> Result<PathBuf, String> {
    let release = !cfg!(debug_assertions);
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace)
        .args(["build", "-q", "--workspace", "--bin", "reference"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --workspace --bin reference failed ({status})"
        ));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let path = target
        .join(if release { "release" } else { "debug" })
        .join("reference");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("built, but {} is missing", path.display()))
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}
