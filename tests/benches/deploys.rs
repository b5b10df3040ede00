//! Run with: cargo bench -p switchyard-tests --bench deploys
//!
//! What a running canary and a running shadow cost the routed path: the
//! in-process dispatch of an `echo` frame (frame in, route, plugin, reply
//! out) on a two-worker runtime, two live tasks answering at once, with
//! and without the rollout, in paired rounds of the same run (the order
//! alternates per round) and their medians:
//! - a 5% canary (`echo` 2.0.0 beside 0.1.0, thresholds set so it never
//!   ends). Target (issue 18): ≤ 2% of throughput;
//! - a shadow of 100% of `echo` by 2.0.0 (every message offered; the
//!   candidate, on its own thread, compares what its CPU budget lets it and
//!   the rest is dropped and counted), at the default budget (a quarter of
//!   a core) and at a whole core. Target: ≤ 10% of the live path's
//!   throughput.
//!
//! `ROUNDS`, `MESSAGES` (per task per side) and `SHADOW_BUDGETS` override
//! the defaults.

use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::config::rollout::RolloutConfig;
use switchyard::plugins::registry::Candidate;
use switchyard::plugins::rollout::CanaryState;
use switchyard_tests::rig::Rig;

/// The host binary's allocator, so the in-process path allocates as the host does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FRAME: &str = r#"{"type":"echo","id":"b1","data":{"message":"hello"}}"#;
const TASKS: u64 = 2;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Messages per second over `TASKS` live tasks answering `messages` each.
async fn throughput(rig: &Arc<Rig>, messages: u64) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let rig = Arc::clone(rig);
            tokio::spawn(async move {
                let mut bucket = rig.bucket();
                rig.time_answers(FRAME, &mut bucket, messages).await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("live task");
    }
    (TASKS * messages) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// `rounds` paired measurements without and with a rollout `start`ed
/// (and `stop`ped after each); prints each round and the medians.
async fn paired<S, T>(rig: &Arc<Rig>, what: &str, rounds: u64, messages: u64, start: S, stop: T)
where
    S: AsyncFn(&Arc<Rig>),
    T: AsyncFn(&Arc<Rig>),
{
    let (mut without, mut with, mut costs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let measure = async |on: bool| {
            if on {
                start(rig).await;
            }
            let rate = throughput(rig, messages).await;
            if on {
                stop(rig).await;
            }
            rate
        };
        let (off, on) = if round % 2 == 0 {
            let off = measure(false).await;
            (off, measure(true).await)
        } else {
            let on = measure(true).await;
            (measure(false).await, on)
        };
        let cost = (1.0 - on / off) * 100.0;
        println!("{what} round {round}: {off:.0} msg/s without, {on:.0} with, cost {cost:+.1}%");
        without.push(off);
        with.push(on);
        costs.push(cost);
    }
    let (off, on) = (median(without), median(with));
    println!(
        "{what}: median {off:.0} msg/s without, {on:.0} with: cost {:+.1}% of throughput (median of the rounds' costs {:+.1}%)",
        (1.0 - on / off) * 100.0,
        median(costs)
    );
}

fn main() {
    let rounds = setting("ROUNDS", 7);
    let messages = setting("MESSAGES", 20_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rig = Arc::new(Rig::new(Some(switchyard_tests::shared_cache())));
    rt.block_on(async {
        rig.registry.load(&switchyard_tests::guest("echo")).await.expect("echo loads");
        let v2 = std::fs::read(switchyard_tests::guest("echo_v2")).unwrap();
        // Warm both versions and the compile cache.
        throughput(&rig, messages / 4).await;
        let copy = v2.clone();
        paired(
            &rig,
            "canary 5%",
            rounds,
            messages,
            async |rig| {
                let config = RolloutConfig { weight: 5, window: u64::MAX / 2, promote_after: u64::MAX / 2, ..Default::default() };
                rig.registry.start_canary("echo", Candidate::Bytes(copy.clone()), config).await.expect("canary starts");
            },
            async |rig| {
                rig.registry.end_canary("echo", CanaryState::RolledBack).await.expect("canary ends");
            },
        )
        .await;
        // The default CPU budget, then a whole core (`SHADOW_BUDGETS` overrides: shares of one core).
        let budgets = std::env::var("SHADOW_BUDGETS").unwrap_or_else(|_| "0.25,1".into());
        for budget in budgets.split(',').map(|b| b.trim().parse::<f64>().expect("a share of one core")) {
            let v2 = v2.clone();
            paired(
                &rig,
                &format!("shadow 100%, budget {budget}"),
                rounds,
                messages,
                async |rig| {
                    let candidate = Candidate::Bytes(v2.clone());
                    rig.registry.start_shadow("echo", candidate, Vec::new(), Some(budget)).await.expect("shadow starts");
                },
                async |rig| {
                    let shadow = rig.registry.stop_shadow("echo", "bench round over".into()).expect("shadow stops");
                    let status = shadow.status();
                    println!("  shadow compared {} dropped {} matched {}", status["compared"], status["dropped"], status["matched"]);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                },
            )
            .await;
        }
    });
}
