//! Test kit for Switchyard's end-to-end tests and benchmarks.
//!
//! [`guest`] builds the workspace's plugins and fixtures from source for
//! `wasm32-wasip2` (once per test process) and hands out their paths.
//! [`Host`] runs a real host on `127.0.0.1:0` over a temporary plugin
//! folder; [`Client`] is a real WebSocket client. [`raw`] writes and reads
//! WebSocket frames byte by byte, and [`conformance`] holds the RFC 6455
//! cases run with it against any target. [`python_with_websockets`] and
//! [`node_with_ws`] install stock client libraries for tests to run.

pub mod browser;
pub mod conformance;
pub mod databases;
pub mod echo;
pub mod nats;
pub mod pipeline;
pub mod raw;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use switchyard::{Config, Server};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for any one expected frame.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

/// Build every guest crate (plugins and fixtures) once per process; the
/// folder of built components. Uses its own target folder so it never waits
/// on the cargo invocation running the tests.
pub fn guest_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = workspace_root();
        let target = root.join("target").join("guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--workspace"])
            .args(["--exclude", "switchyard", "--exclude", "switchyard-tests"])
            .args(["--exclude", "switchyard-client", "--exclude", "client-demo"])
            .args(["--exclude", "switchyard-cli", "--exclude", "switchyard-plugin-tools"])
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("run cargo to build the guest plugins");
        assert!(
            output.status.success(),
            "building guest plugins failed (is the wasm32-wasip2 target installed?):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target.join("wasm32-wasip2").join("release")
    })
}

/// The built component of guest crate `name` (`echo`, `video_v2`...).
pub fn guest(name: &str) -> PathBuf {
    let path = guest_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "no guest component at {}", path.display());
    path
}

/// `name`'s component with a custom section appended: the same plugin in
/// bytes no compile cache has seen, so loading it compiles afresh (a new
/// build of a plugin, as a deploy brings one).
pub fn fresh_bytes(name: &str) -> Vec<u8> {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut bytes = std::fs::read(guest(name)).unwrap();
    let label = b"switchyard-test";
    let stamp = format!("{:?}{}", std::time::SystemTime::now(), COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let mut content = vec![label.len() as u8];
    content.extend_from_slice(label);
    content.extend_from_slice(stamp.as_bytes());
    assert!(content.len() < 128, "one LEB128 byte of size");
    bytes.push(0);
    bytes.push(content.len() as u8);
    bytes.extend_from_slice(&content);
    bytes
}

/// Build `examples/<name>` with its own `build.sh` (which installs its
/// language's toolchain under `target/toolchains/` on first use), once per
/// process; the path of the component. Those that run `switchyard plugin
/// build` get this build's binary as `$SWITCHYARD`.
pub fn example(name: &str) -> PathBuf {
    built_once(name, &workspace_root().join("examples").join(name).join("build.sh"), None)
}

/// Build the Python fixture `tests/fixtures/<name>/app.py` with the Python
/// example's `build.sh`, once per process; the path of the component.
pub fn python_fixture(name: &str) -> PathBuf {
    let root = workspace_root();
    built_once(name, &root.join("examples/python-greet/build.sh"), Some(&root.join("tests/fixtures").join(name)))
}

/// Run `script OUT [SOURCE]` once per process for `name`; `OUT`.
fn built_once(name: &str, script: &Path, source: Option<&Path>) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let root = workspace_root();
    let out = root.join("target").join("examples").join(format!("{name}.wasm"));
    let mut build = Command::new("bash");
    build.arg(script).arg(&out).args(source).current_dir(&root);
    // `plugin build` from the binary of this build (target/<profile>/, the
    // parent of the test binary's deps/), when there is one.
    let binary = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.parent()?.join("switchyard")));
    if let Some(binary) = binary.filter(|b| b.is_file()) {
        build.env("SWITCHYARD", binary);
    }
    let output = build
        .output()
        .expect("run the example's build.sh");
    assert!(output.status.success(), "building {name} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    built.push((name.to_owned(), out.clone()));
    out
}

/// The `websockets` release [`python_with_websockets`] installs.
pub const PYTHON_WEBSOCKETS: &str = "17.4";

