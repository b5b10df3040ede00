//! Auth, scopes, origins, limits and TLS, through real sockets: what a
//! client is told when it is refused, and that the connection and the host
//! survive it.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchyard::config::{ApiKeyConfig, EndpointConfig, ScopeConfig, TlsConfig};
use switchyard::Config;
use switchyard_tests::{Client, Ending, Host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite;

const ADMIN: &str = "admin-key-0123456789abcdef";
const CAM: &str = "cam-key-0123456789abcdef";
const OLD: &str = "old-key-0123456789abcdef";

fn key(name: &str, secret: &str, types: &[&str], topics: &[&str], admin: bool) -> ApiKeyConfig {
    ApiKeyConfig {
        name: name.into(),
        key: secret.into(),
        scopes: ScopeConfig { types: types.iter().map(|s| s.to_string()).collect(), topics: topics.iter().map(|s| s.to_string()).collect() },
        admin,
        client_id: None,
        revoked: false,
    }
}

/// Keys `ops` (admin), `cam` (echo and ping, topic `cam.*`) and `old`
/// (revoked), and a `/secure` endpoint that requires a key.
fn secured(config: &mut Config) {
    let mut old = key("old", OLD, &["*"], &["*"], false);
    old.revoked = true;
    config.auth.keys = vec![key("ops", ADMIN, &["*"], &["*"], true), key("cam", CAM, &["echo"], &["cam.*"], false), old];
    let mut secure = EndpointConfig::defaults().remove(1);
    secure.path = "/secure".into();
    secure.auth = true;
    config.endpoints.push(secure);
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// A WebSocket refused on a monitoring endpoint: the code in the
/// connection frame's error form (which the error frame after it repeats),
/// and the close code.
async fn refused(url: &str, headers: &[(&str, &str)]) -> (String, Ending) {
    let mut client = Client::try_connect(url, headers).await.expect("the upgrade itself succeeds");
    let connection = client.recv_frame().await;
    assert_eq!((connection["type"].as_str(), connection["data"]["status"].as_str()), (Some("connection"), Some("error")), "{connection}");
    assert!(connection["id"].is_string() && connection["timestamp"].is_string(), "{connection}");
    assert!(!connection["data"]["message"].as_str().unwrap().is_empty(), "{connection}");
    let code = connection["data"]["error_code"].as_str().unwrap().to_owned();
    let error = client.recv_frame().await;
    assert_eq!((error["type"].as_str(), error["data"]["code"].as_str()), (Some("error"), Some(code.as_str())), "{error}");
    (code, client.ending().await)
}

#[tokio::test]
async fn websocket_auth_missing_wrong_revoked_and_scoped_keys() {
    let host = Host::start_with(&["echo", "calculator"], secured).await;
    let secure = host.endpoint("/secure");
    let auth_failed = ("AUTHENTICATION_FAILED".to_owned(), Ending::Closed(Some(4001)));
    assert_eq!(refused(&secure, &[]).await, auth_failed, "missing key");
    assert_eq!(refused(&secure, &[("authorization", &bearer("wrong-key-0123456789abc"))]).await, auth_failed, "wrong key");
    assert_eq!(refused(&secure, &[("authorization", &bearer(OLD))]).await, auth_failed, "revoked key");
    assert_eq!(refused(&secure, &[("authorization", "Basic abc")]).await, auth_failed, "not a bearer key");
    // A wrong key is refused on a public endpoint too, not downgraded.
    assert_eq!(refused(&host.url(), &[("authorization", &bearer("wrong-key-0123456789abc"))]).await, auth_failed);

    // A good key in the header, or in the query for browsers.
    let mut cam = Client::try_connect(&secure, &[("authorization", &bearer(CAM))]).await.unwrap().acknowledged().await;
    let mut browser = Client::try_connect(&format!("{secure}?access_token={CAM}"), &[]).await.unwrap().acknowledged().await;
    assert_eq!(browser.call("echo", json!({"message": "hi"})).await["type"], "reply");

    // Out of scope: FORBIDDEN for that message only.
    let reply = cam.call("calculate", json!({"a": 1, "b": 2, "op": "+"})).await;
    assert_eq!(reply["data"]["code"], "FORBIDDEN", "{reply}");
    let reply = cam.call("subscribe", json!({"events": ["status"]})).await;
    assert_eq!(reply["data"]["code"], "FORBIDDEN", "{reply}");
    assert_eq!(cam.call("subscribe", json!({"events": ["cam.motion"]})).await["type"], "reply");
    assert_eq!(cam.call("echo", json!({"message": "still here"})).await["data"], "Echo: still here");
    assert_eq!(cam.call("ping", json!({})).await["type"], "pong");

    // Revoking a key at run time closes its connections and refuses it.
    let http = reqwest::Client::new();
    let response = http.delete(host.http("/api/keys/cam")).bearer_auth(CAM).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "only an admin revokes");
    let response = http.delete(host.http("/api/keys/cam")).bearer_auth(ADMIN).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["connections_closed"], 2, "{body}");
    assert_eq!(cam.ending().await, Ending::Closed(Some(4001)));
    assert_eq!(refused(&secure, &[("authorization", &bearer(CAM))]).await, auth_failed);
    let response = http.get(host.http("/api/status")).bearer_auth(CAM).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // The host still serves everyone else.
    let mut anyone = host.connect().await;
    assert_eq!(anyone.call("calculate", json!({"a": 1, "b": 2, "op": "+"})).await["data"]["result"], 3.0);
    host.shutdown().await;
}

