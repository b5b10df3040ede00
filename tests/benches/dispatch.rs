//! Run with: cargo bench -p switchyard-tests --bench dispatch
//!
//! The in-process dispatch path (a text frame in → dialect → route → Rust
//! `echo` plugin → reply JSON out), beside the bare cost of one typed
//! wasmtime call to the same plugin's `handle`, in the same run.

use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::dispatch::{Caller, Dispatcher};
use switchyard::envelope::{Origin, Transport};
use switchyard::hub::{Hub, HubLimits};
use switchyard::limits::{LiveLimits, Tunables};
use switchyard::metrics::Metrics;
use switchyard::registry::Registry;
use switchyard::security::Keyring;
use switchyard::workers::WorkerPool;
use switchyard::Config;
use switchyard::dialect::Profile;
use switchyard::runtime::world::v0_2::types;
use switchyard::runtime::{PluginLimits, Runtime, Services};
use switchyard::state::MemoryKv;
use switchyard::system::HostSystem;

const FRAME: &str = r#"{"type":"echo","id":"b1","data":{"message":"hello"}}"#;

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let hub = Arc::new(Hub::new(HubLimits { outbox_frames: 64 }, Default::default()));
    let services = Services {
        events: hub.clone(),
        kv: Arc::new(MemoryKv::default()),
        rooms: hub.clone(),
        system: Arc::new(HostSystem::default()),
    };
    let limits = PluginLimits { deadline: Duration::from_secs(2), memory_bytes: 64 << 20, max_instances: 4 };
    let runtime =
        Runtime::new(limits, Some(switchyard_tests::shared_cache()), HashMap::new(), HashMap::new(), services).unwrap();
    let registry = Registry::new(runtime, hub.clone(), Default::default());
    let echo = switchyard_tests::guest("echo");
    rt.block_on(registry.load(&echo)).expect("echo loads");
    // The whole path, rate-limit bucket and scope check included; the rate
    // is high enough never to refuse.
    let mut tunables = Tunables::from_config(&Config::default());
    (tunables.messages_per_second, tunables.message_burst) = (u32::MAX, u32::MAX);
    let limits = Arc::new(LiveLimits::new(tunables, 16 << 20));
    let workers = Arc::new(WorkerPool::new(&Default::default()).unwrap());
    let dispatcher = Dispatcher::new(registry.routes(), workers, Arc::clone(&limits), Arc::new(Metrics::new()), hub);
    let origin = Origin { connection_id: "bench".into(), client_id: None, transport: Transport::Ws, endpoint: "/ws".into() };
    let profile = Profile::default();
    let principal = Keyring::from_config(&Default::default()).unwrap().authenticate(None, None).unwrap();
    let caller = Caller { origin, connection: None, principal: &principal };
    let mut bucket = limits.message_bucket();
    let reply = rt.block_on(dispatcher.answer(FRAME, &profile, &caller, || bucket.admit(&limits)));
    assert!(reply[0].contains("Echo: hello"), "{reply:?}");

    let plugin = registry.plugins().pop().unwrap();
    let mut bare = rt.block_on(plugin.bare_instance()).unwrap();
    let message = types::Message {
        id: "b1".into(),
        type_: "echo".into(),
        data: r#"{"message":"hello"}"#.into(),
        meta: "{}".into(),
        origin: types::Origin { connection_id: "bench".into(), client_id: None, transport: "ws".into(), endpoint: "/ws".into() },
    };

    let mut group = c.benchmark_group("echo");
    group.bench_function("bare typed wasmtime call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(bare.handle(&message).await.unwrap().unwrap());
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("dispatch: frame in, reply out", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(dispatcher.answer(black_box(FRAME), &profile, &caller, || bucket.admit(&limits)).await);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
