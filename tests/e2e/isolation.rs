//! A misbehaving plugin is isolated from its neighbours (issue 14): a
//! plugin that loops until its deadline, hammered by 200 calls, trips its
//! circuit breaker and is failed fast with `PLUGIN_UNAVAILABLE` and
//! `retry_after`, while another plugin keeps answering; one probe call after
//! the cooldown decides whether it closes again. Every state change is a
//! `status` event and shows in `/api/status`. Behaviour, not timing: the
//! latency effect is measured by `benches/load.rs`.

use futures_util::future::join_all;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_tests::{Client, Host};

const COOLDOWN_MS: u64 = 2_000;
const FAILURES: u32 = 3;

async fn host() -> Host {
    Host::start_with(&["clock", "misbehave"], |c| {
        c.plugins.deadline_ms = 300;
        c.plugins.breaker.failures = FAILURES;
        c.plugins.breaker.window_ms = 60_000;
        c.plugins.breaker.cooldown_ms = COOLDOWN_MS;
    })
    .await
}

/// The next breaker event on a `/ws/status` connection, skipping the rest.
async fn breaker_event(watcher: &mut Client) -> Value {
    loop {
        let event = watcher.event_on("status").await;
        if event["data"]["event"].as_str().is_some_and(|e| e.starts_with("breaker_")) {
            return event["data"].clone();
        }
    }
}

