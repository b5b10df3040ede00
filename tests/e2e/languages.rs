//! Plugins in other languages, built from source with their own tools by
//! the examples' `build.sh` scripts and served by a real host: Python
//! (componentize-py), JavaScript (jco), C, Zig and Go (their compilers, run
//! by `switchyard plugin build`); and a live swap between
//! the Python `greet` and a Rust one under load, sharing key-value state.

use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use switchyard_tests::{example, guest, status_for, watch_status, Client, Host};

async fn host_with(name: &str, file: &str) -> Host {
    let component = example(name);
    let host = Host::start(&[]).await;
    host.install_path(&component, file);
    // Wait for the load (a Python component takes seconds to compile cold).
    let started = std::time::Instant::now();
    while host.server().registry().plugins().is_empty() {
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "{name} never loaded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    host
}

#[tokio::test]
async fn python_greets_counts_in_kv_and_raises_failures() {
    let host = host_with("python-greet", "greet.wasm").await;
    let mut client = host.connect().await;
    let reply = client.call("greet", json!({"name": "Ada", "language": "fr"})).await;
    assert_eq!(reply["data"], json!({"greeting": "Bonjour, Ada !", "count": 1}), "{reply}");
    assert_eq!(reply["meta"]["plugin"], "greet");
    let reply = client.call("greet", json!({"name": "Ada"})).await;
    assert_eq!(reply["data"], json!({"greeting": "Hello, Ada!", "count": 2}));
    let reply = client.call("greet", json!({"name": "Ada", "language": "tlh"})).await;
    assert_eq!(reply["data"]["code"], "UNKNOWN_LANGUAGE", "an exception becomes the plugin's failure: {reply}");
    assert_eq!(client.call("greet", json!({"nom": "Ada"})).await["data"]["code"], "INVALID_DATA");
    host.shutdown().await;
}

#[tokio::test]
async fn python_under_100_connections_never_instantiates_per_message() {
    const CONNECTIONS: usize = 100;
    const EACH: usize = 10;
    let host = host_with("python-greet", "greet.wasm").await;
    let url = host.url();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut client = Client::connect(&url).await;
                for _ in 0..EACH {
                    let reply = client.call("greet", json!({"name": format!("n{n}"), "language": "de"})).await;
                    assert_eq!(reply["type"], "reply", "{reply}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let plugin = host.server().registry().plugins().pop().unwrap();
    let calls = plugin.stats.calls.load(Ordering::Relaxed);
    let instantiations = plugin.stats.instantiations.load(Ordering::Relaxed);
    assert_eq!(calls, (CONNECTIONS * EACH) as u64);
    // At most one instance per concurrent call, ever: the pool's cap.
    let cap = switchyard::Config::default().plugins.max_instances as u64;
    assert!(instantiations <= cap, "{instantiations} instantiations for {calls} calls: instances must be reused");
    host.shutdown().await;
}

#[tokio::test]
async fn javascript_transforms_text_and_keeps_a_total_in_kv() {
    let host = host_with("js-text", "text.wasm").await;
    let mut client = host.connect().await;
    let reply = client.call("text.upper", json!({"text": "hello"})).await;
    assert_eq!(reply["data"], json!({"result": "HELLO", "total_chars": 5}), "{reply}");
    let reply = client.call("text.reverse", json!({"text": "abc"})).await;
    assert_eq!(reply["data"], json!({"result": "cba", "total_chars": 8}));
    let reply = client.call("text.count", json!({"text": "two words"})).await;
    assert_eq!(reply["data"]["result"], json!({"chars": 9, "words": 2}));
    assert_eq!(client.call("text.shout", json!({"text": "x"})).await["data"]["code"], "UNKNOWN_ACTION");
    assert_eq!(client.call("text.upper", json!({"txt": 1})).await["data"]["code"], "INVALID_DATA");
    host.shutdown().await;
}

#[tokio::test]
async fn zig_sums_numbers_and_returns_failures() {
    let host = host_with("zig-sum", "sum.wasm").await;
    let mut client = host.connect().await;
    let reply = client.call("sum", json!({"numbers": [1, 2.5, 3]})).await;
    assert_eq!(reply["data"], json!({"sum": 6.5, "count": 3}), "{reply}");
    assert_eq!(client.call("sum", json!({"numbers": "x"})).await["data"]["code"], "INVALID_DATA");
    assert_eq!(client.call("sum", json!({"numbers": [1e308, 1e308]})).await["data"]["code"], "OUT_OF_RANGE");
    assert_eq!(client.call("sum", json!({"numbers": []})).await["data"], json!({"sum": 0, "count": 0}));
    host.shutdown().await;
}

#[tokio::test]
async fn c_computes_crc32_and_returns_failures() {
    let host = host_with("c-checksum", "checksum.wasm").await;
    let mut client = host.connect().await;
    let reply = client.call("checksum", json!({"text": "hello"})).await;
    assert_eq!(reply["data"], json!({"crc32": 907060870u32, "hex": "3610a686", "bytes": 5}), "{reply}");
    // JSON escapes are decoded before hashing: "é" is two UTF-8 bytes.
    let reply = client.call("checksum", json!({"text": "\u{e9}\n"})).await;
    assert_eq!(reply["data"]["bytes"], 3, "{reply}");
    for bad in [json!("text"), json!({"txt": "x"}), json!({"text": 5})] {
        let reply = client.call("checksum", bad.clone()).await;
        assert_eq!(reply["data"]["code"], "INVALID_DATA", "{bad}: {reply}");
    }
    // The instance survived its error returns.
    assert_eq!(client.call("checksum", json!({"text": ""})).await["data"]["crc32"], 0);
    host.shutdown().await;
}

#[tokio::test]
async fn go_counts_words_keeps_a_total_in_kv_and_returns_failures() {
    let host = host_with("go-wordcount", "words.wasm").await;
    let mut client = host.connect().await;
    let reply = client.call("words.count", json!({"text": "The cat and the hat, and the bat."})).await;
    let expected = json!({"words": 8, "unique": 5, "top": [["the", 3], ["and", 2], ["bat", 1]], "total": 8});
    assert_eq!(reply["data"], expected, "{reply}");
    assert_eq!(client.call("words.count", json!({"text": "one two"})).await["data"]["total"], 10);
    assert_eq!(client.call("words.count", json!({"txt": "x"})).await["data"]["code"], "INVALID_DATA");
    assert_eq!(client.call("words.count", json!({"text": ""})).await["data"]["total"], 10);
    host.shutdown().await;
}

#[tokio::test]
async fn python_and_rust_replace_each_other_live_under_load_sharing_kv() {
    let python = example("python-greet");
    let rust = guest("greet-rust");
    let host = host_with("python-greet", "greet.wasm").await;
    let mut watcher = host.connect().await;
    watch_status(&mut watcher).await;

    // Four clients greet their own name without pause; each count must be
    // one more than the last, whichever language answered.
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|n| {
            let (url, stop) = (host.url(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut client = Client::connect(&url).await;
                let (mut count, mut versions) = (0u64, std::collections::BTreeSet::new());
                while !stop.load(Ordering::Relaxed) {
                    let reply = client.call("greet", json!({"name": format!("client-{n}"), "language": "it"})).await;
                    assert_eq!(reply["type"], "reply", "no request fails during the swaps: {reply}");
                    count += 1;
                    assert_eq!(reply["data"]["count"], count, "the count lives in the shared kv: {reply}");
                    versions.insert(reply["meta"]["plugin_version"].as_str().unwrap().to_owned());
                }
                (count, versions)
            })
        })
        .collect();

    for _ in 0..2 {
        for (component, version) in [(&rust, "2.0.0"), (&python, "0.1.0")] {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            host.install_path(component, "greet.wasm");
            let event = status_for(&mut watcher, "greet.wasm").await;
            assert_eq!((event["event"].as_str(), event["version"].as_str()), (Some("plugin_swapped"), Some(version)), "{event}");
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let (count, versions) = task.await.unwrap();
        assert!(count > 0);
        assert_eq!(versions.into_iter().collect::<Vec<_>>(), ["0.1.0", "2.0.0"], "each client was served by both languages");
    }
    host.shutdown().await;
}
