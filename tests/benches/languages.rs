//! Run with: cargo bench -p switchyard-tests --bench languages
//!
//! What a plugin costs by language, in the same run, with the Rust `echo`
//! as the baseline (and the Rust `greet`, the Python example's handler
//! written in Rust, as the baseline for the Python row): the first load (compile, instantiate, manifest) with an
//! empty compile cache, the load after a restart (compile cache hit), a
//! fresh instantiation, and a warm call through the whole dispatch path.
//! The other languages' examples are built by their `build.sh`; the
//! Python no-op fixture (tests/fixtures/python-noop) by the Python one's.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchyard_tests::rig::Rig;

struct Subject {
    language: &'static str,
    component: PathBuf,
    frame: &'static str,
    calls: usize,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let subjects = [
        Subject { language: "Rust (echo, baseline)", component: switchyard_tests::guest("echo"), frame: r#"{"type":"echo","data":{"message":"hello"}}"#, calls: 2000 },
        // The same handler as the Python `greet` (parse, kv get and set,
        // format), so the Python row's ratio to this one is the language's
        // cost for the same work.
        Subject { language: "Rust (greet, the Python's work)", component: switchyard_tests::guest("greet-rust"), frame: r#"{"type":"greet","data":{"name":"Ada","language":"fr"}}"#, calls: 2000 },
        Subject { language: "Python (greet)", component: switchyard_tests::example("python-greet"), frame: r#"{"type":"greet","data":{"name":"Ada","language":"fr"}}"#, calls: 500 },
        // A Python handler that only returns "{}": what any call into a
        // componentize-py component costs before the handler's own work.
        Subject { language: "Python (noop)", component: switchyard_tests::python_fixture("python-noop"), frame: r#"{"type":"noop","data":{}}"#, calls: 500 },
        Subject { language: "JavaScript (text)", component: switchyard_tests::example("js-text"), frame: r#"{"type":"text.upper","data":{"text":"hello"}}"#, calls: 1000 },
        Subject { language: "Zig (sum)", component: switchyard_tests::example("zig-sum"), frame: r#"{"type":"sum","data":{"numbers":[1,2.5,3]}}"#, calls: 2000 },
        Subject { language: "C (checksum)", component: switchyard_tests::example("c-checksum"), frame: r#"{"type":"checksum","data":{"text":"hello"}}"#, calls: 2000 },
        Subject { language: "Go (words.count)", component: switchyard_tests::example("go-wordcount"), frame: r#"{"type":"words.count","data":{"text":"the cat and the hat"}}"#, calls: 1000 },
    ];
    println!("| language | size | first load (compile) | load after restart (cache hit) | instantiate | warm call (dispatch path) |");
    println!("|---|---|---|---|---|---|");
    for subject in subjects {
        let size = std::fs::metadata(&subject.component).unwrap().len();
        let cache = tempfile::tempdir().unwrap();

        let cold = Rig::new(Some(cache.path().to_path_buf()));
        let started = Instant::now();
        rt.block_on(cold.registry.load(&subject.component)).expect("loads");
        let first_load = started.elapsed();
        drop(cold);

        let rig = Rig::new(Some(cache.path().to_path_buf()));
        let started = Instant::now();
        rt.block_on(rig.registry.load(&subject.component)).expect("loads from the cache");
        let cached_load = started.elapsed();

        let plugin = rig.registry.plugins().pop().unwrap();
        let instantiations: Vec<Duration> = (0..20)
            .map(|_| {
                let started = Instant::now();
                drop(rt.block_on(plugin.bare_instance()).unwrap());
                started.elapsed()
            })
            .collect();

        let mut bucket = rig.bucket();
        let reply = rt.block_on(rig.answer(subject.frame, &mut bucket));
        assert!(reply[0].contains(r#""type":"reply""#), "{}: {reply:?}", subject.language);
        let calls: Vec<Duration> = (0..subject.calls)
            .map(|_| {
                let started = Instant::now();
                rt.block_on(rig.answer(subject.frame, &mut bucket));
                started.elapsed()
            })
            .collect();
        println!(
            "| {} | {:.1} MB | {:.2} s | {:.1} ms | {:.0} µs | {:.1} µs |",
            subject.language,
            size as f64 / 1e6,
            first_load.as_secs_f64(),
            cached_load.as_secs_f64() * 1e3,
            median(instantiations).as_secs_f64() * 1e6,
            median(calls).as_secs_f64() * 1e6,
        );
    }
}
