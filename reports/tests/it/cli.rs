//! The `report` binary and `render::write_all`.

use std::process::Command;

use reports::render;

use crate::fixtures;

fn report_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_report"))
}

#[test]
fn write_all_writes_the_three_files_and_returns_their_paths() {
    let dir = tempfile::tempdir().unwrap();
    let paths = render::write_all(dir.path(), &fixtures::chaos()).unwrap();
    let names: Vec<_> = paths
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["report.md", "junit.xml", "report.html"]);
    assert!(paths
        .iter()
        .all(|p| p.starts_with(dir.path()) && p.is_file()));
}

#[test]
fn report_render_rerenders_a_run_directory_from_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let report = fixtures::verify();
    report.write_json(&dir.path().join("verdict.json")).unwrap();
    let out = report_bin().arg("render").arg(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = ["report.md", "junit.xml", "report.html"]
        .iter()
        .map(|f| dir.path().join(f).display().to_string())
        .collect();
    assert_eq!(printed, expected);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert_eq!(md, render::markdown(&report));
}

#[test]
fn report_render_exits_3_with_a_clear_message_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = report_bin().arg("render").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a run directory"), "{err}");

    let out = report_bin().arg("render").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no verdict.json"));

    std::fs::write(dir.path().join("verdict.json"), "{ not json").unwrap();
    let out = report_bin().arg("render").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a run report"), "{err}");
}

#[test]
fn report_help_documents_render() {
    let out = report_bin().arg("render").arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "verdict.json",
        "report.md",
        "junit.xml",
        "report.html",
        "<RUN_DIR>",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}