async fn plugin_status(host: &Host, name: &str) -> Value {
    let status: Value = reqwest::get(host.http("/api/status")).await.unwrap().json().await.unwrap();
    status["plugins"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().expect("plugin listed")
}

/// Call `kind` until the breaker lets it through (waiting what
/// `retry_after` says each time it does not); the first answer that is
/// not `PLUGIN_UNAVAILABLE`.
async fn when_let_through(client: &mut Client, kind: &str) -> Value {
    loop {
        let reply = client.call(kind, json!({})).await;
        if reply["data"]["code"] != "PLUGIN_UNAVAILABLE" {
            return reply;
        }
        let wait = reply["data"]["retry_after"].as_u64().expect("PLUGIN_UNAVAILABLE carries retry_after");
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_plugin_trips_its_breaker_while_its_neighbour_keeps_serving() {
    let host = host().await;
    let mut watcher = Client::connect(&host.endpoint("/ws/status")).await;
    let mut bystander = host.connect().await;

    // 200 calls of the looping type: 20 connections sending 10 each, one
    // after the other, while the clock is asked the time throughout.
    let hammer = (0..20).map(|_| {
        let url = host.url();
        async move {
            let mut client = Client::connect(&url).await;
            let mut replies = Vec::new();
            for _ in 0..10 {
                replies.push(client.call("misbehave.loop", json!({})).await);
            }
            replies
        }
    });
    let hammer = tokio::spawn(join_all(hammer));
    let mut times = Vec::new();
    while !hammer.is_finished() {
        times.push(bystander.call("get_time", json!({})).await);
    }
    let replies: Vec<Value> = hammer.await.unwrap().into_iter().flatten().collect();

    assert_eq!(replies.len(), 200);
    assert!(!times.is_empty());
    for time in &times {
        assert_eq!(time["type"], "reply", "the clock kept answering: {time}");
    }
    let code = |reply: &Value| reply["data"]["code"].as_str().map(str::to_owned);
    let timeouts = replies.iter().filter(|r| code(r).as_deref() == Some("PLUGIN_TIMEOUT")).count();
    let unavailable: Vec<&Value> = replies.iter().filter(|r| code(r).as_deref() == Some("PLUGIN_UNAVAILABLE")).collect();
    assert_eq!(timeouts + unavailable.len(), 200, "every call timed out or was refused fast: {replies:?}");
    assert!(timeouts >= FAILURES as usize, "{timeouts} timeouts");
    assert!(unavailable.len() > timeouts, "once open, calls are refused without running: {timeouts} timeouts, {} refused", unavailable.len());
    for refused in &unavailable {
        let retry_after = refused["data"]["retry_after"].as_u64().expect("retry_after");
        assert!((1..=COOLDOWN_MS).contains(&retry_after), "{refused}");
        assert!(refused["data"]["message"].as_str().unwrap().contains("misbehave"), "{refused}");
    }

    let opened = breaker_event(&mut watcher).await;
    assert_eq!((opened["event"].as_str(), opened["plugin"].as_str(), opened["state"].as_str()), (Some("breaker_opened"), Some("misbehave"), Some("open")));
    assert_eq!(opened["retry_after"], COOLDOWN_MS);
    assert_eq!(opened["faults"], FAILURES);
    assert_eq!(opened["error"]["code"], "PLUGIN_TIMEOUT");

    // Open (for the cooldown, seconds): every type of the plugin is refused,
    // over HTTP too, and the neighbour is untouched.
    let status = plugin_status(&host, "misbehave").await;
    assert_eq!(status["breaker"]["state"], "open", "{status}");
    assert!(status["breaker"]["retry_after"].as_u64().is_some(), "{status}");
    assert_eq!(status["breaker"]["times_opened"], 1, "{status}");
    let response = reqwest::Client::new()
        .post(host.http("/api/v1/messages"))
        .body(json!({"type": "misbehave.env", "id": "h1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["code"], "PLUGIN_UNAVAILABLE", "{body}");
    assert_eq!(plugin_status(&host, "clock").await["breaker"]["state"], "closed");

    // After the cooldown one probe is let through; it loops again, so the
    // breaker opens again at once.
    let mut caller = host.connect().await;
    let probe = when_let_through(&mut caller, "misbehave.loop").await;
    assert_eq!(probe["data"]["code"], "PLUGIN_TIMEOUT", "{probe}");
    assert_eq!(breaker_event(&mut watcher).await["event"], "breaker_half_open");
    let reopened = breaker_event(&mut watcher).await;
    assert_eq!((reopened["event"].as_str(), reopened["faults"].as_u64()), (Some("breaker_opened"), Some(1)), "{reopened}");
    assert_eq!(caller.call("misbehave.env", json!({})).await["data"]["code"], "PLUGIN_UNAVAILABLE");

    // A probe that answers closes it, and the plugin serves again.
    let reply = when_let_through(&mut caller, "misbehave.env").await;
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(breaker_event(&mut watcher).await["event"], "breaker_half_open");
    let closed = breaker_event(&mut watcher).await;
    assert_eq!((closed["event"].as_str(), closed["state"].as_str()), (Some("breaker_closed"), Some("closed")), "{closed}");
    assert_eq!(caller.call("misbehave.env", json!({})).await["type"], "reply");
    let status = plugin_status(&host, "misbehave").await;
    assert_eq!(status["breaker"]["state"], "closed", "{status}");
    assert_eq!(status["breaker"]["retry_after"], Value::Null);
    assert_eq!(bystander.call("get_time", json!({})).await["type"], "reply");
    host.shutdown().await;
}

#[tokio::test]
async fn a_breaker_can_be_switched_off_per_plugin() {
    let host = Host::start_with(&["misbehave"], |c| {
        c.plugins.deadline_ms = 100;
        c.plugins.breaker.failures = 1;
        c.plugins.breaker.plugins.insert("misbehave".into(), switchyard::config::isolation::BreakerOverride { enabled: Some(false), ..Default::default() });
    })
    .await;
    let mut client = host.connect().await;
    for _ in 0..3 {
        assert_eq!(client.call("misbehave.loop", json!({})).await["data"]["code"], "PLUGIN_TIMEOUT");
    }
    assert_eq!(client.call("misbehave.env", json!({})).await["type"], "reply");
    let status = plugin_status(&host, "misbehave").await;
    assert_eq!((status["breaker"]["enabled"].as_bool(), status["breaker"]["state"].as_str()), (Some(false), Some("closed")));
    host.shutdown().await;
}
