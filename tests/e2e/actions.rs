//! The action server's client verbs, from outside: `get_client_info` in the
//! request form and the canonical form, scoped by the caller's key;
//! `heartbeat` answered and never refused (not even over the rate limit or
//! outside the key's scope); `connect`, `disconnect` and `notification` as
//! that server took them; `custom` passed to the plugin that claims it.
//! (Workers that never register are in `workers.rs`.)

use serde_json::{json, Value};
use std::collections::BTreeSet;
use switchyard::config::{ApiKeyConfig, ScopeConfig};
use switchyard::Config;
use switchyard_tests::{Client, Ending, Host};

const OPS: &str = "ops-key-0123456789abcdef";
const NARROW: &str = "narrow-key-0123456789abcdef";
const OTHER: &str = "other-key-0123456789abcdef";
const MUTE: &str = "mute-key-0123456789abcdef";

fn key(name: &str, secret: &str, types: &[&str], admin: bool) -> ApiKeyConfig {
    ApiKeyConfig {
        name: name.into(),
        key: secret.into(),
        scopes: ScopeConfig { types: types.iter().map(|s| s.to_string()).collect(), topics: vec!["*".into()] },
        admin,
        client_id: None,
        revoked: false,
    }
}

/// Keys `ops` (admin), `narrow` (`echo` and `get_client_info`), `other`
/// (everything) and `mute` (only `echo`); anonymous callers keep the
/// default scopes.
fn keyed(config: &mut Config) {
    config.auth.keys = vec![
        key("ops", OPS, &["*"], true),
        key("narrow", NARROW, &["echo", "get_client_info"], false),
        key("other", OTHER, &["*"], false),
        key("mute", MUTE, &["echo"], false),
    ];
}

