//! The WebSocket reverse proxy end to end: the proxy's router served on
//! loopback, small tokio-tungstenite upstreams, real clients.
//!
//! `through_the_host` at the end runs a route configured in a real host.

use futures_util::{SinkExt, StreamExt};
use switchyard::transport::proxy::{Health, Proxy, ProxyRouteConfig};
use switchyard_tests::conformance;
use switchyard_tests::raw::opcode::{CLOSE, CONTINUATION, PONG, TEXT};
use switchyard_tests::raw::{Ended, Frame, RawSocket};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// No test may take longer than this, whatever goes wrong.
const TEST_LIMIT: Duration = Duration::from_secs(30);
/// How long to wait for any one expected frame or state.
const WAIT: Duration = Duration::from_secs(5);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, test).await.expect("test took too long")
}

/// What a test upstream saw.
#[derive(Debug)]
enum Seen {
    Handshake { uri: String, headers: HeaderMap },
    Closed(Option<(u16, String)>),
}

/// A small upstream: answers "who" with its name, "close-4003" with a close
/// frame, "drop" by dropping the TCP connection, and echoes anything else.
/// Its tungstenite answers pings, as any echo server's does.
struct Upstream {
    addr: SocketAddr,
    seen: mpsc::Receiver<Seen>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    async fn start(name: &'static str, pick: Option<&'static str>) -> Upstream {
        Upstream::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), name, pick, Duration::ZERO)
    }

    /// `delay` holds each handshake back, so the proxy's upgrades overlap.
    fn start_on(listener: TcpListener, name: &'static str, pick: Option<&'static str>, delay: Duration) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::channel(256);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    serve_upstream(tcp, name, pick, tx).await
                });
            }
        });
        Upstream { addr, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The next thing seen that is not a health check's.
    async fn next_seen(&mut self) -> Seen {
        loop {
            let seen = tokio::time::timeout(WAIT, self.seen.recv()).await.expect("upstream saw nothing").unwrap();
            match &seen {
                Seen::Handshake { headers, .. } if headers.get("user-agent").is_some_and(|ua| ua == "switchyard-proxy-health-check") => {}
                Seen::Closed(Some((1000, reason))) if reason == "health check" => {}
                _ => return seen,
            }
        }
    }
}

// tungstenite's handshake callback type fixes the large error type.
#[allow(clippy::result_large_err)]
async fn serve_upstream(tcp: TcpStream, name: &'static str, pick: Option<&'static str>, seen: mpsc::Sender<Seen>) {
    let on_handshake = |request: &Request, mut response: Response| {
        let offer = request.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Some(pick) = pick.filter(|pick| offer.split(',').any(|p| p.trim() == *pick)) {
            response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(pick));
        }
        let _ = seen.try_send(Seen::Handshake { uri: request.uri().to_string(), headers: request.headers().clone() });
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, on_handshake).await else { return };
    while let Some(Ok(message)) = ws.next().await {
        let reply = match message {
            Message::Text(text) if text == "who" => Message::text(name),
            Message::Text(text) if text == "close-4003" => Message::Close(Some(CloseFrame { code: CloseCode::from(4003), reason: "bye".into() })),
            Message::Text(text) if text == "drop" => return,
            Message::Close(frame) => {
                let _ = seen.try_send(Seen::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string()))));
                continue;
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            echo => echo,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
}

/// Serve the proxy's router on loopback, as the host would.
async fn serve(proxy: &Arc<Proxy>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = proxy.router().into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn route(path: &str, upstreams: &[String]) -> ProxyRouteConfig {
    ProxyRouteConfig::new(path, upstreams.iter().cloned())
}

async fn connect(proxy: SocketAddr, path: &str) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{proxy}{path}")).await.expect("handshake through the proxy");
    client
}

