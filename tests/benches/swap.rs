//! Run with: cargo bench -p switchyard-tests --bench swap
//!
//! How soon a replaced plugin answers: the time from putting a new version
//! of `video` in the plugin folder until a client's `status` request is
//! answered by it, polled every millisecond, for an atomic rename (served
//! at once) beside a copy written in place (which waits out the default
//! 200 ms debounce), in the same run. Those two alternate between two
//! builds the compile cache already holds; the third, an atomic rename of
//! a build never seen before (its bytes made new by a custom section), is
//! what a deploy of new code costs: the compile, then the swap. The
//! fourth is the same new build compiled ahead with `switchyard plugin
//! compile` (not timed), then renamed: what a deploy that compiles first
//! costs. Needs `cargo build --release -p switchyard-cli` for that.

use serde_json::json;
use std::time::{Duration, Instant};
use switchyard_tests::{fresh_bytes, guest, host_binary, shared_cache, Client, Host};

const SWAPS: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let host = Host::start_with(&["video"], |config| config.plugins.debounce_ms = 200).await;
        let mut client = host.connect().await;
        answered_by(&mut client, "0.1.0").await;
        println!("time from the new file to the first reply by its version, {SWAPS} swaps each");
        println!("{:<26} {:>10} {:>10} {:>10}", "how the file arrives", "p50", "p90", "max");
        for how in [Arrival::Rename, Arrival::InPlace, Arrival::NewBuild, Arrival::CompiledAhead] {
            let mut samples = Vec::with_capacity(SWAPS);
            for swap in 0..SWAPS {
                let (name, version) = if swap % 2 == 0 { ("video-v2", "2.0.0") } else { ("video", "0.1.0") };
                let target = host.plugin_dir().join("video.wasm");
                let fresh = matches!(how, Arrival::NewBuild | Arrival::CompiledAhead).then(|| fresh_bytes(name));
                if let (Arrival::CompiledAhead, Some(bytes)) = (how, &fresh) {
                    compile_ahead(bytes);
                }
                let started = Instant::now();
                match how {
                    Arrival::Rename => host.install(name, "video.wasm"),
                    Arrival::InPlace => {
                        std::fs::copy(guest(name), &target).expect("copy over the plugin file");
                    }
                    Arrival::NewBuild | Arrival::CompiledAhead => host.install_bytes(fresh.as_deref().expect("made above"), "video.wasm"),
                }
                answered_by(&mut client, version).await;
                samples.push(started.elapsed());
            }
            samples.sort();
            let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
            println!("{:<26} {:>10.1?} {:>10.1?} {:>10.1?}", how.label(), at(0.5), at(0.9), samples[samples.len() - 1]);
        }
        host.shutdown().await;
    });
}

#[derive(Clone, Copy)]
enum Arrival {
    /// `mv` of a build the compile cache holds.
    Rename,
    /// `cp` over the file: waits out the debounce.
    InPlace,
    /// `mv` of a build never loaded before: compiled first.
    NewBuild,
    /// The same, after `switchyard plugin compile` put it in the cache.
    CompiledAhead,
}

impl Arrival {
    fn label(self) -> &'static str {
        match self {
            Arrival::Rename => "atomic rename",
            Arrival::InPlace => "written in place",
            Arrival::NewBuild => "new build, renamed",
            Arrival::CompiledAhead => "new build, compiled ahead",
        }
    }
}

/// `switchyard plugin compile` into the cache the bench's host reads.
fn compile_ahead(bytes: &[u8]) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), bytes).expect("write the new build");
    let status = std::process::Command::new(host_binary())
        .args(["plugin", "compile"])
        .arg(file.path())
        .arg("--cache-dir")
        .arg(shared_cache())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run switchyard plugin compile (cargo build --release -p switchyard-cli first)");
    assert!(status.success(), "switchyard plugin compile failed");
}

/// Poll `status` until `version` answers it (at most 30 s).
async fn answered_by(client: &mut Client, version: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = client.call("video_command", json!({"action": "status"})).await;
        if reply["meta"]["plugin_version"] == version {
            return;
        }
        assert!(Instant::now() < deadline, "version {version} never answered: {reply}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
