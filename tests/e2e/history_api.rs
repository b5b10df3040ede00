//! The history API (`/api/history/...`) and `switchyard history`, on each
//! of the three backends: SQLite (always), and private PostgreSQL and
//! MariaDB servers started by the test kit. The same checks run on each:
//!
//! - filters (room, device, type, outcome, direction, time) return exactly
//!   the rows real traffic made, and payloads history did not keep stay
//!   absent;
//! - a paged walk sees every row once, in order, while rows are added;
//!   `limit` is capped at 1000;
//! - admin keys only; bad parameters are `INVALID_QUERY`; with history
//!   off every route says `HISTORY_DISABLED`.
//!
//! And once: the CLI's table and `--json`, and a PostgreSQL outage
//! (`HISTORY_UNAVAILABLE`, then answers again).

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use switchyard::config::{ApiKeyConfig, Config};
use switchyard::store::db::now_ms;
use switchyard_tests::databases::{Kind, Store};
use switchyard_tests::on_every_backend;
use switchyard_tests::Host;

const ADMIN: &str = "history-admin-0123456789abcdef";
const USER: &str = "history-user-0123456789abcdef";

/// This suite's storage, and its admin and non-admin keys.
fn configure(store: &Store, config: &mut Config) {
    store.configure(config);
    config.auth.keys = vec![ApiKeyConfig::admin("ops", ADMIN), ApiKeyConfig::new("user", USER)];
}

