//! The bundled plugins end to end: clock, calculator, echo and video.

use serde_json::json;
use switchyard_tests::Host;

#[tokio::test]
async fn clock_returns_iso_utc_and_unix_millis() {
    let host = Host::start(&["clock"]).await;
    let mut client = host.connect().await;
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let reply = client.call("get_time", json!({})).await;
    let data = &reply["data"];
    let unix_ms = data["unix_ms"].as_u64().unwrap();
    assert!(unix_ms >= before && unix_ms < before + 10_000, "{data}");
    let iso = data["iso"].as_str().unwrap();
    assert_eq!(humantime_like(iso), unix_ms / 1000, "{iso} names the same second as {unix_ms}");
    assert_eq!(reply["meta"]["plugin"], "clock");
    host.shutdown().await;
}

/// Seconds since the epoch of an RFC 3339 UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn humantime_like(iso: &str) -> u64 {
    assert!(iso.ends_with('Z') && iso.len() == 24, "{iso}");
    let n = |r: std::ops::Range<usize>| iso[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

#[tokio::test]
async fn calculator_computes_and_fails_with_its_own_codes() {
    let host = Host::start(&["calculator"]).await;
    let mut client = host.connect().await;
    let cases = [("+", 6.0, 3.0, 9.0), ("-", 6.0, 3.0, 3.0), ("*", 6.0, 3.0, 18.0), ("/", 6.0, 3.0, 2.0), ("%", 7.0, 3.0, 1.0), ("^", 2.0, 10.0, 1024.0)];
    for (op, a, b, want) in cases {
        let reply = client.call("calculate", json!({"a": a, "b": b, "op": op})).await;
        assert_eq!(reply["data"]["result"], json!(want), "{a} {op} {b}: {reply}");
    }
    for (data, code) in [
        (json!({"a": 1, "b": 0, "op": "/"}), "DIVISION_BY_ZERO"),
        (json!({"a": 1, "b": 0, "op": "%"}), "DIVISION_BY_ZERO"),
        (json!({"a": 1, "b": 2, "op": "&"}), "UNKNOWN_OPERATOR"),
        (json!({"a": 10, "b": 400, "op": "^"}), "NOT_A_NUMBER"),
        (json!({"a": "one", "b": 2, "op": "+"}), "INVALID_DATA"),
    ] {
        let reply = client.call("calculate", data.clone()).await;
        assert_eq!(reply["type"], "error", "{data}");
        assert_eq!(reply["data"]["code"], code, "{data}: {reply}");
    }
    // Failures are values, not traps: the same warm instance served them all.
    let plugin = host.server().registry().plugins().into_iter().find(|p| p.name() == "calculator").unwrap();
    assert_eq!(plugin.stats.traps.load(std::sync::atomic::Ordering::Relaxed), 0);
    host.shutdown().await;
}

#[tokio::test]
async fn echo_echoes() {
    let host = Host::start(&["echo"]).await;
    let mut client = host.connect().await;
    assert_eq!(client.call("echo", json!({"message": "Hello World"})).await["data"], "Echo: Hello World");
    assert_eq!(client.call("echo", json!({"message": "ünï ✓"})).await["data"], "Echo: ünï ✓");
    host.shutdown().await;
}

#[tokio::test]
async fn video_keeps_state_and_publishes_status_events() {
    let host = Host::start(&["video"]).await;
    let mut watcher = host.connect().await;
    watcher.call("subscribe", json!({"events": ["video_status"]})).await;
    let mut client = host.connect().await;

    let reply = client.call("video_command", json!({"action": "status"})).await;
    assert_eq!(reply["data"]["state"], "stopped");
    let reply = client.call("video_command", json!({"action": "play"})).await;
    assert_eq!(reply["data"]["code"], "NO_VIDEO");

    let reply = client.call("video_command", json!({"action": "play", "video_path": "/videos/a.mp4"})).await;
    assert_eq!(reply["data"]["state"], "playing");
    let event = watcher.event_on("video_status").await;
    assert_eq!(event["type"], "video_status");
    assert_eq!(event["data"]["video_path"], "/videos/a.mp4");
    assert_eq!(event["meta"]["source"], "video");

    let reply = client.call("video_command", json!({"action": "seek", "position": 42.5})).await;
    assert!(reply["data"]["position"].as_f64().unwrap() >= 42.5);
    assert_eq!(watcher.event_on("video_status").await["data"]["state"], "playing");
    let reply = client.call("video_command", json!({"action": "pause"})).await;
    assert_eq!(reply["data"]["state"], "paused");
    let paused_at = reply["data"]["position"].as_f64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let reply = client.call("video_command", json!({"action": "status"})).await;
    assert_eq!(reply["data"]["position"].as_f64().unwrap(), paused_at, "paused position holds");
    assert_eq!(client.call("video_command", json!({"action": "stop"})).await["data"]["position"], json!(0.0));
    assert_eq!(client.call("video_command", json!({"action": "rewind"})).await["data"]["code"], "UNKNOWN_ACTION");
    assert_eq!(client.call("video_command", json!({"action": "seek"})).await["data"]["code"], "INVALID_DATA");
    host.shutdown().await;
}
