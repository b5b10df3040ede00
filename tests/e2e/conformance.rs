//! RFC 6455 on every host WebSocket endpoint, from outside: raw frames
//! against `/ws`, an extra listener and the worker socket (the cases are in
//! the test kit's `conformance`, so they can run against other targets),
//! the host's own closes completed as handshakes, and stock Python and Node
//! clients closing cleanly.

use serde_json::{json, Value};
use std::time::Duration;
use switchyard::config::{Ack, ApiKeyConfig, EndpointConfig, EndpointRole, ListenerConfig, ScopeConfig};
use switchyard_tests::conformance::{self, Target};
use switchyard_tests::raw::{Ended, Frame, RawSocket, WAIT};
use switchyard_tests::{node_with_ws, python_with_websockets, Host};

async fn on_ws(case: impl AsyncFnOnce(&Target)) {
    let host = Host::start(&[]).await;
    case(&Target::host(host.addr(), "/ws")).await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_client_close_is_echoed_then_tcp_closes() {
    on_ws(conformance::client_close_is_echoed).await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    on_ws(conformance::protocol_violations_close_with_1002).await;
}

#[tokio::test]
async fn invalid_close_codes_close_with_1002() {
    on_ws(conformance::invalid_close_codes_close_with_1002).await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    on_ws(conformance::invalid_utf8_closes_with_1007).await;
}

#[tokio::test]
async fn fragments_with_interleaved_pings_are_one_message() {
    on_ws(conformance::fragments_with_interleaved_pings_are_one_message).await;
}

#[tokio::test]
async fn an_extra_listener_closes_by_the_rfc_too() {
    let host = Host::start_with(&[], |c| {
        let loopback = "127.0.0.1:0".parse().unwrap();
        c.listeners = vec![ListenerConfig { listen: loopback, role: EndpointRole::Clients, ack: Ack::Monitoring, auth: false }];
    })
    .await;
    let target = Target::host(host.server().listener_addrs()[0], "/");
    conformance::client_close_is_echoed(&target).await;
    conformance::protocol_violations_close_with_1002(&target).await;
    host.shutdown().await;
}

/// The host's Close must arrive, wait for the client's answer (not drop the
/// connection at once), and end TCP once answered.
async fn host_close_is_a_handshake(socket: &mut RawSocket, code: u16) {
    let ended = socket.ending().await;
    assert_eq!(ended.code(), Some(code), "{ended:?}");
    assert!(!socket.tcp_closes_within(Duration::from_millis(300)).await, "the host waits for the client's Close");
    socket.send(&Frame::close(code, b"")).await;
    assert!(socket.tcp_closes_within(WAIT).await, "the host closes TCP once its Close is answered");
}

#[tokio::test]
async fn the_idle_timeout_close_is_a_handshake() {
    let host = Host::start_with(&[], |c| {
        c.websocket.heartbeat_interval_ms = 100;
        c.websocket.idle_timeout_ms = 400;
    })
    .await;
    let target = Target::host(host.addr(), "/ws");
    // A raw socket answers no pings: it goes silent.
    host_close_is_a_handshake(&mut target.open().await, 4000).await;
    target.serves("an idle timeout").await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_revoked_keys_close_is_a_handshake() {
    const ADMIN: &str = "admin-key-0123456789abcdef";
    const CAM: &str = "cam-key-0123456789abcdef";
    let host = Host::start_with(&[], |c| {
        let scopes = ScopeConfig { types: vec!["*".into()], topics: vec!["*".into()] };
        let key = |name: &str, key: &str, admin| ApiKeyConfig {
            name: name.into(),
            key: key.into(),
            scopes: scopes.clone(),
            admin,
            client_id: None,
            revoked: false,
        };
        c.auth.keys = vec![key("ops", ADMIN, true), key("cam", CAM, false)];
    })
    .await;
    let mut cam = RawSocket::connect_with(host.addr(), "/ws", &[("Authorization", &format!("Bearer {CAM}"))]).await;
    assert_eq!(serde_json::from_str::<Value>(&cam.text().await).unwrap()["type"], "connection");
    let response = reqwest::Client::new().delete(host.http("/api/keys/cam")).bearer_auth(ADMIN).send().await.unwrap();
    assert!(response.status().is_success(), "{response:?}");
    host_close_is_a_handshake(&mut cam, 4001).await;
    Target::host(host.addr(), "/ws").serves("a revoked key").await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_frame_over_the_limit_gets_an_error_then_1009() {
    let host = Host::start_with(&[], |c| {
        c.limits.max_message_bytes = 1024;
        c.limits.max_frame_bytes = 8192;
    })
    .await;
    let target = Target::host(host.addr(), "/ws");
    let mut socket = target.open().await;
    socket.send(&Frame::text(vec![b'x'; 20_000])).await;
    let error: Value = serde_json::from_str(&socket.text().await).unwrap();
    assert_eq!(error["data"]["code"], "PAYLOAD_TOO_LARGE", "{error}");
    assert_eq!(socket.ending().await.code(), Some(1009));
    socket.answer_close(1009).await;
    assert!(socket.tcp_closes_within(WAIT).await);
    target.serves("a frame over the limit").await;
    host.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_with_1001_as_a_handshake() {
    let host = Host::start(&[]).await;
    let mut socket = Target::host(host.addr(), "/ws").open().await;
    let shutdown = tokio::spawn(host.shutdown());
    assert_eq!(socket.ending().await.code(), Some(1001));
    socket.send(&Frame::close(1001, b"")).await;
    assert!(socket.tcp_closes_within(WAIT).await);
    shutdown.await.unwrap();
}

#[tokio::test]
async fn the_worker_socket_closes_by_the_rfc_too() {
    let host = Host::start_with(&[], |c| {
        let mut endpoint = EndpointConfig::defaults().remove(1);
        endpoint.path = "/workers".into();
        endpoint.role = EndpointRole::Workers;
        c.endpoints.push(endpoint);
    })
    .await;
    let register = |id: &str| Frame::text(json!({"type": "register", "data": {"worker_id": id, "types": ["job"]}}).to_string());
    // A registered worker closes: echoed, then TCP closed.
    let mut worker = RawSocket::connect(host.addr(), "/workers").await;
    worker.send(&register("w-1")).await;
    assert_eq!(serde_json::from_str::<Value>(&worker.text().await).unwrap()["type"], "registered");
    worker.send(&Frame::close(1000, b"bye")).await;
    assert_eq!(worker.ending().await, Ended::Closed { code: Some(1000), reason: b"bye".to_vec() });
    assert!(worker.tcp_closes_within(WAIT).await);
    // Closing before registering is answered the same way.
    let mut early = RawSocket::connect(host.addr(), "/workers").await;
    early.send(&Frame::close(4000, b"")).await;
    assert_eq!(early.ending().await.code(), Some(4000));
    // A protocol error from a registered worker: 1002.
    let mut broken = RawSocket::connect(host.addr(), "/workers").await;
    broken.send(&register("w-2")).await;
    broken.text().await;
    broken.send(&Frame::ping("x").with_rsv(switchyard_tests::raw::RSV1)).await;
    assert_eq!(broken.ending().await.code(), Some(1002));
    // Invalid UTF-8 before registering: 1007.
    let mut garbled = RawSocket::connect(host.addr(), "/workers").await;
    garbled.send(&Frame::text(&b"{\"type\":\"register\xff\"}"[..])).await;
    assert_eq!(garbled.ending().await.code(), Some(1007));
    host.shutdown().await;
}

/// Run a stock client script against `url`; the JSON line it prints.
async fn run_client(mut command: std::process::Command, script: &str, url: &str) -> Value {
    let script = switchyard_tests::workspace_root().join("tests").join("clients").join(script);
    command.arg(script).arg(url);
    let run = tokio::process::Command::from(command).kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the client finishes").expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("the client prints one JSON line: {stdout}"))
}

#[tokio::test]
async fn a_python_websockets_client_closes_with_1000() {
    let python = python_with_websockets();
    let host = Host::start(&[]).await;
    let seen = run_client(python, "close.py", &host.url()).await;
    assert_eq!(seen, json!({"ack": "connection", "reply": "pong", "close_code": 1000, "clean": true}));
    host.shutdown().await;
}

#[tokio::test]
async fn a_node_ws_client_closes_with_1000() {
    let node = node_with_ws();
    let host = Host::start(&[]).await;
    let seen = run_client(node, "close.cjs", &host.url()).await;
    // 1006 would be `ws`'s word for "no Close frame came back".
    assert_eq!(seen, json!({"ack": "connection", "reply": "pong", "code": 1000, "reason": "done"}));
    host.shutdown().await;
}
