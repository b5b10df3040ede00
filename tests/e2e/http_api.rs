//! The HTTP API on the WebSocket port, through a real HTTP client: routed
//! messages, the verbatim control API, status, plugin administration,
//! runtime config, sending into live connections, metrics, and the OpenAPI
//! document checked against the real routes.

use reqwest::StatusCode;
use serde_json::{json, Value};
use switchyard::config::{ApiKeyConfig, ScopeConfig};
use switchyard::Config;
use switchyard_tests::{api_client, guest, json_of, watch_status, Client, Host};

const ADMIN: &str = "admin-key-0123456789abcdef";
const USER: &str = "user-key-0123456789abcdef";

fn with_keys(config: &mut Config) {
    let key = |name: &str, key: &str, admin: bool| ApiKeyConfig {
        name: name.into(),
        key: key.into(),
        scopes: ScopeConfig::default(),
        admin,
        client_id: None,
        revoked: false,
    };
    config.auth.keys = vec![key("ops", ADMIN, true), key("user", USER, false)];
}

async fn host(guests: &[&str]) -> Host {
    Host::start_with(guests, with_keys).await
}


/// A device on `/rooms` that created a room; the room's id.
async fn device_in_new_room(host: &Host) -> (Client, String) {
    let mut device = Client::connect_without_ack(&host.endpoint("/rooms")).await;
    device.send_text(r#"{"device_id":"d1","identity":"tv"}"#).await;
    assert_eq!(device.recv_frame().await["type"], "connection");
    let joined = device.recv_frame().await;
    assert_eq!(joined["status"], "created_new", "{joined}");
    (device, joined["room_id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn messages_route_through_plugins_with_ws_error_codes() {
    let host = host(&["calculator", "legacy-echo"]).await;
    let http = api_client();
    let post = |body: String| http.post(host.http("/api/v1/messages")).body(body).send();

    let (status, reply) = json_of(post(json!({"type":"calculate","id":"h1","data":{"a":6,"b":3,"op":"/"}}).to_string()).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!((reply["type"].as_str(), reply["id"].as_str()), (Some("reply"), Some("h1")));
    assert_eq!(reply["data"]["result"], 2.0);
    assert_eq!(reply["meta"]["plugin"], "calculator");

    // The plugin sees the HTTP transport in its origin.
    let (_, reply) = json_of(post(json!({"type":"legacy_echo","data":{"x":1}}).to_string()).await.unwrap()).await;
    assert_eq!(reply["data"]["transport"], "http", "{reply}");

    // A legacy client's format works here too, and is answered in kind.
    let (status, reply) = json_of(post(json!({"request_id":"r-1","command":"calculate","data":{"a":1,"b":2,"op":"+"}}).to_string()).await.unwrap()).await;
    assert_eq!((status, reply["request_id"].as_str(), reply["success"].as_bool()), (StatusCode::OK, Some("r-1"), Some(true)), "{reply}");

    let (status, reply) = json_of(post(json!({"type":"nope","id":"h2"}).to_string()).await.unwrap()).await;
    assert_eq!((status, reply["data"]["code"].as_str(), reply["id"].as_str()), (StatusCode::NOT_FOUND, Some("UNKNOWN_TYPE"), Some("h2")));
    let (status, reply) = json_of(post(json!({"type":"calculate","data":{"a":1,"b":0,"op":"/"}}).to_string()).await.unwrap()).await;
    assert_eq!((status, reply["data"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("DIVISION_BY_ZERO")));
    let (status, reply) = json_of(post("{not json".into()).await.unwrap()).await;
    assert_eq!((status, reply["data"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_JSON")));
    let (status, reply) = json_of(post("x".repeat(2 << 20)).await.unwrap()).await;
    assert_eq!((status, reply["data"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("PAYLOAD_TOO_LARGE")));
    // A wrong key is refused even where anonymous callers are welcome.
    let refused = http.post(host.http("/api/v1/messages")).bearer_auth("wrong-key-0123456789").body("{}").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let (status, reply) = json_of(http.get(host.http("/no/such/route")).send().await.unwrap()).await;
    assert_eq!((status, reply["data"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
    host.shutdown().await;
}

#[tokio::test]
async fn the_control_api_reaches_the_video_plugin_verbatim() {
    let host = host(&["video"]).await;
    let http = api_client();
    let mut watcher = host.connect().await;
    assert_eq!(watcher.call("subscribe", json!({"events": ["video_status"]})).await["type"], "reply");

    let (status, state) = json_of(http.get(host.http("/api/control?action=play&video_path=/videos/a.mp4")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!((state["state"].as_str(), state["video_path"].as_str()), (Some("playing"), Some("/videos/a.mp4")));
    let event = watcher.event_on("video_status").await;
    assert_eq!(event["data"]["state"], "playing", "the plugin ran and published: {event}");

    let (_, state) = json_of(http.post(host.http("/api/control")).json(&json!({"action": "pause"})).send().await.unwrap()).await;
    assert_eq!(state["state"], "paused");
    let (_, state) =
        json_of(http.put(host.http("/api/control")).json(&json!({"action": "play", "video_path": "/videos/b.mp4"})).send().await.unwrap()).await;
    assert_eq!((state["state"].as_str(), state["video_path"].as_str()), (Some("playing"), Some("/videos/b.mp4")));
    let (_, state) = json_of(http.delete(host.http("/api/control")).send().await.unwrap()).await;
    assert_eq!(state["state"], "stopped");
    let (_, state) = json_of(http.get(host.http("/api/control")).send().await.unwrap()).await;
    assert_eq!(state["state"], "stopped", "GET without an action reports the status");

    let (status, error) = json_of(http.post(host.http("/api/control")).json(&json!({"action": "rewind"})).send().await.unwrap()).await;
    assert_eq!((status, error["data"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("UNKNOWN_ACTION")));
    let (status, error) = json_of(http.post(host.http("/api/control")).body("[1,2]").send().await.unwrap()).await;
    assert_eq!((status, error["data"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_JSON")));
    host.shutdown().await;
}

/// The video proxy's clients connect to `/api/websocket`, never subscribe,
/// and read `video_status` frames pushed after a control call.
#[tokio::test]
async fn the_video_proxys_clients_receive_video_status_unasked() {
    let host = host(&["video"]).await;
    let mut viewer = Client::connect_without_ack(&host.endpoint("/api/websocket")).await;
    // A reply proves the connection is served, and so subscribed.
    assert_eq!(viewer.request(json!({"type": "ping"})).await["type"], "pong");

    let control = api_client().post(host.http("/api/control")).json(&json!({"action": "play", "video_path": "/a.mp4"}));
    let (status, state) = json_of(control.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    let frame = viewer.recv_frame().await;
    assert_eq!(frame["type"], "video_status", "{frame}");
    assert_eq!((frame["data"]["state"].as_str(), frame["data"]["video_path"].as_str()), (Some("playing"), Some("/a.mp4")), "{frame}");
    assert_eq!(frame["data"]["position"], 0.0, "{frame}");
    host.shutdown().await;
}

#[tokio::test]
async fn status_reports_connections_rooms_topics_and_plugin_figures() {
    let host = host(&["echo", "rooms"]).await;
    let http = api_client();
    let mut client = host.connect().await;
    client.call("subscribe", json!({"events": ["alert.*"]})).await;
    for _ in 0..20 {
        assert_eq!(client.call("echo", json!({"message": "hi"})).await["type"], "reply");
    }
    let (_device, room) = device_in_new_room(&host).await;

    let (status, report) = json_of(http.get(host.http("/api/status")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["connections"], 2, "{report}");
    assert!(report["uptime_seconds"].is_u64());
    assert!(report["endpoints"].as_array().unwrap().iter().any(|e| e["path"] == "/rooms" && e["connections"] == 1), "{report}");
    assert_eq!(report["rooms"], json!([{"name": room, "members": 1}]));
    assert!(report["topics"].as_array().unwrap().iter().any(|t| t["pattern"] == "alert.*" && t["subscribers"] == 1), "{report}");
    let echo = report["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "echo").expect("echo listed").clone();
    assert_eq!(echo["version"], "0.1.0");
    assert_eq!(echo["hash"].as_str().unwrap().len(), 64);
    assert!(echo["loaded_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!((echo["calls"].as_u64(), echo["error_count"].as_u64(), echo["swap_count"].as_u64()), (Some(20), Some(0), Some(0)));
    let (p50, p99) = (echo["latency_us"]["p50"].as_u64().unwrap(), echo["latency_us"]["p99"].as_u64().unwrap());
    assert!(p50 <= p99, "{echo}");
    host.shutdown().await;
}

#[tokio::test]
async fn plugins_are_administered_through_the_validate_then_swap_path() {
    let host = host(&["echo"]).await;
    let http = api_client();
    let mut client = host.connect().await;
    watch_status(&mut client).await;
    let admin = |request: reqwest::RequestBuilder| request.bearer_auth(ADMIN);

    let (status, list) = json_of(http.get(host.http("/api/plugins")).send().await.unwrap()).await;
    assert_eq!((status, list["plugins"][0]["name"].as_str()), (StatusCode::OK, Some("echo")));

    // Only an admin key may upload.
    let v2 = std::fs::read(guest("echo-v2")).unwrap();
    let anonymous = http.post(host.http("/api/plugins")).body(v2.clone()).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, error) = json_of(http.post(host.http("/api/plugins")).bearer_auth(USER).body(v2.clone()).send().await.unwrap()).await;
    assert_eq!((status, error["data"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")));

    // An upload that replaces a served plugin swaps it, and lands in its file.
    let (status, loaded) = json_of(admin(http.post(host.http("/api/plugins"))).body(v2.clone()).send().await.unwrap()).await;
    assert_eq!((status, loaded["event"].as_str(), loaded["plugin"]["version"].as_str()), (StatusCode::CREATED, Some("plugin_swapped"), Some("2.0.0")), "{loaded}");
    assert_eq!(std::fs::read(host.plugin_dir().join("echo.wasm")).unwrap(), v2, "persisted for the next start");
    let reply = client.call("echo", json!({"message": "hi"})).await;
    assert_eq!(reply["meta"]["plugin_version"], "2.0.0");

    // A broken upload is refused with the load code, and nothing is written.
    let (status, error) = json_of(admin(http.post(host.http("/api/plugins"))).body(b"\0asm garbage".to_vec()).send().await.unwrap()).await;
    assert_eq!((status, error["data"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("PLUGIN_COMPILE_FAILED")));
    let files: Vec<_> = std::fs::read_dir(host.plugin_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, vec![std::ffi::OsString::from("echo.wasm")], "only the served plugin's file");
    assert_eq!(client.call("echo", json!({"message": "hi"})).await["meta"]["plugin_version"], "2.0.0", "still serving");

    let (status, reloaded) = json_of(admin(http.post(host.http("/api/plugins/echo/reload"))).send().await.unwrap()).await;
    assert_eq!((status, reloaded["event"].as_str()), (StatusCode::OK, Some("plugin_swapped")), "{reloaded}");
    let (status, _) = json_of(admin(http.post(host.http("/api/plugins/nope/reload"))).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, removed) = json_of(admin(http.delete(host.http("/api/plugins/echo"))).send().await.unwrap()).await;
    assert_eq!((status, removed["event"].as_str()), (StatusCode::OK, Some("plugin_unloaded")));
    assert!(!host.plugin_dir().join("echo.wasm").exists());
    assert_eq!(client.call("echo", json!({"message": "hi"})).await["data"]["code"], "UNKNOWN_TYPE");
    let (status, _) = json_of(admin(http.delete(host.http("/api/plugins/echo"))).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    host.shutdown().await;
}

#[tokio::test]
async fn config_changes_apply_live_and_are_published() {
    let host = host(&["echo"]).await;
    let http = api_client();
    let mut client = host.connect().await;
    client.call("subscribe", json!({"events": ["config"]})).await;

    let (status, config) = json_of(http.get(host.http("/api/config")).bearer_auth(ADMIN).send().await.unwrap()).await;
    assert_eq!((status, config["limits"]["max_message_bytes"].as_u64()), (StatusCode::OK, Some(1 << 20)));
    let (status, _) = json_of(http.get(host.http("/api/config")).bearer_auth(USER).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, change) =
        json_of(http.put(host.http("/api/config")).bearer_auth(ADMIN).json(&json!({"max_message_bytes": 80, "deadline_ms": 1500})).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{change}");
    assert_eq!((change["old"]["max_message_bytes"].as_u64(), change["new"]["max_message_bytes"].as_u64()), (Some(1 << 20), Some(80)));
    let event = client.event_on("config").await;
    assert_eq!((event["data"]["old"]["deadline_ms"].as_u64(), event["data"]["new"]["deadline_ms"].as_u64()), (Some(2000), Some(1500)));
    assert_eq!(event["data"]["by"], "ops");

    // The new size limit applies to the very next message.
    let reply = client.request(json!({"type": "echo", "data": {"message": "x".repeat(100)}})).await;
    assert_eq!(reply["data"]["code"], "PAYLOAD_TOO_LARGE", "{reply}");
    assert_eq!(client.call("echo", json!({"message": "ok"})).await["type"], "reply");

    let (status, error) = json_of(http.put(host.http("/api/config")).bearer_auth(ADMIN).json(&json!({"max_message_bytes": 0})).send().await.unwrap()).await;
    assert_eq!((status, error["data"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("INVALID_MESSAGE")));
    let (status, error) = json_of(http.put(host.http("/api/config")).bearer_auth(ADMIN).json(&json!({"warp_speed": 9})).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (_, config) = json_of(http.get(host.http("/api/config")).bearer_auth(ADMIN).send().await.unwrap()).await;
    assert_eq!(config["limits"]["max_message_bytes"], 80, "refused changes change nothing");
    host.shutdown().await;
}

#[tokio::test]
async fn http_sends_into_live_connections_rooms_and_topics() {
    let host = host(&["rooms"]).await;
    let http = api_client();
    let post = |path: &str, body: Value| http.post(host.http(path)).bearer_auth(ADMIN).json(&body).send();
    let mut a = host.connect().await;
    let mut b = host.connect().await;
    a.call("subscribe", json!({"events": ["news.*"]})).await;

    let (status, sent) = json_of(post("/api/broadcast", json!({"type": "notice", "text": "maintenance at 5"})).await.unwrap()).await;
    assert_eq!((status, sent["delivered"].as_u64()), (StatusCode::OK, Some(2)));
    assert_eq!(a.recv_frame().await["text"], "maintenance at 5");
    assert_eq!(b.recv_frame().await["text"], "maintenance at 5");

    let (_, sent) = json_of(post("/api/publish/news.local", json!({"headline": "hi"})).await.unwrap()).await;
    assert_eq!(sent["delivered"], 1);
    let event = a.event_on("news.local").await;
    assert_eq!((event["data"]["headline"].as_str(), event["meta"]["source"].as_str()), (Some("hi"), Some("http:ops")));

    let path = format!("/api/connections/{}/send", b.connection_id());
    let (_, sent) = json_of(post(&path, json!({"type": "direct", "n": 7})).await.unwrap()).await;
    assert_eq!(sent["delivered"], 1);
    assert_eq!(b.recv_frame().await["n"], 7);
    let (status, error) = json_of(post("/api/connections/nobody/send", json!({})).await.unwrap()).await;
    assert_eq!((status, error["data"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("CONNECTION_NOT_FOUND")));

    let (mut device, room) = device_in_new_room(&host).await;
    let (_, sent) = json_of(post(&format!("/api/rooms/{room}/send"), json!({"type": "message", "content": "from ops"})).await.unwrap()).await;
    assert_eq!(sent["delivered"], 1);
    assert_eq!(device.recv_frame().await["content"], "from ops");
    let (status, _) = json_of(post("/api/rooms/EMPTY/send", json!({})).await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Sending needs an admin key.
    let refused = http.post(host.http("/api/broadcast")).bearer_auth(USER).json(&json!({})).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    host.shutdown().await;
}

/// The value of the sample `name` (with its labels) in a metrics page.
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let host = host(&["echo"]).await;
    let http = api_client();
    let page = || async { http.get(host.http("/metrics")).send().await.unwrap().text().await.unwrap() };
    assert_eq!(http.get(host.http("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    let (status, ready) = json_of(http.get(host.http("/readyz")).send().await.unwrap()).await;
    assert_eq!((status, ready["ready"].as_bool(), ready["plugins"].as_u64()), (StatusCode::OK, Some(true), Some(1)));

    let before = page().await;
    let ok = r#"switchyard_messages_total{type="echo",status="OK"}"#;
    let calls = r#"switchyard_plugin_call_seconds_count{plugin="echo",version="0.1.0"}"#;
    let mut client = host.connect().await;
    for _ in 0..5 {
        client.call("echo", json!({"message": "m"})).await;
    }
    client.call("nope", json!({})).await;
    let after = page().await;
    assert_eq!(sample(&after, ok) - sample(&before, ok), 5.0, "{after}");
    assert_eq!(sample(&after, calls) - sample(&before, calls), 5.0);
    assert_eq!(sample(&after, r#"switchyard_messages_total{type="unknown",status="UNKNOWN_TYPE"}"#), 1.0);
    assert_eq!(sample(&after, "switchyard_connections"), 1.0);
    assert!(sample(&after, "switchyard_connections_accepted_total") >= 1.0);
    host.shutdown().await;
}

/// Every documented operation exists, and every route is documented.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let root = switchyard_tests::workspace_root();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(root.join("docs/openapi.json")).unwrap()).unwrap();
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys().filter(|m| ["get", "post", "put", "delete"].contains(&m.as_str())) {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();

    // The routes, as the router declares them.
    let mut files: Vec<_> = std::fs::read_dir(root.join("host/src/transport/api")).unwrap().map(|e| e.unwrap().path()).collect();
    files.push(root.join("host/src/transport/mod.rs"));
    let source: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect::<Vec<_>>().join("\n");
    let mut declared = Vec::new();
    for line in source.lines().filter_map(|l| l.split_once(".route(\"").map(|(_, rest)| rest)) {
        let path = line.split('"').next().unwrap();
        let handlers = &line[line.find(',').unwrap()..];
        for method in ["get", "post", "put", "delete"] {
            if handlers.contains(&format!("{method}(")) {
                declared.push((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    declared.sort();
    assert_eq!(documented, declared, "docs/openapi.json and the router disagree");

    // And each documented operation answers on a live host (not "no such route").
    let host = host(&["echo"]).await;
    let http = api_client();
    for (method, path) in &documented {
        let path = path.replace("{name}", "echo").replace("{topic}", "t").replace("{id}", "x").replace("{room}", "r");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = http.request(method.clone(), host.http(&path)).bearer_auth(USER).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(!body.contains("no such route") && status != StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {status} {body}");
    }
    host.shutdown().await;
}
