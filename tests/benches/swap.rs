//! Run with: cargo bench -p switchyard-tests --bench swap
//!
//! How soon a replaced plugin answers: the time from putting a new version
//! of `video` in the plugin folder until a client's `status` request is
//! answered by it, polled every millisecond, for an atomic rename (served
//! at once) beside a copy written in place (which waits out the default
//! 200 ms debounce), in the same run.

use serde_json::json;
use std::time::{Duration, Instant};
use switchyard_tests::{guest, Client, Host};

const SWAPS: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let host = Host::start_with(&["video"], |config| config.plugins.debounce_ms = 200).await;
        let mut client = host.connect().await;
        answered_by(&mut client, "0.1.0").await;
        println!("time from the new file to the first reply by its version, {SWAPS} swaps each");
        println!("{:<22} {:>10} {:>10} {:>10}", "how the file arrives", "p50", "p90", "max");
        for (how, rename) in [("atomic rename", true), ("written in place", false)] {
            let mut samples = Vec::with_capacity(SWAPS);
            for swap in 0..SWAPS {
                let (name, version) = if swap % 2 == 0 { ("video-v2", "2.0.0") } else { ("video", "0.1.0") };
                let target = host.plugin_dir().join("video.wasm");
                let started = Instant::now();
                if rename {
                    host.install(name, "video.wasm");
                } else {
                    std::fs::copy(guest(name), &target).expect("copy over the plugin file");
                }
                answered_by(&mut client, version).await;
                samples.push(started.elapsed());
            }
            samples.sort();
            let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
            println!("{how:<22} {:>10.1?} {:>10.1?} {:>10.1?}", at(0.5), at(0.9), samples[samples.len() - 1]);
        }
        host.shutdown().await;
    });
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
