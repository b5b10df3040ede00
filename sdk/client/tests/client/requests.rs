//! Requests, replies, events and closing, against a real WebSocket server.

use serde_json::{json, Value};
use std::time::Duration;
use crate::support::{bounded, connect, fast_config, TestServer};
use switchyard_client::{Client, ClientConfig, ClientError, ConnectionState, ReconnectPolicy};
use tokio::sync::mpsc;

#[tokio::test]
async fn replies_reach_their_own_request_whatever_their_order() {
    bounded(async {
        let server = TestServer::start().await;
        let (client, mut peer) = connect(&server, fast_config()).await;

        let serve_backwards = async {
            let mut requests = Vec::new();
            for _ in 0..3 {
                requests.push(peer.recv().await);
            }
            for request in requests.iter().rev() {
                let n = request["data"]["n"].as_i64().unwrap();
                peer.reply(request, json!({"n": n * 10})).await;
            }
            requests
        };
        let (a, b, c, requests) = tokio::join!(
            client.request("multiply", json!({"n": 1})),
            client.request("multiply", json!({"n": 2})),
            client.request("multiply", json!({"n": 3})),
            serve_backwards,
        );
        assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (json!({"n": 10}), json!({"n": 20}), json!({"n": 30})));

        // Requests are canonical envelopes with distinct string ids.
        let mut ids: Vec<&str> = requests.iter().map(|r| r["id"].as_str().expect("string id")).collect();
        assert!(requests.iter().all(|r| r["type"] == "multiply"), "{requests:?}");
        ids.dedup();
        assert_eq!(ids.len(), 3);

        // The acknowledgement was taken as such, not as an event.
        assert_eq!(client.state(), ConnectionState::Connected { connection_id: Some("conn-1".into()) });
        assert_eq!(client.stats().pending_requests, 0);
    })
    .await;
}

#[tokio::test]
async fn a_server_without_acknowledgement_works_too() {
    bounded(async {
        let server = TestServer::start().await;
        let url = server.url();
        let (client, peer) = tokio::join!(Client::connect_with(&url, fast_config()), server.accept());
        let (client, mut peer) = (client.unwrap(), peer);
        let (reply, _) = tokio::join!(client.request("get_time", Value::Null), peer.answer_next());
        assert_eq!(reply, Ok(json!({"ok": true})));
        assert_eq!(client.state(), ConnectionState::Connected { connection_id: None });
    })
    .await;
}

#[tokio::test]
async fn an_error_reply_keeps_the_server_code() {
    bounded(async {
        let server = TestServer::start().await;
        let (client, mut peer) = connect(&server, fast_config()).await;
        let refuse = async {
            let request = peer.recv().await;
            peer.send(json!({
                "type": "error", "id": request["id"], "timestamp": "2026-01-01T00:00:00Z",
                "data": {"code": "DIVISION_BY_ZERO", "message": "6 / 0 is undefined"},
                "meta": {"request_type": "calculate"},
            }))
            .await;
        };
        let (result, ()) = tokio::join!(client.request("calculate", json!({"a": 6, "b": 0, "op": "/"})), refuse);
        let error = result.unwrap_err();
        assert_eq!(
            error,
            ClientError::Remote { code: "DIVISION_BY_ZERO".into(), message: "6 / 0 is undefined".into() }
        );
        assert_eq!(error.code(), "DIVISION_BY_ZERO");

        // request_frame hands over the whole error frame instead.
        let (frame, _) = tokio::join!(client.request_frame("calculate", json!({}), Duration::from_secs(2)), async {
            let request = peer.recv().await;
            peer.send(json!({"type": "error", "id": request["id"], "data": {"code": "X", "message": "m"}})).await;
        });
        assert_eq!(frame.unwrap()["data"]["code"], "X");
    })
    .await;
}

