//! Hot swap: replacing, adding, breaking and deleting plugin files while
//! clients keep sending. Nothing fails, nothing drops, state survives.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_tests::{guest, status_for, watch_status, Client, Host};

/// How long a rename may take to be served.
const SWAP_BOUND: Duration = Duration::from_secs(10);

/// Poll until `video_command status` is answered by `version`.
async fn wait_for_version(client: &mut Client, version: &str) {
    let started = Instant::now();
    loop {
        let reply = client.call("video_command", json!({"action": "status"})).await;
        assert_eq!(reply["type"], "reply", "{reply}");
        if reply["meta"]["plugin_version"] == version {
            return;
        }
        assert!(started.elapsed() < SWAP_BOUND, "version {version} not served within {SWAP_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn swapping_under_load_fails_nothing_and_keeps_state() {
    let host = Host::start(&["video", "echo"]).await;
    let mut control = host.connect().await;
    control.call("video_command", json!({"action": "play", "video_path": "/videos/swap.mp4"})).await;
    control.call("video_command", json!({"action": "seek", "position": 100})).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for n in 0..4 {
        let (stop, sent, url) = (Arc::clone(&stop), Arc::clone(&sent), host.url());
        load.push(tokio::spawn(async move {
            let mut client = Client::connect(&url).await;
            let mut failures: Vec<Value> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let reply = if i.is_multiple_of(2) {
                    client.call("video_command", json!({"action": "status"})).await
                } else {
                    client.call("echo", json!({"message": format!("{n}-{i}")})).await
                };
                sent.fetch_add(1, Ordering::Relaxed);
                let ok = reply["type"] == "reply"
                    && (i.is_multiple_of(2) && reply["data"]["video_path"] == "/videos/swap.mp4"
                        || i % 2 == 1 && reply["data"] == format!("Echo: {n}-{i}"));
                if !ok {
                    failures.push(reply);
                }
            }
            // Still connected after all the swaps.
            assert_eq!(client.request(json!({"type": "ping"})).await["type"], "pong");
            failures
        }));
    }

    for round in 0..20 {
        host.install("video_v2", "video.wasm");
        wait_for_version(&mut control, "2.0.0").await;
        host.install("video", "video.wasm");
        wait_for_version(&mut control, "0.1.0").await;
        assert!(sent.load(Ordering::Relaxed) > round, "load is flowing");
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let failures = task.await.expect("load client survived");
        assert!(failures.is_empty(), "failed replies during swaps: {failures:?}");
    }
    assert!(sent.load(Ordering::Relaxed) >= 40, "requests were in flight during the swaps");
    assert_eq!(host.server().registry().swap_count(), 40);

    let reply = control.call("video_command", json!({"action": "status"})).await;
    assert_eq!(reply["data"]["state"], "playing", "state survived 40 swaps: {reply}");
    assert!(reply["data"]["position"].as_f64().unwrap() >= 100.0);
    host.shutdown().await;
}

#[tokio::test]
async fn a_new_file_is_loaded_and_a_deleted_one_unloaded() {
    let host = Host::start(&[]).await;
    let mut client = host.connect().await;
    watch_status(&mut client).await;
    assert_eq!(client.call("echo", json!({"message": "x"})).await["data"]["code"], "UNKNOWN_TYPE");

    host.install("echo", "echo.wasm");
    let status = status_for(&mut client, "echo.wasm").await;
    assert_eq!(status["event"], "plugin_loaded");
    assert_eq!(status["plugin"], "echo");
    assert_eq!(status["claims"], json!(["echo"]));
    assert_eq!(client.call("echo", json!({"message": "x"})).await["data"], "Echo: x");

    host.remove("echo.wasm");
    let status = status_for(&mut client, "echo.wasm").await;
    assert_eq!(status["event"], "plugin_unloaded");
    assert_eq!(client.call("echo", json!({"message": "x"})).await["data"]["code"], "UNKNOWN_TYPE");
    host.shutdown().await;
}

#[tokio::test]
async fn broken_files_leave_the_old_version_serving_and_are_reported() {
    let host = Host::start(&["clock"]).await;
    let mut client = host.connect().await;
    watch_status(&mut client).await;

    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("clock.wasm", b"\0asm garbage, not a component".to_vec(), "PLUGIN_COMPILE_FAILED"),
        ("clock.wasm", std::fs::read(guest("wrong_world")).unwrap(), "PLUGIN_INVALID"),
        ("clash.wasm", std::fs::read(guest("clock_clash")).unwrap(), "CLAIM_CONFLICT"),
    ];
    for (file, bytes, code) in cases {
        host.install_bytes(&bytes, file);
        let status = status_for(&mut client, file).await;
        assert_eq!(status["event"], "plugin_failed", "{file}: {status}");
        assert_eq!(status["error"]["code"], code, "{status}");
        assert!(!status["error"]["message"].as_str().unwrap().is_empty());
        let reply = client.call("get_time", json!({})).await;
        assert_eq!(reply["type"], "reply", "clock still serves after {code}: {reply}");
        assert_eq!(reply["meta"]["plugin"], "clock");
    }
    assert_eq!(host.server().registry().load_failure_count(), 3);
    host.shutdown().await;
}