/// The next data frame (pings and pongs from either hop are skipped).
async fn next_data(client: &mut Client) -> Message {
    loop {
        let message = tokio::time::timeout(WAIT, client.next()).await.expect("no frame in time").expect("stream ended").expect("read failed");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

async fn ask(client: &mut Client, text: &str) -> String {
    client.send(Message::text(text)).await.unwrap();
    match next_data(client).await {
        Message::Text(reply) => reply.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Read until the close frame, then on until the proxy ends the connection
/// (reading also sends our reply); the frame's code and reason.
async fn close_of(client: &mut Client) -> (u16, String) {
    let close = match next_data(client).await {
        Message::Close(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
        other => panic!("expected a close frame, got {other:?}"),
    };
    let end = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = client.next().await {} }).await;
    assert!(end.is_ok(), "the proxy left the connection open after closing it");
    close
}

/// A WebSocket handshake by hand, for the HTTP refusals: status and JSON body.
async fn refused(proxy: SocketAddr, path: &str, host: &str) -> (u16, serde_json::Value) {
    let mut tcp = TcpStream::connect(proxy).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk)).await.expect("no response").unwrap();
        assert!(n > 0, "connection closed mid-response: {:?}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&response).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .expect("a refusal has a content-length");
        if body.len() >= length {
            return (status, serde_json::from_str(&body[..length]).expect("a JSON body"));
        }
    }
}

/// A frame's opcode and payload, as the raw client read it.
async fn next_frame(client: &mut RawSocket) -> (u8, Vec<u8>) {
    let frame = client.frame().await.expect("the connection ended before a frame");
    assert!(frame.fin, "a fragment from the proxy: {frame:?}");
    (frame.opcode, frame.payload)
}

/// Read to the server's Close, answer it, and expect TCP to close: its code
/// and reason. (tungstenite reports 1014 as 1002, so 1014 needs the raw client.)
async fn raw_close_of(client: &mut RawSocket) -> (u16, String) {
    let (code, reason) = match client.ending().await {
        Ended::Closed { code: Some(code), reason } => (code, String::from_utf8(reason).unwrap()),
        other => panic!("expected a Close with a code, got {other:?}"),
    };
    client.answer_close(code).await;
    assert!(client.tcp_closes_within(WAIT).await, "the proxy left the connection open after closing it");
    (code, reason)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn health(proxy: &Proxy, route: usize, upstream: usize) -> Health {
    proxy.status().routes[route].upstreams[upstream].health
}

#[tokio::test]
async fn relays_text_and_binary_with_forwarded_headers() {
    bounded(async {
        let mut upstream = Upstream::start("a", None).await;
        let proxy = Proxy::new(vec![route("/echo", &[upstream.url("/socket?token=abc")])]).unwrap();
        let addr = serve(&proxy).await;

        let mut request = format!("ws://{addr}/echo?room=7").into_client_request().unwrap();
        for (name, value) in [
            ("user-agent", "proxy-test/1"),
            ("authorization", "Bearer t0ken"),
            ("cookie", "session=1"),
            ("origin", "http://app.test"),
            ("x-forwarded-for", "10.0.0.1"),
        ] {
            request.headers_mut().insert(name, HeaderValue::from_static(value));
        }
        let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();

        let Seen::Handshake { uri, headers } = upstream.next_seen().await else { panic!("expected a handshake") };
        assert_eq!(uri, "/socket?token=abc&room=7");
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header("x-forwarded-for").as_deref(), Some("10.0.0.1, 127.0.0.1"));
        assert_eq!(header("x-forwarded-host"), Some(addr.to_string()));
        assert_eq!(header("x-forwarded-proto").as_deref(), Some("ws"));
        assert_eq!(header("host"), Some(upstream.addr.to_string()));
        assert_eq!(header("user-agent").as_deref(), Some("proxy-test/1"));
        assert_eq!(header("authorization").as_deref(), Some("Bearer t0ken"));
        assert_eq!(header("cookie").as_deref(), Some("session=1"));
        assert_eq!(header("origin").as_deref(), Some("http://app.test"));

        assert_eq!(ask(&mut client, "hello").await, "hello");
        assert_eq!(ask(&mut client, "who").await, "a");
        client.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
        assert_eq!(next_data(&mut client).await, Message::binary(vec![0u8, 1, 2, 255]));
        let big: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        client.send(Message::binary(big.clone())).await.unwrap();
        assert_eq!(next_data(&mut client).await, Message::binary(big));

    })
    .await;
}

#[tokio::test]
async fn subprotocol_is_the_upstreams_choice() {
    bounded(async {
        let mut upstream = Upstream::start("a", Some("v1.video")).await;
        let proxy = Proxy::new(vec![route("/video", &[upstream.url("/")])]).unwrap();
        let addr = serve(&proxy).await;

        let mut request = format!("ws://{addr}/video").into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("v2.video, v1.video"));
        let (mut client, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.headers().get("sec-websocket-protocol").unwrap(), "v1.video");
        let Seen::Handshake { headers, .. } = upstream.next_seen().await else { panic!("expected a handshake") };
        assert_eq!(headers.get("sec-websocket-protocol").unwrap(), "v2.video, v1.video");
        assert_eq!(ask(&mut client, "frame").await, "frame");

        // No offer, no subprotocol.
        let (_client, response) = tokio_tungstenite::connect_async(format!("ws://{addr}/video")).await.unwrap();
        assert!(response.headers().get("sec-websocket-protocol").is_none());
    })
    .await;
}

