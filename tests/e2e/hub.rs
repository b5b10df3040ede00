//! The realtime hub: the room protocol verbatim, subscriptions with
//! patterns and filters, pre-subscribed endpoints, the sysmon feed,
//! lifecycle hooks, fan-out at scale, slow consumers, and plugins built
//! against the 0.1.0 contract.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_tests::{Client, Ending, Host};

async fn device(host: &Host, identify: Value) -> (Client, Vec<Value>) {
    let mut client = Client::connect_without_ack(&host.endpoint("/rooms")).await;
    client.send_text(&identify.to_string()).await;
    let frames = vec![client.recv_frame().await, client.recv_frame().await];
    (client, frames)
}

#[tokio::test]
async fn the_room_protocol_with_three_devices() {
    let host = Host::start(&["rooms"]).await;

    // Before identifying, anything else is an error.
    let mut stranger = Client::connect_without_ack(&host.endpoint("/rooms")).await;
    stranger.send_text(r#"{"type":"query_room"}"#).await;
    let reply = stranger.recv_frame().await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("identify"), "{reply}");

    let (mut a, frames) = device(&host, json!({"device_id": "device_a", "identity": "mobile_user"})).await;
    assert_eq!(frames[0], json!({"type": "connection", "message": "Connected successfully"}));
    assert_eq!(frames[1]["type"], "room");
    assert_eq!(frames[1]["status"], "created_new");
    let room = frames[1]["room_id"].as_str().unwrap().to_owned();
    assert!(room.len() == 6 && room.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()), "{room}");

    let (mut b, frames) = device(&host, json!({"device_id": "device_b", "identity": "tablet", "room_id": room})).await;
    assert_eq!(frames[1], json!({"type": "room", "room_id": room, "status": "joined_existing"}));
    let (mut c, frames) = device(&host, json!({"device_id": "device_c", "identity": "tv", "room_id": room})).await;
    assert_eq!(frames[1]["status"], "joined_existing");
    let (_lost, frames) = device(&host, json!({"device_id": "device_x", "identity": "x", "room_id": "NOROOM"})).await;
    assert_eq!(frames[1], json!({"type": "room", "room_id": "NOROOM", "status": "room_not_found"}));

    // Broadcast reaches the others, not the sender.
    a.send_text(r#"{"type":"message","content":"hello all","timestamp":"2025-04-25T13:51:00Z"}"#).await;
    for other in [&mut b, &mut c] {
        assert_eq!(
            other.recv_frame().await,
            json!({"type": "message", "content": "hello all", "from_device_id": "device_a", "message_type": "broadcast", "timestamp": "2025-04-25T13:51:00Z"})
        );
    }
    a.assert_quiet(Duration::from_millis(200)).await;

    // A direct message reaches one device only.
    b.send_text(r#"{"type":"message","content":"psst","target_device_id":"device_c","timestamp":"t1"}"#).await;
    let direct = c.recv_frame().await;
    assert_eq!(direct["message_type"], "direct");
    assert_eq!(direct["from_device_id"], "device_b");
    assert_eq!(direct["content"], "psst");
    a.assert_quiet(Duration::from_millis(200)).await;
    b.send_text(r#"{"type":"message","content":"?","target_device_id":"device_zzz"}"#).await;
    let error = b.recv_frame().await;
    assert_eq!(error["type"], "error");
    assert!(error["message"].as_str().unwrap().contains("device_zzz"), "{error}");

    // query_room lists the other devices.
    a.send_text(r#"{"type":"query_room"}"#).await;
    let info = a.recv_frame().await;
    assert_eq!(info["type"], "room_info");
    assert_eq!(info["room_id"], room);
    assert_eq!(info["total_clients"], 3);
    let mut devices: Vec<&str> = info["clients"].as_array().unwrap().iter().map(|c| c["device_id"].as_str().unwrap()).collect();
    devices.sort();
    assert_eq!(devices, ["device_b", "device_c"]);
    assert_eq!(info["clients"][0]["identity"], "tablet");

    // A device that reconnects without a room id goes back to its room.
    c.close().await;
    let (mut c, frames) = device(&host, json!({"device_id": "device_c", "identity": "tv"})).await;
    assert_eq!(frames[1], json!({"type": "room", "room_id": room, "status": "reconnected"}));
    a.send_text(r#"{"type":"message","content":"welcome back"}"#).await;
    assert_eq!(c.recv_frame().await["content"], "welcome back");
    host.shutdown().await;
}

#[tokio::test]
async fn subscriptions_with_patterns_and_filters() {
    let host = Host::start(&["publisher"]).await;
    let mut watcher = host.connect().await;
    let reply = watcher
        .call("subscribe", json!({"events": ["alert.cpu", "alert.*"], "filters": {"level": ["warning", "critical"]}}))
        .await;
    assert_eq!(reply["data"]["subscriptions"], json!(["alert.cpu", "alert.*"]));
    let mut producer = host.connect().await;
    let publish = |topic: &str, level: &str| json!({"topic": topic, "data": {"level": level}});
    producer.call("pub.publish", publish("alert.cpu", "info")).await;
    producer.call("pub.publish", publish("alert.disk", "critical")).await;
    producer.call("pub.publish", publish("performance", "critical")).await;
    producer.call("pub.publish", publish("alert.cpu", "warning")).await;

    let first = watcher.event().await;
    assert_eq!((first["type"].as_str(), first["meta"]["topic"].as_str()), (Some("alert"), Some("alert.disk")));
    assert_eq!(first["data"]["level"], "critical");
    let second = watcher.event().await;
    assert_eq!(second["meta"]["topic"], "alert.cpu");
    assert_eq!(second["data"]["level"], "warning");
    watcher.assert_quiet(Duration::from_millis(200)).await;

    let reply = watcher.call("unsubscribe", json!({"events": ["alert.*", "alert.cpu"]})).await;
    assert_eq!(reply["data"]["subscriptions"], json!([]));
    producer.call("pub.publish", publish("alert.cpu", "critical")).await;
    watcher.assert_quiet(Duration::from_millis(300)).await;

    let bad = watcher.call("subscribe", json!({"events": ["*"]})).await;
    assert_eq!(bad["data"]["code"], "INVALID_MESSAGE");
    host.shutdown().await;
}

#[tokio::test]
async fn status_and_alert_endpoints_come_pre_subscribed() {
    let host = Host::start(&["publisher"]).await;
    let mut status = Client::connect(&host.endpoint("/ws/status")).await;
    let mut alerts = Client::connect(&host.endpoint("/ws/alerts")).await;
    assert_eq!(alerts.ack["endpoint"], "/ws/alerts");
    host.install("echo", "echo.wasm");
    let event = status.event_on("status").await;
    assert_eq!(event["type"], "status");
    assert_eq!(event["data"]["event"], "plugin_loaded");
    assert_eq!(event["data"]["plugin"], "echo");
    let mut producer = host.connect().await;
    producer.call("pub.publish", json!({"topic": "alert.memory", "data": {"level": "warning"}})).await;
    assert_eq!(alerts.event().await["meta"]["topic"], "alert.memory");
    host.shutdown().await;
}

#[tokio::test]
async fn sysmon_publishes_performance_on_its_period_and_cycles_alerts() {
    let host = Host::start_with(&["sysmon"], |c| {
        let settings = c.plugins.settings.entry("sysmon".into()).or_default();
        settings.insert("interval_ms".into(), toml::Value::Integer(500));
        settings.insert("memory_percent".into(), toml::Value::Float(0.0));
    })
    .await;
    // The first sample (250 ms after start) crosses the memory threshold of 0.
    let mut alerts = Client::connect(&host.endpoint("/ws/alerts")).await;
    let mut feed = Client::connect(&host.endpoint("/ws/performance")).await;
    let mut times = Vec::new();
    for _ in 0..3 {
        let event = feed.event_on("performance").await;
        assert_eq!(event["type"], "performance");
        for field in ["cpu_percent", "memory_percent", "disk_percent", "network_bytes_sent", "network_bytes_received", "process_count"] {
            assert!(event["data"][field].is_number(), "{field} in {event}");
        }
        assert!(event["data"]["process_count"].as_f64().unwrap() >= 1.0);
        times.push(Instant::now());
    }
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(250) && gap <= Duration::from_millis(2000), "period {gap:?} for interval 500 ms");
    }

    // Raising the threshold resolves the alert.
    let active = alerts.event_on("alert.memory").await;
    assert_eq!(active["type"], "alert");
    assert_eq!(active["data"]["status"], "active");
    assert_eq!(active["data"]["threshold"], 0.0);
    for field in ["alert_id", "level", "title", "message", "value"] {
        assert!(!active["data"][field].is_null(), "{field} in {active}");
    }
    let mut admin = host.connect().await;
    let reply = admin.call("sysmon.thresholds", json!({"memory_percent": 100.0})).await;
    assert_eq!(reply["data"]["thresholds"]["memory_percent"], 100.0);
    let resolved = alerts.event_on("alert.memory").await;
    assert_eq!(resolved["data"]["status"], "resolved");
    assert_eq!(resolved["data"]["alert_id"], active["data"]["alert_id"]);
    assert!(resolved["data"]["resolved_at"].is_string());

    let data = admin.call("request_data", json!({"metrics": ["cpu_percent", "memory_percent"], "history_minutes": 10})).await;
    let memory = data["data"]["metrics"]["memory_percent"].as_array().unwrap();
    assert!(memory.len() >= 3, "{data}");
    assert!(memory[0]["value"].is_number() && memory[0]["timestamp"].is_string());
    host.shutdown().await;
}

#[tokio::test]
async fn connection_hooks_run_for_plugins_the_connection_used() {
    let host = Host::start(&["publisher", "echo"]).await;
    let mut watcher = host.connect().await;
    watcher.call("subscribe", json!({"events": ["lifecycle.*"]})).await;
    let mut user = host.connect().await;
    let id = user.connection_id().to_owned();
    for _ in 0..3 {
        user.call("pub.publish", json!({"topic": "noise", "data": {}})).await;
    }
    // Opened once, before the first message.
    assert_eq!(watcher.event_on("lifecycle.opened").await["data"]["connection_id"], id);
    user.close().await;
    assert_eq!(watcher.event_on("lifecycle.closed").await["data"]["connection_id"], id);
    // A connection that never used the plugin does not trigger it.
    let mut bystander = host.connect().await;
    bystander.call("echo", json!({"message": "x"})).await;
    bystander.close().await;
    watcher.assert_quiet(Duration::from_millis(300)).await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_plugin_built_against_the_0_1_contract_still_loads_and_serves() {
    let host = Host::start(&["legacy_echo", "echo"]).await;
    let legacy = host.server().registry().plugins().into_iter().find(|p| p.name() == "legacy-echo").unwrap();
    assert_eq!(legacy.contract, "0.1.0");
    let echo = host.server().registry().plugins().into_iter().find(|p| p.name() == "echo").unwrap();
    assert_eq!(echo.contract, "0.3.0", "the Rust SDK builds the newest contract");
    let mut client = host.connect().await;
    let reply = client.call("legacy_echo", json!({"n": 1})).await;
    assert_eq!(reply["data"]["legacy"], json!({"n": 1}));
    assert_eq!(reply["data"]["transport"], "ws");
    assert_eq!(client.call("echo", json!({"message": "new"})).await["data"], "Echo: new");
    host.shutdown().await;
}

/// Every field of the `message` record reaches the plugin as the client
/// sent it, on the 0.1 record (no `endpoint`) and the 0.3 one: the host
/// lowers both from the envelope's own strings, not from copies.
#[tokio::test]
async fn a_plugin_receives_every_field_of_the_message_on_each_contract() {
    let host = Host::start(&["legacy_echo", "mirror"]).await;
    let mut client = Client::connect(&format!("{}?client_id=cam-9", host.endpoint("/ws"))).await;
    let connection_id = client.connection_id().to_owned();
    let data = json!({"text": "héllo \"quoted\" ✓", "n": [1, 2.5, null]});
    let meta = json!({"trace": "t-1", "nested": {"k": true}});

    let reply = client.request(json!({"type": "mirror.message", "id": "m-1", "data": data, "meta": meta})).await;
    assert_eq!(reply["type"], "reply", "{reply}");
    let origin = json!({"connection_id": connection_id, "client_id": "cam-9", "transport": "ws", "endpoint": "/ws"});
    assert_eq!(reply["data"], json!({"id": "m-1", "type": "mirror.message", "data": data, "meta": meta, "origin": origin}));

    let reply = client.request(json!({"type": "legacy_echo", "id": "l-1", "data": data, "meta": meta})).await;
    assert_eq!(
        reply["data"],
        json!({"legacy": data, "id": "l-1", "type": "legacy_echo", "meta": meta, "connection_id": connection_id, "client_id": "cam-9", "transport": "ws"}),
    );

    // No client id and no meta: `none` and `{}` reach the plugin.
    let mut anonymous = host.connect().await;
    let reply = anonymous.request(json!({"type": "mirror.message", "id": "m-2", "data": {}})).await;
    assert_eq!(reply["data"]["origin"]["client_id"], Value::Null, "{reply}");
    assert_eq!(reply["data"]["meta"], json!({}), "{reply}");
    let reply = anonymous.request(json!({"type": "legacy_echo", "id": "l-2", "data": {}})).await;
    assert_eq!((&reply["data"]["client_id"], &reply["data"]["meta"]), (&Value::Null, &json!({})), "{reply}");
    host.shutdown().await;
}

#[tokio::test]
async fn fan_out_to_1000_subscribers_in_order() {
    const SUBSCRIBERS: usize = 1000;
    const EVENTS: u64 = 20;
    let host = Host::start(&["publisher"]).await;
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut client = host.connect().await;
        client.call("subscribe", json!({"events": ["tick"]})).await;
        subscribers.push(client);
    }
    let mut producer = host.connect().await;
    let reply = producer.call("pub.publish", json!({"topic": "tick", "data": {"n": 1}, "count": EVENTS})).await;
    assert_eq!(reply["data"]["published"], EVENTS);
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                for seq in 0..EVENTS {
                    assert_eq!(client.event_on("tick").await["data"]["seq"], seq);
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.expect("every subscriber got every event in order");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_while_the_others_keep_receiving() {
    let host = Host::start_with(&["publisher"], |c| c.limits.outbox_frames = 32).await;
    let mut slow = host.connect().await;
    slow.call("subscribe", json!({"events": ["firehose"]})).await;
    let mut fast = host.connect().await;
    fast.call("subscribe", json!({"events": ["firehose"]})).await;
    let mut producer = host.connect().await;
    let blob = "z".repeat(32 * 1024);
    let reader = tokio::spawn(async move {
        for n in 0..400u64 {
            assert_eq!(fast.event_on("firehose").await["data"]["seq"], n % 10, "event {n} in order");
        }
        fast
    });
    // Bursts the reading subscriber's queue absorbs; the silent one's fills.
    for _ in 0..40 {
        producer.call("pub.publish", json!({"topic": "firehose", "data": {"blob": blob}, "count": 10})).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut fast = reader.await.expect("the reading subscriber got all 400 events");
    assert_eq!(fast.request(json!({"type": "ping"})).await["type"], "pong");
    // The one that never read was evicted with the slow-consumer code.
    assert_eq!(slow.ending().await, Ending::Closed(Some(4008)));
    assert_eq!(host.server().hub().connection_count(), 2);
    host.shutdown().await;
}