#[tokio::test]
async fn a_file_written_in_place_in_two_halves_is_never_half_loaded() {
    let host = Host::start(&["echo"]).await;
    let mut client = host.connect().await;
    let v2 = std::fs::read(guest("echo_v2")).unwrap();
    let path = host.plugin_dir().join("echo.wasm");
    // The non-atomic way: truncate, write half, pause, write the rest.
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&v2[..v2.len() / 2]).unwrap();
        file.flush().unwrap();
        for _ in 0..10 {
            let reply = client.call("echo", json!({"message": "mid-write"})).await;
            assert_eq!(reply["data"], "Echo: mid-write", "the old version serves meanwhile: {reply}");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        file.write_all(&v2[v2.len() / 2..]).unwrap();
    }
    let started = Instant::now();
    loop {
        let reply = client.call("echo", json!({"message": "after"})).await;
        assert_eq!(reply["data"], "Echo: after", "{reply}");
        if reply["meta"]["plugin_version"] == "2.0.0" {
            break;
        }
        assert!(started.elapsed() < SWAP_BOUND, "the completed file was never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    host.shutdown().await;
}

#[tokio::test]
async fn a_restart_loads_from_the_compile_cache_without_recompiling() {
    use switchyard::plugins::runtime::cache::CacheOutcome;
    let cache = tempfile::tempdir().unwrap();
    let compiled = |host: &Host| host.server().registry().plugins().iter().map(|p| p.compiled).collect::<Vec<_>>();
    let first = Host::start_with(&["clock", "echo"], |c| c.plugins.cache_dir = Some(cache.path().into())).await;
    assert_eq!(compiled(&first), [CacheOutcome::Miss, CacheOutcome::Miss]);
    first.shutdown().await;
    let second = Host::start_with(&["clock", "echo"], |c| c.plugins.cache_dir = Some(cache.path().into())).await;
    assert_eq!(compiled(&second), [CacheOutcome::Hit, CacheOutcome::Hit]);
    let mut client = second.connect().await;
    assert_eq!(client.call("echo", json!({"message": "cached"})).await["data"], "Echo: cached");
    second.shutdown().await;
}

#[tokio::test]
async fn a_file_renamed_into_place_is_served_without_waiting_out_the_debounce() {
    // A debounce far longer than the test's patience: only a rename that
    // skips it can be served in time. Writes in place still wait.
    let host = Host::start_with(&["video"], |config| config.plugins.debounce_ms = 120_000).await;
    let mut client = host.connect().await;
    wait_for_version(&mut client, "0.1.0").await;
    host.install("video-v2", "video.wasm");
    wait_for_version(&mut client, "2.0.0").await;
    host.shutdown().await;
}

#[tokio::test]
async fn reading_a_plugin_file_is_not_taken_for_a_change() {
    // The registry reads a file to load it, and a backup tool may read the
    // folder at any time: neither may have the host reading the file again.
    let host = Host::start(&["video"]).await;
    let mut client = host.connect().await;
    host.install("video-v2", "video.wasm");
    wait_for_version(&mut client, "2.0.0").await;
    let file = host.plugin_dir().join("video.wasm");
    let (opened, mut opens) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| matches!(e.kind, notify::EventKind::Access(notify::event::AccessKind::Open(_)))) {
            let _ = opened.send(());
        }
    })
    .expect("watch");
    notify::Watcher::watch(&mut watcher, &file, notify::RecursiveMode::NonRecursive).expect("watch the plugin file");
    // Twenty of the test host's debounce intervals: the swap's own read
    // would have come back by now.
    let quiet = Duration::from_secs(1);
    let after_swap = tokio::time::timeout(quiet, opens.recv()).await;
    assert!(after_swap.is_err(), "the host read the file again after loading it");
    assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(guest("video-v2")).unwrap());
    let own_read = tokio::time::timeout(Duration::from_secs(5), opens.recv()).await;
    assert!(matches!(own_read, Ok(Some(()))), "the watch did not see the test's own read");
    let after_backup = tokio::time::timeout(quiet, opens.recv()).await;
    assert!(after_backup.is_err(), "the host read the file again after another program read it");
    assert_eq!(client.call("video_command", json!({"action": "status"})).await["meta"]["plugin_version"], "2.0.0");
    host.shutdown().await;
}