#[tokio::test]
async fn http_auth_when_keys_are_required() {
    let host = Host::start_with(&["echo"], |config| {
        secured(config);
        config.auth.require_key_for_api = true;
    })
    .await;
    let http = reqwest::Client::new();
    let status = |r: reqwest::RequestBuilder| async move { r.send().await.unwrap().status() };
    let message = || http.post(host.http("/api/v1/messages")).body(json!({"type": "echo", "data": {"message": "m"}}).to_string());

    assert_eq!(status(message()).await, StatusCode::UNAUTHORIZED, "missing key");
    assert_eq!(status(message().bearer_auth("wrong-key-0123456789abc")).await, StatusCode::UNAUTHORIZED, "wrong key");
    assert_eq!(status(message().bearer_auth(OLD)).await, StatusCode::UNAUTHORIZED, "revoked key");
    let refusal = message().send().await.unwrap();
    assert_eq!(refusal.headers()["www-authenticate"], "Bearer");
    let body: Value = refusal.json().await.unwrap();
    assert_eq!(body["data"]["code"], "AUTHENTICATION_FAILED");
    assert_eq!(status(message().bearer_auth(CAM)).await, StatusCode::OK);

    let forbidden = http
        .post(host.http("/api/v1/messages"))
        .bearer_auth(CAM)
        .body(json!({"type": "calculate", "data": {}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert_eq!(forbidden.json::<Value>().await.unwrap()["data"]["code"], "FORBIDDEN");

    // Admin-only routes refuse a valid non-admin key.
    assert_eq!(status(http.get(host.http("/api/status")).bearer_auth(CAM)).await, StatusCode::OK);
    assert_eq!(status(http.get(host.http("/api/config")).bearer_auth(CAM)).await, StatusCode::FORBIDDEN);
    assert_eq!(status(http.post(host.http("/api/plugins/echo/reload")).bearer_auth(CAM)).await, StatusCode::FORBIDDEN);
    assert_eq!(status(http.get(host.http("/api/config")).bearer_auth(ADMIN)).await, StatusCode::OK);
    host.shutdown().await;
}

#[tokio::test]
async fn browser_origins_are_checked() {
    let host = Host::start_with(&["echo"], |config| config.auth.allowed_origins = vec!["https://console.example".into()]).await;
    let url = host.url();
    match Client::try_connect(&url, &[("origin", "https://evil.example")]).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a foreign origin must be refused, got {:?}", other.map(|_| "a connection")),
    }
    Client::try_connect(&url, &[("origin", "https://console.example")]).await.unwrap().acknowledged().await;
    let own = format!("http://{}", host.addr());
    Client::try_connect(&url, &[("origin", &own)]).await.unwrap().acknowledged().await;
    host.shutdown().await;
}

#[tokio::test]
async fn message_rate_limit_answers_retry_after_and_recovers() {
    let host = Host::start_with(&["echo"], |config| {
        config.limits.messages_per_second = 5;
        config.limits.message_burst = 5;
    })
    .await;
    let mut client = host.connect().await;
    let mut limited = None;
    for i in 0..10 {
        let reply = client.call("echo", json!({"message": i.to_string()})).await;
        if reply["type"] == "error" {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the 6th message within a second is over a 5/s bucket of 5");
    assert_eq!(limited["data"]["code"], "RATE_LIMIT_EXCEEDED", "{limited}");
    let retry_after = limited["data"]["retry_after"].as_u64().expect("retry_after in ms");
    assert!((1..=200).contains(&retry_after), "at 5/s the next token is at most 200 ms away: {retry_after}");

    // The connection stays open, and after waiting the client is served.
    tokio::time::sleep(Duration::from_millis(retry_after + 20)).await;
    assert_eq!(client.call("echo", json!({"message": "again"})).await["data"], "Echo: again");

    // Legacy formats get the code in their own shape.
    for _ in 0..10 {
        client.send_text(r#"{"request_id":"r","command":"echo","data":{"message":"x"}}"#).await;
    }
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(client.reply().await["code"].as_str().unwrap_or("OK").to_owned());
    }
    assert!(codes.contains(&"RATE_LIMIT_EXCEEDED".to_owned()), "{codes:?}");
    host.shutdown().await;
}

/// Connect, retrying while the host still counts a connection that just closed.
async fn connect_when_admitted(url: &str, headers: &[(&str, &str)]) -> Client {
    for _ in 0..100 {
        if let Ok(client) = Client::try_connect(url, headers).await {
            return client.acknowledged().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never admitted again");
}

fn refused_status(result: Result<Client, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {:?}", other.map(|_| "a connection")),
    }
}

#[tokio::test]
async fn connection_limits_global_per_client_and_per_address() {
    let host = Host::start_with(&["echo"], |config| {
        config.limits.max_connections = 2;
        config.limits.max_connections_per_client = 1;
    })
    .await;
    let url = host.url();
    let first = Client::try_connect(&format!("{url}?client_id=cam-1"), &[]).await.unwrap().acknowledged().await;
    assert_eq!(refused_status(Client::try_connect(&format!("{url}?client_id=cam-1"), &[]).await), 503, "per client id");
    let second = host.connect().await;
    assert_eq!(refused_status(Client::try_connect(&url, &[]).await), 503, "global maximum");
    first.close().await;
    let mut third = connect_when_admitted(&url, &[]).await;
    assert_eq!(third.call("echo", json!({"message": "in"})).await["type"], "reply");
    drop(second);
    host.shutdown().await;

    let host = Host::start_with(&["echo"], |config| {
        config.limits.connections_per_second_per_ip = 1;
        config.limits.connection_burst_per_ip = 2;
    })
    .await;
    let _a = host.connect().await;
    let _b = host.connect().await;
    match Client::try_connect(&host.url(), &[]).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            assert!(response.headers().contains_key("retry-after"));
        }
        other => panic!("a third connection within a second must be refused, got {:?}", other.map(|_| "a connection")),
    }
    let mut later = connect_when_admitted(&host.url(), &[]).await;
    assert_eq!(later.call("echo", json!({"message": "in"})).await["type"], "reply");
    host.shutdown().await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let host = Host::start_with(&["echo"], |config| config.limits.handshake_timeout_ms = 300).await;
    let mut silent = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await.expect("the host gives up on a silent client");
    // Closed, or told 408 first.
    let text = String::from_utf8_lossy(&buf[..read.unwrap_or(0)]).to_string();
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");

    // So is one that starts a request head and never finishes it.
    let mut slow = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await.expect("a half-sent head is dropped").ok();
    let text = String::from_utf8_lossy(&rest).to_string();
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");

    // A client that finishes its request in time is served.
    let mut prompt = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    prompt.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    prompt.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    host.shutdown().await;
}

/// A plain `GET /healthz` on `stream`; the response's status line.
async fn healthz(stream: &mut tokio::net::TcpStream) -> String {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn past_max_http_connections_new_sockets_wait_their_turn() {
    let host = Host::start_with(&["echo"], |config| config.limits.max_http_connections = 2).await;
    // Two clients hold the two places with unfinished request heads.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut holder = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
        holder.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        holders.push(holder);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third connects (the kernel's backlog takes it) but is not served...
    let mut waiting = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let served = tokio::time::timeout(Duration::from_millis(700), healthz(&mut waiting)).await;
    assert!(served.is_err(), "served past the cap: {served:?}");
    // ...until a place frees.
    drop(holders.pop());
    let mut waiting = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), healthz(&mut waiting)).await.expect("served once a place frees");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // An upgraded WebSocket gives its place back: two of them leave room for HTTP.
    let mut sockets = Vec::new();
    drop(holders);
    for _ in 0..2 {
        sockets.push(host.connect().await);
    }
    let mut after = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), healthz(&mut after)).await.expect("WebSockets hold no HTTP place");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    host.shutdown().await;
}

/// An HTTP/2 connection (prior knowledge, then silence) is not served, so it
/// cannot hold an HTTP place past the handshake timeout: hyper's HTTP/2
/// server has no timeout that would end an idle one.
#[tokio::test]
async fn an_idle_http2_connection_does_not_hold_a_place() {
    let host = Host::start_with(&["echo"], |config| {
        config.limits.max_http_connections = 1;
        config.limits.handshake_timeout_ms = 500;
    })
    .await;
    let mut h2 = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    // The HTTP/2 connection preface and an empty SETTINGS frame.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), h2.read_to_end(&mut answer)).await;
    assert!(ended.is_ok(), "an HTTP/2 connection stayed open: {:?}", String::from_utf8_lossy(&answer));
    // The one place is free again.
    let mut next = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), healthz(&mut next)).await.expect("served after the HTTP/2 connection");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    host.shutdown().await;
}