on_every_backend!(
    filters_return_exactly_the_rows_traffic_made,
    a_paged_walk_sees_every_row_once_while_rows_are_added,
    admin_keys_only_bad_parameters_refused_and_history_off_said
);

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// `GET path` with `key`: the status and the JSON body.
async fn get_as(host: &Host, key: Option<&str>, path: &str) -> (StatusCode, Value) {
    let mut request = http().get(host.http(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// `GET path` as an administrator; it must succeed.
async fn get(host: &Host, path: &str) -> Value {
    let (status, body) = get_as(host, Some(ADMIN), path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// The rows of `path` (a messages or connections query) once there are
/// `n` of them: history is written a batch at a time, just after the
/// replies.
async fn rows_once(host: &Host, path: &str, field: &str, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let rows = get(host, path).await[field].as_array().unwrap().clone();
        if rows.len() >= n {
            return rows;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{path}: {} of {n} rows ever came: {rows:?}", rows.len());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn pick(rows: &[Value], keys: &[&str]) -> Vec<Vec<Value>> {
    rows.iter().map(|r| keys.iter().map(|k| r[*k].clone()).collect()).collect()
}

fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by_key(|r| r.iter().map(|v| v.to_string()).collect::<Vec<_>>());
    rows
}

/// A tick of the clock between two recorded messages, so a time bound
/// falls strictly between them.
async fn tick() -> i64 {
    tokio::time::sleep(Duration::from_millis(3)).await;
    let now = now_ms();
    tokio::time::sleep(Duration::from_millis(3)).await;
    now
}

async fn filters_return_exactly_the_rows_traffic_made(store: Store) {
    let host = Host::start_with(&["echo", "rooms"], |c| {
        configure(&store, c);
        c.storage.history.no_payload_types = ["echo".to_owned()].into();
    })
    .await;
    let started = now_ms() - 1;
    let mut ws = host.connect().await;
    for n in 1..=2 {
        assert_eq!(ws.call("echo", json!({"message": format!("e{n}")})).await["type"], "reply");
    }
    rows_once(&host, "/api/history/messages?type=echo", "messages", 2).await;
    let between = tick().await;
    for n in 3..=4 {
        assert_eq!(ws.call("echo", json!({"message": format!("e{n}")})).await["type"], "reply");
    }
    assert_eq!(ws.call("nobody_claims", json!({"kept": "yes"})).await["data"]["code"], "UNKNOWN_TYPE");

    // A room session: join, join, broadcast, direct send, query.
    let (mut a, joined) = host.room_device(json!({"device_id": "device_a", "identity": "mobile"})).await;
    let room = joined["room_id"].as_str().unwrap().to_owned();
    let (mut b, _) = host.room_device(json!({"device_id": "device_b", "identity": "tv", "room_id": room})).await;
    a.send_text(r#"{"type":"message","content":"hello all"}"#).await;
    assert_eq!(b.recv_frame().await["content"], "hello all");
    b.send_text(r#"{"type":"message","content":"psst","target_device_id":"device_a"}"#).await;
    assert_eq!(a.recv_frame().await["content"], "psst");
    a.send_text(r#"{"type":"query_room"}"#).await;
    assert_eq!(a.recv_frame().await["total_clients"], 2);

    // By type, newest first; the time bound splits them exactly.
    let echo = rows_once(&host, "/api/history/messages?type=echo", "messages", 4).await;
    let ids = |rows: &[Value]| rows.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(&echo), ["t4", "t3", "t2", "t1"]);
    assert!(echo.iter().all(|m| m["payload"].is_null() && m["plugin"] == "echo" && m["outcome"] == "OK" && m["direction"] == "in"), "{echo:?}");
    let newer = get(&host, &format!("/api/history/messages?type=echo&since={between}")).await;
    assert_eq!(ids(newer["messages"].as_array().unwrap()), ["t4", "t3"]);
    let older = get(&host, &format!("/api/history/messages?type=echo&until={between}&order=asc")).await;
    assert_eq!(ids(older["messages"].as_array().unwrap()), ["t1", "t2"]);
    let rfc = format!("{}Z", switchyard::store::db::utc_text(between).replacen(' ', "T", 1));
    let newer_rfc = get(&host, &format!("/api/history/messages?type=echo&since={rfc}")).await;
    assert_eq!(newer_rfc["messages"], newer["messages"], "an RFC 3339 time is the same bound");
    assert_eq!(get(&host, "/api/history/messages?type=ECHO").await["messages"], json!([]), "types are case-sensitive");

    // By outcome: the one failure, with the payload history kept.
    let failed = get(&host, "/api/history/messages?outcome=error").await;
    assert_eq!(pick(failed["messages"].as_array().unwrap(), &["type", "outcome", "payload"]), [[json!("nobody_claims"), json!("UNKNOWN_TYPE"), json!(r#"{"kept":"yes"}"#)]]);
    assert_eq!(get(&host, "/api/history/messages?outcome=UNKNOWN_TYPE").await["messages"], failed["messages"]);

    // By device: what it sent, and what was sent to it.
    let expected_a = sorted(vec![
        vec![json!("rooms.identify"), json!("in")],
        vec![json!("rooms.message"), json!("in")],
        vec![json!("device.direct"), json!("out")],
        vec![json!("rooms.query_room"), json!("in")],
    ]);
    let by_a = rows_once(&host, "/api/history/messages?device=device_a", "messages", 4).await;
    assert_eq!(sorted(pick(&by_a, &["type", "direction"])), expected_a, "{by_a:?}");
    assert!(by_a.iter().all(|m| m["device_id"] == "device_a" && m["room_id"] == room.as_str()), "{by_a:?}");
    // By room: its members' messages and what was sent to it.
    let in_room = rows_once(&host, &format!("/api/history/messages?room={room}"), "messages", 7).await;
    let expected_room = sorted(vec![
        vec![json!("rooms.identify"), json!("in")],
        vec![json!("rooms.identify"), json!("in")],
        vec![json!("rooms.message"), json!("in")],
        vec![json!("rooms.message"), json!("in")],
        vec![json!("room.broadcast"), json!("out")],
        vec![json!("device.direct"), json!("out")],
        vec![json!("rooms.query_room"), json!("in")],
    ]);
    assert_eq!(sorted(pick(&in_room, &["type", "direction"])), expected_room, "{in_room:?}");
    let out = get(&host, &format!("/api/history/messages?room={room}&direction=out&type=room.*")).await;
    assert_eq!(pick(out["messages"].as_array().unwrap(), &["type", "target"]), [[json!("room.broadcast"), json!(format!("room:{room}"))]]);
    let seqs: Vec<i64> = in_room.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");

    // Counts by type and outcome.
    let counts = get(&host, "/api/history/counts?type=echo").await;
    assert_eq!(counts["counts"], json!([{"type": "echo", "outcome": "OK", "count": 4}]));
    assert_eq!(counts["total"], 4);
    let all = get(&host, &format!("/api/history/counts?since={started}")).await;
    let groups = all["counts"].as_array().unwrap();
    assert!(groups.contains(&json!({"type": "nobody_claims", "outcome": "UNKNOWN_TYPE", "count": 1})), "{all}");
    assert!(groups.contains(&json!({"type": "rooms.identify", "outcome": "OK", "count": 2})), "{all}");
    assert_eq!(all["total"], groups.iter().map(|g| g["count"].as_i64().unwrap()).sum::<i64>());

    // The room's activity: two joins, one broadcast, one direct, one query.
    let started_wait = Instant::now();
    let activity = loop {
        let activity = get(&host, &format!("/api/history/rooms/{room}/activity?minutes=5")).await;
        if activity["queries"] == 1 {
            break activity;
        }
        assert!(started_wait.elapsed() < Duration::from_secs(30), "{activity}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(activity["joins"], 2, "{activity}");
    assert_eq!(activity["devices_joined"], 2, "{activity}");
    assert_eq!(activity["sent"], json!({"broadcast": 1, "direct": 1}), "{activity}");
    assert_eq!(activity["messages"]["rooms.identify"], 2, "{activity}");
    assert_eq!(activity["messages"]["room.broadcast"], 1, "{activity}");
    let members: BTreeSet<&str> = activity["members"].as_array().unwrap().iter().map(|m| m["device_id"].as_str().unwrap()).collect();
    assert_eq!(members, ["device_a", "device_b"].into());
    assert!(activity["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{activity}");
    let (status, body) = get_as(&host, Some(ADMIN), "/api/history/rooms/no-such-room/activity").await;
    assert_eq!((status, body["data"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")), "{body}");

    // Connections: open now, then one closes.
    let ws_id = ws.connection_id().to_owned();
    let open = get(&host, "/api/history/connections?active=true&endpoint=/ws").await;
    assert_eq!(pick(open["connections"].as_array().unwrap(), &["id", "disconnected_at"]), [[json!(ws_id), Value::Null]]);
    rows_once(&host, "/api/history/connections?active=true&endpoint=/rooms", "connections", 2).await;
    // A device is on its connection's row once it identifies, while open.
    let open_a = rows_once(&host, "/api/history/connections?active=true&device=device_a", "connections", 1).await;
    assert_eq!(pick(&open_a, &["device_id", "endpoint", "disconnected_at"]), [[json!("device_a"), json!("/rooms"), Value::Null]]);
    b.close().await;
    let started_wait = Instant::now();
    while get(&host, "/api/history/connections?active=true&endpoint=/rooms").await["connections"].as_array().unwrap().len() != 1 {
        assert!(started_wait.elapsed() < Duration::from_secs(30), "the close never reached history");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let closed = get(&host, "/api/history/connections?active=false").await;
    assert_eq!(pick(closed["connections"].as_array().unwrap(), &["device_id", "endpoint", "close_code"]), [[json!("device_b"), json!("/rooms"), json!(1000)]]);
    assert_eq!(get(&host, "/api/history/connections?device=device_b").await["connections"], closed["connections"]);
    assert_eq!(get(&host, &format!("/api/history/connections?until={started}")).await["connections"], json!([]));
    let during = get(&host, &format!("/api/history/connections?since={started}")).await;
    assert_eq!(during["connections"].as_array().unwrap().len(), 3, "{during}");

    a.close().await;
    ws.close().await;
    host.shutdown().await;
}

/// Rows put in before the host starts (2,345 messages; 30 connections,
/// opened three to a millisecond), then walked through the API.
async fn a_paged_walk_sees_every_row_once_while_rows_are_added(store: Store) {
    let db = store.open().await;
    let base = now_ms() - 3_600_000;
    let insert_messages = |from: usize, to: usize, prefix: &'static str| {
        let db = db.clone();
        async move {
            for chunk in (from..to).collect::<Vec<_>>().chunks(100) {
                let values = vec!["(?, 'bulk', 'in', 'OK', 1, ?)"; chunk.len()].join(", ");
                let sql = format!("INSERT INTO message_history (message_id, msg_type, direction, outcome, latency_us, at_ms) VALUES {values}");
                let sql = db.sql(&sql).into_owned();
                let mut query = sqlx::query(&sql);
                for n in chunk {
                    query = query.bind(format!("{prefix}{n}")).bind(base + *n as i64);
                }
                query.execute(db.pool()).await.unwrap();
            }
        }
    };
    insert_messages(0, 2_345, "b").await;
    let insert = db.sql(
        "INSERT INTO connection_history (id, endpoint, connected_ms, disconnected_ms, close_code, close_reason) VALUES (?, '/bulk', ?, ?, 1000, '')",
    );
    for n in 0..30i64 {
        sqlx::query(&insert).bind(format!("c{n:02}")).bind(base + n / 3).bind(base + 100).execute(db.pool()).await.unwrap();
    }
    // A connection an earlier run left open (it was killed): closed at
    // start, as of that run's last record.
    let left_open = db.sql("INSERT INTO connection_history (id, endpoint, connected_ms) VALUES ('crashed', '/left-open', ?)");
    sqlx::query(&left_open).bind(base + 5).execute(db.pool()).await.unwrap();
    let host = Host::start_with(&[], |c| configure(&store, c)).await;
    let active = get(&host, "/api/history/connections?active=true&endpoint=/left-open").await;
    assert_eq!(active["connections"], json!([]), "{active}");
    let closed = get(&host, "/api/history/connections?active=false&endpoint=/left-open").await;
    // That run's last record: the newest bulk message.
    let last_record = get(&host, "/api/history/messages?type=bulk&limit=1").await["messages"][0]["at"].clone();
    assert_eq!(
        pick(closed["connections"].as_array().unwrap(), &["id", "close_code", "close_reason", "disconnected_at"]),
        [[json!("crashed"), json!(1006), json!("host stopped"), last_record]],
        "{closed}"
    );

    // Over the cap: clamped, and the answer says so.
    let capped = get(&host, "/api/history/messages?type=bulk&limit=5000").await;
    assert_eq!(capped["limit"], 1000);
    assert_eq!(capped["messages"].as_array().unwrap().len(), 1000);
    assert!(capped["next_cursor"].is_string());
    let default = get(&host, "/api/history/messages?type=bulk").await;
    assert_eq!((default["limit"].as_u64(), default["messages"].as_array().unwrap().len()), (Some(100), 100));

    // Newest first, pages of 1000: rows added meanwhile are newer than the
    // walk, so it neither repeats nor skips.
    let walk = |order: &'static str, limit: u32, add: Option<(usize, usize, &'static str)>| {
        let host = &host;
        let insert_messages = &insert_messages;
        async move {
            let (mut ids, mut pages, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
            loop {
                let path = match &cursor {
                    None => format!("/api/history/messages?type=bulk&limit={limit}&order={order}"),
                    Some(c) => format!("/api/history/messages?type=bulk&limit={limit}&cursor={c}"),
                };
                let page = get(host, &path).await;
                let rows = page["messages"].as_array().unwrap();
                pages.push(rows.len());
                ids.extend(rows.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
                if pages.len() == 1 {
                    if let Some((from, to, prefix)) = add {
                        insert_messages(from, to, prefix).await;
                    }
                }
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => return (ids, pages),
                }
            }
        }
    };
    let (ids, pages) = walk("desc", 1000, Some((2_345, 2_350, "late"))).await;
    assert_eq!(pages, [1000, 1000, 345]);
    assert_eq!(ids, (0..2_345).rev().map(|n| format!("b{n}")).collect::<Vec<_>>());
    // Oldest first: the rows added during the walk come at its end, once.
    let (ids, _) = walk("asc", 250, Some((2_350, 2_353, "later"))).await;
    let mut want: Vec<String> = (0..2_345).map(|n| format!("b{n}")).collect();
    want.extend((2_345..2_350).map(|n| format!("late{n}")));
    want.extend((2_350..2_353).map(|n| format!("later{n}")));
    assert_eq!(ids, want);

    // Connections, three to a millisecond, four to a page.
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let path = match &cursor {
            None => "/api/history/connections?endpoint=/bulk&limit=4".to_owned(),
            Some(c) => format!("/api/history/connections?endpoint=/bulk&limit=4&cursor={c}"),
        };
        let page = get(&host, &path).await;
        pages += 1;
        seen.extend(page["connections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 8);
    assert_eq!(seen, (0..30).rev().map(|n| format!("c{n:02}")).collect::<Vec<_>>());
    host.shutdown().await;
    db.close().await;
}

const ROUTES: [&str; 4] =
    ["/api/history/messages", "/api/history/connections", "/api/history/counts", "/api/history/rooms/r1/activity"];

async fn admin_keys_only_bad_parameters_refused_and_history_off_said(store: Store) {
    let host = Host::start_with(&[], |c| configure(&store, c)).await;
    for route in ROUTES {
        let (status, body) = get_as(&host, Some(USER), route).await;
        assert_eq!((status, body["data"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{route}: {body}");
        let (status, body) = get_as(&host, None, route).await;
        assert_eq!((status, body["data"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("AUTHENTICATION_FAILED")), "{route}: {body}");
    }
    let connections_cursor = "637c647c317c6331"; // hex("c|d|1|c1")
    for bad in [
        "/api/history/messages?limit=0",
        "/api/history/messages?limit=-3",
        "/api/history/messages?limit=lots",
        "/api/history/messages?since=yesterday",
        "/api/history/messages?since=2026-12-01T20:00:00Z&until=2026-12-01T19:00:00Z",
        "/api/history/messages?devce=a",
        "/api/history/messages?room=a&room=b",
        "/api/history/messages?cursor=zz",
        "/api/history/messages?outcome=not%20a%20code",
        "/api/history/messages?direction=sideways",
        "/api/history/messages?order=up",
        "/api/history/messages?type=*",
        "/api/history/messages?type=a*b",
        "/api/history/messages?device=",
        "/api/history/connections?active=maybe",
        "/api/history/counts?limit=10",
        "/api/history/rooms/r1/activity?minutes=0",
        "/api/history/rooms/r1/activity?minutes=100000",
    ]
    .iter()
    .map(|p| p.to_string())
    .chain([format!("/api/history/messages?cursor={connections_cursor}")])
    {
        let (status, body) = get_as(&host, Some(ADMIN), &bad).await;
        assert_eq!((status, body["data"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_QUERY")), "{bad}: {body}");
        assert!(body["data"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{bad}: {body}");
    }
    // A cursor whose order the query contradicts.
    let page = get(&host, "/api/history/connections?limit=1&order=asc").await;
    if let Some(cursor) = page["next_cursor"].as_str() {
        let (status, _) = get_as(&host, Some(ADMIN), &format!("/api/history/connections?cursor={cursor}&order=desc")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    // The host still answers.
    get(&host, "/api/history/messages?limit=1").await;
    host.shutdown().await;

    let off = Host::start_with(&[], |c| {
        configure(&store, c);
        c.storage.history.enabled = false;
    })
    .await;
    for route in ROUTES {
        let (status, body) = get_as(&off, Some(ADMIN), route).await;
        assert_eq!((status, body["data"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("HISTORY_DISABLED")), "{route}: {body}");
        let (status, _) = get_as(&off, Some(USER), route).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "the key is checked first: {route}");
    }
    off.shutdown().await;
}

/// `switchyard history ...` (the built binary) against a live host: a
/// table for people, JSON with `--json`, the host's code on a refusal.
/// (Two workers: the test blocks one waiting for the CLI; the host serves
/// on the other.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_a_table_and_json() {
    let store = Store::new(None).unwrap();
    let host = Host::start_with(&["echo", "rooms"], |c| configure(&store, c)).await;
    let mut ws = host.connect().await;
    for n in 0..3 {
        ws.call("echo", json!({"message": format!("m{n}")})).await;
    }
    let (_a, joined) = host.room_device(json!({"device_id": "cli_device"})).await;
    let room = joined["room_id"].as_str().unwrap().to_owned();
    rows_once(&host, "/api/history/messages?type=echo", "messages", 3).await;
    rows_once(&host, "/api/history/messages?device=cli_device", "messages", 1).await;

    let url = host.http("");
    let cli = |args: &[&str], key: &str| {
        let output = std::process::Command::new(switchyard_tests::host_binary())
            .args(["history", "--url", &url])
            .args(args)
            .env("SWITCHYARD_KEY", key)
            .output()
            .expect("run switchyard history (build it first: cargo build --release -p switchyard-cli)");
        (output.status.code(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    };

    let (code, table, stderr) = cli(&["messages", "--type", "echo"], ADMIN);
    assert_eq!(code, Some(0), "{table}{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["AT", "TYPE", "DIR", "OUTCOME", "DEVICE", "ROOM", "PLUGIN", "LATENCY_US", "ID", "PAYLOAD"]);
    let ids: Vec<&str> = lines[1..4].iter().map(|l| l.split_whitespace().nth(8).unwrap()).collect();
    assert_eq!(ids, ["t3", "t2", "t1"], "{table}");
    assert!(lines[1].contains(r#"{"message":"m2"}"#), "{table}");
    assert_eq!(lines[4], "(3 messages)");

    let (code, text, _) = cli(&["--json", "messages", "--type", "echo", "--limit", "2"], ADMIN);
    assert_eq!(code, Some(0));
    let page: Value = serde_json::from_str(&text).expect("--json prints JSON");
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert!(page["next_cursor"].is_string());
    let (_, text, _) = cli(&["--json", "messages", "--type", "echo", "--limit", "2", "--all", "--order", "asc"], ADMIN);
    let all: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = all["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t1", "t2", "t3"]);
    assert!(all["next_cursor"].is_null());

    let (code, table, _) = cli(&["counts", "--type", "echo"], ADMIN);
    assert_eq!(code, Some(0));
    assert_eq!(table.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>(), ["echo", "OK", "3"], "{table}");
    assert!(table.contains("total: 3"), "{table}");

    let (code, table, _) = cli(&["connections", "--active", "--endpoint", "/ws"], ADMIN);
    assert_eq!(code, Some(0));
    assert!(table.lines().nth(1).unwrap().starts_with(ws.connection_id()), "{table}");
    let (_, text, _) = cli(&["--json", "connections", "--active"], ADMIN);
    let open: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(open["connections"].as_array().unwrap().len(), 2, "{open}");

    let (code, table, _) = cli(&["rooms", &room, "--minutes", "10"], ADMIN);
    assert_eq!(code, Some(0));
    assert!(table.lines().any(|l| l.starts_with("members now") && l.contains("cli_device")), "{table}");
    let (_, text, _) = cli(&["--json", "rooms", &room], ADMIN);
    let activity: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(activity["room"], room.as_str());
    assert_eq!(activity["minutes"], 60);

    let (code, _, stderr) = cli(&["messages"], USER);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("FORBIDDEN") && stderr.contains("403"), "{stderr}");
    let (code, _, stderr) = cli(&["messages", "--since", "someday"], ADMIN);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("INVALID_QUERY"), "{stderr}");
    host.shutdown().await;
}

/// The database goes away: queries say `HISTORY_UNAVAILABLE` (the host
/// stays up), then answer again once it is back.
#[tokio::test]
async fn a_postgres_outage_is_history_unavailable_then_answers_again() {
    let Some(mut store) = Store::new(Some(Kind::Postgres)) else { return };
    let host = Host::start_with(&["echo"], |c| {
        configure(&store, c);
        c.storage.timeout_ms = 300;
    })
    .await;
    let mut ws = host.connect().await;
    ws.call("echo", json!({"message": "before"})).await;
    rows_once(&host, "/api/history/messages?type=echo", "messages", 1).await;

    store.server.as_mut().unwrap().stop();
    for route in ["/api/history/messages", "/api/history/counts"] {
        let (status, body) = get_as(&host, Some(ADMIN), route).await;
        assert_eq!((status, body["data"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("HISTORY_UNAVAILABLE")), "{route}: {body}");
    }
    assert_eq!(ws.call("echo", json!({"message": "during"})).await["data"], "Echo: during", "routing goes on");

    store.server.as_mut().unwrap().run();
    let started = Instant::now();
    loop {
        let (status, body) = get_as(&host, Some(ADMIN), "/api/history/messages?type=echo").await;
        if status == StatusCode::OK {
            assert!(!body["messages"].as_array().unwrap().is_empty(), "{body}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "history never answered again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ws.close().await;
    host.shutdown().await;
}
