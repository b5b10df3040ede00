//! MessagePack from outside: a client that asks for the `msgpack`
//! subprotocol (or connects to an endpoint configured for it) speaks every
//! envelope form in binary frames and gets every answer, event and error
//! back in MessagePack.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use switchyard::config::{ApiKeyConfig, EndpointConfig, EndpointEncoding};
use switchyard_tests::{Host, Socket};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(10);
const ADMIN: &str = "admin-key-0123456789abcdef";

/// A MessagePack client: the socket, and the subprotocol the host chose.
async fn connect(url: &str, ask_for_msgpack: bool) -> (Socket, Option<String>) {
    let mut request = url.into_client_request().unwrap();
    if ask_for_msgpack {
        request.headers_mut().insert("sec-websocket-protocol", "msgpack".parse().unwrap());
    }
    let (socket, response) = tokio_tungstenite::connect_async(request).await.expect("websocket connects");
    let chosen = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
    (socket, chosen)
}

async fn send(socket: &mut Socket, value: &Value) {
    socket.send(Message::Binary(rmp_serde::to_vec(value).unwrap().into())).await.unwrap();
}

/// The next frame, which must be binary MessagePack.
async fn recv(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await.expect("a frame arrives in time") {
            Some(Ok(Message::Binary(bytes))) => return rmp_serde::from_slice(&bytes).expect("host sends MessagePack"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

async fn request(socket: &mut Socket, value: Value) -> Value {
    send(socket, &value).await;
    recv(socket).await
}

#[tokio::test]
async fn every_envelope_form_round_trips_in_messagepack() {
    let host = Host::start_with(&["clock", "echo", "rooms"], |config| {
        let admin = ApiKeyConfig::admin("ops", ADMIN);
        config.auth.keys = vec![admin];
    })
    .await;
    let (mut socket, chosen) = connect(&format!("{}?client_id=pack-1", host.endpoint("/ws")), true).await;
    assert_eq!(chosen.as_deref(), Some("msgpack"));

    let ack = recv(&mut socket).await;
    assert_eq!((ack["type"].as_str(), ack["data"]["status"].as_str()), (Some("connection"), Some("connected")), "{ack}");
    assert_eq!(ack["data"]["client_id"], "pack-1");

    // Canonical envelope, with integers, floats, unicode and nesting intact.
    let data = json!({"message": "héllo ✓", "n": -3, "big": u64::MAX, "f": 0.25, "nested": {"l": [1, null, true]}});
    let reply = request(&mut socket, json!({"type": "echo", "id": 42, "data": data.clone()})).await;
    assert_eq!((reply["type"].as_str(), &reply["id"]), (Some("reply"), &json!(42)), "{reply}");
    assert_eq!(reply["data"], "Echo: héllo ✓");
    assert_eq!(reply["meta"]["plugin"], "echo");

    let reply = request(&mut socket, json!({"type": "ping", "id": "p"})).await;
    assert_eq!((reply["type"].as_str(), reply["id"].as_str()), (Some("pong"), Some("p")));

    // The action server's request form.
    let reply = request(&mut socket, json!({"type": "request", "msg_id": "m1", "data": {"action": "get_time", "params": {}}})).await;
    assert_eq!((reply["type"].as_str(), reply["msg_id"].as_str(), reply["success"].as_bool()), (Some("response"), Some("m1"), Some(true)));
    assert!(reply["data"]["unix_ms"].as_u64().unwrap() > 1_700_000_000_000, "{reply}");

    // The requester's command form, exactly.
    let reply = request(&mut socket, json!({"request_id": "r-1", "command": "echo", "data": {"message": "Hello World"}})).await;
    assert_eq!(reply, json!({"request_id": "r-1", "success": true, "data": "Echo: Hello World", "error": null, "processed_by": "echo"}));

    // Errors come back in MessagePack, in the form of the request.
    let reply = request(&mut socket, json!({"type": "nope", "id": "e1"})).await;
    assert_eq!((reply["type"].as_str(), reply["id"].as_str(), reply["data"]["code"].as_str()), (Some("error"), Some("e1"), Some("UNKNOWN_TYPE")), "{reply}");
    let reply = request(&mut socket, json!({"type": "request", "msg_id": "m2", "data": {"action": "nope"}})).await;
    assert_eq!((reply["msg_id"].as_str(), reply["success"].as_bool()), (Some("m2"), Some(false)), "{reply}");

    // Frames that are not MessagePack, or that JSON cannot carry, get an
    // INVALID_MESSAGE error, and the connection goes on.
    for (bad, why) in [
        (vec![0x82, 0xa1, b'a', 0x01], "not a MessagePack value"),
        (vec![0x81, 0x01, 0x02], "not a string"),
        (vec![0xd4, 0x05, 0x00], "extension type"),
        (vec![0x81, 0xa4, b't', b'y', b'p', b'e', 0xa2, 0xc3, 0x28], "UTF-8"),
        (vec![0xa4, b'j', b'u', b's', b't'], "expected a JSON object"),
    ] {
        socket.send(Message::Binary(bad.into())).await.unwrap();
        let reply = recv(&mut socket).await;
        assert_eq!((reply["type"].as_str(), reply["data"]["code"].as_str()), (Some("error"), Some("INVALID_MESSAGE")), "{why}: {reply}");
        assert!(reply["data"]["message"].as_str().unwrap().contains(why), "{why}: {reply}");
    }

    // Events pushed to a subscriber are MessagePack too.
    let reply = request(&mut socket, json!({"type": "subscribe", "id": "s", "data": {"events": ["news"]}})).await;
    assert_eq!(reply["type"], "reply", "{reply}");
    let published = reqwest::Client::new().post(host.http("/api/publish/news")).bearer_auth(ADMIN).json(&json!({"headline": "packed"})).send().await.unwrap();
    assert!(published.status().is_success(), "{}", published.status());
    let event = recv(&mut socket).await;
    assert_eq!((event["type"].as_str(), event["meta"]["topic"].as_str()), (Some("news"), Some("news")), "{event}");
    assert_eq!(event["data"]["headline"], "packed");

    // A JSON text frame is still read, and answered in the connection's encoding.
    socket.send(Message::text(r#"{"type":"ping","id":"t"}"#)).await.unwrap();
    assert_eq!(recv(&mut socket).await["id"], "t");

    // The room server's raw objects on `/rooms`, and its own error shape.
    let (mut device, _) = connect(&host.endpoint("/rooms"), true).await;
    send(&mut device, &json!({"device_id": "packed_device", "identity": "sensor"})).await;
    assert_eq!(recv(&mut device).await, json!({"type": "connection", "message": "Connected successfully"}));
    let room = recv(&mut device).await;
    assert_eq!((room["type"].as_str(), room["status"].as_str()), (Some("room"), Some("created_new")), "{room}");
    let members = request(&mut device, json!({"type": "query_room"})).await;
    assert_eq!(members["room_id"], room["room_id"], "{members}");
    device.send(Message::Binary(vec![0xc4].into())).await.unwrap();
    let error = recv(&mut device).await;
    assert_eq!((error["type"].as_str(), error["code"].as_str()), (Some("error"), Some("INVALID_MESSAGE")), "{error}");

    socket.close(None).await.unwrap();
    host.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_configured_for_messagepack_needs_no_subprotocol() {
    let host = Host::start_with(&["echo"], |config| {
        let mut endpoint = EndpointConfig::defaults().into_iter().find(|e| e.path == "/ws").unwrap();
        endpoint.path = "/packed".into();
        endpoint.encoding = EndpointEncoding::Msgpack;
        config.endpoints.push(endpoint);
    })
    .await;
    let (mut socket, chosen) = connect(&host.endpoint("/packed"), false).await;
    assert_eq!(chosen, None);
    assert_eq!(recv(&mut socket).await["type"], "connection");
    let reply = request(&mut socket, json!({"type": "echo", "id": "1", "data": {"message": "x"}})).await;
    assert_eq!(reply["data"], "Echo: x");
    host.shutdown().await;
}

/// Without MessagePack, a binary frame is refused in JSON, saying how to
/// send MessagePack, and the connection goes on.
#[tokio::test]
async fn binary_on_a_json_connection_is_refused_with_a_way_forward() {
    let host = Host::start(&["echo"]).await;
    let (mut socket, chosen) = connect(&host.endpoint("/ws"), false).await;
    assert_eq!(chosen, None);
    let text = |message: Option<Result<Message, _>>| match message {
        Some(Ok(Message::Text(text))) => serde_json::from_str::<Value>(&text).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    };
    let _ack = text(socket.next().await);
    send(&mut socket, &json!({"type": "ping"})).await;
    let reply = text(socket.next().await);
    assert_eq!(reply["data"]["code"], "INVALID_MESSAGE", "{reply}");
    assert!(reply["data"]["message"].as_str().unwrap().contains("msgpack"), "{reply}");
    socket.send(Message::text(r#"{"type":"ping","id":"after"}"#)).await.unwrap();
    assert_eq!(text(socket.next().await)["id"], "after");
    host.shutdown().await;
}
