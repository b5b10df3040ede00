//! The holes found from outside (issue 14), each closed and held closed
//! through real sockets: endpoint subscriptions under the key's scope,
//! HTTP body deadlines, state that survives a restart, limits that cannot
//! be switched off by accident, arrays that are not messages, parser
//! errors with the JSON body, plugin failures without their backtrace, and
//! origins checked against names the operator configured.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchyard::config::{ApiKeyConfig, EndpointConfig, ScopeConfig};
use switchyard::Config;
use switchyard_tests::{Client, Ending, Host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "admin-key-0123456789abcdef";
const WATCHER: &str = "watcher-key-0123456789abcdef";
const CAM: &str = "cam-key-0123456789abcdef";

fn key(name: &str, secret: &str, topics: &[&str], admin: bool) -> ApiKeyConfig {
    ApiKeyConfig {
        name: name.into(),
        key: secret.into(),
        scopes: ScopeConfig { types: vec!["*".into()], topics: topics.iter().map(|s| s.to_string()).collect() },
        admin,
        client_id: None,
        revoked: false,
    }
}

/// Keys `ops` (admin), `watcher` (topic `status` only) and `cam` (every
/// topic); anonymous callers may use no topic.
fn keyed(config: &mut Config) {
    config.auth.keys = vec![key("ops", ADMIN, &["*"], true), key("watcher", WATCHER, &["status"], false), key("cam", CAM, &["*"], false)];
    config.auth.anonymous = ScopeConfig { types: vec!["*".into()], topics: vec![] };
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

async fn publish(host: &Host, topic: &str) -> u64 {
    let response = http().post(host.http(&format!("/api/publish/{topic}"))).bearer_auth(ADMIN).json(&json!({"level": "critical"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["delivered"].as_u64().unwrap()
}

async fn connect_as(url: &str, secret: Option<&str>) -> Client {
    let header = secret.map(|s| format!("Bearer {s}"));
    let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", h.as_str())).collect();
    Client::try_connect(url, &headers).await.expect("connects").acknowledged().await
}

#[tokio::test]
async fn endpoint_subscriptions_pass_the_keys_topic_scope() {
    let host = Host::start_with(&[], |config| {
        keyed(config);
        let mut feed = EndpointConfig::defaults().remove(1);
        feed.path = "/feed".into();
        feed.subscribe = vec!["status".into(), "alert.*".into()];
        config.endpoints.push(feed);
    })
    .await;
    let alerts = host.endpoint("/ws/alerts");

    // A key limited to `status`, and an anonymous caller with no topics:
    // told after the ack which subscriptions were refused, and sent none
    // of those events; the connection stays.
    for secret in [Some(WATCHER), None] {
        let mut client = connect_as(&alerts, secret).await;
        let refused = client.recv_frame().await;
        assert_eq!((refused["type"].as_str(), refused["data"]["code"].as_str()), (Some("error"), Some("FORBIDDEN")), "{refused}");
        let message = refused["data"]["message"].as_str().unwrap();
        assert!(message.contains("\"alert\"") && message.contains("\"alert.*\""), "names the refused topics: {message}");
        assert_eq!(publish(&host, "alert.cpu").await, 0, "{secret:?} must not receive alert.cpu");
        assert_eq!(client.call("ping", json!({})).await["type"], "pong");
        client.assert_quiet(Duration::from_millis(300)).await;
    }

    // Only the refused part of an endpoint's list is dropped.
    let mut partial = connect_as(&host.endpoint("/feed"), Some(WATCHER)).await;
    let refused = partial.recv_frame().await;
    let message = refused["data"]["message"].as_str().unwrap();
    assert!(message.contains("\"alert.*\"") && !message.contains("\"status\""), "{message}");
    assert_eq!(publish(&host, "status").await, 1);
    assert_eq!(partial.event().await["meta"]["topic"], "status");

    // A key whose scope covers them gets the endpoint's events, no error.
    let mut cam = connect_as(&alerts, Some(CAM)).await;
    assert_eq!(publish(&host, "alert.cpu").await, 1);
    assert_eq!(cam.recv_frame().await["meta"]["topic"], "alert.cpu");
    host.shutdown().await;
}

/// Write `request` on a fresh connection and read until the host closes
/// it (at most `wait`); what it answered, and how long that took.
async fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> (String, Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer within {wait:?}; so far: {}", String::from_utf8_lossy(&answer));
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

/// The status code and JSON body of a raw HTTP/1.1 response.
fn parsed(response: &str) -> (u16, Value) {
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("the body is not JSON ({e}): {response:?}")))
}

#[tokio::test]
async fn slow_and_missing_http_bodies_are_answered_408_within_the_deadline() {
    const DEADLINE: Duration = Duration::from_millis(1000);
    let host = Host::start_with(&["echo"], |config| {
        config.limits.body_timeout_ms = DEADLINE.as_millis() as u64;
        config.limits.handshake_timeout_ms = 1000;
    })
    .await;
    let addr = host.addr();
    let head = "POST /api/v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n";

    // One byte every 200 ms: never done, always talking.
    let trickle = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut byte = [0u8; 4096];
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                read = stream.read(&mut byte) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&byte[..n]),
                },
                _ = ticks.tick() => {
                    if started.elapsed() > Duration::from_secs(8) {
                        break;
                    }
                    let _ = stream.write_all(b" ").await;
                }
            }
        }
        (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
    });
    // A Content-Length and no body at all.
    let (missing, took) = exchange(addr, head.as_bytes(), Duration::from_secs(8)).await;
    let (status, body) = parsed(&missing);
    assert_eq!((status, body["data"]["code"].as_str()), (408, Some("REQUEST_TIMEOUT")), "{missing}");
    assert!(took >= DEADLINE && took < DEADLINE * 3, "answered after {took:?}");

    // Others are served meanwhile, and a body that arrives in time is answered.
    let echo = json!({"type": "echo", "data": {"message": "on time"}}).to_string();
    let reply: Value = http().post(host.http("/api/v1/messages")).body(echo).send().await.unwrap().json().await.unwrap();
    assert_eq!(reply["data"], "Echo: on time");

    let (trickled, took) = trickle.await.unwrap();
    let (status, body) = parsed(&trickled);
    assert_eq!((status, body["data"]["code"].as_str()), (408, Some("REQUEST_TIMEOUT")), "{trickled}");
    assert!(took < DEADLINE * 3, "answered after {took:?}");

    // A keep-alive connection idling between requests does not keep its
    // place: the next request head has the handshake timeout too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut seen)).await;
    assert!(closed.is_ok(), "an idle keep-alive connection is closed: {}", String::from_utf8_lossy(&seen));
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    host.shutdown().await;
}

