//! Safe deploys, from outside: rollback to a retained version under load
//! (no failed request, no compile), the versions list, state migration
//! between versions (a renamed kv key, a failing migration refused, a
//! rollback that puts the state back or is refused).

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::config::ApiKeyConfig;
use switchyard::Config;
use switchyard_tests::{api_client, fresh_bytes, guest, json_of, status_for, watch_status, Client, Host};

const ADMIN: &str = "admin-key-0123456789abcdef";

fn with_admin(config: &mut Config) {
    config.auth.keys = vec![ApiKeyConfig::admin("ops", ADMIN)];
}


async fn admin_get(host: &Host, path: &str) -> (StatusCode, Value) {
    json_of(api_client().get(host.http(path)).bearer_auth(ADMIN).send().await.unwrap()).await
}

async fn admin_post(host: &Host, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = api_client().post(host.http(path)).bearer_auth(ADMIN);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    json_of(request.send().await.unwrap()).await
}

/// Components compiled (or loaded from the cache) since the host started,
/// as `/api/status` reports it.
async fn compiles(host: &Host) -> u64 {
    admin_get(host, "/api/status").await.1["compiles"].as_u64().expect("status has compiles")
}

/// Clients sending `kind` with `data` until stopped; each returns the
/// replies that were not a reply.
fn load(host: &Host, clients: usize, kind: &'static str, data: Value, stop: &Arc<AtomicBool>, sent: &Arc<AtomicU64>) -> Vec<tokio::task::JoinHandle<Vec<Value>>> {
    (0..clients)
        .map(|_| {
            let (stop, sent, url, data) = (Arc::clone(stop), Arc::clone(sent), host.url(), data.clone());
            tokio::spawn(async move {
                let mut client = Client::connect(&url).await;
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = client.call(kind, data.clone()).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    if reply["type"] != "reply" {
                        failures.push(reply);
                    }
                }
                failures
            })
        })
        .collect()
}

