//! Run with: cargo bench -p switchyard-tests --bench dispatch
//!
//! The in-process dispatch path (a text frame in → dialect → route → Rust
//! `echo` plugin → reply JSON out), beside the bare cost of one typed
//! wasmtime call to the same plugin's `handle`, in the same run; and
//! before timing, the heap allocations each makes per message (counted by
//! this bench's global allocator on the bench's one thread). Then the load
//! bench's two requests through the same path: the built-in `ping` and
//! `get_time` through `clock`, so what the sandbox adds in process can be
//! set beside what it adds in the server.
//!
//! `DISPATCH_REPEAT=PATH:N` (PATH one of `bare`, `echo`, `ping`,
//! `get_time`) skips the timing: it runs that path N times after the
//! setup and exits, for an instruction counter. Two runs with different N
//! under `valgrind --tool=callgrind --separate-threads=yes` give the
//! instructions one message costs on the main thread (where the whole
//! dispatch runs), a figure this shared VM's noise does not move: the
//! difference of the two counts over the difference of the two N. The
//! README's Performance section has the commands.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Instant;
use switchyard::plugins::runtime::world::handle;
use switchyard::observability::allocations::{on_this_thread, CountingAllocator};
use switchyard_tests::rig::Rig;

/// Counts allocations on this thread (the runtime is current-thread, so
/// the whole dispatch runs here).
#[global_allocator]
static COUNTING: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    on_this_thread()
}

const FRAME: &str = r#"{"type":"echo","id":"b1","data":{"message":"hello"}}"#;
const PING: &str = r#"{"type":"ping","id":"b1","data":{}}"#;
const GET_TIME: &str = r#"{"type":"get_time","id":"b1","data":{}}"#;

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let rig = Rig::new(Some(switchyard_tests::shared_cache()));
    let echo = switchyard_tests::guest("echo");
    rt.block_on(rig.registry.load(&echo)).expect("echo loads");
    rt.block_on(rig.registry.load(&switchyard_tests::guest("clock"))).expect("clock loads");
    // The whole path, rate-limit bucket and scope check included; the rate
    // is high enough never to refuse.
    let mut bucket = rig.bucket();
    let reply = rt.block_on(rig.answer(FRAME, &mut bucket));
    assert!(reply[0].contains("Echo: hello"), "{reply:?}");

    let plugin = rig.registry.plugins().into_iter().find(|p| p.name() == "echo").unwrap();
    let mut bare = rt.block_on(plugin.bare_instance()).unwrap();
    let message = || handle::Message {
        id: "b1",
        kind: "echo",
        data: r#"{"message":"hello"}"#,
        meta: "{}",
        origin: handle::Origin { connection_id: "bench", client_id: None, transport: "ws", endpoint: "/ws" },
    };

    if let Ok(repeat) = std::env::var("DISPATCH_REPEAT") {
        let (path, count) = repeat.split_once(':').expect("DISPATCH_REPEAT=PATH:N");
        let count: u64 = count.parse().expect("DISPATCH_REPEAT=PATH:N");
        rt.block_on(async {
            for _ in 0..count {
                match path {
                    "bare" => drop(black_box(bare.handle(message()).await.unwrap().unwrap())),
                    "echo" => drop(black_box(rig.answer(FRAME, &mut bucket).await)),
                    "ping" => drop(black_box(rig.answer(PING, &mut bucket).await)),
                    "get_time" => drop(black_box(rig.answer(GET_TIME, &mut bucket).await)),
                    other => panic!("DISPATCH_REPEAT: no path {other:?} (bare, echo, ping, get_time)"),
                }
            }
        });
        std::process::exit(0);
    }

    const COUNTED: u64 = 1000;
    let (bare_allocations, dispatch_allocations) = rt.block_on(async {
        let start = allocations();
        for _ in 0..COUNTED {
            black_box(bare.handle(message()).await.unwrap().unwrap());
        }
        let bare_allocations = allocations() - start;
        let start = allocations();
        for _ in 0..COUNTED {
            black_box(rig.answer(FRAME, &mut bucket).await);
        }
        (bare_allocations, allocations() - start)
    });
    println!(
        "allocations per message: bare typed call {:.1}, dispatch {:.1}",
        bare_allocations as f64 / COUNTED as f64,
        dispatch_allocations as f64 / COUNTED as f64
    );

    let mut group = c.benchmark_group("echo");
    group.bench_function("bare typed wasmtime call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(bare.handle(message()).await.unwrap().unwrap());
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("dispatch: frame in, reply out", |b| {
        b.iter_custom(|iters| rt.block_on(rig.time_answers(FRAME, &mut bucket, iters)))
    });
    group.finish();
    // The load bench's two server paths, in process: the built-in `ping`
    // (no plugin) and `get_time` through `clock`.
    let mut group = c.benchmark_group("load bench requests");
    for (name, frame) in [("ping (built-in)", PING), ("get_time (clock)", GET_TIME)] {
        assert!(rt.block_on(rig.answer(frame, &mut bucket))[0].contains("\"b1\""));
        group.bench_function(name, |b| b.iter_custom(|iters| rt.block_on(rig.time_answers(frame, &mut bucket, iters))));
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
