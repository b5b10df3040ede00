//! Clients that send large requests and never read their replies: the
//! host's memory stays under a bound computed from its configuration, the
//! clients are evicted as slow consumers (4008), and a well-behaved client
//! keeps being answered.
//!
//! Its own test binary: it reads the process's resident memory
//! (`/proc/self/status`), which other tests running beside it would move.

use futures_util::SinkExt;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_tests::Host;
use tokio_tungstenite::tungstenite::Message;

const MIB: u64 = 1 << 20;
const CLIENTS: u64 = 10;
/// The request's `message`: with its envelope, just under the default
/// `limits.max_message_bytes` (1 MiB); each reply is as large.
const MESSAGE_BYTES: usize = 1_000_000;
/// More than `limits.outbox_frames` (256): without a byte bound, every one
/// of these replies would be queued.
const REQUESTS_PER_CLIENT: usize = 300;

/// This process's resident memory, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib = status.lines().find_map(|line| line.strip_prefix("VmRSS:")).expect("a VmRSS line");
    kib.trim().trim_end_matches("kB").trim().parse::<u64>().expect("VmRSS in kB") * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_pin_no_more_than_their_outbox_bytes() {
    let host = Host::start_with(&["echo"], |c| {
        c.limits.send_timeout_ms = 1000;
        c.plugins.memory_mib = 16;
        c.plugins.max_instances = 4;
    })
    .await;
    let config = switchyard::Config::default();
    let (outbox_bytes, max_message) = (config.limits.outbox_bytes as u64, config.limits.max_message_bytes as u64);
    let (instances, instance_memory) = (4, 16 * MIB);

    // The base: a running host that has answered one large echo.
    let payload = "m".repeat(MESSAGE_BYTES);
    let mut steady = host.connect().await;
    let warm = steady.call("echo", json!({ "message": payload })).await;
    assert_eq!(warm["data"].as_str().map(str::len), Some(MESSAGE_BYTES + "Echo: ".len()));
    let base = resident();

    // What the flood may add, from the configuration: per client, its
    // queue (`outbox_bytes`) and at most eight message-sized buffers in
    // flight beside it (the request in the read buffer and as text, the
    // reply as data and as a frame, the frame the writer holds and its copy
    // in the socket's write buffer, and this test's own client's copy and
    // write buffer); every plugin instance grown to its memory cap; and a
    // quarter on top for the allocator keeping freed blocks.
    let per_client = outbox_bytes + 8 * max_message;
    let bound = (CLIENTS * per_client + instances * instance_memory) * 5 / 4;

    let peak = Arc::new(AtomicU64::new(base));
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn({
        let (peak, stop) = (Arc::clone(&peak), sampling.clone());
        async move {
            while !stop.is_cancelled() {
                peak.fetch_max(resident(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let frame = json!({ "type": "echo", "data": { "message": payload } }).to_string();
    let mut floods = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..CLIENTS {
        let client = host.connect().await;
        connections.push(host.server().hub().connection(client.connection_id()).expect("registered"));
        let (mut socket, _) = client.into_socket();
        let frame = frame.clone();
        // Send, never read; stop when the host closes the connection.
        floods.push(tokio::spawn(async move {
            for sent in 0..REQUESTS_PER_CLIENT {
                match tokio::time::timeout(Duration::from_secs(20), socket.send(Message::text(frame.clone()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return sent,
                    Err(_) => panic!("a send stayed blocked for 20 s: the host neither read nor closed"),
                }
            }
            REQUESTS_PER_CLIENT
        }));
    }
    // Meanwhile a client that reads is answered.
    for n in 0..20 {
        let reply = steady.call("echo", json!({ "message": format!("steady {n}") })).await;
        assert_eq!(reply["data"], format!("Echo: steady {n}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for flood in floods {
        let sent = tokio::time::timeout(Duration::from_secs(120), flood).await.expect("floods end").unwrap();
        assert!(sent < REQUESTS_PER_CLIENT, "a client that never reads was cut off (it sent {sent})");
    }
    for connection in &connections {
        assert_eq!(connection.eviction().map(|(code, _)| code), Some(4008), "evicted as a slow consumer");
    }
    sampling.cancel();
    sampler.await.unwrap();
    let grown = peak.load(Ordering::Relaxed).saturating_sub(base);
    eprintln!("base {} MiB, grown {} MiB, bound {} MiB", base / MIB, grown / MIB, bound / MIB);
    assert!(grown <= bound, "resident memory grew {} MiB over the base of {} MiB; the bound is {} MiB", grown / MIB, base / MIB, bound / MIB);

    assert_eq!(steady.call("echo", json!({ "message": "after" })).await["data"], "Echo: after");
    host.shutdown().await;
}
