//! A scriptable WebSocket server for the client's tests: a real listener on
//! `127.0.0.1:0`, real handshakes, and the test decides every frame. The
//! server completes a handshake only when the test calls `accept`, so a
//! client can be held "connecting" for as long as a test needs.

#![allow(dead_code)] // Each test file uses part of the kit.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use switchyard_client::{Client, ClientConfig, ConnectionState, ReconnectPolicy};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long a test waits for any one expected thing.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Run a whole test body under a deadline.
pub async fn bounded<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(15), body).await.expect("the test finishes in time")
}

/// Short everything, so reconnects take milliseconds.
pub fn fast_config() -> ClientConfig {
    ClientConfig {
        reconnect: ReconnectPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            jitter: 0.1,
            max_attempts: Some(50),
        },
        connect_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_secs(1),
        receive_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(3),
        ..ClientConfig::default()
    }
}

pub struct TestServer {
    listener: TcpListener,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer { listener: TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port") }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.listener.local_addr().expect("listening"))
    }

    /// Complete the next connection's handshake; no acknowledgement sent.
    pub async fn accept(&self) -> Peer {
        let (tcp, _) = tokio::time::timeout(PATIENCE, self.listener.accept())
            .await
            .expect("a client connects in time")
            .expect("accept");
        let ws = tokio_tungstenite::accept_async(tcp).await.expect("websocket handshake");
        Peer { ws }
    }

    /// Accept and send the host's `connection` acknowledgement first.
    pub async fn accept_with_ack(&self, connection_id: &str) -> Peer {
        let mut peer = self.accept().await;
        peer.send(json!({
            "type": "connection", "status": "connected", "message": "Connected successfully",
            "connection_id": connection_id, "client_id": null, "endpoint": "/ws", "server_time": "2026-01-01T00:00:00Z",
        }))
        .await;
        peer
    }

    /// No client so much as opens a TCP connection within `wait`.
    pub async fn assert_no_connection(&self, wait: Duration) {
        if let Ok(accepted) = tokio::time::timeout(wait, self.listener.accept()).await {
            panic!("unexpected connection: {:?}", accepted.map(|(_, addr)| addr));
        }
    }
}

/// `Client::connect_with` against `server`, with the acknowledgement.
pub async fn connect(server: &TestServer, config: ClientConfig) -> (Client, Peer) {
    let url = server.url();
    let (client, peer) = tokio::join!(Client::connect_with(&url, config), server.accept_with_ack("conn-1"));
    (client.expect("the client connects"), peer)
}

/// One accepted connection, seen from the server.
pub struct Peer {
    ws: WebSocketStream<TcpStream>,
}

impl Peer {
    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::text(frame.to_string())).await.expect("server sends");
    }

    /// The next text frame as JSON (reading also answers the client's pings).
    pub async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("a frame arrives in time");
            match next {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("the client sends JSON"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame matching `wanted`, skipping others.
    pub async fn recv_where(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let frame = self.recv().await;
            if wanted(&frame) {
                return frame;
            }
        }
    }

    /// A canonical reply to `request`.
    pub async fn reply(&mut self, request: &Value, data: Value) {
        self.send(
            json!({"type": "reply", "id": request["id"], "data": data, "meta": {"request_type": request["type"]}}),
        )
        .await;
    }

    /// Receive a request and reply `{"ok": true}`; the request.
    pub async fn answer_next(&mut self) -> Value {
        let request = self.recv().await;
        self.reply(&request, json!({"ok": true})).await;
        request
    }

    /// Keep reading (so pings get their pongs) for `time`; the text frames seen.
    pub async fn read_for(&mut self, time: Duration) -> Vec<Value> {
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + time;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            match next {
                Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str(&text).expect("JSON")),
                Some(Ok(_)) => {}
                other => panic!("the connection ended while reading: {other:?}"),
            }
        }
        frames
    }

    /// Read until the client closes; its close code (`None`: no close frame).
    pub async fn closing_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("the client closes in time") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

/// Poll `condition` until it holds (within PATIENCE).
pub async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Wait until the client has noticed a lost connection.
pub async fn until_reconnecting(client: &Client) {
    let mut state = client.watch_state();
    tokio::time::timeout(PATIENCE, state.wait_for(|s| matches!(s, ConnectionState::Reconnecting { .. })))
        .await
        .expect("the client notices the lost connection")
        .expect("the client is alive");
}
