//! The Rust client (`switchyard-client`) against a real host: requests to a
//! real plugin, error codes, subscriptions restored after the host restarts
//! on the same port, and a request timeout with its late reply dropped.

use serde_json::{json, Value};
use std::time::Duration;
use switchyard_client::{Client, ClientConfig, ClientError, ConnectionState, ReconnectPolicy};
use switchyard_tests::{Host, PATIENCE};
use tokio::sync::mpsc;

/// Reconnect fast and often: a host restart takes a moment.
fn config() -> ClientConfig {
    ClientConfig {
        reconnect: ReconnectPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            max_attempts: Some(100),
            ..ReconnectPolicy::default()
        },
        request_timeout: PATIENCE,
        ..ClientConfig::default()
    }
}

async fn until_connected(client: &Client) {
    tokio::time::timeout(PATIENCE, client.connected()).await.expect("connected in time").expect("client alive");
}

#[tokio::test]
async fn requests_reach_real_plugins_and_errors_keep_their_codes() {
    let host = Host::start(&["clock", "calculator"]).await;
    let client = Client::connect_with(&host.url(), config()).await.unwrap();

    let time = client.request("get_time", json!({})).await.unwrap();
    assert!(time["iso"].as_str().unwrap().ends_with('Z'), "{time}");
    assert!(time["unix_ms"].as_u64().unwrap() > 1_700_000_000_000, "{time}");

    let quotient = client.request("calculate", json!({"a": 6, "b": 3, "op": "/"})).await.unwrap();
    assert_eq!(quotient["result"], 2.0);

    let error = client.request("calculate", json!({"a": 6, "b": 0, "op": "/"})).await.unwrap_err();
    assert_eq!(error.code(), "DIVISION_BY_ZERO", "{error}");
    let error = client.request("no.such.type", json!({})).await.unwrap_err();
    assert_eq!(error.code(), "UNKNOWN_TYPE");

    // The host's acknowledgement was understood.
    let ConnectionState::Connected { connection_id: Some(id) } = client.state() else {
        panic!("expected a connection id, got {:?}", client.state());
    };
    assert_eq!(id.len(), 32);

    client.close().await;
    host.shutdown().await;
}

#[tokio::test]
async fn subscriptions_are_restored_after_the_host_restarts_on_the_same_port() {
    let host = Host::start(&["clock"]).await;
    let addr = host.addr();
    let client = Client::connect_with(&host.url(), config()).await.unwrap();
    let (status_tx, mut status) = mpsc::unbounded_channel::<Value>();
    client.on("status", move |event| {
        let _ = status_tx.send(event["data"].clone());
    });
    client.subscribe(["status"], json!({})).await.unwrap();

    // Restart: shutdown closes the connection with 1001, then the port is free.
    host.shutdown().await;
    let host = Host::start_with(&["clock"], |c| c.listen = addr).await;
    until_connected(&client).await;
    // Requests on a connection are answered in order, so once this reply is
    // in, the restored subscribe (sent first) has taken effect.
    client.request("ping", Value::Null).await.unwrap();
    assert_eq!(client.stats().reconnects, 1);

    host.install("echo", "echo.wasm");
    let event = loop {
        let event = tokio::time::timeout(PATIENCE, status.recv()).await.expect("a status event").unwrap();
        if event["file"] == "echo.wasm" {
            break event;
        }
    };
    assert_eq!(event["event"], "plugin_loaded", "{event}");

    // And the restored connection serves requests.
    assert!(client.request("get_time", json!({})).await.is_ok());
    client.close().await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_request_times_out_and_its_late_reply_is_dropped() {
    let host = Host::start_with(&["clock", "misbehave"], |c| c.plugins.deadline_ms = 1500).await;
    let client = Client::connect_with(&host.url(), config()).await.unwrap();

    let result = client.request_with_timeout("misbehave.loop", json!({}), Duration::from_millis(200)).await;
    assert_eq!(result, Err(ClientError::Timeout(Duration::from_millis(200))));
    assert_eq!(client.stats().pending_requests, 0);

    // The host answers in order: PLUGIN_TIMEOUT for the loop (dropped, nobody
    // waits for it), then this one.
    let time = client.request("get_time", json!({})).await.unwrap();
    assert!(time["unix_ms"].is_u64());
    assert_eq!(client.stats().late_replies, 1);
    client.close().await;
    host.shutdown().await;
}

#[tokio::test]
async fn the_client_gives_up_when_the_host_stays_down() {
    let host = Host::start(&[]).await;
    let config = ClientConfig {
        reconnect: ReconnectPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
            max_attempts: Some(3),
            ..ReconnectPolicy::default()
        },
        ..ClientConfig::default()
    };
    let client = Client::connect_with(&host.url(), config).await.unwrap();
    host.shutdown().await;
    let ending = tokio::time::timeout(PATIENCE, client.closed()).await.expect("gives up in time");
    assert!(matches!(ending, ClientError::Disconnected { attempts: 3, .. }), "{ending:?}");
}