#[tokio::test]
async fn a_late_reply_after_a_timeout_is_dropped_and_the_next_request_works() {
    bounded(async {
        let server = TestServer::start().await;
        let (client, mut peer) = connect(&server, fast_config()).await;

        let (result, slow) =
            tokio::join!(client.request_with_timeout("slow", json!({}), Duration::from_millis(150)), peer.recv());
        assert_eq!(result, Err(ClientError::Timeout(Duration::from_millis(150))));
        assert_eq!(client.stats().pending_requests, 0, "a timed-out request leaves nothing behind");

        peer.reply(&slow, json!({"late": true})).await;
        let (next, fast) = tokio::join!(client.request("fast", json!({})), async {
            let request = peer.recv().await;
            peer.reply(&request, json!({"fresh": true})).await;
            request
        });
        assert_eq!(next, Ok(json!({"fresh": true})), "the late reply was not taken for this one");
        assert_ne!(fast["id"], slow["id"]);
        let stats = client.stats();
        assert_eq!((stats.late_replies, stats.pending_requests), (1, 0));
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_request_leaves_nothing_pending() {
    bounded(async {
        let server = TestServer::start().await;
        let (client, mut peer) = connect(&server, fast_config()).await;
        let abandoned = tokio::time::timeout(Duration::from_millis(50), client.request("slow", json!({})));
        let (abandoned, _) = tokio::join!(abandoned, peer.recv());
        assert!(abandoned.is_err(), "the caller gave up");
        assert_eq!(client.stats().pending_requests, 0);
    })
    .await;
}

#[tokio::test]
async fn events_go_to_topic_then_type_handlers_and_the_rest_is_unhandled() {
    bounded(async {
        let server = TestServer::start().await;
        let config = ClientConfig { unhandled_queue: 2, ..fast_config() };
        let (client, mut peer) = connect(&server, config).await;
        let (seen_tx, mut seen) = mpsc::unbounded_channel::<(String, Value)>();
        for key in ["status", "alert", "alert.cpu"] {
            let seen_tx = seen_tx.clone();
            client.on(key, move |event| {
                let _ = seen_tx.send((key.to_owned(), event["data"].clone()));
            });
        }
        client.on("explodes", |_| panic!("a broken handler"));
        let mut unhandled = client.take_unhandled().expect("first take");
        assert!(client.take_unhandled().is_none());

        let event = |kind: &str, topic: &str, n: i64| {
            json!({"type": kind, "id": format!("e{n}"), "timestamp": "t", "data": {"n": n}, "meta": {"topic": topic, "source": "test"}})
        };
        peer.send(event("status", "status", 1)).await;
        peer.send(event("alert", "alert.cpu", 2)).await;
        peer.send(event("alert", "alert.disk", 3)).await;
        peer.send(event("explodes", "explodes", 4)).await;
        for n in 5..9 {
            peer.send(json!({"type": "direct", "data": {"n": n}})).await;
        }
        // A round trip: everything above has been routed once it returns.
        let (reply, _) = tokio::join!(client.request("sync", json!({})), peer.answer_next());
        assert!(reply.is_ok());

        assert_eq!(seen.recv().await.unwrap(), ("status".into(), json!({"n": 1})));
        assert_eq!(seen.recv().await.unwrap(), ("alert.cpu".into(), json!({"n": 2})), "a topic handler wins");
        assert_eq!(seen.recv().await.unwrap(), ("alert".into(), json!({"n": 3})), "else the type handler");
        assert!(seen.try_recv().is_err());
        assert_eq!(unhandled.recv().await.unwrap()["data"]["n"], 5);
        assert_eq!(unhandled.recv().await.unwrap()["data"]["n"], 6);
        assert!(unhandled.try_recv().is_err());
        assert_eq!(client.stats().unhandled_dropped, 2, "the bounded channel dropped the rest");
        assert!(matches!(client.state(), ConnectionState::Connected { .. }), "a panicking handler does not kill the client");

        assert!(client.off("status"));
        peer.send(event("status", "status", 9)).await;
        assert_eq!(unhandled.recv().await.unwrap()["data"]["n"], 9);
    })
    .await;
}

#[tokio::test]
async fn close_sends_1000_and_never_reconnects() {
    bounded(async {
        let server = TestServer::start().await;
        let (client, mut peer) = connect(&server, fast_config()).await;
        let (_, code) = tokio::join!(client.close(), peer.closing_code());
        assert_eq!(code, Some(1000));
        assert_eq!(client.closed().await, ClientError::Closed);
        assert_eq!(client.request("get_time", json!({})).await, Err(ClientError::Closed));
        assert_eq!(client.send("note", json!({})).await, Err(ClientError::Closed));
        server.assert_no_connection(Duration::from_millis(300)).await;
        client.close().await; // Twice is fine.
    })
    .await;
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_connection() {
    bounded(async {
        let server = TestServer::start().await;
        let (client, mut peer) = connect(&server, fast_config()).await;
        let weak = client.downgrade();
        let clone = client.clone();
        drop(client);
        assert!(weak.upgrade().is_some(), "a clone keeps it open");
        drop(clone);
        assert!(weak.upgrade().is_none());
        assert_eq!(peer.closing_code().await, Some(1000));
        server.assert_no_connection(Duration::from_millis(300)).await;
    })
    .await;
}

#[tokio::test]
async fn a_bad_url_or_a_closed_port_fails_at_once() {
    bounded(async {
        assert_eq!(Client::connect("http://127.0.0.1:1/").await.unwrap_err().code(), "INVALID_URL");
        let port = closed_port().await;
        let error = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await.unwrap_err();
        assert!(matches!(error, ClientError::Connect(_)), "{error:?}");
    })
    .await;
}

#[tokio::test]
async fn the_client_gives_up_after_max_attempts_and_says_so() {
    bounded(async {
        let url = format!("ws://127.0.0.1:{}/ws", closed_port().await);
        let config = ClientConfig {
            reconnect: ReconnectPolicy {
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_secs(1),
                multiplier: 2.0,
                jitter: 0.0,
                max_attempts: Some(3),
            },
            ..fast_config()
        };
        let started = tokio::time::Instant::now();
        let client = Client::spawn(&url, config).unwrap();
        // Sends wait in the offline queue meanwhile; a request fails with the end.
        client.send("note", json!({})).await.unwrap();
        let (request, ending) = tokio::join!(client.request("get_time", json!({})), client.closed());
        let ClientError::Disconnected { attempts, last_error } = ending.clone() else {
            panic!("expected Disconnected, got {ending:?}");
        };
        assert_eq!(attempts, 3);
        assert!(!last_error.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(70), "waited 10 + 20 + 40 ms between attempts");
        assert_eq!(request, Err(ending.clone()));
        assert_eq!(client.state(), ConnectionState::Closed(ending.clone()));
        assert_eq!(client.send("note", json!({})).await, Err(ending.clone()));
        assert_eq!(client.connected().await, Err(ending));
        assert_eq!(client.stats().offline_queued, 0);
    })
    .await;
}

async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}
