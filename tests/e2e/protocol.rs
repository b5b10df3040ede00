//! The wire protocol end to end: every accepted client format, every host
//! error code, and bad client input. Real host, real WebSocket clients.

use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_tests::{Client, Ending, Host};
use tokio_tungstenite::tungstenite::Message;

/// The monitoring endpoints acknowledge in the monitoring API's envelope,
/// as its clients read it, and keep the top-level fields Switchyard's own
/// clients read.
#[tokio::test]
async fn connection_is_acknowledged_with_ids_and_time() {
    let host = Host::start(&[]).await;
    for path in ["/ws", "/ws/performance", "/ws/alerts", "/ws/status", "/"] {
        let client = Client::connect(&format!("{}?client_id=cam-7", host.endpoint(path))).await;
        let (ack, data) = (&client.ack, &client.ack["data"]);
        assert_eq!((data["status"].as_str(), data["client_id"].as_str()), (Some("connected"), Some("cam-7")), "{path}: {ack}");
        assert!(data["server_time"].as_str().unwrap().ends_with('Z'), "{path}: {ack}");
        assert_eq!((data["endpoint"].as_str(), &data["connection_id"]), (Some(path), &ack["connection_id"]), "{path}: {ack}");
        assert_eq!(ack["id"].as_str().map(str::len), Some(32), "{path}: {ack}");
        assert!(ack["timestamp"].as_str().unwrap().ends_with('Z'), "{path}: {ack}");

        assert_eq!((ack["status"].as_str(), ack["client_id"].as_str()), (Some("connected"), Some("cam-7")), "{path}: {ack}");
        assert_eq!(client.connection_id().len(), 32);
        assert!(ack["server_time"].as_str().unwrap().ends_with('Z'));
    }
    // A client that gives no id is known by its connection id.
    let client = host.connect().await;
    assert_eq!(client.ack["data"]["client_id"].as_str(), Some(client.connection_id()));
    assert_eq!(client.ack["client_id"], Value::Null);
    host.shutdown().await;
}

#[tokio::test]
async fn ping_gets_pong() {
    let host = Host::start(&[]).await;
    let mut client = host.connect().await;
    let reply = client.request(json!({"type": "ping"})).await;
    assert_eq!(reply["type"], "pong");
    assert!(reply["id"].is_string());
    let reply = client.request(json!({"type": "ping", "id": 5})).await;
    assert_eq!(reply["type"], "pong");
    assert_eq!(reply["id"], 5);
    host.shutdown().await;
}

