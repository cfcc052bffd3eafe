//! Shared helpers of the harness's integration tests.

use std::path::PathBuf;

/// The machine's broker (or `AMQP_URL`); tests that fault a broker use private nodes instead.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The machine's broker as the SUT's only backend.
pub fn backends() -> harness::sut::Backends {
    harness::sut::Backends {
        amqp_url: amqp_url(),
        ..Default::default()
    }
}

/// Run directories of the tests, beside the workspace's other build output.
pub fn runs_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("harness/test-runs")
}

pub use harness::init_test_tracing as init_tracing;
