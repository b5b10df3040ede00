//! `switchyard plugin history` and `rollback` against a running host.

use serde_json::json;
use std::process::Command;
use switchyard::config::ApiKeyConfig;
use switchyard_tests::{status_for, watch_status, Host};

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
