//! Persistence, on each of the three backends: SQLite (always), and
//! private PostgreSQL and MariaDB servers started by the test kit
//! (`switchyard_tests::databases`). The same checks run on each:
//!
//! - plugin state survives a host restart (the video's playback, the
//!   rooms plugin's device→last-room map: `reconnected`, not `created_new`);
//! - history records every connection and every message answered;
//! - on PostgreSQL, an outage: routing goes on, kv writes fail with
//!   `KV_UNAVAILABLE`, history drops are counted, writes resume after.

use serde_json::json;
use std::time::{Duration, Instant};
use switchyard::store::db::text;
use switchyard_tests::databases::{DbServer, Kind, Store};
use switchyard_tests::on_every_backend;
use switchyard_tests::{metric_at, Client, Host, HostProcess};

on_every_backend!(plugin_state_survives_a_restart, history_records_connections_and_messages, the_room_servers_tables_answer_its_queries, retention_deletes_what_it_should_and_nothing_else);

async fn plugin_state_survives_a_restart(store: Store) {
    let host = Host::start_with(&["video", "rooms"], |c| store.configure(c)).await;
    let mut control = host.connect().await;
    control.call("video_command", json!({"action": "play", "video_path": "/videos/keep.mp4"})).await;
    let paused = control.call("video_command", json!({"action": "pause"})).await;
    assert_eq!(paused["data"]["state"], "paused", "{paused}");
    let (device, room) = host.room_device(json!({"device_id": "device_a", "identity": "tv"})).await;
    assert_eq!(room["status"], "created_new", "{room}");
    device.close().await;
    control.close().await;

    let host = host.restart().await;
    let mut control = host.connect().await;
    let status = control.call("video_command", json!({"action": "status"})).await;
    assert_eq!(status["data"]["state"], "paused", "{status}");
    assert_eq!(status["data"]["video_path"], "/videos/keep.mp4", "{status}");
    assert_eq!(status["data"]["position"], paused["data"]["position"], "{status}");
    let (_device, again) = host.room_device(json!({"device_id": "device_a", "identity": "tv"})).await;
    assert_eq!(again, json!({"type": "room", "room_id": room["room_id"], "status": "reconnected"}));
    host.shutdown().await;
}