#[tokio::test]
async fn upstream_that_is_down_then_recovers() {
    bounded(async {
        // Reserve a port with nothing listening on it yet.
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let url = format!("ws://127.0.0.1:{port}/");
        let config = ProxyRouteConfig { health_interval_ms: 100, connect_timeout_ms: 1000, ..route("/video", &[url]) };
        let proxy = Proxy::new(vec![config]).unwrap();
        let addr = serve(&proxy).await;
        let stop = CancellationToken::new();
        let checks = tokio::spawn(Arc::clone(&proxy).run_health_checks(stop.clone()));

        wait_for("the first check to fail", || health(&proxy, 0, 0) == Health::Unhealthy).await;
        let status = proxy.status();
        assert!(!status.routes[0].upstreams[0].healthy);
        assert!(status.routes[0].upstreams[0].last_error.is_some());
        let mut client = connect(addr, "/video").await;
        assert_eq!(close_of(&mut client).await, (1013, "no healthy upstream for /video".to_owned()));

        let _upstream = Upstream::start_on(TcpListener::bind(("127.0.0.1", port)).await.unwrap(), "back", None, Duration::ZERO);
        wait_for("a check to pass", || health(&proxy, 0, 0) == Health::Healthy).await;
        let mut client = connect(addr, "/video").await;
        assert_eq!(ask(&mut client, "who").await, "back");

        stop.cancel();
        checks.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn round_robin_over_healthy_upstreams() {
    bounded(async {
        let a = Upstream::start("a", None).await;
        let b = Upstream::start("b", None).await;
        let down = format!("ws://127.0.0.1:{}/", TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port());
        let proxy = Proxy::new(vec![
            route("/pair", &[a.url("/"), b.url("/")]),
            ProxyRouteConfig { health_interval_ms: 100, ..route("/trio", &[a.url("/"), down.clone(), b.url("/")]) },
        ])
        .unwrap();
        let addr = serve(&proxy).await;

        let mut served = Vec::new();
        for _ in 0..4 {
            let mut client = connect(addr, "/pair").await;
            served.push(ask(&mut client, "who").await);
        }
        served.sort();
        assert_eq!(served, ["a", "a", "b", "b"]);

        let stop = CancellationToken::new();
        let checks = tokio::spawn(Arc::clone(&proxy).run_health_checks(stop.clone()));
        wait_for("the down upstream to be found out", || health(&proxy, 1, 1) == Health::Unhealthy).await;
        let mut served = Vec::new();
        for _ in 0..4 {
            let mut client = connect(addr, "/trio").await;
            served.push(ask(&mut client, "who").await);
        }
        served.sort();
        assert_eq!(served, ["a", "a", "b", "b"]);
        stop.cancel();
        checks.await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn failed_connection_moves_on_to_the_next_upstream() {
    bounded(async {
        let a = Upstream::start("a", None).await;
        let down = format!("ws://127.0.0.1:{}/", TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port());
        // No health checks: the down upstream is unchecked, so in rotation,
        // and the first client finds it out.
        let proxy = Proxy::new(vec![route("/video", &[down, a.url("/")])]).unwrap();
        let addr = serve(&proxy).await;
        for _ in 0..2 {
            let mut client = connect(addr, "/video").await;
            assert_eq!(ask(&mut client, "who").await, "a");
        }
        let status = proxy.status();
        let upstreams = &status.routes[0].upstreams;
        assert_eq!((upstreams[0].health, upstreams[1].health), (Health::Unhealthy, Health::Healthy));
        assert!(upstreams[0].last_error.as_deref().unwrap().contains("refused"), "{:?}", upstreams[0].last_error);
    })
    .await;
}

#[tokio::test]
async fn route_connection_limit() {
    bounded(async {
        let upstream = Upstream::start("a", None).await;
        let config = ProxyRouteConfig { max_connections: 2, ..route("/video", &[upstream.url("/")]) };
        let proxy = Proxy::new(vec![config]).unwrap();
        let addr = serve(&proxy).await;

        let mut first = connect(addr, "/video").await;
        let mut second = connect(addr, "/video").await;
        assert_eq!(ask(&mut second, "who").await, "a");
        let (status, body) = refused(addr, "/video", &addr.to_string()).await;
        assert_eq!(status, 503);
        assert_eq!(body["type"], "error");
        assert_eq!(body["data"]["code"], "TOO_MANY_CONNECTIONS");
        assert!(body["data"]["message"].as_str().unwrap().contains("/video"));
        assert_eq!(proxy.status().routes[0].connections_open, 2);

        first.close(None).await.unwrap();
        while let Some(Ok(_)) = first.next().await {}
        wait_for("the closed session's slot", || proxy.status().routes[0].connections_open == 1).await;
        let mut third = connect(addr, "/video").await;
        assert_eq!(ask(&mut third, "who").await, "a");
        assert_eq!(ask(&mut second, "who").await, "a");
    })
    .await;
}

#[tokio::test]
async fn connection_limit_holds_for_concurrent_upgrades() {
    bounded(async {
        // Each upstream handshake takes a while, so all six upgrades are in
        // flight at once: only a reservation made before dialing holds.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut upstream = Upstream::start_on(listener, "slow", None, Duration::from_millis(200));
        let config = ProxyRouteConfig { max_connections: 2, ..route("/video", &[upstream.url("/")]) };
        let proxy = Proxy::new(vec![config]).unwrap();
        let addr = serve(&proxy).await;

        let attempts = (0..6).map(|_| tokio_tungstenite::connect_async(format!("ws://{addr}/video")));
        let results = futures_util::future::join_all(attempts).await;
        let mut clients = Vec::new();
        let mut refused = 0;
        for result in results {
            match result {
                Ok((client, _)) => clients.push(client),
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), 503);
                    refused += 1;
                }
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert_eq!((clients.len(), refused), (2, 4));
        assert_eq!(proxy.status().routes[0].connections_open, 2);
        // Refused clients never cost the upstream a handshake: every dial has
        // finished before its client's answer, so all are counted by now.
        let mut handshakes = 0;
        while let Ok(seen) = upstream.seen.try_recv() {
            handshakes += usize::from(matches!(seen, Seen::Handshake { .. }));
        }
        assert_eq!(handshakes, 2);
        for client in &mut clients {
            assert_eq!(ask(client, "who").await, "slow");
        }
    })
    .await;
}

#[tokio::test]
async fn close_codes_pass_through() {
    bounded(async {
        let mut upstream = Upstream::start("a", None).await;
        let proxy = Proxy::new(vec![route("/video", &[upstream.url("/")])]).unwrap();
        let addr = serve(&proxy).await;

        // The upstream closes with a code: the client gets it.
        let mut client = connect(addr, "/video").await;
        client.send(Message::text("close-4003")).await.unwrap();
        assert_eq!(close_of(&mut client).await, (4003, "bye".to_owned()));

        // The upstream drops TCP without a close frame: 1014.
        let mut client = RawSocket::connect(addr, "/video").await;
        client.send(&Frame::text("drop")).await;
        assert_eq!(raw_close_of(&mut client).await, (1014, "upstream closed".to_owned()));

        // The client closes with a code: the upstream gets it.
        while upstream.seen.try_recv().is_ok() {}
        let mut client = connect(addr, "/video").await;
        while !matches!(upstream.next_seen().await, Seen::Handshake { .. }) {}
        client.close(Some(CloseFrame { code: CloseCode::from(4001), reason: "done".into() })).await.unwrap();
        match upstream.next_seen().await {
            Seen::Closed(frame) => assert_eq!(frame, Some((4001, "done".to_owned()))),
            other => panic!("expected the client's close, got {other:?}"),
        }
        // The client's closing handshake completes, and its slot is released.
        let end = tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = client.next().await {} }).await;
        assert!(end.is_ok(), "the proxy never finished the client's close");
        wait_for("every slot to be released", || proxy.status().routes[0].connections_open == 0).await;
    })
    .await;
}

/// An echo upstream, and the proxy serving it as `/echo` on loopback.
async fn echo_route() -> (Upstream, Arc<Proxy>, SocketAddr) {
    let upstream = Upstream::start("a", None).await;
    let proxy = Proxy::new(vec![route("/echo", &[upstream.url("/")])]).unwrap();
    let addr = serve(&proxy).await;
    (upstream, proxy, addr)
}

/// Each ping is answered by one pong with its payload: the frame after it
/// is the upstream's echo of the message sent after the ping.
#[tokio::test]
async fn a_ping_is_answered_once_with_its_payload() {
    bounded(async {
        let (_upstream, _proxy, addr) = echo_route().await;
        let mut client = RawSocket::connect(addr, "/echo").await;

        for payload in [b"first".as_slice(), b"", b"third"] {
            client.send(&Frame::ping(payload)).await;
            client.send(&Frame::text("after the ping")).await;
            assert_eq!(next_frame(&mut client).await, (PONG, payload.to_vec()));
            assert_eq!(next_frame(&mut client).await, (TEXT, b"after the ping".to_vec()), "one pong per ping");
        }
    })
    .await;
}

/// A message in three fragments, with a ping between each, reaches the
/// upstream as one message, in order with the messages around it, and its
/// echo comes back as one frame; each ping is answered once.
#[tokio::test]
async fn a_fragmented_message_arrives_whole_and_in_order() {
    bounded(async {
        let (_upstream, _proxy, addr) = echo_route().await;
        let mut client = RawSocket::connect(addr, "/echo").await;

        client.send(&Frame::text("before")).await;
        // "é" is split between the first two fragments.
        client.send(&Frame::new(TEXT, b"h\xc3".as_slice()).not_final()).await;
        client.send(&Frame::ping("1")).await;
        client.send(&Frame::new(CONTINUATION, b"\xa9llo, ".as_slice()).not_final()).await;
        client.send(&Frame::ping("2")).await;
        client.send(&Frame::new(CONTINUATION, "world")).await;
        client.send(&Frame::text("after")).await;

        let mut texts = Vec::new();
        let mut pongs = Vec::new();
        while texts.len() < 3 {
            match next_frame(&mut client).await {
                (TEXT, payload) => texts.push(String::from_utf8(payload).unwrap()),
                (PONG, payload) => pongs.push(payload),
                other => panic!("unexpected frame {other:?}"),
            }
        }
        assert_eq!(texts, ["before", "h\u{e9}llo, world", "after"]);
        assert_eq!(pongs, [b"1".to_vec(), b"2".to_vec()]);
    })
    .await;
}

/// Close frames written by hand: the client's code and reason reach the
/// upstream, and the upstream's reach the client, both handshakes complete.
#[tokio::test]
async fn close_codes_and_reasons_pass_through_frame_by_frame() {
    bounded(async {
        let (mut upstream, proxy, addr) = echo_route().await;

        let mut client = RawSocket::connect(addr, "/echo").await;
        while !matches!(upstream.next_seen().await, Seen::Handshake { .. }) {}
        let close = [4002u16.to_be_bytes().as_slice(), b"client done"].concat();
        client.send(&Frame::close(4002, b"client done")).await;
        match upstream.next_seen().await {
            Seen::Closed(frame) => assert_eq!(frame, Some((4002, "client done".to_owned()))),
            other => panic!("expected the client's close, got {other:?}"),
        }
        assert_eq!(next_frame(&mut client).await, (CLOSE, close), "the proxy answers the close with its code");
        assert!(client.tcp_closes_within(WAIT).await, "the proxy ends the connection after the handshake");

        let mut client = RawSocket::connect(addr, "/echo").await;
        client.send(&Frame::text("close-4003")).await;
        assert_eq!(raw_close_of(&mut client).await, (4003, "bye".to_owned()));
        wait_for("every slot to be released", || proxy.status().routes[0].connections_open == 0).await;
    })
    .await;
}

#[tokio::test]
async fn host_pattern_selects_the_route() {
    bounded(async {
        let upstream = Upstream::start("sub", None).await;
        let config = ProxyRouteConfig { host: Some("*.example.com".into()), ..route("/h", &[upstream.url("/")]) };
        let proxy = Proxy::new(vec![config]).unwrap();
        let addr = serve(&proxy).await;

        let mut request = format!("ws://{addr}/h").into_client_request().unwrap();
        request.headers_mut().insert("host", HeaderValue::from_static("a.example.com:8080"));
        let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(ask(&mut client, "who").await, "sub");

        for host in ["example.org", "example.com"] {
            let (status, body) = refused(addr, "/h", host).await;
            assert_eq!(status, 404, "{host}");
            assert_eq!(body["type"], "error");
            assert_eq!(body["data"]["code"], "NOT_FOUND");
        }
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_both_sides() {
    bounded(async {
        let mut upstream = Upstream::start("a", None).await;
        let proxy = Proxy::new(vec![route("/video", &[upstream.url("/")])]).unwrap();
        let addr = serve(&proxy).await;
        let mut client = connect(addr, "/video").await;
        assert_eq!(ask(&mut client, "who").await, "a");
        assert!(matches!(upstream.next_seen().await, Seen::Handshake { .. }));

        let (finished, close) = tokio::join!(proxy.shutdown(WAIT), close_of(&mut client));
        assert!(finished, "sessions outlived the grace period");
        assert_eq!(close, (1001, "proxy shutting down".to_owned()));
        match upstream.next_seen().await {
            Seen::Closed(frame) => assert_eq!(frame, Some((1001, "proxy shutting down".to_owned()))),
            other => panic!("expected a close, got {other:?}"),
        }
        let (status, body) = refused(addr, "/video", &addr.to_string()).await;
        assert_eq!((status, &body["data"]["code"]), (503, &serde_json::json!("UNAVAILABLE")));
    })
    .await;
}

/// A route in the host's own configuration: relayed beside the host's
/// endpoints and API, reported in `/api/status`.
#[tokio::test]
async fn through_the_host() {
    bounded(async {
        let upstream = Upstream::start("video-1", None).await;
        let upstream_url = upstream.url("/");
        let host = switchyard_tests::Host::start_with(&["echo"], |config| config.proxy = vec![route("/video", &[upstream_url])]).await;
        let mut client = connect(host.addr(), "/video").await;
        assert_eq!(ask(&mut client, "who").await, "video-1");
        assert_eq!(ask(&mut client, "hello through the host").await, "hello through the host");
        // The host's own endpoints still answer beside the proxy.
        let mut native = host.connect().await;
        assert_eq!(native.call("echo", serde_json::json!({"message": "m"})).await["data"], "Echo: m");
        let status: serde_json::Value = reqwest::get(host.http("/api/status")).await.unwrap().json().await.unwrap();
        let route = &status["proxy"]["routes"][0];
        assert_eq!((route["path"].as_str(), route["connections_open"].as_u64()), (Some("/video"), Some(1)), "{status}");
        drop(client);
        host.shutdown().await;
    })
    .await;
}

/// The raw-frame RFC 6455 cases the host's own endpoints pass (the test
/// kit's `conformance`), run through the proxy against an echo upstream.
async fn through_the_proxy(case: impl AsyncFnOnce(&conformance::Target)) {
    let (_upstream, _proxy, addr) = echo_route().await;
    case(&conformance::Target::echo(addr, "/echo")).await;
}

#[tokio::test]
async fn through_the_proxy_a_client_close_is_echoed() {
    through_the_proxy(conformance::client_close_is_echoed).await;
}

#[tokio::test]
async fn through_the_proxy_protocol_violations_close_with_1002() {
    through_the_proxy(conformance::protocol_violations_close_with_1002).await;
}

#[tokio::test]
async fn through_the_proxy_invalid_close_codes_close_with_1002() {
    through_the_proxy(conformance::invalid_close_codes_close_with_1002).await;
}

#[tokio::test]
async fn through_the_proxy_invalid_utf8_closes_with_1007() {
    through_the_proxy(conformance::invalid_utf8_closes_with_1007).await;
}

#[tokio::test]
async fn through_the_proxy_fragments_with_interleaved_pings_are_one_message() {
    through_the_proxy(conformance::fragments_with_interleaved_pings_are_one_message).await;
}
