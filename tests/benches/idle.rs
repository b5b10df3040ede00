//! Run with: cargo build --release -p switchyard-cli && cargo bench -p switchyard-tests --bench idle [-- --connections N]
//!
//! What an idle WebSocket costs the server in memory: open N connections
//! (default 15,000; this machine's open-file limit is 20,000 per process)
//! that each send one message, read its answer and then stay silent, and
//! read the server's resident memory (`VmRSS` in `/proc/PID/status`) before
//! and after. The growth over N is the cost of one idle connection. The
//! host (`/ws`: its acknowledgement, then a `ping`) is measured beside the
//! bare tokio-tungstenite echo server, the stack's own floor, in the same
//! run: once with the host's read buffer (the baseline) and once with
//! tokio-tungstenite's defaults. Each server is its own process.

use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use switchyard_tests::echo::EchoProcess;
use tokio_tungstenite::tungstenite::Message;

/// How long the server gets to settle before and after the connections.
const SETTLE: Duration = Duration::from_secs(2);

fn main() {
    if switchyard_tests::echo::serve_if_asked() {
        return;
    }
    let n = connections();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("idle connections: server RSS growth per connection, {n} connections each");
    println!("{:<34} {:>12} {:>12} {:>16} {:>8}", "server", "RSS before", "RSS after", "per connection", "× echo");
    let echo = EchoProcess::spawn_with_read_buffer(Some(switchyard::transport::ws::READ_BUFFER));
    let floor = runtime.block_on(measure(echo.pid(), &format!("ws://{}/", echo.addr), n, false));
    drop(echo);
    report("echo, the host's read buffer", floor, floor.per_connection());
    let echo = EchoProcess::spawn();
    let defaults = runtime.block_on(measure(echo.pid(), &format!("ws://{}/", echo.addr), n, false));
    drop(echo);
    report("echo, tokio-tungstenite defaults", defaults, floor.per_connection());
    let limits = format!(
        "[limits]\nmax_connections = {0}\nmax_connections_per_client = {0}\nconnections_per_second_per_ip = 0\nmessages_per_second = 0\n\
         [websocket]\nheartbeat_interval_ms = 300000\nidle_timeout_ms = 600000\n",
        n + 100
    );
    let host = switchyard_tests::HostProcess::spawn(&[], &limits);
    let switchyard = runtime.block_on(measure(host.pid(), &format!("ws://{}/ws", host.addr), n, true));
    report("Switchyard /ws", switchyard, floor.per_connection());
}

fn connections() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--connections")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--connections N"))
        .unwrap_or(15_000)
}

#[derive(Clone, Copy)]
struct Footprint {
    before_kib: u64,
    after_kib: u64,
    n: usize,
}

impl Footprint {
    fn per_connection(&self) -> f64 {
        (self.after_kib.saturating_sub(self.before_kib)) as f64 * 1024.0 / self.n as f64
    }
}

fn report(name: &str, footprint: Footprint, floor: f64) {
    let per = footprint.per_connection();
    println!(
        "{name:<34} {:>8} KiB {:>8} KiB {:>7.0} B ({:.1} KiB) {:>6.2}",
        footprint.before_kib,
        footprint.after_kib,
        per,
        per / 1024.0,
        per / floor
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB")
}

/// Open `n` connections to `url`, each answered once, and read the
/// server's RSS before and after. `acknowledged`: the server sends a frame
/// first (the host's `connection` frame).
async fn measure(pid: u32, url: &str, n: usize, acknowledged: bool) -> Footprint {
    tokio::time::sleep(SETTLE).await;
    let before_kib = rss_kib(pid);
    // A few hundred at a time: a connect storm overflows the listen backlog.
    let connecting = Arc::new(tokio::sync::Semaphore::new(256));
    let mut opening = Vec::with_capacity(n);
    for i in 0..n {
        let (url, connecting) = (url.to_owned(), Arc::clone(&connecting));
        opening.push(tokio::spawn(async move {
            let _permit = connecting.acquire_owned().await.unwrap();
            let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap_or_else(|e| panic!("connection {i}: {e}"));
            if acknowledged {
                socket.next().await.expect("the acknowledgement").expect("a frame");
            }
            socket.send(Message::text(format!("{{\"type\":\"ping\",\"id\":{i}}}"))).await.unwrap();
            let answer = socket.next().await.expect("an answer").expect("a frame");
            assert!(answer.to_text().unwrap().contains(&i.to_string()), "connection {i}: {answer:?}");
            socket
        }));
    }
    let mut sockets = Vec::with_capacity(n);
    for open in opening {
        sockets.push(open.await.unwrap());
    }
    tokio::time::sleep(SETTLE).await;
    let after_kib = rss_kib(pid);
    drop(sockets);
    Footprint { before_kib, after_kib, n }
}
