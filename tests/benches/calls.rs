//! Run with: cargo bench -p switchyard-tests --bench calls
//!
//! The round trip of a call to a client, beside a plain request in the same
//! run, on loopback with one host in this process:
//!
//! - `request`: client → host → `caller` plugin (`caller.echo`) → client;
//! - `call`: client → host → `caller` plugin (`caller.ask`) → `clients.call`
//!   → a second client, which answers at once in the canonical form → host
//!   → the waiting plugin → client.
//!
//! The difference of the two is what the plugin → client → plugin leg
//! costs. One request in flight; `--iterations N` (5000) each, after a
//! warm-up of N/10. Latencies in µs from an HDR histogram.

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::time::Instant;
use switchyard_tests::{Client, Host};
use tokio_tungstenite::tungstenite::Message;

fn iterations() -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == "--iterations").and_then(|i| args.get(i + 1)).map_or(5_000, |n| n.parse().expect("--iterations N"))
}

async fn measure(client: &mut Client, n: u64, kind: &str, data: &Value, check: impl Fn(&Value) -> bool) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for i in 0..n + n / 10 {
        let started = Instant::now();
        let reply = client.call(kind, data.clone()).await;
        let took = started.elapsed();
        assert!(check(&reply), "unexpected reply {reply}");
        if i >= n / 10 {
            histogram.record(took.as_micros() as u64).unwrap();
        }
    }
    histogram
}

fn row(name: &str, h: &Histogram<u64>) {
    println!(
        "| {name} | {} | {} | {} | {} |",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.len()
    );
}

#[tokio::main]
async fn main() {
    let n = iterations();
    let host = Host::start(&["caller"]).await;

    // The answering client: every call it gets is answered at once.
    let answering = host.connect().await;
    let answering_id = answering.connection_id().to_owned();
    let (mut socket, _) = answering.into_socket();
    let answerer = tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else { continue };
            let call: Value = serde_json::from_str(&text).unwrap();
            let answer = json!({"type": "reply", "id": call["id"], "data": {"ok": true}});
            if socket.send(Message::text(answer.to_string())).await.is_err() {
                break;
            }
        }
    });

    let mut client = host.connect().await;
    let echo = measure(&mut client, n, "caller.echo", &json!({"ok": true}), |r| r["data"]["ok"] == true).await;
    let ask = json!({"connection": answering_id, "action": "get_status", "params": {}, "timeout_ms": 5_000});
    let call = measure(&mut client, n, "caller.ask", &ask, |r| r["data"]["answer"]["ok"] == true).await;

    println!("| round trip | p50 µs | p99 µs | p99.9 µs | samples |");
    println!("|---|---|---|---|---|");
    row("request: client → host → plugin → client", &echo);
    row("call: client → host → plugin → client B → plugin → client", &call);
    println!(
        "plugin → client → plugin leg, by difference: p50 {} µs, p99 {} µs",
        call.value_at_quantile(0.5).saturating_sub(echo.value_at_quantile(0.5)),
        call.value_at_quantile(0.99).saturating_sub(echo.value_at_quantile(0.99)),
    );
    answerer.abort();
    host.shutdown().await;
}
