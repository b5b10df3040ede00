//! The `switchyard` binary: `plugin inspect`, `serve` from a TOML config
//! until SIGTERM, `send` and `console` against a running host.

use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use switchyard::config::ApiKeyConfig;
use switchyard_tests::{guest, listening_address, Client, Host};

fn switchyard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

/// A config file in `dir` serving `echo` from `dir/plugins` on port 0, with
/// its data folder in `dir/data`, followed by `extra` TOML.
fn echo_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(guest("echo"), plugins.join("echo.wasm")).unwrap();
    let config = dir.join("switchyard.toml");
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[plugins]\ndir = {plugins:?}\ncache_dir = {:?}\n{extra}",
        dir.join("data"),
        dir.join("cache")
    );
    std::fs::write(&config, toml).unwrap();
    config
}

#[test]
fn inspect_prints_the_manifest_of_a_plugin() {
    let output = switchyard().args(["plugin", "inspect"]).arg(guest("calculator")).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(manifest["name"], "calculator");
    assert_eq!(manifest["version"], "0.1.0");
    assert_eq!(manifest["claims"], json!(["calculate"]));
    assert_eq!(manifest["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn inspect_says_exactly_why_a_file_is_not_a_plugin() {
    let garbage = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(garbage.path(), b"not wasm").unwrap();
    let cases = [
        (garbage.path().to_path_buf(), "PLUGIN_COMPILE_FAILED", "not a valid component"),
        (guest("wrong_world"), "PLUGIN_INVALID", "switchyard:plugin/handler@0.1.0"),
        (garbage.path().with_extension("missing"), "PLUGIN_READ_FAILED", "cannot read"),
    ];
    for (path, code, why) in cases {
        let output = switchyard().args(["plugin", "inspect"]).arg(&path).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", path.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(code) && stderr.contains(why), "{}: {stderr}", path.display());
    }
}

#[tokio::test]
async fn serve_reads_its_config_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = echo_config(dir.path(), "");
    let mut child = switchyard()
        .args(["serve", "--config"])
        .arg(&config)
        .env("SWITCHYARD_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = listening_address(child.stderr.take().unwrap());
    let mut client = Client::connect(&format!("ws://{addr}/ws")).await;
    assert_eq!(client.call("echo", json!({"message": "cli"})).await["data"], "Echo: cli");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
}

/// Once listening, `serve` prints each URL it serves on stdout, one per
/// line (the URL, then what it is); its log, written to a pipe, has no
/// colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_the_urls_it_serves_and_logs_without_colour() {
    use std::io::{BufRead, Read};
    let dir = tempfile::tempdir().unwrap();
    let config = echo_config(dir.path(), "[[listeners]]\nlisten = \"127.0.0.1:0\"\n");
    let child = switchyard()
        .args(["--log-format", "text", "serve", "--config"])
        .arg(&config)
        .env_remove("NO_COLOR")
        .env_remove("SWITCHYARD_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        stderr.read_to_string(&mut log).map(|_| log)
    });
    let stdout = child.stdout.take().unwrap();
    const SERVED: usize = 10;
    let lines = tokio::task::spawn_blocking(move || std::io::BufReader::new(stdout).lines().take(SERVED).collect::<Result<Vec<_>, _>>());
    let lines = tokio::time::timeout(std::time::Duration::from_secs(20), lines).await.expect("the URLs in time").unwrap().unwrap();
    let urls: Vec<&str> = lines.iter().map(|line| line.split_whitespace().next().unwrap()).collect();

    let addr = urls[0].strip_prefix("ws://").and_then(|rest| rest.strip_suffix('/')).expect("the first URL is the endpoint /");
    let main: Vec<String> = ["/", "/ws", "/ws/performance", "/ws/alerts", "/ws/status", "/rooms", "/api/websocket"]
        .iter()
        .map(|path| format!("ws://{addr}{path}"))
        .chain([format!("http://{addr}/api"), format!("http://{addr}/metrics")])
        .collect();
    assert_eq!(urls[..SERVED - 1], main, "{lines:#?}");
    let listener = urls[SERVED - 1];
    assert!(listener.starts_with("ws://127.0.0.1:") && listener != urls[0], "{lines:#?}");

    // The printed URLs are served.
    let mut client = Client::connect(&format!("ws://{addr}/ws")).await;
    assert_eq!(client.call("echo", json!({"message": "cli"})).await["data"], "Echo: cli");
    let mut worker_port = Client::connect_without_ack(listener).await;
    assert_eq!(worker_port.request(json!({"type": "ping"})).await["type"], "pong");
    let metrics = http_get(addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let exit = tokio::task::block_in_place(|| child.wait()).unwrap();
    assert!(exit.success(), "{exit:?}");
    let log = log.join().unwrap().unwrap();
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains("\x1b["), "colour codes in a piped log: {log:?}");
}