async fn wait_for_version(client: &mut Client, kind: &str, data: Value, version: &str) {
    let started = Instant::now();
    loop {
        let reply = client.call(kind, data.clone()).await;
        if reply["meta"]["plugin_version"] == version {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "version {version} not served: {reply}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn rollback_under_load_serves_the_previous_version_at_once_without_compiling() {
    let host = Host::start_with(&["echo"], with_admin).await;
    let mut client = host.connect().await;
    watch_status(&mut client).await;
    host.install("echo_v2", "echo.wasm");
    assert_eq!(status_for(&mut client, "echo.wasm").await["event"], "plugin_swapped");
    wait_for_version(&mut client, "echo", json!({"message": "x"}), "2.0.0").await;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let clients = load(&host, 4, "echo", json!({"message": "load"}), &stop, &sent);
    while sent.load(Ordering::Relaxed) < 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let compiled_before = compiles(&host).await;

    let (status, done) = admin_post(&host, "/api/plugins/echo/rollback", None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["event"], "plugin_rolled_back");
    assert_eq!(done["from"]["version"], "2.0.0");
    assert_eq!(done["to"]["version"], "0.1.0");
    // The very next message is the previous version's.
    let reply = client.call("echo", json!({"message": "after"})).await;
    assert_eq!(reply["meta"]["plugin_version"], "0.1.0", "{reply}");
    assert_eq!(reply["data"], "Echo: after");
    let event = status_event(&mut client, "plugin_rolled_back").await;
    assert_eq!(event["to"]["hash"], done["to"]["hash"], "{event}");

    let at_rollback = sent.load(Ordering::Relaxed);
    while sent.load(Ordering::Relaxed) < at_rollback + 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The rolled-back file is in the folder, and the watcher found it serving.
    let on_disk = std::fs::read(host.plugin_dir().join("echo.wasm")).unwrap();
    assert_eq!(on_disk, std::fs::read(guest("echo")).unwrap(), "the folder holds the version that serves");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in clients {
        let failures = task.await.expect("load client survived");
        assert!(failures.is_empty(), "failed requests around the rollback: {failures:?}");
    }
    assert_eq!(compiles(&host).await, compiled_before, "a rollback compiles nothing");
    let metrics = api_client().get(host.http("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("switchyard_plugin_compiles_total {compiled_before}")), "{metrics}");

    // The versions list: the serving one, then the retained, with figures.
    let (status, versions) = admin_get(&host, "/api/plugins/echo/versions").await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    assert_eq!(versions["plugin"], "echo");
    let list = versions["versions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{versions}");
    assert_eq!((list[0]["version"].as_str(), list[0]["role"].as_str()), (Some("0.1.0"), Some("serving")));
    assert_eq!((list[1]["version"].as_str(), list[1]["role"].as_str()), (Some("2.0.0"), Some("retained")));
    assert!(list[1]["calls"].as_u64().unwrap() >= 200, "{versions}");
    assert_eq!(list[1]["errors"], 0);
    assert!(list[1]["p99_ms"].as_f64().unwrap() >= list[1]["p50_ms"].as_f64().unwrap());
    assert!(list[0]["loaded_at"].as_str().unwrap().ends_with('Z'));

    // Forward again by a hash prefix; refused refs say why.
    let hash = list[1]["hash"].as_str().unwrap().to_owned();
    let (status, done) = admin_post(&host, "/api/plugins/echo/rollback", Some(json!({"to": &hash[..10]}))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["to"]["version"], "2.0.0");
    assert_eq!(client.call("echo", json!({"message": "y"})).await["meta"]["plugin_version"], "2.0.0");
    let (status, error) = admin_post(&host, "/api/plugins/echo/rollback", Some(json!({"to": "9.9.9"}))).await;
    assert_eq!((status, error["data"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("VERSION_NOT_FOUND")), "{error}");
    let (status, error) = admin_post(&host, "/api/plugins/nope/rollback", None).await;
    assert_eq!((status, error["data"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")), "{error}");
    let (status, error) = admin_post(&host, "/api/plugins/echo/rollback", Some(json!({"too": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, _) = json_of(api_client().post(host.http("/api/plugins/echo/rollback")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    host.shutdown().await;
}

#[tokio::test]
async fn the_history_keeps_the_configured_number_of_versions() {
    let host = Host::start_with(&["echo"], |config| {
        with_admin(config);
        config.plugins.history = 1;
    })
    .await;
    let mut client = host.connect().await;
    watch_status(&mut client).await;
    for name in ["echo_v2", "echo", "echo_v2"] {
        host.install(name, "echo.wasm");
        status_for(&mut client, "echo.wasm").await;
    }
    let (_, versions) = admin_get(&host, "/api/plugins/echo/versions").await;
    let roles: Vec<(&str, &str)> =
        versions["versions"].as_array().unwrap().iter().map(|v| (v["version"].as_str().unwrap(), v["role"].as_str().unwrap())).collect();
    assert_eq!(roles, [("2.0.0", "serving"), ("0.1.0", "retained")], "{versions}");
    host.shutdown().await;
}

async fn state(client: &mut Client) -> (Value, Value) {
    let reply = client.call("state.get", json!({})).await;
    assert_eq!(reply["type"], "reply", "{reply}");
    (reply["data"].clone(), reply["meta"]["plugin_version"].clone())
}

#[tokio::test]
async fn a_migration_renames_a_key_under_load_a_failing_one_is_refused_and_a_rollback_restores() {
    let host = Host::start_with(&["stateful"], with_admin).await;
    let mut client = host.connect().await;
    watch_status(&mut client).await;
    assert_eq!(client.call("state.put", json!({"value": "x"})).await["data"]["stored"], "a");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let clients = load(&host, 3, "state.ping", json!({}), &stop, &sent);
    while sent.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 1.0.0 -> 2.0.0: migrate renames a to b before 2.0.0 takes traffic.
    host.install("stateful_v2", "stateful.wasm");
    let event = status_for(&mut client, "stateful.wasm").await;
    assert_eq!(event["event"], "plugin_swapped", "{event}");
    assert_eq!(state(&mut client).await, (json!({"a": null, "b": "x"}), json!("2.0.0")));

    // Back to 1.0.0: the state before the migration comes back.
    let (status, done) = admin_post(&host, "/api/plugins/stateful/rollback", None).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["restored_kv"], true, "{done}");
    assert_eq!(state(&mut client).await, (json!({"a": "x", "b": null}), json!("1.0.0")));

    // A migration that fails: refused, 1.0.0 keeps serving, kv untouched.
    host.install("stateful_v2_broken", "stateful.wasm");
    let event = status_for(&mut client, "stateful.wasm").await;
    assert_eq!(event["event"], "migration_failed", "{event}");
    assert_eq!(event["error"]["code"], "MIGRATION_BROKEN");
    assert_eq!(event["from"]["version"], "1.0.0");
    let event = status_for(&mut client, "stateful.wasm").await;
    assert_eq!(event["event"], "plugin_failed", "{event}");
    assert_eq!(event["error"]["code"], "MIGRATION_FAILED");
    assert_eq!(state(&mut client).await, (json!({"a": "x", "b": null}), json!("1.0.0")));

    // Migrated again, then written: a rollback would lose the write, so it is refused.
    host.install("stateful_v2", "stateful.wasm");
    assert_eq!(status_for(&mut client, "stateful.wasm").await["event"], "plugin_swapped");
    assert_eq!(state(&mut client).await, (json!({"a": null, "b": "x"}), json!("2.0.0")));
    assert_eq!(client.call("state.put", json!({"value": "y"})).await["data"]["stored"], "b");
    let (status, error) = admin_post(&host, "/api/plugins/stateful/rollback", None).await;
    assert_eq!((status, error["data"]["code"].as_str()), (StatusCode::CONFLICT, Some("ROLLBACK_REFUSED")), "{error}");
    assert_eq!(state(&mut client).await, (json!({"a": null, "b": "y"}), json!("2.0.0")));

    stop.store(true, Ordering::Relaxed);
    for task in clients {
        let failures = task.await.expect("load client survived");
        assert!(failures.is_empty(), "failed requests around the migrations: {failures:?}");
    }
    assert!(sent.load(Ordering::Relaxed) >= 100);
    host.shutdown().await;
}

/// Wait for the status event `event` (skipping others).
/// The next `status` event named `event`; a canary that ends the other
/// way fails at once, with its reason and figures.
async fn status_event(client: &mut Client, event: &str) -> Value {
    loop {
        let frame = client.event_on("status").await;
        let name = frame["data"]["event"].as_str().unwrap_or_default();
        if name == event {
            return frame["data"].clone();
        }
        let canary_ended = ["canary_promoted", "canary_rolled_back"];
        assert!(!(canary_ended.contains(&event) && canary_ended.contains(&name)), "waited for {event}, got {frame}");
    }
}

async fn upload_canary(host: &Host, name: &str, guest_name: &str, query: &str) -> (StatusCode, Value) {
    let bytes = std::fs::read(guest(guest_name)).unwrap();
    let url = host.http(&format!("/api/plugins/{name}/canary{query}"));
    json_of(api_client().post(url).bearer_auth(ADMIN).body(bytes).send().await.unwrap()).await
}

#[tokio::test]
async fn a_faulty_canary_is_rolled_back_automatically_within_its_window() {
    const WINDOW: u64 = 40;
    const CLIENTS: u64 = 4;
    let host = Host::start_with(&["flaky"], |config| {
        with_admin(config);
        let rollout = switchyard::config::rollout::RolloutConfig { weight: 20, window: WINDOW, promote_after: 1_000_000, ..Default::default() };
        config.plugins.rollout.insert("flaky".into(), rollout);
    })
    .await;
    let mut watcher = host.connect().await;
    watch_status(&mut watcher).await;
    let (status, started) = upload_canary(&host, "flaky", "flaky_v2", "").await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["event"], "canary_started");
    assert_eq!(started["weight"], 20);
    assert_eq!(started["candidate"]["version"], "2.0.0");
    assert_eq!(status_event(&mut watcher, "canary_started").await["candidate"]["version"], "2.0.0");
    let (_, versions) = admin_get(&host, "/api/plugins/flaky/versions").await;
    assert_eq!(versions["versions"][1]["role"], "canary", "{versions}");

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (stop, url) = (Arc::clone(&stop), host.url());
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(&url).await;
            let (mut failures, mut n) = (Vec::new(), c * 1_000_000);
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let reply = client.call("flaky.work", json!({"n": n})).await;
                if reply["type"] != "reply" {
                    failures.push(reply);
                }
            }
            failures
        }));
    }
    let rolled_back = status_event(&mut watcher, "canary_rolled_back").await;
    assert!(rolled_back["reason"].as_str().unwrap().contains("error rate"), "{rolled_back}");
    assert_eq!(rolled_back["candidate"]["errors_by_code"]["FLAKY"].as_u64().map(|n| n > 0), Some(true), "{rolled_back}");
    // From now on the stable version serves every message.
    let mut client = host.connect().await;
    for n in 0..50u64 {
        let reply = client.call("flaky.work", json!({"n": n * 5})).await;
        assert_eq!(reply["meta"]["plugin_version"], "1.0.0", "{reply}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for task in clients {
        failures.extend(task.await.expect("load client survived"));
    }
    // The candidate saw at most its window (the call that crossed it decided)
    // plus the calls in flight then; it fails one in five of them.
    let candidate_calls = rolled_back["candidate"]["calls"].as_u64().unwrap();
    assert!(candidate_calls <= WINDOW + CLIENTS, "candidate took {candidate_calls} calls past its window");
    assert!(!failures.is_empty() && failures.iter().all(|f| f["data"]["code"] == "FLAKY"), "{failures:?}");
    assert!(failures.len() as u64 <= WINDOW + CLIENTS, "{} client-seen failures over the bound", failures.len());
    let (_, canary) = admin_get(&host, "/api/plugins/flaky/canary").await;
    assert_eq!(canary["state"], "rolled_back", "{canary}");
    // Per-version errors by code, in /metrics.
    let metrics = api_client().get(host.http("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = r#"switchyard_plugin_version_errors_total{plugin="flaky",version="2.0.0",code="FLAKY"} "#;
    let counted = metrics.lines().find_map(|l| l.strip_prefix(series)).and_then(|n| n.parse::<u64>().ok());
    // Calls in flight when the canary decided may have failed since.
    let at_decision = rolled_back["candidate"]["errors_by_code"]["FLAKY"].as_u64().unwrap();
    assert!(counted.is_some_and(|n| n >= at_decision), "{series}>= {at_decision} in {metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    let (_, versions) = admin_get(&host, "/api/plugins/flaky/versions").await;
    assert_eq!((versions["versions"][1]["version"].as_str(), versions["versions"][1]["role"].as_str()), (Some("2.0.0"), Some("retained")));
    host.shutdown().await;
}

#[tokio::test]
async fn a_healthy_sticky_canary_is_promoted_and_clients_never_flip_before() {
    const CLIENTS: usize = 10;
    let host = Host::start_with(&["echo"], |config| {
        with_admin(config);
        // This canary is judged on errors only: over a 20-call window the
        // p99 is the slowest call, one scheduling hiccup on a busy machine
        // (the latency threshold has its own test).
        let rollout =
            switchyard::config::rollout::RolloutConfig { window: 20, promote_after: 300, max_p99_ratio: 1e6, ..Default::default() };
        config.plugins.rollout.insert("echo".into(), rollout);
    })
    .await;
    let mut watcher = host.connect().await;
    watch_status(&mut watcher).await;
    let (status, started) = upload_canary(&host, "echo", "echo_v2", "?weight=50&sticky=client_id").await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["sticky"], "client_id");
    let (status, refused) = upload_canary(&host, "echo", "echo_v2", "?weight=50").await;
    assert_eq!((status, refused["data"]["code"].as_str()), (StatusCode::CONFLICT, Some("CANARY_REFUSED")), "{refused}");

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (stop, url) = (Arc::clone(&stop), format!("{}?client_id=client-{c}", host.url()));
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(&url).await;
            let mut seen: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let reply = client.call("echo", json!({"message": "m"})).await;
                assert_eq!(reply["type"], "reply", "{reply}");
                let version = reply["meta"]["plugin_version"].as_str().unwrap().to_owned();
                if seen.last() != Some(&version) {
                    seen.push(version);
                }
            }
            seen
        }));
    }
    let promoted = status_event(&mut watcher, "canary_promoted").await;
    assert!(promoted["candidate"]["calls"].as_u64().unwrap() >= 300, "{promoted}");
    let mut client = host.connect().await;
    assert_eq!(client.call("echo", json!({"message": "m"})).await["meta"]["plugin_version"], "2.0.0");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let mut on_candidate = 0;
    for task in clients {
        let seen = task.await.expect("load client survived");
        // One version until the promotion, then the candidate: never back.
        assert!(seen == ["2.0.0"] || seen == ["0.1.0", "2.0.0"], "a client flipped: {seen:?}");
        on_candidate += usize::from(seen == ["2.0.0"]);
    }
    assert!(on_candidate > 0 && on_candidate < CLIENTS, "the split put {on_candidate} of {CLIENTS} clients on the candidate");
    assert_eq!(std::fs::read(host.plugin_dir().join("echo.wasm")).unwrap(), std::fs::read(guest("echo_v2")).unwrap());
    let (_, canary) = admin_get(&host, "/api/plugins/echo/canary").await;
    assert_eq!(canary["state"], "promoted", "{canary}");
    let (status, _) = admin_post(&host, "/api/plugins/echo/canary/promote", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    host.shutdown().await;
}

async fn admin_delete(host: &Host, path: &str) -> (StatusCode, Value) {
    json_of(api_client().delete(host.http(path)).bearer_auth(ADMIN).send().await.unwrap()).await
}

async fn upload_shadow(host: &Host, name: &str, guest_name: &str, query: &str) -> (StatusCode, Value) {
    let bytes = std::fs::read(guest(guest_name)).unwrap();
    let url = host.http(&format!("/api/plugins/{name}/shadow{query}"));
    json_of(api_client().post(url).bearer_auth(ADMIN).body(bytes).send().await.unwrap()).await
}

/// The shadow's figures once every copy of `sent` messages was compared
/// or dropped.
async fn shadow_settled(host: &Host, name: &str, sent: u64) -> Value {
    let deadline = Instant::now() + switchyard_tests::PATIENCE;
    loop {
        let (status, shadow) = admin_get(host, &format!("/api/plugins/{name}/shadow")).await;
        assert_eq!(status, StatusCode::OK, "{shadow}");
        let done = shadow["compared"].as_u64().unwrap() + shadow["dropped"].as_u64().unwrap();
        assert!(done <= sent, "more copies than messages: {shadow}");
        if done == sent {
            return shadow;
        }
        assert!(Instant::now() < deadline, "copies still pending after {:?}: {shadow}", switchyard_tests::PATIENCE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_divergent_shadow_is_compared_and_leaves_no_trace() {
    const CLIENTS: u64 = 4;
    const ROUNDS: u64 = 50;
    let host = Host::start_with(&["mirror"], with_admin).await;
    let mut watcher = host.connect().await;
    watch_status(&mut watcher).await;
    let mut subscriber = host.connect().await;
    let reply = subscriber.call("subscribe", json!({ "events": ["mirror.news"] })).await;
    assert_eq!(reply["type"], "reply", "{reply}");

    let (status, refused) = upload_shadow(&host, "mirror", "mirror_v2", "?ignore=data.served").await;
    assert_eq!((status, refused["data"]["code"].as_str()), (StatusCode::CONFLICT, Some("SHADOW_REFUSED")), "{refused}");
    // A CPU budget is a share of one core.
    let (status, refused) = upload_shadow(&host, "mirror", "mirror_v2", "?cpu_budget=1.5").await;
    assert_eq!((status, refused["data"]["code"].as_str()), (StatusCode::CONFLICT, Some("SHADOW_REFUSED")), "{refused}");
    assert!(refused["data"]["message"].as_str().unwrap().contains("(0, 1]"), "{refused}");
    let (status, refused) = upload_shadow(&host, "mirror", "mirror_v2", "?cpu_budget=half").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, started) = upload_shadow(&host, "mirror", "mirror_v2", "?ignore=/data/served").await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["cpu_budget"], 0.1, "the default budget: {started}");
    assert_eq!((started["event"].as_str(), started["candidate"]["version"].as_str()), (Some("shadow_started"), Some("2.0.0")));
    assert_eq!(status_event(&mut watcher, "shadow_started").await["candidate"]["version"], "2.0.0");
    let (_, versions) = admin_get(&host, "/api/plugins/mirror/versions").await;
    let roles: Vec<(&str, &str)> =
        versions["versions"].as_array().unwrap().iter().map(|v| (v["version"].as_str().unwrap(), v["role"].as_str().unwrap())).collect();
    assert_eq!(roles, [("1.0.0", "serving"), ("2.0.0", "shadow")], "{versions}");
    // One candidate at a time.
    let (status, refused) = upload_shadow(&host, "mirror", "mirror_v2", "").await;
    assert_eq!((status, refused["data"]["code"].as_str()), (StatusCode::CONFLICT, Some("SHADOW_REFUSED")), "{refused}");
    let (status, refused) = upload_canary(&host, "mirror", "mirror_slow", "").await;
    assert_eq!((status, refused["data"]["code"].as_str()), (StatusCode::CONFLICT, Some("CANARY_REFUSED")), "{refused}");

    // Load: every reply is the serving version's, and no candidate effect
    // (a sent frame would break the request/reply correlation) arrives.
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let url = host.url();
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(&url).await;
            for n in 0..ROUNDS {
                let reply = client.call("mirror.echo", json!({ "text": format!("{c}-{n}") })).await;
                assert_eq!((reply["type"].as_str(), reply["meta"]["plugin_version"].as_str()), (Some("reply"), Some("1.0.0")), "{reply}");
                assert_eq!(reply["data"], json!({ "text": format!("{c}-{n}"), "served": "1.0.0" }));
                let reply = client.call("mirror.add", json!({ "a": n, "b": c })).await;
                assert_eq!(reply["meta"]["plugin_version"], "1.0.0", "{reply}");
                assert_eq!(reply["data"], json!({ "sum": n + c, "served": "1.0.0" }));
            }
            client
        }));
    }
    let mut loaders = Vec::new();
    for task in clients {
        loaders.push(task.await.expect("load client survived"));
    }
    let sent = CLIENTS * ROUNDS * 2;
    shadow_settled(&host, "mirror", sent).await;
    // One more add once the queue is empty: compared, never dropped.
    let reply = loaders[0].call("mirror.add", json!({ "a": 20, "b": 22 })).await;
    assert_eq!(reply["data"]["sum"], 42, "{reply}");
    let shadow = shadow_settled(&host, "mirror", sent + 1).await;
    let (compared, matched) = (shadow["compared"].as_u64().unwrap(), shadow["matched"].as_u64().unwrap());
    assert!(matched < compared, "the adds differ: {shadow}");
    assert_eq!(shadow["match_rate"].as_f64().unwrap(), matched as f64 / compared as f64);
    let samples = shadow["samples"].as_array().unwrap();
    assert_eq!(samples.len() as u64, (compared - matched).min(20), "{shadow}");
    for sample in samples {
        assert_eq!(sample["type"], "mirror.add", "{sample}");
        assert_eq!(sample["differing_paths"], json!(["/data/sum"]), "the ignored /data/served is not reported: {sample}");
        assert_eq!(sample["candidate"]["data"]["sum"].as_i64().unwrap(), sample["serving"]["data"]["sum"].as_i64().unwrap() + 1);
    }
    for side in ["serving", "candidate"] {
        assert!(shadow["latency"][side]["p50_ms"].as_f64().is_some() && shadow["latency"][side]["p99_ms"].as_f64().is_some(), "{shadow}");
    }
    let effects = &shadow["effects"]["counts"];
    for effect in ["kv_set", "publish", "send", "room_join", "room_broadcast"] {
        assert_eq!(effects[effect].as_u64(), Some(compared), "every candidate call's {effect} is recorded: {shadow}");
    }

    // No trace: the serving version's kv, the rooms, the topic's
    // subscriber and the load clients' connections.
    let mut client = host.connect().await;
    let reply = client.call("mirror.seen", json!({})).await;
    assert_eq!(reply["data"], json!({ "seen": null }), "{reply}");
    // The candidate read its own scratch write; the serving version never saw it.
    let compared = shadow_settled(&host, "mirror", sent + 2).await["compared"].as_u64().unwrap();
    let (_, status) = admin_get(&host, "/api/status").await;
    assert!(status["rooms"].as_array().unwrap().iter().all(|r| r["name"] != "mirror-room"), "{}", status["rooms"]);
    // Anything delivered was queued before the candidate's call was
    // counted, so before these pings' replies.
    for connection in loaders.iter_mut().chain([&mut subscriber]) {
        let reply = connection.call("ping", json!({})).await;
        assert_eq!(reply["type"], "pong", "{reply}");
        connection.assert_quiet(Duration::ZERO).await;
    }

    let (status, stopped) = admin_delete(&host, "/api/plugins/mirror/shadow").await;
    assert_eq!((status, stopped["event"].as_str()), (StatusCode::OK, Some("shadow_stopped")), "{stopped}");
    assert_eq!(stopped["compared"], compared);
    assert_eq!(status_event(&mut watcher, "shadow_stopped").await["reason"], "stopped by hand");
    let (status, gone) = admin_get(&host, "/api/plugins/mirror/shadow").await;
    assert_eq!((status, gone["data"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")), "{gone}");
    let (status, gone) = admin_delete(&host, "/api/plugins/mirror/shadow").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    let (_, versions) = admin_get(&host, "/api/plugins/mirror/versions").await;
    assert!(versions["versions"].as_array().unwrap().iter().all(|v| v["role"] != "shadow"), "{versions}");
    let reply = client.call("mirror.add", json!({ "a": 1, "b": 1 })).await;
    assert_eq!((reply["data"]["sum"].as_i64(), reply["meta"]["plugin_version"].as_str()), (Some(2), Some("1.0.0")), "{reply}");
    host.shutdown().await;
}

/// A host serving `mirror` whose canaries (`[plugins.rollout.mirror]`)
/// take half the traffic, are judged from their 20th call and are never
/// promoted.
async fn mirror_with_canaries() -> Host {
    Host::start_with(&["mirror"], |config| {
        with_admin(config);
        let rollout = switchyard::config::rollout::RolloutConfig { weight: 50, window: 20, promote_after: 1_000_000, ..Default::default() };
        config.plugins.rollout.insert("mirror".into(), rollout);
    })
    .await
}

#[tokio::test]
async fn a_canary_whose_p99_is_far_above_the_stables_is_rolled_back_on_latency() {
    const CLIENTS: usize = 2;
    // The latency is judged on every 32nd candidate call past the window.
    let host = mirror_with_canaries().await;
    let mut watcher = host.connect().await;
    watch_status(&mut watcher).await;
    // mirror-slow answers like 1.0.0, after 20 ms of busy work.
    let (status, started) = upload_canary(&host, "mirror", "mirror_slow", "").await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let clients = load(&host, CLIENTS, "mirror.echo", json!({ "text": "t" }), &stop, &sent);
    let rolled_back = status_event(&mut watcher, "canary_rolled_back").await;
    stop.store(true, Ordering::Relaxed);
    let reason = rolled_back["reason"].as_str().unwrap();
    assert!(reason.contains("p99") && reason.contains("stable"), "{rolled_back}");
    assert_eq!(rolled_back["candidate"]["errors"], 0, "judged on latency alone: {rolled_back}");
    for task in clients {
        let failures = task.await.expect("load client survived");
        assert!(failures.is_empty(), "{failures:?}");
    }
    let mut client = host.connect().await;
    assert_eq!(client.call("mirror.echo", json!({ "text": "t" })).await["meta"]["plugin_version"], "1.0.0");
    host.shutdown().await;
}

#[tokio::test]
async fn a_component_dropped_in_the_folder_starts_the_configured_canary_and_a_rollback_puts_the_file_back() {
    let host = mirror_with_canaries().await;
    let mut watcher = host.connect().await;
    watch_status(&mut watcher).await;
    // A new build copied over the serving one: a canary, not a swap.
    host.install("mirror_slow", "mirror.wasm");
    let started = status_event(&mut watcher, "canary_started").await;
    assert_eq!((started["candidate"]["version"].as_str(), started["weight"].as_u64()), (Some("3.0.0"), Some(50)), "{started}");
    let (_, versions) = admin_get(&host, "/api/plugins/mirror/versions").await;
    assert_eq!((versions["versions"][0]["version"].as_str(), versions["versions"][0]["role"].as_str()), (Some("1.0.0"), Some("serving")));
    assert_eq!((versions["versions"][1]["version"].as_str(), versions["versions"][1]["role"].as_str()), (Some("3.0.0"), Some("canary")));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let clients = load(&host, 2, "mirror.echo", json!({ "text": "t" }), &stop, &sent);
    let rolled_back = status_event(&mut watcher, "canary_rolled_back").await;
    stop.store(true, Ordering::Relaxed);
    assert!(rolled_back["reason"].as_str().unwrap().contains("p99"), "{rolled_back}");
    for task in clients {
        assert!(task.await.expect("load client survived").is_empty());
    }
    // The folder holds what serves again, and the host finds it unchanged.
    let on_disk = std::fs::read(host.plugin_dir().join("mirror.wasm")).unwrap();
    assert!(on_disk == std::fs::read(guest("mirror")).unwrap(), "the file holds 1.0.0 again");
    let mut client = host.connect().await;
    assert_eq!(client.call("mirror.echo", json!({ "text": "t" })).await["meta"]["plugin_version"], "1.0.0");
    let (_, status) = admin_get(&host, "/api/status").await;
    assert_eq!(status["swaps"], 0, "no swap happened: {status}");
    host.shutdown().await;
}

#[tokio::test]
async fn a_file_still_compiling_when_a_rollback_commits_does_not_undo_the_rollback() {
    let host = Host::start_with(&["mirror"], with_admin).await;
    let mut watcher = host.connect().await;
    watch_status(&mut watcher).await;
    host.install("mirror_v2", "mirror.wasm");
    assert_eq!(status_for(&mut watcher, "mirror.wasm").await["event"], "plugin_swapped");

    // 3.0.0 lands in the folder; the host reads it and starts compiling.
    let registry = host.server().registry();
    let compiled = registry.compile_count();
    host.install_bytes(&fresh_bytes("mirror_slow"), "mirror.wasm");
    let started = Instant::now();
    while registry.compile_count() == compiled {
        assert!(started.elapsed() < Duration::from_secs(5), "the new file was not picked up");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Meanwhile the operator rolls back to 1.0.0.
    let (status, done) = admin_post(&host, "/api/plugins/mirror/rollback", Some(json!({ "to": "1.0.0" }))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["from"]["version"], "2.0.0", "the rollback came while 3.0.0 compiled: {done}");

    // The load that read 3.0.0 before the rollback finishes and stands down.
    let late = tokio::time::timeout(Duration::from_secs(3), status_for(&mut watcher, "mirror.wasm")).await;
    assert!(late.is_err(), "the overtaken load was served: {late:?}");
    let mut client = host.connect().await;
    let reply = client.call("mirror.echo", json!({ "text": "t" })).await;
    assert_eq!(reply["meta"]["plugin_version"], "1.0.0", "{reply}");
    let on_disk = std::fs::read(host.plugin_dir().join("mirror.wasm")).unwrap();
    assert!(on_disk == std::fs::read(guest("mirror")).unwrap(), "the folder holds what serves");
    let (_, versions) = admin_get(&host, "/api/plugins/mirror/versions").await;
    assert_eq!(versions["versions"][0]["version"], "1.0.0", "{versions}");
    // A later change of the file is served as usual.
    host.install("mirror_slow", "mirror.wasm");
    assert_eq!(status_for(&mut watcher, "mirror.wasm").await["event"], "plugin_swapped");
    assert_eq!(client.call("mirror.echo", json!({ "text": "t" })).await["meta"]["plugin_version"], "3.0.0");
    host.shutdown().await;
}
