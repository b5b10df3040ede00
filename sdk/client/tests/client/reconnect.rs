//! Losing the connection: reconnecting, restoring subscriptions and
//! remembered requests, the offline queue, and the receive timeout.

use serde_json::{json, Value};
use std::time::Duration;
use crate::support::{bounded, connect, eventually, fast_config, until_reconnecting, TestServer};
use switchyard_client::{Client, ClientConfig, ClientError, ConnectionState};

#[tokio::test]
async fn subscriptions_and_room_joins_are_sent_again_after_a_reconnect() {
    bounded(async {
        let server = TestServer::start().await;
        let (client, mut peer) = connect(&server, fast_config()).await;

        let filters = json!({"level": ["warning", "critical"]});
        let (reply, first) = tokio::join!(client.subscribe(["status", "alert.*"], filters.clone()), peer.answer_next());
        assert_eq!(reply, Ok(json!({"ok": true})));
        assert_eq!(first["type"], "subscribe");
        assert_eq!(first["data"], json!({"events": ["status", "alert.*"], "filters": filters}));

        let (joined, join) = tokio::join!(client.join_room("lobby"), peer.answer_next());
        assert!(joined.is_ok());
        assert_eq!((&join["type"], &join["data"]), (&json!("rooms.join"), &json!({"room": "lobby"})));

        // Dropped before the reconnect: not restored.
        let (_, _) = tokio::join!(client.subscribe(["video_status"], Value::Null), peer.answer_next());
        let (_, unsub) = tokio::join!(client.unsubscribe(["video_status"]), peer.answer_next());
        assert_eq!(unsub["data"], json!({"events": ["video_status"]}));
        // Refused by the server: not restored either.
        let (refused, _) = tokio::join!(client.subscribe(["bad pattern"], Value::Null), async {
            let request = peer.recv().await;
            peer.send(json!({"type": "error", "id": request["id"], "data": {"code": "INVALID_MESSAGE", "message": "bad pattern"}}))
                .await;
        });
        assert_eq!(refused.unwrap_err().code(), "INVALID_MESSAGE");
        assert_eq!(client.subscriptions(), ["status", "alert.*"]);
        assert_eq!(client.remembered(), ["room:lobby"]);

        drop(peer);
        let mut peer = server.accept_with_ack("conn-2").await;
        let restored = peer.recv().await;
        assert_eq!(restored["type"], "subscribe");
        assert_eq!(restored["data"], first["data"], "the same subscription, filters included");
        assert!(restored["id"].is_string(), "restored as a request, so the server answers it");
        peer.reply(&restored, json!({"ok": true})).await;
        let rejoin = peer.recv().await;
        assert_eq!((&rejoin["type"], &rejoin["data"]), (&json!("rooms.join"), &json!({"room": "lobby"})));
        peer.reply(&rejoin, json!({"ok": true})).await;

        // And the new connection serves requests.
        let (reply, request) = tokio::join!(client.request("get_time", json!({})), peer.answer_next());
        assert_eq!(request["type"], "get_time", "nothing else was restored");
        assert_eq!(reply, Ok(json!({"ok": true})));
        assert_eq!(client.state(), ConnectionState::Connected { connection_id: Some("conn-2".into()) });
        assert_eq!(client.stats().reconnects, 1);
        assert_eq!(client.stats().pending_requests, 0, "the restore replies were consumed");

        // After leaving, a second reconnect restores only the subscription.
        let (_, _) = tokio::join!(client.leave_room("lobby"), peer.answer_next());
        drop(peer);
        let mut peer = server.accept().await;
        assert_eq!(peer.answer_next().await["type"], "subscribe");
        let (_, request) = tokio::join!(client.request("get_time", json!({})), peer.answer_next());
        assert_eq!(request["type"], "get_time");
    })
    .await;
}

