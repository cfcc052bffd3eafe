//! Start-up errors are clear, and `--help` tells robust strategies from naive ones.

use crate::support::process::run_to_exit;

#[test]
fn unknown_switch_value_lists_the_choices() {
    let (code, out) = run_to_exit(&["worker", "--ack", "sometimes"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("manual") && out.contains("auto"), "{out}");
}

#[test]
fn unreachable_broker_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let args = [
        "api",
        "--amqp-url",
        "amqp://guest:guest@127.0.0.1:1/%2f",
        "--database-url",
        &db,
        "--connect-timeout",
        "0s",
    ];
    let (code, out) = run_to_exit(&args);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("cannot connect to amqp://guest:***@127.0.0.1:1"),
        "names the broker, hides the password: {out}"
    );
}

/// `amqps://` to the plain AMQP port fails at the TLS hello; the error says so in plain words.
#[test]
fn tls_to_a_plain_port_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let url = crate::support::amqp_url().replacen("amqp://", "amqps://", 1);
    let args = ["api", "--amqp-url", &url, "--database-url", &db];
    let (code, out) = run_to_exit(&[&args[..], &["--connect-timeout", "0s"]].concat());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the port does not speak TLS"), "{out}");
}

#[test]
fn bad_configuration_is_refused_before_connecting() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["api", "--database-url", "postgres://x"],
            "--database-url must start with",
        ),
        (
            &["api", "--amqp-url", "http://x"],
            "--amqp-url is not a valid AMQP URL",
        ),
        (
            &["worker", "--dedupe", "redis-setnx"],
            "--dedupe redis-setnx needs --redis-url",
        ),
        (&["api", "--prefix", "bad prefix"], "--prefix must be"),
    ];
    for (args, message) in cases {
        let (code, out) = run_to_exit(args);
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(out.contains(message), "{args:?}: {out}");
    }
}

#[test]
fn help_tells_robust_from_naive() {
    let (code, out) = run_to_exit(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("outbox (robust)") && out.contains("fire-and-forget (naive)"),
        "{out}"
    );
    let (_, worker_help) = run_to_exit(&["worker", "--help"]);
    for flag in [
        "--publish",
        "--ack",
        "--dedupe",
        "--retry",
        "--queue-type",
        "--cache",
        "AMQP_URL",
        "DATABASE_URL",
    ] {
        assert!(worker_help.contains(flag), "worker --help documents {flag}");
    }
}

/// The README's configuration table documents every flag the binary accepts.
#[test]
fn readme_documents_every_flag() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for mode in ["api", "worker", "teardown"] {
        let (_, help) = run_to_exit(&[mode, "--help"]);
        let flags = help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
            .filter(|f| *f != "--help");
        for flag in flags {
            assert!(
                readme.contains(&format!("`{flag}")),
                "README lacks {flag} (from `reference {mode} --help`)"
            );
        }
    }
}