/// `python` with the `websockets` client library importable: a venv under
/// `target/toolchains/websockets-VERSION/`, installed by
/// `scripts/pip-toolchain.sh` on first use. Blocks while it installs.
pub fn python_with_websockets() -> Command {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    let python = PYTHON.get_or_init(|| {
        let script = workspace_root().join("scripts").join("pip-toolchain.sh");
        let output = Command::new("bash").arg(script).args(["websockets", PYTHON_WEBSOCKETS]).output().expect("run pip-toolchain.sh");
        assert!(output.status.success(), "installing websockets failed:\n{}", String::from_utf8_lossy(&output.stderr));
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("bin").join("python")
    });
    Command::new(python)
}

/// `node` with the `ws` client library on its `NODE_PATH`, at the version
/// `tests/clients/toolchain/package.json` pins: installed by npm under
/// `target/toolchains/ws-VERSION/` on first use. Blocks while it installs.
pub fn node_with_ws() -> Command {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    let modules = MODULES.get_or_init(|| {
        let toolchain = workspace_root().join("tests").join("clients").join("toolchain");
        let manifest = std::fs::read_to_string(toolchain.join("package.json")).expect("read the clients' package.json");
        let manifest: Value = serde_json::from_str(&manifest).expect("package.json is JSON");
        let version = manifest["dependencies"]["ws"].as_str().expect("package.json pins ws");
        let prefix = workspace_root().join("target").join("toolchains").join(format!("ws-{version}"));
        if !prefix.join(".complete").exists() {
            eprintln!("installing ws {version} into {}", prefix.display());
            let _ = std::fs::remove_dir_all(&prefix);
            std::fs::create_dir_all(&prefix).expect("create the toolchain folder");
            for file in ["package.json", "package-lock.json"] {
                std::fs::copy(toolchain.join(file), prefix.join(file)).expect("copy the clients' npm manifest");
            }
            let output = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
                .arg(&prefix)
                .output()
                .expect("run npm (is Node installed?)");
            assert!(output.status.success(), "installing ws failed:\n{}", String::from_utf8_lossy(&output.stderr));
            std::fs::write(prefix.join(".complete"), "").expect("mark the install complete");
        }
        prefix.join("node_modules")
    });
    let mut node = Command::new("node");
    node.env("NODE_PATH", modules);
    node
}

/// Read a `switchyard serve` process's JSON log (`SWITCHYARD_LOG_FORMAT=json`)
/// until it says where it listens; the rest of the log is drained in the
/// background so the process never blocks on a full pipe.
pub fn listening_address(stderr: std::process::ChildStderr) -> String {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("the host logs until it listens").expect("read the host's log");
        let record: Value = serde_json::from_str(&line).expect("the host logs JSON lines");
        if record["fields"]["message"] == "listening" {
            break record["fields"]["addr"].as_str().expect("the listening line names its address").to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    addr
}

/// A `switchyard serve` process (`target/release/switchyard`) over its own
/// temporary plugin folder, killed when dropped. Benchmarks run the host
/// this way so that it has its own scheduling and file-descriptor budget,
/// as in production.
pub struct HostProcess {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl HostProcess {
    /// Serve the named guests, with `extra_toml` (any tables but
    /// `[plugins]`; bare keys at its top go into `[plugins]`) appended to
    /// the configuration.
    pub fn spawn(guests: &[&str], extra_toml: &str) -> HostProcess {
        Self::spawn_binary(&host_binary(), guests, extra_toml)
    }

    /// [`spawn`](Self::spawn) with another build of the host (to compare
    /// two builds in one run).
    pub fn spawn_binary(binary: &Path, guests: &[&str], extra_toml: &str) -> HostProcess {
        assert!(binary.is_file(), "build the host first: cargo build --release -p switchyard-cli ({} is missing)", binary.display());
        let dir = tempfile::tempdir().expect("temp folder");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).expect("plugin folder");
        for name in guests {
            std::fs::copy(guest(name), plugins.join(format!("{name}.wasm"))).expect("install guest");
        }
        let config = dir.path().join("host.toml");
        // Its own data folder, so its default database is its own too.
        let data = dir.path().join("data");
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[plugins]\ndir = {plugins:?}\ncache_dir = {:?}\n{extra_toml}\n",
            shared_cache()
        );
        std::fs::write(&config, toml).expect("write config");
        let mut child = Command::new(binary)
            .args(["serve", "--config"])
            .arg(&config)
            .env("SWITCHYARD_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the host");
        let addr = listening_address(child.stderr.take().expect("piped stderr"));
        HostProcess { child, addr, _dir: dir }
    }

    /// The host process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The folder it loads plugins from (and watches).
    pub fn plugin_dir(&self) -> PathBuf {
        self._dir.path().join("plugins")
    }
}