/// A child process killed when dropped, so a failing test does not leave
/// it serving, holding the pipes a reader waits on.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.1 GET: the response's head and body as text.
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn serve_rejects_a_bad_config_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[plugins]\ndeadline = 5\n").unwrap();
    let output = switchyard().args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field") && stderr.contains("deadline"), "{stderr}");
}

/// Run the binary off the async runtime (the host under test runs on it).
async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
}

#[tokio::test]
async fn send_prints_the_reply_and_its_exit_code_tells_the_outcome() {
    let host = Host::start(&["calculator"]).await;
    let mut ok = switchyard();
    ok.args(["send", &host.url(), "calculate", r#"{"a":6,"b":3,"op":"/"}"#]);
    let output = run(ok).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((reply["type"].as_str(), reply["data"]["result"].as_f64()), (Some("reply"), Some(2.0)));

    let mut error = switchyard();
    error.args(["send", &host.url(), "calculate", r#"{"a":6,"b":0,"op":"/"}"#]);
    let output = run(error).await;
    assert_eq!(output.status.code(), Some(1), "an error reply");
    let reply: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reply["data"]["code"], "DIVISION_BY_ZERO");

    let mut bad = switchyard();
    bad.args(["send", &host.url(), "calculate", "{not json"]);
    assert_eq!(run(bad).await.status.code(), Some(2), "bad JSON is refused before sending");
    let addr = host.addr();
    host.shutdown().await;
    let mut nobody = switchyard();
    nobody.args(["send", &format!("ws://{addr}/ws"), "calculate", "{}", "--timeout", "2"]);
    assert_eq!(run(nobody).await.status.code(), Some(2), "no host, no reply");
}

#[tokio::test]
async fn the_console_lists_sends_and_broadcasts_with_an_admin_key() {
    const ADMIN: &str = "admin-key-0123456789abcdef";
    let host = Host::start_with(&["echo"], |config| {
        config.auth.keys = vec![ApiKeyConfig::admin("ops", ADMIN)];
    })
    .await;
    let mut cam = Client::connect(&format!("{}?client_id=cam-7", host.url())).await;
    let mut console = switchyard();
    console.args(["console", &host.url(), "--key", ADMIN]).env("HOME", tempfile::tempdir().unwrap().path());
    console.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = console.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "list\nsend cam-7 notice {{\"n\":1}}\nbroadcast hello all\nrequest echo {{\"message\":\"hi\"}}").unwrap();

    let direct = cam.recv_frame().await;
    assert_eq!((direct["type"].as_str(), direct["data"]["n"].as_u64()), (Some("notice"), Some(1)), "{direct}");
    let broadcast = cam.recv_frame().await;
    assert_eq!((broadcast["type"].as_str(), broadcast["data"]["message"].as_str()), (Some("broadcast"), Some("hello all")));
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("cam-7"), "list shows the connection: {stdout}");
    assert!(stdout.contains("Echo: hi"), "request prints the reply: {stdout}");
    host.shutdown().await;
}

/// `serve --config CONFIG` with JSON logs filtered by `filter`: the process,
/// the address it listens on, and the rest of its log.
fn serve_with_json_log(
    config: &std::path::Path,
    filter: &str,
) -> (std::process::Child, String, std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) {
    use std::io::BufRead;
    let mut child = switchyard()
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .env("SWITCHYARD_LOG", filter)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let record: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if record["fields"]["message"] == "listening" {
            break record["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    (child, addr, lines)
}

/// With `--log-format json`: each message's span (id, type, plugin, code,
/// latency) at debug level, and the periodic one-line summary.
#[tokio::test]
async fn json_logs_carry_message_spans_and_the_periodic_summary() {
    let dir = tempfile::tempdir().unwrap();
    let config = echo_config(dir.path(), "[observability]\nsummary_interval_ms = 300\n");
    let (mut child, addr, lines) = serve_with_json_log(&config, "info,switchyard::routing::dispatch=debug");
    let mut client = Client::connect(&format!("ws://{addr}/ws")).await;
    client.request(json!({"type": "echo", "id": "span-1", "data": {"message": "m"}})).await;

    let reader = tokio::task::spawn_blocking(move || {
        let (mut span, mut summary) = (None, None);
        for line in lines {
            let record: Value = serde_json::from_str(&line.unwrap()).unwrap();
            match record["fields"]["message"].as_str() {
                Some("answered") => span = Some(record["span"].clone()),
                Some("summary") => summary = Some(record["fields"].clone()),
                _ => {}
            }
            if span.is_some() && summary.is_some() {
                break;
            }
        }
        (span.unwrap(), summary.unwrap())
    });
    let (span, summary) = tokio::time::timeout(std::time::Duration::from_secs(20), reader).await.expect("both lines in time").unwrap();
    assert_eq!((span["name"].as_str(), span["id"].as_str(), span["type"].as_str()), (Some("message"), Some("span-1"), Some("echo")), "{span}");
    assert_eq!((span["plugin"].as_str(), span["code"].as_str()), (Some("echo"), Some("OK")), "{span}");
    assert!(span["latency_us"].is_u64(), "{span}");
    assert!(summary["connections"].is_u64() && summary["messages_per_second"].is_string(), "{summary}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// What a guest prints reaches the host's log as lines tagged with the
/// plugin's name: here the message of a Rust panic, which traps.
#[tokio::test]
async fn a_guest_panic_message_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = echo_config(dir.path(), "");
    std::fs::copy(guest("misbehave"), dir.path().join("plugins/misbehave.wasm")).unwrap();
    let (mut child, addr, lines) = serve_with_json_log(&config, "info");
    let mut client = Client::connect(&format!("ws://{addr}/ws")).await;
    let panicked = client.call("misbehave.panic", json!({})).await;

    let reader = tokio::task::spawn_blocking(move || {
        for line in lines {
            let record: Value = serde_json::from_str(&line.ok()?).ok()?;
            let message = record["fields"]["message"].as_str().unwrap_or_default();
            if record["target"] == "switchyard::guest" && message.contains("misbehave.panic was asked to panic") {
                return Some(record);
            }
        }
        None
    });
    let record = tokio::time::timeout(std::time::Duration::from_secs(20), reader).await;
    // The host lives on: the same connection is answered.
    let after = client.call("echo", json!({"message": "after"})).await;
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(panicked["data"]["code"], "PLUGIN_FAILED", "{panicked}");
    let record = record.expect("the line in time").unwrap().expect("the panic message in the log");
    assert_eq!((record["level"].as_str(), record["fields"]["plugin"].as_str()), (Some("WARN"), Some("misbehave")), "{record}");
    assert_eq!(record["fields"]["stream"], "stderr", "{record}");
    assert_eq!(after["data"], "Echo: after");
}

#[tokio::test]
async fn the_console_calls_a_live_client_and_prints_its_answer() {
    const ADMIN: &str = "admin-key-0123456789abcdef";
    let host = Host::start_with(&[], |config| {
        config.auth.keys = vec![ApiKeyConfig::admin("ops", ADMIN)];
    })
    .await;
    let kiosk = switchyard_client::Client::connect(&format!("{}?client_id=kiosk-9", host.url())).await.unwrap();
    kiosk.answer("get_time", switchyard_client::calls::get_time);
    kiosk.answer("add", |params: Value| async move {
        Ok(json!({ "sum": params["a"].as_i64().unwrap_or(0) + params["b"].as_i64().unwrap_or(0) }))
    });
    let mut console = switchyard();
    console.args(["console", &host.url(), "--key", ADMIN]).env("HOME", tempfile::tempdir().unwrap().path());
    console.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = console.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "call kiosk-9 add {{\"a\":40,\"b\":2}}\ncall kiosk-9 get_time\ncall nobody get_time\nquit").unwrap();
    drop(stdin);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("\"sum\": 42"), "the client's answer is printed: {stdout}");
    assert!(stdout.contains("unix_ms"), "{stdout}");
    assert!(stdout.contains("NOT_FOUND"), "an unknown client is said so: {stdout}");
    kiosk.close().await;
    host.shutdown().await;
}