#[tokio::test]
async fn every_accepted_client_format() {
    let host = Host::start(&["clock", "echo", "video"]).await;
    let mut client = host.connect().await;

    // Canonical envelope.
    let reply = client.request(json!({"type": "echo", "id": "c1", "timestamp": 1, "data": {"message": "hi"}, "meta": {}})).await;
    assert_eq!(reply, json!({"type": "reply", "id": "c1", "timestamp": reply["timestamp"], "data": "Echo: hi",
        "meta": {"request_type": "echo", "plugin": "echo", "plugin_version": "0.1.0"}}));

    // The action server's request/msg_id format.
    let reply = client
        .request(json!({"type":"request","msg_id":"m1","timestamp":1714000000.1,"data":{"action":"get_time","params":{}}}))
        .await;
    assert_eq!(reply["type"], "response");
    assert_eq!(reply["msg_id"], "m1");
    assert_eq!(reply["success"], true);
    assert!(reply["data"]["unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(reply["timestamp"].as_f64().unwrap() > 1_700_000_000.0);

    // The requester's request_id/command format, exactly.
    let reply = client.request(json!({"request_id":"r-1","command":"echo","data":{"message":"Hello World"}})).await;
    assert_eq!(
        reply,
        json!({"request_id": "r-1", "success": true, "data": "Echo: Hello World", "error": null, "processed_by": "echo"})
    );
    let reply = client.request(json!({"request_id":"r-2","command":"nope","data":{}})).await;
    assert_eq!(reply["request_id"], "r-2");
    assert_eq!(reply["success"], false);
    assert_eq!(reply["data"], Value::Null);
    assert!(reply["error"].as_str().unwrap().contains("nope"));

    // The video proxy's format: no id, timestamp as a string.
    let reply = client
        .request(json!({"type":"video_command","data":{"action":"play","video_path":"/videos/example.mp4"},"timestamp":"2025-04-25T13:51:00Z"}))
        .await;
    assert_eq!(reply["type"], "reply");
    assert_eq!(reply["data"]["state"], "playing");
    assert_eq!(reply["data"]["video_path"], "/videos/example.mp4");
    assert!(reply["id"].is_string(), "a generated id is echoed: {reply}");
    host.shutdown().await;
}

async fn error_code(client: &mut Client, text: &str) -> String {
    client.send_text(text).await;
    let reply = client.reply().await;
    assert_eq!(reply["type"], "error", "{text} -> {reply}");
    assert!(!reply["data"]["message"].as_str().unwrap().is_empty());
    reply["data"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_host_error_code() {
    let host = Host::start_with(&["echo", "misbehave"], |c| {
        c.limits.max_message_bytes = 4096;
        c.plugins.deadline_ms = 300;
    })
    .await;
    let mut client = host.connect().await;
    assert_eq!(error_code(&mut client, "{\"type\":").await, "INVALID_JSON");
    assert_eq!(error_code(&mut client, "not json at all").await, "INVALID_JSON");
    assert_eq!(error_code(&mut client, r#"{"data":{}}"#).await, "INVALID_MESSAGE");
    assert_eq!(error_code(&mut client, r#"{"type":["echo"]}"#).await, "INVALID_MESSAGE");
    assert_eq!(error_code(&mut client, r#"{"type":"echo","meta":"x"}"#).await, "INVALID_MESSAGE");
    assert_eq!(error_code(&mut client, r#"{"type":"no_such_type"}"#).await, "UNKNOWN_TYPE");
    let big = json!({"type": "echo", "data": {"message": "x".repeat(5000)}}).to_string();
    assert_eq!(error_code(&mut client, &big).await, "PAYLOAD_TOO_LARGE");
    assert_eq!(error_code(&mut client, r#"{"type":"misbehave.loop"}"#).await, "PLUGIN_TIMEOUT");
    assert_eq!(error_code(&mut client, r#"{"type":"misbehave.panic"}"#).await, "PLUGIN_FAILED");
    // A plugin's own failure code passes through.
    assert_eq!(error_code(&mut client, r#"{"type":"echo","data":{"wrong":1}}"#).await, "INVALID_DATA");
    // The connection survived all of it.
    assert_eq!(client.call("echo", json!({"message": "still here"})).await["data"], "Echo: still here");
    host.shutdown().await;
}

#[tokio::test]
async fn binary_frames_get_an_error_and_the_connection_stays() {
    let host = Host::start(&["echo"]).await;
    let mut client = host.connect().await;
    client.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    let reply = client.reply().await;
    assert_eq!(reply["data"]["code"], "INVALID_MESSAGE");
    assert!(reply["data"]["message"].as_str().unwrap().contains("binary"));
    assert_eq!(client.call("echo", json!({"message": "ok"})).await["data"], "Echo: ok");
    host.shutdown().await;
}

#[tokio::test]
async fn frames_over_the_hard_limit_close_with_1009_and_the_host_stays_up() {
    let host = Host::start_with(&["echo"], |c| {
        c.limits.max_message_bytes = 1024;
        c.limits.max_frame_bytes = 8192;
    })
    .await;
    let mut client = host.connect().await;
    client.send_text(&"x".repeat(20_000)).await;
    let reply = client.reply().await;
    assert_eq!(reply["data"]["code"], "PAYLOAD_TOO_LARGE");
    assert_eq!(client.ending().await, Ending::Closed(Some(1009)));
    let mut other = host.connect().await;
    assert_eq!(other.call("echo", json!({"message": "fine"})).await["data"], "Echo: fine");
    host.shutdown().await;
}

#[tokio::test]
async fn a_flood_without_reading_replies_is_cut_off_and_others_are_unaffected() {
    let host = Host::start_with(&["echo"], |c| {
        c.limits.outbox_frames = 8;
        c.limits.send_timeout_ms = 300;
    })
    .await;
    let mut bystander = host.connect().await;
    let (mut flood, _) = tokio_tungstenite::connect_async(host.url()).await.unwrap();
    let frame = json!({"type": "echo", "data": {"message": "y".repeat(60_000)}}).to_string();
    // Never read. The host must stop this connection, not buffer without end.
    let sender = tokio::spawn(async move {
        for _ in 0..5_000 {
            if flood.send(Message::text(frame.clone())).await.is_err() {
                return true;
            }
        }
        false
    });
    let cut_off = tokio::time::timeout(Duration::from_secs(30), sender).await.expect("flood is stopped in time").unwrap();
    assert!(cut_off, "the host closed the flooding connection");
    assert_eq!(bystander.call("echo", json!({"message": "unaffected"})).await["data"], "Echo: unaffected");
    assert_eq!(host.server().hub().connection_count(), 1);
    host.shutdown().await;
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    let host = Host::start_with(&[], |c| {
        c.websocket.heartbeat_interval_ms = 100;
        c.websocket.idle_timeout_ms = 400;
    })
    .await;
    let mut live = host.connect().await;
    // A live client reading its socket answers pings and stays.
    live.assert_quiet(Duration::from_millis(900)).await;
    let reply = live.request(json!({"type": "ping"})).await;
    assert_eq!(reply["type"], "pong");

    // A client that does not read never answers the host's pings.
    let (mut silent, _) = tokio_tungstenite::connect_async(host.url()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut saw_close = None;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut silent)).await {
        if let Ok(Message::Close(frame)) = frame {
            saw_close = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(saw_close, Some(4000));
    host.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_then_closes_with_1001() {
    let host = Host::start_with(&["misbehave"], |c| c.plugins.deadline_ms = 1500).await;
    let mut client = host.connect().await;
    client.send_text(r#"{"type":"misbehave.loop","id":"inflight"}"#).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn(host.shutdown());
    let reply = client.reply().await;
    assert_eq!(reply["id"], "inflight");
    assert_eq!(reply["data"]["code"], "PLUGIN_TIMEOUT");
    assert_eq!(client.ending().await, Ending::Closed(Some(1001)));
    shutdown.await.unwrap();
}
