//! The ceiling of this stack, for benchmarks to measure beside the host: a
//! bare tokio-tungstenite server that sends every text or binary message
//! back, run as its own process (the calling bench binary, started again
//! with `SWITCHYARD_BENCH_ECHO` set), so it has its own cores' share and
//! file-descriptor budget, as the host has.

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const ASKED: &str = "SWITCHYARD_BENCH_ECHO";
const READ_BUFFER: &str = "SWITCHYARD_BENCH_ECHO_READ_BUFFER";

/// The echo server as its own process; killed when dropped.
pub struct EchoProcess {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl EchoProcess {
    /// With tokio-tungstenite's default buffers.
    pub fn spawn() -> EchoProcess {
        Self::spawn_with_read_buffer(None)
    }

    /// With a read buffer of `bytes` per connection instead of the default
    /// (128 KiB), as the host sets its own.
    pub fn spawn_with_read_buffer(bytes: Option<usize>) -> EchoProcess {
        let mut command = Command::new(std::env::current_exe().expect("this binary"));
        if let Some(bytes) = bytes {
            command.env(READ_BUFFER, bytes.to_string());
        }
        let mut child = command
            .env(ASKED, "1")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the echo server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("read the echo server's address");
        let addr = line.trim().strip_prefix("listening ").expect("the echo server says where it listens").to_owned();
        EchoProcess { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Call first in a bench's `main`: in the process [`EchoProcess::spawn`]
/// started, serve (until killed) and return true.
pub fn serve_if_asked() -> bool {
    if std::env::var_os(ASKED).is_none() {
        return false;
    }
    serve();
    true
}

/// The bare stack: accept, then send every text or binary message back.
fn serve() {
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    if let Some(bytes) = std::env::var(READ_BUFFER).ok().and_then(|b| b.parse().ok()) {
        config = config.read_buffer_size(bytes);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        println!("listening {}", listener.local_addr().expect("local address"));
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else { return };
                while let Some(Ok(message)) = ws.next().await {
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