fn certificate() -> (String, String) {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (issued.cert.pem(), issued.signing_key.serialize_pem())
}

/// A wss:// echo call from a client trusting only `cert_pem`: the reply and
/// the server's certificate as seen; `None` if the TLS handshake fails.
async fn wss_call(addr: std::net::SocketAddr, cert_pem: &str) -> Option<(Value, Vec<u8>)> {
    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.ok()?;
    let seen = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let url = format!("wss://localhost:{}/ws", addr.port());
    let (mut socket, _) = tokio_tungstenite::client_async(url, tls).await.expect("wss upgrade");
    use futures_util::{SinkExt, StreamExt};
    let mut frames = Vec::new();
    socket.send(tungstenite::Message::text(json!({"type": "echo", "id": "s1", "data": {"message": "over tls"}}).to_string())).await.unwrap();
    while frames.len() < 2 {
        if let Some(Ok(tungstenite::Message::Text(text))) = socket.next().await {
            frames.push(serde_json::from_str::<Value>(&text).unwrap());
        }
    }
    Some((frames.pop().unwrap(), seen))
}

#[tokio::test]
async fn tls_round_trip_and_certificate_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let tls = TlsConfig { cert: cert_path.clone(), key: key_path.clone(), reload_interval_ms: 100 };
    let host = Host::start_with(&["echo"], |config| config.tls = Some(tls)).await;

    let (reply, _) = wss_call(host.addr(), &cert).await.expect("served with the configured certificate");
    assert_eq!((reply["id"].as_str(), reply["data"].as_str()), (Some("s1"), Some("Echo: over tls")));

    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .resolve("localhost", host.addr())
        .build()
        .unwrap();
    let status: Value = https.get(format!("https://localhost:{}/api/status", host.addr().port())).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["plugins"][0]["name"], "echo");
    // Plain HTTP on a TLS port is not served.
    assert!(reqwest::get(host.http("/healthz")).await.is_err());

    // A renewed pair is picked up without a restart.
    let (new_cert, new_key) = certificate();
    std::fs::write(dir.path().join("key.new"), &new_key).unwrap();
    std::fs::write(dir.path().join("cert.new"), &new_cert).unwrap();
    std::fs::rename(dir.path().join("key.new"), &key_path).unwrap();
    std::fs::rename(dir.path().join("cert.new"), &cert_path).unwrap();
    use rustls::pki_types::pem::PemObject;
    let expected = rustls::pki_types::CertificateDer::from_pem_slice(new_cert.as_bytes()).unwrap().to_vec();
    let mut reloaded = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Until the reload, the handshake fails: the client trusts only the new certificate.
        if let Ok(Some((reply, seen))) = tokio::time::timeout(Duration::from_secs(5), wss_call(host.addr(), &new_cert)).await {
            assert_eq!(seen, expected);
            assert_eq!(reply["data"], "Echo: over tls");
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the renewed certificate is served within 10 s");
    host.shutdown().await;
}