/// `target/release/switchyard`, under `CARGO_TARGET_DIR` if that is set.
pub fn host_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    target.join("release/switchyard")
}

/// CPU time (user + system) process `pid` has used so far, from
/// `/proc/PID/stat`; `None` where that cannot be read.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// The value of the unlabelled metric `name` on the Prometheus page at
/// `url` (a host's `/metrics`), and the page; `None` when it has no such line.
pub async fn metric_at(url: &str, name: &str) -> (Option<f64>, String) {
    let page = reqwest::get(url).await.expect("the metrics page").text().await.expect("the metrics page's text");
    let value = page.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok());
    (value, page)
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A compile cache shared by all tests, so each component compiles once.
pub fn shared_cache() -> PathBuf {
    workspace_root().join("target").join("test-compile-cache")
}

/// Defaults for a test host: port 0, fast debounce, shared compile cache,
/// plugins from `dir` and its own data folder `data_dir` (so no test sees
/// another's revocations or limits).
pub fn test_config(dir: &Path, data_dir: &Path) -> Config {
    let mut config = Config { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..Config::default() };
    config.plugins.dir = dir.to_path_buf();
    config.data_dir = data_dir.to_path_buf();
    config.plugins.cache_dir = Some(shared_cache());
    config.plugins.debounce_ms = 50;
    // Load tests send far faster than a production client should; the
    // security suite sets these back to what it tests.
    config.limits.messages_per_second = 0;
    config.limits.connections_per_second_per_ip = 0;
    config
}

/// A running host over its own temporary plugin and data folders.
pub struct Host {
    server: Option<Server>,
    dir: tempfile::TempDir,
    _data: tempfile::TempDir,
    /// What it was started with, to start it again.
    config: Config,
}

impl Host {
    /// Serve the named guests (installed as `<name>.wasm`).
    pub async fn start(guests: &[&str]) -> Host {
        Self::start_with(guests, |_| {}).await
    }

    pub async fn start_with(guests: &[&str], tweak: impl FnOnce(&mut Config)) -> Host {
        let dir = tempfile::tempdir().expect("temp plugin folder");
        for name in guests {
            install_file(&guest(name), &dir.path().join(format!("{name}.wasm")));
        }
        let data = tempfile::tempdir().expect("temp data folder");
        let mut config = test_config(dir.path(), data.path());
        tweak(&mut config);
        let server = Server::start(config.clone()).await.expect("host starts");
        Host { server: Some(server), dir, _data: data, config }
    }

    /// Shut the host down and start it again with the same configuration,
    /// plugin folder and data folder (on a new port).
    pub async fn restart(mut self) -> Host {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self.server = Some(Server::start(self.config.clone()).await.expect("host starts again"));
        self
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("host is running")
    }

    pub fn addr(&self) -> SocketAddr {
        self.server().local_addr()
    }

    pub fn url(&self) -> String {
        self.endpoint("/ws")
    }

    /// The HTTP URL of a path (`/api/status`).
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// The WebSocket URL of an endpoint path.
    pub fn endpoint(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr())
    }

    /// A room-server client on `/rooms`: sends its identify frame (e.g.
    /// `{"device_id": "tv-1"}`), takes the `connection` frame, and returns
    /// the client with the room frame that followed.
    pub async fn room_device(&self, identify: Value) -> (Client, Value) {
        let mut client = Client::connect_without_ack(&self.endpoint("/rooms")).await;
        client.send_text(&identify.to_string()).await;
        assert_eq!(client.recv_frame().await["type"], "connection");
        let room = client.recv_frame().await;
        (client, room)
    }

    pub fn plugin_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Atomically install guest `name` as `file` in the plugin folder.
    pub fn install(&self, name: &str, file: &str) {
        install_file(&guest(name), &self.dir.path().join(file));
    }

    /// Atomically install the component at `from` as `file`.
    pub fn install_path(&self, from: &Path, file: &str) {
        install_file(from, &self.dir.path().join(file));
    }

    /// Atomically install arbitrary bytes as `file`.
    pub fn install_bytes(&self, bytes: &[u8], file: &str) {
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, bytes).expect("write temp file");
        std::fs::rename(&tmp, self.dir.path().join(file)).expect("rename into place");
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.path().join(file)).expect("remove plugin file");
    }

    pub async fn connect(&self) -> Client {
        Client::connect(&self.url()).await
    }

    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// Copy beside the destination, then rename: the workflow the README documents.