async fn history_records_connections_and_messages(store: Store) {
    let host = Host::start_with(&["echo"], |c| {
        store.configure(c);
        c.storage.history.max_payload_bytes = 16;
    })
    .await;
    let mut client = host.connect().await;
    let connection_id = client.connection_id().to_owned();
    for n in 0..3 {
        assert_eq!(client.call("echo", json!({"message": format!("m{n}")})).await["type"], "reply");
    }
    let long = "x".repeat(100);
    client.call("echo", json!({"message": long})).await;
    assert_eq!(client.call("nobody_claims", json!(null)).await["data"]["code"], "UNKNOWN_TYPE");
    client.close().await;
    closed(&host).await;
    // Shutting down writes what is queued.
    host.shutdown().await;

    let db = store.open().await;
    let sql = |q| db.sql(q).into_owned();
    let rows: Vec<Vec<Option<String>>> = sqlx::query(&sql(
        "SELECT message_id, msg_type, outcome, plugin, payload, sender FROM message_history WHERE direction = 'in' ORDER BY seq",
    ))
    .fetch_all(db.pool())
    .await
    .unwrap()
    .iter()
    .map(|row| (0..6).map(|i| text(row, i).unwrap()).collect())
    .collect();
    let ids: Vec<(&str, &str, &str)> =
        rows.iter().map(|r| (r[0].as_deref().unwrap(), r[1].as_deref().unwrap(), r[2].as_deref().unwrap())).collect();
    assert_eq!(
        ids,
        [("t1", "echo", "OK"), ("t2", "echo", "OK"), ("t3", "echo", "OK"), ("t4", "echo", "OK"), ("t5", "nobody_claims", "UNKNOWN_TYPE")]
    );
    assert_eq!(rows[0][3].as_deref(), Some("echo"));
    assert_eq!(rows[0][4].as_deref(), Some(r#"{"message":"m0"}"#));
    assert_eq!(rows[3][4].as_deref().map(str::len), Some(16), "payloads are cut to max_payload_bytes");
    assert!(rows.iter().all(|r| r[5].as_deref() == Some(connection_id.as_str())));

    let (endpoint, closed, code): (String, Option<i64>, Option<i32>) =
        sqlx::query_as(&sql("SELECT endpoint, disconnected_ms, close_code FROM connection_history WHERE id = ?"))
            .bind(&connection_id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(endpoint, "/ws");
    assert!(closed.is_some(), "the close is recorded");
    assert_eq!(code, Some(1000));
    db.close().await;
}

/// A three-device session (join, broadcast, direct, query), then the room
/// server's kind of SQL on its five tables.
async fn the_room_servers_tables_answer_its_queries(store: Store) {
    let host = Host::start_with(&["rooms"], |c| store.configure(c)).await;
    let (mut a, joined) = host.room_device(json!({"device_id": "device_a", "identity": "mobile"})).await;
    let room = joined["room_id"].as_str().unwrap().to_owned();
    let (mut b, _) = host.room_device(json!({"device_id": "device_b", "identity": "tablet", "room_id": room})).await;
    let (mut c, _) = host.room_device(json!({"device_id": "device_c", "identity": "tv", "room_id": room})).await;
    a.send_text(r#"{"type":"message","content":"hello all"}"#).await;
    assert_eq!(b.recv_frame().await["content"], "hello all");
    assert_eq!(c.recv_frame().await["content"], "hello all");
    b.send_text(r#"{"type":"message","content":"psst","target_device_id":"device_c"}"#).await;
    assert_eq!(c.recv_frame().await["content"], "psst");
    a.send_text(r#"{"type":"query_room"}"#).await;
    assert_eq!(a.recv_frame().await["total_clients"], 3);

    let db = store.open().await;
    let started = Instant::now();
    let count = |table: &str| format!("SELECT COUNT(*) FROM {table}");
    while sqlx::query_scalar::<_, i64>(&count("room_queries")).fetch_one(db.pool()).await.unwrap() < 1 {
        assert!(started.elapsed() < Duration::from_secs(30), "the query never reached the tables");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for client in [a, b, c] {
        client.close().await;
    }
    closed(&host).await;
    host.shutdown().await;

    let strings = |sql: String, n: usize| {
        let db = &db;
        let room = room.clone();
        async move {
            let rows = sqlx::query(&db.sql(&sql)).bind(room).fetch_all(db.pool()).await.unwrap();
            rows.iter().map(|row| (0..n).map(|i| text(row, i).unwrap()).collect::<Vec<_>>()).collect::<Vec<_>>()
        }
    };
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(strings("SELECT room_id FROM rooms WHERE room_id = ?".into(), 1).await, [vec![s(&room)]]);
    assert_eq!(
        strings("SELECT device_id, last_room_id FROM devices WHERE last_room_id = ? ORDER BY device_id".into(), 2).await,
        [vec![s("device_a"), s(&room)], vec![s("device_b"), s(&room)], vec![s("device_c"), s(&room)]]
    );
    assert_eq!(
        strings("SELECT device_id, client_ip FROM connections WHERE room_id = ? ORDER BY connected_at, id".into(), 2).await,
        [vec![s("device_a"), s("127.0.0.1")], vec![s("device_b"), s("127.0.0.1")], vec![s("device_c"), s("127.0.0.1")]]
    );
    assert_eq!(
        strings("SELECT from_device_id, to_device_id, message_type, message_content FROM messages WHERE room_id = ? ORDER BY sent_at, id".into(), 4).await,
        [
            vec![s("device_a"), None, s("broadcast"), s("hello all")],
            vec![s("device_b"), s("device_c"), s("direct"), s("psst")]
        ]
    );
    assert_eq!(strings("SELECT device_id FROM room_queries WHERE room_id = ?".into(), 1).await, [vec![s("device_a")]]);
    // Time arithmetic in each dialect: the session's connections in the last hour.
    let recent = match store.server.as_ref().map(DbServer::kind) {
        None => "connected_at > datetime('now', '-1 hour')",
        Some(Kind::Postgres) => "connected_at > (NOW() AT TIME ZONE 'UTC') - INTERVAL '1 hour'",
        Some(Kind::Mariadb) => "connected_at > UTC_TIMESTAMP() - INTERVAL 1 HOUR",
    };
    let n: i64 = sqlx::query_scalar(&db.sql(&format!("SELECT COUNT(*) FROM connections WHERE room_id = ? AND {recent}")))
        .bind(&room)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(n, 3);
    db.close().await;
}

/// Old and surplus rows put in before the host starts; retention (every
/// 50 ms, batches of 2) removes exactly those.
async fn retention_deletes_what_it_should_and_nothing_else(store: Store) {
    let db = store.open().await;
    let day_ms = 86_400_000;
    let now = switchyard::store::db::now_ms();
    let insert = db.sql(
        "INSERT INTO message_history (message_id, msg_type, direction, outcome, latency_us, at_ms) VALUES (?, 'echo', 'in', 'OK', 1, ?)",
    );
    for (id, at) in [("old1", now - 3 * day_ms), ("old2", now - 2 * day_ms), ("old3", now - 2 * day_ms), ("new1", now), ("new2", now)] {
        sqlx::query(&insert).bind(id).bind(at).execute(db.pool()).await.unwrap();
    }
    let ts = match store.server.as_ref().map(DbServer::kind) {
        None => "?",
        Some(Kind::Postgres) => "CAST(? AS TIMESTAMP(3))",
        Some(Kind::Mariadb) => "CAST(? AS DATETIME(3))",
    };
    let insert = db.sql(&format!("INSERT INTO room_queries (device_id, room_id, queried_at) VALUES (?, 'R', {ts})")).into_owned();
    for n in 1..=5 {
        sqlx::query(&insert).bind(format!("q{n}")).bind(switchyard::store::db::utc_text(now)).execute(db.pool()).await.unwrap();
    }
    let host = Host::start_with(&[], |c| {
        store.configure(c);
        c.storage.retention.every_ms = 50;
        c.storage.retention.batch = 2;
        let table = |age: Option<u64>, rows: Option<u64>| switchyard::config::storage::TableRetention { max_age_s: age, max_rows: rows };
        c.storage.retention.tables.insert("message_history".into(), table(Some(86_400), None));
        c.storage.retention.tables.insert("room_queries".into(), table(None, Some(2)));
    })
    .await;
    let remaining = |sql: &'static str| {
        let db = &db;
        async move {
            let rows = sqlx::query(sql).fetch_all(db.pool()).await.unwrap();
            rows.iter().map(|r| text(r, 0).unwrap().unwrap()).collect::<Vec<_>>()
        }
    };
    let started = Instant::now();
    loop {
        let messages = remaining("SELECT message_id FROM message_history ORDER BY seq").await;
        let queries = remaining("SELECT device_id FROM room_queries ORDER BY id").await;
        if messages.len() <= 2 && queries.len() <= 2 {
            assert_eq!(messages, ["new1", "new2"], "only rows past max_age_s go");
            assert_eq!(queries, ["q4", "q5"], "the newest max_rows stay");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "retention never ran: {messages:?} {queries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    host.shutdown().await;
    db.close().await;
}

/// Wait until the host has seen every client's close.
async fn closed(host: &Host) {
    let started = Instant::now();
    while host.server().hub().connection_count() > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the host never saw the close");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(host: &Host, name: &str) -> u64 {
    metric_at(&host.http("/metrics"), name).await.0.unwrap_or(0.0) as u64
}

#[tokio::test]
async fn a_postgres_outage_fails_kv_writes_and_counts_history_drops_then_recovers() {
    let Some(mut store) = Store::new(Some(Kind::Postgres)) else { return };
    let host = Host::start_with(&["video", "echo"], |c| {
        store.configure(c);
        c.storage.timeout_ms = 300;
        c.storage.history.queue = 4;
        c.storage.history.batch = 2;
    })
    .await;
    let mut client = host.connect().await;
    assert_eq!(client.call("video_command", json!({"action": "play", "video_path": "/a.mp4"})).await["type"], "reply");

    store.server.as_mut().unwrap().stop();
    // Routing goes on.
    for n in 0..40 {
        assert_eq!(client.call("echo", json!({"message": n.to_string()})).await["data"], format!("Echo: {n}"));
    }
    let refused = client.call("video_command", json!({"action": "pause"})).await;
    assert_eq!(refused["data"]["code"], "KV_UNAVAILABLE", "{refused}");
    // The failed write changed nothing.
    assert_eq!(client.call("video_command", json!({"action": "status"})).await["data"]["state"], "playing");
    assert!(metric(&host, "switchyard_history_dropped_total").await > 0, "what could not be queued is counted");

    let written = metric(&host, "switchyard_history_written_total").await;
    store.server.as_mut().unwrap().run();
    let mut writer = host.connect().await;
    let started = Instant::now();
    while writer.call("video_command", json!({"action": "pause"})).await["type"] != "reply" {
        assert!(started.elapsed() < Duration::from_secs(60), "kv writes never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The writer catches up with what was queued during the outage, so the
    // next record finds room in the queue (4 records here).
    while metric(&host, "switchyard_history_written_total").await <= written || metric(&host, "switchyard_history_queued").await > 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "history writes never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped = metric(&host, "switchyard_history_dropped_total").await;
    client.call("echo", json!({"message": "after"})).await;
    assert_eq!(metric(&host, "switchyard_history_dropped_total").await, dropped, "the queue had room");
    client.close().await;
    writer.close().await;
    closed(&host).await;
    host.shutdown().await;

    let db = store.open().await;
    let after: i64 = sqlx::query_scalar(&db.sql("SELECT COUNT(*) FROM message_history WHERE payload = ?"))
        .bind(r#"{"message":"after"}"#)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(after, 1, "history writes resumed after the outage");
    let row = sqlx::query("SELECT value FROM kv WHERE plugin = 'video' AND kv_key = 'playback'").fetch_one(db.pool()).await.unwrap();
    let paused = text(&row, 0).unwrap().unwrap();
    assert!(paused.contains("paused"), "{paused}");
    db.close().await;
}

/// Devices identify under load (each `identify` commits two kv writes
/// before its reply) while echo messages fill history; the host is killed
/// with SIGKILL mid-load and started again on the same SQLite file. The
/// file is whole, every acknowledged kv write is there, every history row
/// is complete, and what history misses of the acknowledged messages is
/// at most what its queue held.
#[tokio::test]
async fn a_host_killed_under_load_restarts_consistent() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let store = Store::new(None).unwrap();
    const QUEUE: i64 = 256;
    let toml = format!("[storage]\nurl = {:?}\n[storage.history]\nqueue = {QUEUE}\n", store.url);
    let host = HostProcess::spawn(&["rooms", "echo"], &toml);
    let mut load = Vec::new();
    for n in 0..4 {
        let addr = host.addr.clone();
        load.push(tokio::spawn(async move {
            // (device ids acknowledged, echo ids acknowledged), until the host dies.
            let (mut devices, mut echoes) = (Vec::new(), Vec::new());
            let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await.unwrap();
            let _ack = ws.next().await;
            for i in 0.. {
                let device = format!("d{n}-{i}");
                let rooms = tokio_tungstenite::connect_async(format!("ws://{addr}/rooms")).await;
                let Ok((mut rooms, _)) = rooms else { break };
                if rooms.send(Message::text(json!({"device_id": device}).to_string())).await.is_err() {
                    break;
                }
                let (_, joined) = (rooms.next().await, rooms.next().await);
                match joined {
                    Some(Ok(Message::Text(text))) if text.contains("created_new") => devices.push(device),
                    _ => break,
                }
                let _ = rooms.close(None).await;
                let id = format!("e{n}-{i}");
                if ws.send(Message::text(json!({"type": "echo", "id": id, "data": {"message": "x"}}).to_string())).await.is_err() {
                    break;
                }
                match ws.next().await {
                    Some(Ok(Message::Text(text))) if text.contains("Echo") => echoes.push(id),
                    _ => break,
                }
            }
            (devices, echoes)
        }));
    }
    // Kill once the load is well under way.
    let started = Instant::now();
    let db = store.open().await;
    while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM kv").fetch_one(db.pool()).await.unwrap() < 100 {
        assert!(started.elapsed() < Duration::from_secs(60), "the load never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.close().await;
    drop(host); // SIGKILL
    let mut acked_devices = Vec::new();
    let mut acked_echoes = Vec::new();
    for task in load {
        let (devices, echoes) = task.await.unwrap();
        acked_devices.extend(devices);
        acked_echoes.extend(echoes);
    }
    assert!(acked_devices.len() >= 10, "{acked_devices:?}");

    // It starts again on the same file, and serves.
    let restarted = switchyard::store::db::now_ms();
    let host = HostProcess::spawn(&["rooms", "echo"], &toml);
    let mut client = Client::connect(&format!("ws://{}/ws", host.addr)).await;
    assert_eq!(client.call("echo", json!({"message": "again"})).await["data"], "Echo: again");
    // The killed run's connections (each loader's /ws, at least) are no
    // longer open in history: closed at start, 1006 "host stopped".
    let db = store.open().await;
    let still_open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connection_history WHERE disconnected_ms IS NULL AND connected_ms < ?")
        .bind(restarted)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(still_open, 0, "connections of the killed run still open in history");
    let stopped: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM connection_history WHERE endpoint = '/ws' AND close_code = 1006 AND close_reason = 'host stopped' AND disconnected_ms >= connected_ms",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert!(stopped >= 4, "{stopped} of the 4 loaders' connections closed as host stopped");
    db.close().await;
    let mut device = Client::connect_without_ack(&format!("ws://{}/rooms", host.addr)).await;
    device.send_text(&json!({"device_id": acked_devices[0]}).to_string()).await;
    device.recv_frame().await;
    assert_eq!(device.recv_frame().await["status"], "reconnected");
    drop(host);

    let db = store.open().await;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(db.pool()).await.unwrap();
    assert_eq!(integrity, "ok");
    let rows = sqlx::query("SELECT kv_key FROM kv WHERE plugin = 'rooms'").fetch_all(db.pool()).await.unwrap();
    let keys: std::collections::HashSet<String> = rows.iter().map(|r| text(r, 0).unwrap().unwrap()).collect();
    for device in &acked_devices {
        assert!(keys.contains(&format!("device:{device}")), "acknowledged kv write of {device} lost");
    }
    let torn: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM message_history WHERE message_id IS NULL OR msg_type IS NULL OR outcome IS NULL OR direction NOT IN ('in', 'out')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(torn, 0);
    let rows = sqlx::query("SELECT message_id FROM message_history WHERE msg_type = 'echo'").fetch_all(db.pool()).await.unwrap();
    let recorded: std::collections::HashSet<String> = rows.iter().map(|r| text(r, 0).unwrap().unwrap()).collect();
    let missing = acked_echoes.iter().filter(|id| !recorded.contains(*id)).count() as i64;
    assert!(missing <= QUEUE, "{missing} acknowledged messages missing from history, more than the queue holds");
    db.close().await;
}
