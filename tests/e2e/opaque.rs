//! `opaque` endpoints from outside: with the bundled `echo` plugin's
//! `frames` export on `/echo`, the host is a plain echo server. Text and
//! binary frames come back byte for byte, up to the message limit; the
//! RFC 6455 raw-frame cases pass as they do on `/ws`; and a frame that
//! cannot be answered closes with the documented code.

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use switchyard::config::{ApiKeyConfig, Config, EndpointConfig, EndpointFormat, ScopeConfig};
use switchyard_tests::conformance::{self, Target};
use switchyard_tests::{Host, Socket};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: usize = 4 << 20;
const NARROW: &str = "narrow-key-0123456789abcdef";

fn opaque(path: &str, kind: &str) -> EndpointConfig {
    let mut endpoint = EndpointConfig::defaults().into_iter().find(|e| e.path == "/ws").unwrap();
    endpoint.path = path.into();
    endpoint.format = EndpointFormat::Opaque;
    endpoint.default_type = Some(kind.into());
    endpoint
}

fn with_opaque_endpoints(config: &mut Config) {
    config.endpoints.push(opaque("/echo", "echo"));
    // `get_time` is served by a plugin without `frames`; `nobody` by none.
    config.endpoints.push(opaque("/time", "get_time"));
    config.endpoints.push(opaque("/nobody", "nobody"));
    config.limits.max_message_bytes = LIMIT;
    config.limits.max_frame_bytes = LIMIT * 2;
    let narrow = ScopeConfig { types: vec!["get_time".into()], ..ScopeConfig::default() };
    config.auth.keys = vec![ApiKeyConfig { scopes: narrow, ..ApiKeyConfig::new("narrow", NARROW) }];
}

async fn host() -> Host {
    Host::start_with(&["echo", "clock"], with_opaque_endpoints).await
}

async fn connect(url: &str, key: Option<&str>) -> Socket {
    let mut request = url.into_client_request().unwrap();
    if let Some(key) = key {
        request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.expect("websocket connects").0
}

async fn next(socket: &mut Socket) -> Message {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await.expect("a frame in time") {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => return message,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

async fn close_code(socket: &mut Socket) -> (u16, String) {
    match next(socket).await {
        Message::Close(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn text_and_binary_echo_byte_for_byte_up_to_the_limit() {
    let host = host().await;
    let mut socket = connect(&host.endpoint("/echo"), None).await;
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let frames = [
        Message::text("hello"),
        Message::text(""),
        Message::text("{\"type\":\"not parsed\"} ünïcödé ✓"),
        Message::binary(Vec::new()),
        Message::binary(vec![0u8, 0xff, b'{', 0x01, 0x02]),
        Message::binary(every_byte),
        Message::binary(vec![7u8; LIMIT]),
        Message::text("x".repeat(LIMIT)),
    ];
    for frame in frames {
        socket.send(frame.clone()).await.unwrap();
        let echoed = next(&mut socket).await;
        assert!(echoed == frame, "{} bytes came back as {} bytes", frame.len(), echoed.len());
    }
    // One byte over the message limit: 1009, and the host serves on.
    socket.send(Message::binary(vec![0u8; LIMIT + 1])).await.unwrap();
    assert_eq!(close_code(&mut socket).await.0, 1009);
    let mut again = connect(&host.endpoint("/echo"), None).await;
    again.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut again).await, Message::text("still here"));
    host.shutdown().await;
}

#[tokio::test]
async fn frames_that_cannot_be_answered_close_with_the_documented_code() {
    let host = host().await;
    // A plugin without the `frames` export, and a type nobody claims: 1011, saying why.
    for (path, why) in [("/time", "frames"), ("/nobody", "nobody")] {
        let mut socket = connect(&host.endpoint(path), None).await;
        socket.send(Message::text("anything")).await.unwrap();
        let (code, reason) = close_code(&mut socket).await;
        assert_eq!(code, 1011, "{path}: {reason}");
        assert!(reason.contains(why), "{path}: {reason}");
    }
    // A key whose scopes do not cover `echo`: 1008.
    let mut socket = connect(&host.endpoint("/echo"), Some(NARROW)).await;
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let (code, reason) = close_code(&mut socket).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("echo"), "{reason}");
    host.shutdown().await;
}

async fn on_echo(case: impl AsyncFnOnce(&Target)) {
    let host = host().await;
    case(&Target::echo(host.addr(), "/echo")).await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_client_close_is_echoed_then_tcp_closes() {
    on_echo(conformance::client_close_is_echoed).await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    on_echo(conformance::protocol_violations_close_with_1002).await;
}

#[tokio::test]
async fn invalid_close_codes_close_with_1002() {
    on_echo(conformance::invalid_close_codes_close_with_1002).await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    on_echo(conformance::invalid_utf8_closes_with_1007).await;
}

#[tokio::test]
async fn fragments_with_interleaved_pings_are_one_message() {
    on_echo(conformance::fragments_with_interleaved_pings_are_one_message).await;
}