fn install_file(from: &Path, to: &Path) {
    let tmp = to.with_file_name(format!(".{}.tmp", to.file_name().unwrap().to_string_lossy()));
    std::fs::copy(from, &tmp).expect("copy component");
    std::fs::rename(&tmp, to).expect("rename component into place");
}

/// A client's WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A real WebSocket client that keeps events apart from replies.
pub struct Client {
    socket: Socket,
    /// The host's `connection` acknowledgement.
    pub ack: Value,
    events: VecDeque<Value>,
    next_id: u64,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ending {
    Closed(Option<u16>),
    Dropped,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let mut client = Self::connect_without_ack(url).await;
        client.ack = client.recv_frame().await;
        assert_eq!(client.ack["type"], "connection", "first frame is the acknowledgement");
        client
    }

    /// Connect to an endpoint that sends no acknowledgement (`/rooms`).
    pub async fn connect_without_ack(url: &str) -> Client {
        Self::try_connect(url, &[]).await.expect("websocket connects")
    }

    /// Connect with extra request headers (`Authorization`, `Origin`...);
    /// the handshake's error, such as a refusal's HTTP status, if it fails.
    /// Reads no acknowledgement.
    pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
            request.headers_mut().insert(name, value.parse().expect("header value"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { socket, ack: Value::Null, events: VecDeque::new(), next_id: 0 })
    }

    /// Read the acknowledgement of a connection made with [`try_connect`](Self::try_connect).
    pub async fn acknowledged(mut self) -> Client {
        self.ack = self.recv_frame().await;
        assert_eq!(self.ack["type"], "connection", "first frame is the acknowledgement: {}", self.ack);
        self
    }

    /// The bare socket, for a client that stops behaving like this one
    /// (never reads, say), and the acknowledgement.
    pub fn into_socket(self) -> (Socket, Value) {
        (self.socket, self.ack)
    }

    pub fn connection_id(&self) -> &str {
        self.ack["connection_id"].as_str().expect("ack has a connection_id")
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.expect("send frame");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send frame");
    }

    /// Send one message and return the next frame that is not an event.
    pub async fn request(&mut self, message: Value) -> Value {
        self.send_text(&message.to_string()).await;
        self.reply().await
    }

    /// The next frame that is not an event (events are kept for later).
    pub async fn reply(&mut self) -> Value {
        loop {
            let frame = self.recv_frame().await;
            if is_event(&frame) {
                self.events.push_back(frame);
            } else {
                return frame;
            }
        }
    }

    /// A canonical request with a fresh id; checks the reply is correlated.
    pub async fn call(&mut self, kind: &str, data: Value) -> Value {
        self.next_id += 1;
        let id = format!("t{}", self.next_id);
        let reply = self.request(json!({ "type": kind, "id": id, "data": data })).await;
        assert_eq!(reply["id"], json!(id), "reply correlates to its request: {reply}");
        reply
    }

    /// The next event, from the buffer or the socket.
    pub async fn event(&mut self) -> Value {
        if let Some(event) = self.events.pop_front() {
            return event;
        }
        let frame = self.recv_frame().await;
        assert!(is_event(&frame), "expected an event, got {frame}");
        frame
    }

    /// The next event on `topic`, skipping others.
    pub async fn event_on(&mut self, topic: &str) -> Value {
        loop {
            let event = self.event().await;
            if event["meta"]["topic"] == topic {
                return event;
            }
        }
    }

