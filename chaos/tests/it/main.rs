//! The `chaos` binary's refusals: what a user gets wrong is named, and nothing runs.

use std::process::{Command, Output};

fn chaos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("chaos runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_catalogue_lists_at_least_fifteen_fault_kinds() {
    let out = chaos(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let kinds: std::collections::BTreeSet<&str> = text
        .lines()
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.split_once('(').map(|(kind, _)| kind))
        .collect();
    assert!(kinds.len() >= 15, "{kinds:?}");
}

#[test]
fn a_misspelt_experiment_in_a_catalogue_is_refused_with_file_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        "{\n  \"name\": \"bad\",\n  \"fualts\": []\n}\n",
    )
    .unwrap();
    let out = chaos(&["list", "--catalogue", dir.path().to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("bad.json") && err.contains("fualts") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn unknown_experiments_and_strategies_are_refused_before_anything_starts() {
    let out = chaos(&["run", "no-such-fault"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no experiment `no-such-fault`"),
        "{}",
        stderr(&out)
    );
    let out = chaos(&["run", "worker-kill", "--strategy", "optimistic"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no strategy `optimistic`"),
        "{}",
        stderr(&out)
    );
}
