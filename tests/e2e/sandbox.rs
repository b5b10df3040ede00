//! Misbehaving plugins: each fault gets its error code, the instance is
//! replaced, and a well-behaved plugin called at the same time is unaffected.
//! Plugins get no files, network or environment unless config grants them.

use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard::config::{DirGrant, Grant};
use switchyard_tests::Host;

async fn host() -> Host {
    Host::start_with(&["echo", "misbehave"], |c| {
        c.plugins.deadline_ms = 500;
        c.plugins.memory_mib = 32;
    })
    .await
}

#[tokio::test]
async fn faults_get_their_codes_and_the_plugin_keeps_serving() {
    let host = host().await;
    let mut client = host.connect().await;
    for (kind, code) in [
        ("misbehave.loop", "PLUGIN_TIMEOUT"),
        ("misbehave.panic", "PLUGIN_FAILED"),
        ("misbehave.membomb", "PLUGIN_FAILED"),
    ] {
        let reply = client.call(kind, json!({})).await;
        assert_eq!(reply["type"], "error", "{kind}");
        assert_eq!(reply["data"]["code"], code, "{kind}: {reply}");
        // The poisoned instance was replaced: the same plugin answers again.
        let reply = client.call("misbehave.env", json!({})).await;
        assert_eq!(reply["type"], "reply", "after {kind}: {reply}");
    }
    let plugin = host.server().registry().plugins().into_iter().find(|p| p.name() == "misbehave").unwrap();
    assert_eq!(plugin.stats.timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(plugin.stats.traps.load(Ordering::Relaxed), 2);
    let reply = client.call("misbehave.membomb", json!({})).await;
    assert!(reply["data"]["message"].as_str().unwrap().contains("misbehave"), "{reply}");
    host.shutdown().await;
}

#[tokio::test]
async fn a_well_behaved_plugin_is_unaffected_while_another_loops() {
    let host = Host::start_with(&["echo", "misbehave"], |c| c.plugins.deadline_ms = 3000).await;
    let mut looper = host.connect().await;
    let mut bystander = host.connect().await;
    looper.send_text(r#"{"type":"misbehave.loop","id":"spin"}"#).await;
    let misbehave = host.server().registry().plugins().into_iter().find(|p| p.name() == "misbehave").unwrap();
    while misbehave.stats.calls.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..20 {
        let reply = bystander.call("echo", json!({"message": i.to_string()})).await;
        assert_eq!(reply["data"], format!("Echo: {i}"));
    }
    // All twenty were answered while the loop was still running.
    assert_eq!(misbehave.stats.timeouts.load(Ordering::Relaxed), 0, "echo waited for the loop's deadline");
    assert_eq!(looper.reply().await["data"]["code"], "PLUGIN_TIMEOUT");
    host.shutdown().await;
}

#[tokio::test]
async fn no_filesystem_or_environment_by_default() {
    let host = host().await;
    let mut client = host.connect().await;
    let reply = client.call("misbehave.read_file", json!({"path": "/etc/passwd"})).await;
    assert_eq!(reply["data"]["code"], "FS_DENIED", "{reply}");
    assert!(!reply.to_string().contains("root:"), "no file content leaks: {reply}");
    assert_eq!(client.call("misbehave.env", json!({})).await["data"]["vars"], 0);
    host.shutdown().await;
}

#[tokio::test]
async fn a_granted_folder_is_readable_and_nothing_else() {
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("note.txt"), "granted").unwrap();
    let grant = Grant {
        dirs: vec![DirGrant { host: shared.path().to_path_buf(), guest: "/data".into(), read_only: true }],
        env: vec!["PATH".into()],
        ..Grant::default()
    };
    let host = Host::start_with(&["misbehave"], |c| {
        c.plugins.grants.insert("misbehave".into(), grant);
    })
    .await;
    let mut client = host.connect().await;
    let reply = client.call("misbehave.read_file", json!({"path": "/data/note.txt"})).await;
    assert_eq!(reply["data"]["text"], "granted", "{reply}");
    let reply = client.call("misbehave.read_file", json!({"path": "/etc/passwd"})).await;
    assert_eq!(reply["data"]["code"], "FS_DENIED");
    assert_eq!(client.call("misbehave.env", json!({})).await["data"]["vars"], 1);
    host.shutdown().await;
}
