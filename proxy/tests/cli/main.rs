//! The proxy binary as an operator runs it: `--check-config` and `check-store`.

use std::process::Output;

use linkgate_common::store::SchemaStore as _;
use linkgate_common::store::sqlite::SqliteStore;

fn proxy(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = linkgate_common::testing::binary(env!("CARGO_BIN_EXE_linkgate-proxy"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run linkgate-proxy")
}

#[test]
fn check_config_reads_a_toml_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, "[proxy]\nlisten = \"127.0.0.1:0\"\nthreads = 2\n").unwrap();
    let out = proxy(&["--check-config", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    std::fs::write(&file, "[proxy]\nthreads = \"two\"\nunknown = 1\n").unwrap();
    let out = proxy(&["--check-config", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("proxy.threads") && stderr.contains("proxy.unknown"),
        "{stderr}"
    );
}

#[tokio::test]
async fn check_store_refuses_an_unmigrated_store_and_accepts_a_migrated_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("linkgate.db");
    let url = format!("sqlite://{}", path.display());
    let out = proxy(&["check-store"], &[("LINKGATE__STORE__URL", &url)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("schema version 0"));

    SqliteStore::open(&path, 1)
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let out = proxy(&["check-store"], &[("LINKGATE__STORE__URL", &url)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
