//! Persistence, on each of the three backends: SQLite (always), and
//! private PostgreSQL and MariaDB servers started by the test kit
//! (`switchyard_tests::databases`). The same checks run on each:
//!
//! - plugin state survives a host restart (the video's playback, the
//!   rooms plugin's device→last-room map: `reconnected`, not `created_new`);
//! - history records every connection and every message answered;
//! - on PostgreSQL, an outage: routing goes on, kv writes fail with
//!   `KV_UNAVAILABLE`, history drops are counted, writes resume after.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard::config::Config;
use switchyard::store::db::{text, Database};
use switchyard_tests::databases::{DbServer, Kind};
use switchyard_tests::{Client, Host};

/// Where a test's database is: a SQLite file in a folder of its own, or a
/// private server.
struct Store {
    url: String,
    server: Option<DbServer>,
    _dir: tempfile::TempDir,
}

impl Store {
    /// `None` when that server is not installed (outside CI).
    fn new(kind: Option<Kind>) -> Option<Store> {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            None => Some(Store { url: format!("sqlite://{}", dir.path().join("history.db").display()), server: None, _dir: dir }),
            Some(kind) => {
                let server = DbServer::start(kind)?;
                Some(Store { url: server.url.clone(), server: Some(server), _dir: dir })
            }
        }
    }

    fn configure(&self, config: &mut Config) {
        config.storage.url = Some(self.url.clone());
    }

    async fn open(&self) -> Database {
        Database::open(&self.url, 2, Duration::from_secs(10)).await.expect("the test opens the database")
    }
}

/// One test per backend.
macro_rules! on_every_backend {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test] async fn $name() { if let Some(s) = super::Store::new(None) { super::$name(s).await } } )* }
        mod postgres { $( #[tokio::test] async fn $name() { if let Some(s) = super::Store::new(Some(super::Kind::Postgres)) { super::$name(s).await } } )* }
        mod mariadb { $( #[tokio::test] async fn $name() { if let Some(s) = super::Store::new(Some(super::Kind::Mariadb)) { super::$name(s).await } } )* }
    };
}

on_every_backend!(plugin_state_survives_a_restart, history_records_connections_and_messages);

async fn identify(host: &Host, device: &str) -> (Client, Value) {
    let mut client = Client::connect_without_ack(&host.endpoint("/rooms")).await;
    client.send_text(&json!({"device_id": device, "identity": "tv"}).to_string()).await;
    assert_eq!(client.recv_frame().await["type"], "connection");
    let room = client.recv_frame().await;
    (client, room)
}

async fn plugin_state_survives_a_restart(store: Store) {
    let host = Host::start_with(&["video", "rooms"], |c| store.configure(c)).await;
    let mut control = host.connect().await;
    control.call("video_command", json!({"action": "play", "video_path": "/videos/keep.mp4"})).await;
    let paused = control.call("video_command", json!({"action": "pause"})).await;
    assert_eq!(paused["data"]["state"], "paused", "{paused}");
    let (device, room) = identify(&host, "device_a").await;
    assert_eq!(room["status"], "created_new", "{room}");
    device.close().await;
    control.close().await;

    let host = host.restart().await;
    let mut control = host.connect().await;
    let status = control.call("video_command", json!({"action": "status"})).await;
    assert_eq!(status["data"]["state"], "paused", "{status}");
    assert_eq!(status["data"]["video_path"], "/videos/keep.mp4", "{status}");
    assert_eq!(status["data"]["position"], paused["data"]["position"], "{status}");
    let (_device, again) = identify(&host, "device_a").await;
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

/// Wait until the host has seen every client's close.
async fn closed(host: &Host) {
    let started = Instant::now();
    while host.server().hub().connection_count() > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "the host never saw the close");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(host: &Host, name: &str) -> u64 {
    let text = reqwest::get(host.http("/metrics")).await.unwrap().text().await.unwrap();
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
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
    // The writer catches up with what was queued during the outage.
    while metric(&host, "switchyard_history_written_total").await <= written {
        assert!(started.elapsed() < Duration::from_secs(60), "history writes never resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.call("echo", json!({"message": "after"})).await;
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