    /// No frame but pings arrives within `wait` (reading answers the pings).
    pub async fn assert_quiet(&mut self, wait: Duration) {
        assert!(self.events.is_empty(), "unexpected buffered event {:?}", self.events.front());
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(next) = tokio::time::timeout_at(deadline, self.socket.next()).await {
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected no frame, got {other:?}"),
            }
        }
    }

    /// The next text frame, within [`PATIENCE`] in all: the host's pings
    /// are answered and skipped but do not extend the wait.
    pub async fn recv_frame(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next()).await.expect("a frame arrives in time");
            match next {
                Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("host sends JSON"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Read until the host closes the connection; its close code.
    pub async fn ending(&mut self) -> Ending {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await.expect("the host ends the connection in time") {
                Some(Ok(Message::Close(frame))) => return Ending::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ending::Dropped,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// Events carry the topic they were published on.
pub fn is_event(frame: &Value) -> bool {
    frame["meta"]["topic"].is_string()
}

/// Subscribe `client` to the registry's status events.
pub async fn watch_status(client: &mut Client) {
    let reply = client.call("subscribe", json!({ "events": ["status"] })).await;
    assert_eq!(reply["type"], "reply", "{reply}");
}

/// Wait for the next status event about `file` (skipping others).
pub async fn status_for(client: &mut Client, file: &str) -> Value {
    loop {
        let event = client.event_on("status").await;
        if event["data"]["file"] == file {
            return event["data"].clone();
        }
    }
}

/// An in-process dispatch path for benchmarks: a registry over its own
/// runtime, and a dispatcher whose rate limit never refuses. No sockets.
pub mod rig {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;
    use switchyard::admission::limits::{LiveLimits, MessageBucket, Tunables};
    use switchyard::admission::security::{Keyring, Principal};
    use switchyard::hub::{Hub, HubLimits};
    use switchyard::observability::metrics::Metrics;
    use switchyard::observability::system::HostSystem;
    use switchyard::plugins::registry::Registry;
    use switchyard::plugins::runtime::{PluginLimits, Runtime, Services};
    use switchyard::routing::dispatch::{Caller, Dispatcher};
    use switchyard::store::memory::MemoryKv;
    use switchyard::wire::dialect::Profile;
    use switchyard::wire::{Origin, Transport};
    use switchyard::workers::WorkerPool;
    use switchyard::Config;

    pub struct Rig {
        pub registry: Arc<Registry>,
        pub dispatcher: Dispatcher,
        limits: Arc<LiveLimits>,
        principal: Arc<Principal>,
    }

    impl Rig {
        /// A rig compiling into `cache_dir` (`None`: no compile cache).
        pub fn new(cache_dir: Option<PathBuf>) -> Rig {
            let hub = Arc::new(Hub::new(HubLimits { outbox_frames: 64, outbox_bytes: 4 << 20, max_client_calls: 64 }, Default::default()));
            let services = Services {
                events: hub.clone(),
                kv: Arc::new(MemoryKv::default()),
                rooms: hub.clone(),
                calls: hub.clone(),
                system: Arc::new(HostSystem::default()),
            };
            let limits = PluginLimits {
                deadline: Duration::from_secs(30),
                memory_bytes: 256 << 20,
                max_instances: 4,
                breaker: Default::default(),
                cpu: Default::default(),
            };
            let runtime = Runtime::new(limits, cache_dir, HashMap::new(), HashMap::new(), services).unwrap();
            let registry = Arc::new(Registry::new(runtime, hub.clone(), Default::default(), Default::default(), Default::default()));
            let mut tunables = Tunables::from_config(&Config::default());
            (tunables.messages_per_second, tunables.message_burst) = (u32::MAX, u32::MAX);
            let limits = Arc::new(LiveLimits::new(tunables, 16 << 20));
            let workers = Arc::new(WorkerPool::new(&Default::default()).unwrap());
            let dispatcher = Dispatcher::new(registry.routes(), workers, Arc::clone(&limits), Arc::new(Metrics::new()), hub);
            let principal = Keyring::from_config(&Default::default()).unwrap().authenticate(None, None).unwrap();
            Rig { registry, dispatcher, limits, principal }
        }

        /// A connection's token bucket, as the WebSocket transport keeps one.
        pub fn bucket(&self) -> MessageBucket {
            self.limits.message_bucket()
        }

        /// The whole message path for one text frame; the reply frames.
        pub async fn answer(&self, frame: &str, bucket: &mut MessageBucket) -> Vec<String> {
            let origin = Origin { connection_id: "bench".into(), client_id: None, transport: Transport::Ws, endpoint: "/ws".into() };
            let caller = Caller { origin: &origin, connection: None, principal: &self.principal };
            self.dispatcher.answer(frame, &Profile::default(), &caller, || bucket.admit(&self.limits)).await
        }

        /// `frame` answered `times` times in a row, and how long that took
        /// (for criterion's `iter_custom`).
        pub async fn time_answers(&self, frame: &str, bucket: &mut MessageBucket, times: u64) -> std::time::Duration {
            let start = std::time::Instant::now();
            for _ in 0..times {
                std::hint::black_box(self.answer(std::hint::black_box(frame), bucket).await);
            }
            start.elapsed()
        }
    }
}

/// An HTTP client for the API suites: a host that hangs fails the test
/// after 30 s instead of holding it.
pub fn api_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A response's status and JSON body; a body that is not JSON fails the
/// test, showing what came.
pub async fn json_of(response: reqwest::Response) -> (reqwest::StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}