async fn connect_as(host: &Host, secret: Option<&str>, client_id: &str) -> Client {
    let url = format!("{}?client_id={client_id}", host.endpoint("/ws"));
    let bearer = secret.map(|s| format!("Bearer {s}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
    Client::try_connect(&url, &headers).await.expect("connects").acknowledged().await
}

/// The action server's request form.
fn action(msg_id: &str, name: &str) -> Value {
    json!({"type": "request", "msg_id": msg_id, "timestamp": 1714000000.1, "data": {"action": name, "params": {}}})
}

fn ids(clients: &Value) -> BTreeSet<String> {
    clients.as_array().expect("clients is a list").iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

fn set(of: &[&Client]) -> BTreeSet<String> {
    of.iter().map(|c| c.connection_id().to_owned()).collect()
}

#[tokio::test]
async fn get_client_info_lists_the_connections_the_callers_key_may_see() {
    let host = Host::start_with(&[], keyed).await;
    let mut narrow = connect_as(&host, Some(NARROW), "narrow-1").await;
    let narrow_2 = connect_as(&host, Some(NARROW), "narrow-2").await;
    let other = connect_as(&host, Some(OTHER), "other-1").await;
    let mut anonymous = connect_as(&host, None, "anon-1").await;
    let anonymous_2 = connect_as(&host, None, "anon-2").await;
    let mut ops = connect_as(&host, Some(OPS), "ops-1").await;

    // The request form, from a narrow key: its own connections, nobody else's.
    let reply = narrow.request(action("m1", "get_client_info")).await;
    assert_eq!((&reply["type"], &reply["msg_id"], &reply["success"]), (&json!("response"), &json!("m1"), &json!(true)), "{reply}");
    assert_eq!(ids(&reply["data"]["clients"]), set(&[&narrow, &narrow_2]), "{reply}");
    assert_eq!(reply["data"]["count"], 2);
    let mine = reply["data"]["clients"].as_array().unwrap().iter().find(|c| c["id"] == narrow.connection_id()).unwrap().clone();
    assert_eq!((&mine["client_id"], &mine["endpoint"]), (&json!("narrow-1"), &json!("/ws")), "{mine}");
    assert!(mine["connected_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{mine}");

    // The canonical form: anonymous callers see the anonymous connections.
    let reply = anonymous.call("get_client_info", json!({})).await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(ids(&reply["data"]["clients"]), set(&[&anonymous, &anonymous_2]), "{reply}");

    // An admin key sees every connection.
    let reply = ops.call("get_client_info", json!({})).await;
    assert_eq!(ids(&reply["data"]["clients"]), set(&[&narrow, &narrow_2, &other, &anonymous, &anonymous_2, &ops]), "{reply}");

    // A key whose scope does not cover the type is refused, and stays connected.
    let mut mute = connect_as(&host, Some(MUTE), "mute-1").await;
    let reply = mute.request(action("m9", "get_client_info")).await;
    assert_eq!((&reply["success"], &reply["error"]["code"]), (&json!(false), &json!("FORBIDDEN")), "{reply}");
    assert_eq!(mute.call("heartbeat", json!({})).await["data"]["status"], "alive");
    mute.close().await;

    // One that left is no longer listed.
    narrow_2.close().await;
    let deadline = tokio::time::Instant::now() + switchyard_tests::PATIENCE;
    loop {
        let reply = narrow.request(action("m2", "get_client_info")).await;
        if ids(&reply["data"]["clients"]) == set(&[&narrow]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the closed connection stays listed: {reply}");
    }
    drop(other);
    host.shutdown().await;
}

#[tokio::test]
async fn heartbeats_are_answered_and_never_refused() {
    let host = Host::start_with(&[], |c| {
        keyed(c);
        c.limits.messages_per_second = 1;
        c.limits.message_burst = 1;
    })
    .await;
    // A key whose scope does not name `heartbeat` (nor `ping`), over its rate limit.
    let mut narrow = connect_as(&host, Some(MUTE), "beating").await;
    let mut limited = false;
    for n in 0..10 {
        let reply = narrow.call("ping", json!({})).await;
        if reply["data"]["code"] == "RATE_LIMIT_EXCEEDED" {
            limited = true;
            break;
        }
        assert_eq!(reply["type"], "pong", "ping {n}: {reply}");
    }
    assert!(limited, "pings at 1/s with a burst of 1 are limited");
    for n in 0..20 {
        let msg_id = format!("hb-{n}");
        let beat = json!({"type": "heartbeat", "msg_id": msg_id, "timestamp": 1714000000.1, "data": {"status": "ok"}});
        let reply = narrow.request(beat).await;
        assert_eq!((&reply["type"], &reply["msg_id"], &reply["success"]), (&json!("response"), &json!(msg_id), &json!(true)), "{reply}");
        assert_eq!(reply["data"]["status"], "alive", "{reply}");
    }
    // Canonical and requester forms too.
    let reply = narrow.request(json!({"type": "heartbeat", "id": "c1"})).await;
    assert_eq!((&reply["type"], &reply["id"], &reply["data"]["status"]), (&json!("reply"), &json!("c1"), &json!("alive")), "{reply}");
    let reply = narrow.request(json!({"request_id": "r1", "command": "heartbeat"})).await;
    assert_eq!((&reply["request_id"], &reply["success"]), (&json!("r1"), &json!(true)), "{reply}");
    // The connection lives.
    assert!(narrow.request(json!({"type": "heartbeat", "id": "c2"})).await["data"]["status"] == "alive");
    host.shutdown().await;
}

#[tokio::test]
async fn connect_notification_and_disconnect_are_taken_as_the_action_server_took_them() {
    let host = Host::start(&[]).await;
    let mut client = connect_as(&host, None, "abc123").await;
    let me = client.connection_id().to_owned();

    let reply = client.request(json!({"type": "connect", "msg_id": "c1", "timestamp": 1714000000.1, "data": {"client_type": "basic"}})).await;
    assert_eq!((&reply["type"], &reply["msg_id"], &reply["success"]), (&json!("response"), &json!("c1"), &json!(true)), "{reply}");
    assert_eq!((&reply["data"]["connection_id"], &reply["data"]["client_id"]), (&json!(me), &json!("abc123")), "{reply}");

    // No plugin claims `notification`: the host takes it.
    let reply = client.request(json!({"type": "notification", "msg_id": "n1", "data": {"message": "disk at 91%"}})).await;
    assert_eq!((&reply["msg_id"], &reply["success"], &reply["data"]["status"]), (&json!("n1"), &json!(true), &json!("received")), "{reply}");

    // Nor `custom`: a clear UNKNOWN_TYPE, and the connection lives.
    let reply = client.request(json!({"type": "custom", "msg_id": "x1", "data": {"anything": 1}})).await;
    assert_eq!((&reply["msg_id"], &reply["success"], &reply["error"]["code"]), (&json!("x1"), &json!(false), &json!("UNKNOWN_TYPE")), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("custom"), "{reply}");

    // `disconnect` is answered, then the host closes normally.
    let reply = client.request(json!({"type": "disconnect", "msg_id": "d1", "data": {}})).await;
    assert_eq!((&reply["msg_id"], &reply["success"], &reply["data"]["status"]), (&json!("d1"), &json!(true), &json!("disconnected")), "{reply}");
    assert_eq!(client.ending().await, Ending::Closed(Some(1000)));

    // The host is fine.
    let reply = host.connect().await.call("ping", json!({})).await;
    assert_eq!(reply["type"], "pong");
    host.shutdown().await;
}

#[tokio::test]
async fn custom_and_notification_go_to_the_plugin_that_claims_them() {
    let host = Host::start(&["custom-claim"]).await;
    let mut client = host.connect().await;
    let me = client.connection_id().to_owned();
    let reply = client.request(json!({"type": "custom", "msg_id": 7, "timestamp": 1714000000.1, "data": {"subtype": "zoom", "level": 3}})).await;
    assert_eq!((&reply["type"], &reply["msg_id"], &reply["success"]), (&json!("response"), &json!(7), &json!(true)), "{reply}");
    assert_eq!(reply["data"], json!({"claimed": "custom", "data": {"subtype": "zoom", "level": 3}, "connection_id": me}));
    let reply = client.call("notification", json!({"message": "hi"})).await;
    assert_eq!((&reply["type"], &reply["meta"]["plugin"], &reply["data"]["claimed"]), (&json!("reply"), &json!("custom-claim"), &json!("notification")), "{reply}");
    host.shutdown().await;
}
