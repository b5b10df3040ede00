//! The `switchyard` binary: `plugin inspect`, and `serve` from a TOML
//! config until SIGTERM.

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use switchyard_tests::{guest, listening_address, Client};

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

#[test]
fn inspect_prints_the_manifest_of_a_plugin() {
    let output = switchyard().args(["plugin", "inspect"]).arg(guest("calculator")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(manifest["name"], "calculator");
    assert_eq!(manifest["version"], "0.1.0");
    assert_eq!(manifest["claims"], json!(["calculate"]));
    assert_eq!(manifest["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn inspect_says_exactly_why_a_file_is_not_a_plugin() {
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), b"not wasm").unwrap();
    let cases = [
        (garbage.path().to_path_buf(), "PLUGIN_COMPILE_FAILED", "not a valid component"),
        (guest("wrong_world"), "PLUGIN_INVALID", "switchyard:plugin/handler@0.1.0"),
        (garbage.path().with_extension("missing"), "PLUGIN_READ_FAILED", "cannot read"),
    ];
    for (path, code, why) in cases {
        let output = switchyard().args(["plugin", "inspect"]).arg(&path).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", path.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(code) && stderr.contains(why), "{}: {stderr}", path.display());
    }
}

#[tokio::test]
async fn serve_reads_its_config_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(guest("echo"), plugins.join("echo.wasm")).unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\n[plugins]\ndir = {:?}\ncache_dir = {:?}\n", plugins, dir.path().join("cache")),
    )
    .unwrap();
    let mut child = switchyard()
        .args(["serve", "--config"])
        .arg(&config)
        .env("SWITCHYARD_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = listening_address(child.stderr.take().unwrap());
    let mut client = Client::connect(&format!("ws://{addr}/ws")).await;
    assert_eq!(client.call("echo", json!({"message": "cli"})).await["data"], "Echo: cli");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
}

#[test]
fn serve_rejects_a_bad_config_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[plugins]\ndeadline = 5\n").unwrap();
    let output = switchyard().args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field") && stderr.contains("deadline"), "{stderr}");
}
