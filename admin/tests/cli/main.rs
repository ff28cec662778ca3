//! The admin binary as an operator runs it: exit codes and output of `--check-config` and
//! `migrate`.

use std::process::Output;

fn admin(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = linkgate_common::testing::binary(env!("CARGO_BIN_EXE_linkgate-admin"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run linkgate-admin")
}

#[test]
fn check_config_exits_zero_on_the_defaults() {
    let out = admin(&["--check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn check_config_exits_64_listing_every_problem_without_secrets() {
    let out = admin(
        &["--check-config"],
        &[
            ("LINKGATE__AUTH__JWT_SECRET", "tooshort-s3cr3t"),
            ("LINKGATE__STORE__URL", "postgres://u:hunter2@db/x"),
            ("LINKGATE__LINKS__CODE_LENGTH", "4"),
        ],
    );
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "auth.jwt_secret",
        "store.url",
        "links.code_length",
        "3 problems",
    ] {
        assert!(stderr.contains(key), "missing {key} in {stderr}");
    }
    assert!(
        !stderr.contains("s3cr3t") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_is_reported() {
    let out = admin(
        &["--check-config", "--config", "/nonexistent/linkgate.toml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/linkgate.toml"));
}

#[test]
fn migrate_creates_the_sqlite_file_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("nested/linkgate.db").display()
    );
    for _ in 0..2 {
        let out = admin(&["migrate"], &[("LINKGATE__STORE__URL", &url)]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("sqlite schema is at version"));
    }
    assert!(dir.path().join("nested/linkgate.db").exists());
}

#[test]
fn migrate_fails_cleanly_when_mysql_is_unreachable() {
    let out = admin(
        &["migrate"],
        &[("LINKGATE__STORE__URL", "mysql://u:pw-XYZ@127.0.0.1:1/none")],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("pw-XYZ"), "{all}");
}