#[tokio::test]
async fn revocations_and_runtime_limits_survive_a_restart() {
    let host = Host::start_with(&["echo"], |config| {
        keyed(config);
        config.limits.messages_per_second = 100;
    })
    .await;
    let http = http();
    let response = http.delete(host.http("/api/keys/cam")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let change = json!({"messages_per_second": 7, "max_message_bytes": 4096});
    let response = http.put(host.http("/api/config")).bearer_auth(ADMIN).json(&change).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let host = host.restart().await;
    let response = http.get(host.http("/api/status")).bearer_auth(CAM).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "the revoked key stays revoked");
    let mut refused = Client::try_connect(&host.url(), &[("authorization", &format!("Bearer {CAM}"))]).await.unwrap();
    // The monitoring feed's connection frame in its error form, then the error.
    let connection = refused.recv_frame().await;
    assert_eq!((connection["type"].as_str(), connection["data"]["error_code"].as_str()), (Some("connection"), Some("AUTHENTICATION_FAILED")), "{connection}");
    assert_eq!(refused.recv_frame().await["data"]["code"], "AUTHENTICATION_FAILED");
    assert_eq!(refused.ending().await, Ending::Closed(Some(4001)));
    let config: Value = http.get(host.http("/api/config")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!((config["limits"]["messages_per_second"].as_u64(), config["limits"]["max_message_bytes"].as_u64()), (Some(7), Some(4096)), "{config}");
    assert_eq!(config["limits"]["message_burst"], 400, "fields never changed keep the file's value");
    host.shutdown().await;
}

#[tokio::test]
async fn a_limit_is_turned_off_only_when_asked_by_name() {
    let host = Host::start_with(&[], |config| {
        keyed(config);
        config.limits.messages_per_second = 100;
        config.limits.connections_per_second_per_ip = 50;
    })
    .await;
    let http = http();
    let put = |body: Value| http.put(host.http("/api/config")).bearer_auth(ADMIN).json(&body).send();
    for zero in ["messages_per_second", "message_burst", "connections_per_second_per_ip", "connection_burst_per_ip"] {
        let response = put(json!({ zero: 0 })).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{zero} = 0");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"]["code"], "INVALID_MESSAGE", "{body}");
    }
    let config: Value = http.get(host.http("/api/config")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!((config["limits"]["messages_per_second"].as_u64(), config["limits"]["connections_per_second_per_ip"].as_u64()), (Some(100), Some(50)));

    let response = put(json!({"messages_per_second": "off"})).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let config: Value = http.get(host.http("/api/config")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(config["limits"]["messages_per_second"], "off", "{config}");
    // What GET shows can be PUT back as it is.
    assert_eq!(put(config["limits"].clone()).await.unwrap().status(), StatusCode::OK);
    host.shutdown().await;
}

#[tokio::test]
async fn a_json_array_is_not_a_message() {
    let host = Host::start_with(&[], |config| {
        let mut fallback = EndpointConfig::defaults().remove(1);
        fallback.path = "/fallback".into();
        fallback.default_type = Some("ping".into());
        config.endpoints.push(fallback);
    })
    .await;
    let mut client = host.connect().await;
    for array in [r#"["ping","x"]"#, r#" ["ping"]"#, "[]"] {
        client.send_text(array).await;
        let reply = client.reply().await;
        assert_eq!(reply["data"]["code"], "INVALID_MESSAGE", "{array}: {reply}");
    }
    let mut fallback = Client::connect(&host.endpoint("/fallback")).await;
    fallback.send_text("[]").await;
    assert_eq!(fallback.reply().await["data"]["code"], "INVALID_MESSAGE");
    fallback.send_text(r#"{"anything":1}"#).await;
    assert_eq!(fallback.reply().await["type"], "pong", "an object still takes the default type");

    let response = http().post(host.http("/api/v1/messages")).body(r#"["ping","h1"]"#).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await.unwrap()["data"]["code"], "INVALID_MESSAGE");
    host.shutdown().await;
}

#[tokio::test]
async fn http_errors_all_carry_the_json_error_body() {
    let host = Host::start(&[]).await;
    let addr = host.addr();
    let wait = Duration::from_secs(10);
    let long_query = format!("GET /api/status?q={} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100_000));
    let cases: [(&str, &[u8], u16); 4] = [
        ("a 100 KB query string", long_query.as_bytes(), 414),
        ("Content-Length: -1", b"POST /api/v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n", 400),
        ("a header line that is not one", b"GET /healthz HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n", 400),
        ("a plain GET on a WebSocket endpoint", b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", 0),
    ];
    for (what, request, expected) in cases {
        let (response, _) = exchange(addr, request, wait).await;
        let (status, body) = parsed(&response);
        assert!(expected == 0 || status == expected, "{what}: {response}");
        assert!((400..600).contains(&status), "{what}: {response}");
        assert_eq!(body["type"], "error", "{what}: {response}");
        assert!(body["data"]["code"].is_string() && body["data"]["message"].is_string(), "{what}: {response}");
        assert!(response.to_ascii_lowercase().contains("content-type: application/json"), "{what}: {response}");
    }
    assert_eq!(reqwest::get(host.http("/healthz")).await.unwrap().status(), StatusCode::OK);
    host.shutdown().await;
}

#[tokio::test]
async fn plugin_failures_reach_clients_without_the_wasm_backtrace() {
    let host = Host::start(&["misbehave"]).await;
    let mut client = host.connect().await;
    for kind in ["misbehave.panic", "misbehave.membomb"] {
        let reply = client.call(kind, json!({})).await;
        assert_eq!(reply["data"]["code"], "PLUGIN_FAILED", "{reply}");
        let message = reply["data"]["message"].as_str().unwrap();
        for leak in ["backtrace", "0x", "!", "wasm function", "misbehave::", "\n"] {
            assert!(!message.contains(leak), "{kind}: the client's message carries {leak:?}: {message}");
        }
        assert!(message.len() < 200, "{kind}: a short message: {message}");
    }
    host.shutdown().await;
}

/// A WebSocket handshake from a browser page at `origin`, with `host` as
/// its `Host` header; the HTTP status of the answer.
async fn handshake(addr: SocketAddr, origin: &str, host: &str) -> u16 {
    let request = format!(
        "GET /ws HTTP/1.1\r\nhost: {host}\r\norigin: {origin}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await.unwrap().unwrap();
        assert!(n == 1, "closed before the response head ended: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn origins_are_checked_against_configured_names_not_the_host_header() {
    // No public hosts: only loopback pages on the host's own port.
    let host = Host::start(&["echo"]).await;
    let (addr, port) = (host.addr(), host.addr().port());
    let rebound = format!("rebind.example:{port}");
    assert_eq!(handshake(addr, &format!("http://{rebound}"), &rebound).await, 403, "a DNS-rebinding page");
    assert_eq!(handshake(addr, &format!("http://localhost:{port}"), &format!("localhost:{port}")).await, 101);
    assert_eq!(handshake(addr, &format!("http://127.0.0.1:{port}"), &format!("127.0.0.1:{port}")).await, 101);
    assert_eq!(handshake(addr, &format!("http://[::1]:{port}"), &format!("127.0.0.1:{port}")).await, 101);
    assert_eq!(handshake(addr, "http://localhost:9", &format!("localhost:{port}")).await, 403, "another local site");
    host.shutdown().await;

    // Public hosts named: pages from them, and nothing else.
    let host = Host::start_with(&["echo"], |config| config.auth.public_hosts = vec!["switchyard.example".into()]).await;
    let (addr, port) = (host.addr(), host.addr().port());
    assert_eq!(handshake(addr, "https://switchyard.example", "switchyard.example").await, 101);
    assert_eq!(handshake(addr, "https://SwitchYard.example:8443", "switchyard.example:8443").await, 101);
    assert_eq!(handshake(addr, "https://rebind.example", "rebind.example").await, 403);
    assert_eq!(handshake(addr, &format!("http://localhost:{port}"), &format!("localhost:{port}")).await, 403);
    host.shutdown().await;
}
