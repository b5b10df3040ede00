//! `switchyard plugin history` and `rollback` against a running host, and
//! `plugin compile` ahead of a deploy into its compile cache.

use serde_json::json;
use std::process::Command;
use switchyard::config::ApiKeyConfig;
use switchyard::plugins::runtime::cache::CacheOutcome;
use switchyard_tests::{fresh_bytes, shared_cache, status_for, watch_status, Host};

const ADMIN: &str = "admin-key-0123456789abcdef";

fn plugin(host: &Host, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("plugin")
        .args(args)
        .args(["--url", &format!("http://{}", host.addr()), "--key", ADMIN])
        .output()
        .expect("run switchyard");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn history_lists_versions_and_rollback_brings_the_previous_one_back() {
    let host = Host::start_with(&["echo"], |config| config.auth.keys = vec![ApiKeyConfig::admin("ops", ADMIN)]).await;
    let mut client = host.connect().await;
    watch_status(&mut client).await;
    host.install("echo_v2", "echo.wasm");
    status_for(&mut client, "echo.wasm").await;

    let (ok, out, err) = plugin(&host, &["history", "echo"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with("serving") && lines[1].contains("2.0.0"), "{out}");
    assert!(lines[2].starts_with("retained") && lines[2].contains("0.1.0"), "{out}");

    let (ok, out, err) = plugin(&host, &["rollback", "echo"]);
    assert!(ok, "{err}");
    assert!(out.contains("rolled back from 2.0.0") && out.contains("to 0.1.0"), "{out}");
    assert_eq!(client.call("echo", json!({"message": "m"})).await["meta"]["plugin_version"], "0.1.0");

    let (ok, _, err) = plugin(&host, &["rollback", "echo", "--to", "9.9.9"]);
    assert!(!ok);
    assert!(err.contains("VERSION_NOT_FOUND"), "{err}");

    let candidate = switchyard_tests::guest("echo_v2");
    let (ok, out, err) = plugin(&host, &["canary", "echo", candidate.to_str().unwrap(), "--weight", "30", "--sticky", "client_id"]);
    assert!(ok, "{err}");
    assert!(out.contains("canary 2.0.0") && out.contains("30%"), "{out}");
    let (ok, out, err) = plugin(&host, &["promote", "echo"]);
    assert!(ok, "{err}");
    assert!(out.contains("2.0.0 promoted"), "{out}");
    assert_eq!(client.call("echo", json!({"message": "m"})).await["meta"]["plugin_version"], "2.0.0");
    host.shutdown().await;
}

fn compile(file: &std::path::Path, cache_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["plugin", "compile"])
        .arg(file)
        .arg("--cache-dir")
        .arg(cache_dir)
        .output()
        .expect("run switchyard")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_compiled_ahead_loads_from_the_cache_when_it_lands() {
    let host = Host::start_with(&["echo"], |_| {}).await;
    let mut client = host.connect().await;
    watch_status(&mut client).await;
    // A build no cache has seen, compiled into the cache the host reads.
    let bytes = fresh_bytes("echo_v2");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let first = compile(file.path(), &shared_cache());
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("compiled into"), "{first:?}");
    let again = compile(file.path(), &shared_cache());
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already compiled in"), "{again:?}");

    host.install_bytes(&bytes, "echo.wasm");
    assert_eq!(status_for(&mut client, "echo.wasm").await["event"], "plugin_swapped");
    assert_eq!(client.call("echo", json!({"message": "m"})).await["meta"]["plugin_version"], "2.0.0");
    let serving = host.server().registry().serving(&host.plugin_dir().join("echo.wasm")).expect("echo serves");
    assert_eq!(serving.compiled, CacheOutcome::Hit, "the host loaded what was compiled ahead");
    host.shutdown().await;
}

#[test]
fn compile_says_why_a_file_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.wasm");
    std::fs::write(&file, b"not a component").unwrap();
    let output = compile(&file, &dir.path().join("cache"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot be compiled") && stderr.contains("magic header"), "{stderr}");
    assert!(!dir.path().join("cache").exists() || std::fs::read_dir(dir.path().join("cache")).unwrap().next().is_none(), "nothing cached");
}