#[tokio::test]
async fn a_subscription_made_before_the_first_connection_is_sent_once() {
    bounded(async {
        let server = TestServer::start().await;
        // spawn: no waiting for the first connection; the server holds its handshake.
        let client = Client::spawn(&server.url(), fast_config()).unwrap();
        assert_eq!(client.state(), ConnectionState::Connecting);
        let subscribing = tokio::spawn({
            let client = client.clone();
            async move { client.subscribe(["status"], Value::Null).await }
        });
        eventually("the subscribe is queued", || client.stats().offline_queued == 1).await;

        let mut peer = server.accept_with_ack("conn-1").await;
        let first = peer.answer_next().await;
        assert_eq!((&first["type"], &first["data"]), (&json!("subscribe"), &json!({"events": ["status"]})));
        assert_eq!(subscribing.await.unwrap(), Ok(json!({"ok": true})), "its caller got the answer");
        let (_, next) = tokio::join!(client.request("get_time", json!({})), peer.answer_next());
        assert_eq!(next["type"], "get_time", "the subscribe went out once, not once restored and once queued");
        client.connected().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn sends_made_while_disconnected_are_flushed_in_order_after_reconnecting() {
    bounded(async {
        let server = TestServer::start().await;
        let (client, peer) = connect(&server, fast_config()).await;
        drop(peer);
        until_reconnecting(&client).await;

        for n in 0..5 {
            client.send("note", json!({"n": n})).await.unwrap();
        }
        let asking = tokio::spawn({
            let client = client.clone();
            async move { client.request("question", json!({"n": 5})).await }
        });
        eventually("six frames queued", || client.stats().offline_queued == 6).await;

        let mut peer = server.accept().await;
        for n in 0..5 {
            let frame = peer.recv().await;
            assert_eq!((&frame["type"], &frame["data"]["n"]), (&json!("note"), &json!(n)));
            assert!(frame.get("id").is_none(), "fire-and-forget frames carry no id");
        }
        let question = peer.recv().await;
        assert_eq!(question["data"]["n"], 5);
        peer.reply(&question, json!({"answer": 42})).await;
        assert_eq!(
            asking.await.unwrap(),
            Ok(json!({"answer": 42})),
            "a request made offline completes after reconnecting"
        );
        assert_eq!(client.stats().offline_queued, 0);
    })
    .await;
}

#[tokio::test]
async fn a_full_offline_queue_drops_its_oldest_frames_and_counts_them() {
    bounded(async {
        let server = TestServer::start().await;
        let config = ClientConfig { offline_queue: 3, ..fast_config() };
        let (client, peer) = connect(&server, config).await;
        drop(peer);
        until_reconnecting(&client).await;

        let doomed = tokio::spawn({
            let client = client.clone();
            async move { client.request("doomed", json!({})).await }
        });
        eventually("the request is queued", || client.stats().offline_queued == 1).await;
        for n in 0..4 {
            client.send("note", json!({"n": n})).await.unwrap();
        }
        assert_eq!(doomed.await.unwrap(), Err(ClientError::OfflineQueueOverflow), "its caller hears of it at once");
        let stats = client.stats();
        assert_eq!((stats.offline_queued, stats.offline_dropped, stats.pending_requests), (3, 2, 0));

        let mut peer = server.accept().await;
        for n in 1..4 {
            assert_eq!(peer.recv().await["data"]["n"], n);
        }
        let (_, next) = tokio::join!(client.request("after", json!({})), peer.answer_next());
        assert_eq!(next["type"], "after", "nothing else was queued");
    })
    .await;
}

#[tokio::test]
async fn a_request_on_a_connection_that_drops_fails_as_lost() {
    bounded(async {
        let server = TestServer::start().await;
        let (client, mut peer) = connect(&server, fast_config()).await;
        let (result, ()) = tokio::join!(client.request("slow", json!({})), async move {
            peer.recv().await;
            drop(peer);
        });
        assert_eq!(result, Err(ClientError::ConnectionLost));
        assert_eq!(client.stats().pending_requests, 0);
        // Not re-sent on the next connection: delivery is at most once.
        let mut peer = server.accept().await;
        let (_, request) = tokio::join!(client.request("next", json!({})), peer.answer_next());
        assert_eq!(request["type"], "next");
    })
    .await;
}

#[tokio::test]
async fn a_server_that_goes_silent_is_left_for_a_new_connection() {
    bounded(async {
        let server = TestServer::start().await;
        let config = ClientConfig {
            heartbeat_interval: Duration::from_millis(50),
            receive_timeout: Duration::from_millis(400),
            ..fast_config()
        };
        let (client, mut peer) = connect(&server, config).await;

        // While the server reads (and so answers pings), silence never builds up.
        let (frames, ()) = tokio::join!(
            peer.read_for(Duration::from_millis(1000)),
            server.assert_no_connection(Duration::from_millis(1000))
        );
        assert!(frames.is_empty(), "heartbeats are pings, not text frames: {frames:?}");
        assert!(matches!(client.state(), ConnectionState::Connected { .. }));

        // It stops reading: no pongs, no frames. The client gives up on it.
        let stopped = tokio::time::Instant::now();
        let mut fresh = server.accept_with_ack("conn-2").await;
        let waited = stopped.elapsed();
        assert!(waited >= Duration::from_millis(300), "reconnected only after the receive timeout ({waited:?})");
        let (reply, _) = tokio::join!(client.request("get_time", json!({})), fresh.answer_next());
        assert_eq!(reply, Ok(json!({"ok": true})));
        drop(peer);
    })
    .await;
}
