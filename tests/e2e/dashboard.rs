//! The dashboard in a real browser: headless Chromium through chromedriver
//! (WebDriver, the `fantoccini` crate) against a real `switchyard serve`
//! process. Logging in, the timeline (live, and what happened before the
//! page opened), uploads and rollbacks from the page, a canary's two
//! versions side by side and its promotion, the live tail and counters, the
//! config view, a phone-sized screen, and the admin feed's rules through
//! the API itself. Screenshots of each view go to
//! `target/dashboard-screenshots/`.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_tests::browser::Browser;
use switchyard_tests::{guest, Client, HostProcess};

const ADMIN: &str = "admin-key-0123456789abcdef";
const VIEWER: &str = "viewer-key-0123456789abcdef";
/// Long enough for a busy CI machine to do what the page asked.
const PATIENCE: Duration = Duration::from_secs(10);

fn host() -> HostProcess {
    host_with("")
}

/// The test host, with `extra` TOML at the end.
fn host_with(extra: &str) -> HostProcess {
    let toml = format!(
        "debounce_ms = 50\n\
         [[auth.keys]]\nname = \"ops\"\nkey = \"{ADMIN}\"\nadmin = true\n\
         [[auth.keys]]\nname = \"viewer\"\nkey = \"{VIEWER}\"\n\
         [storage.history]\nno_payload_types = [\"secret_thing\"]\n{extra}"
    );
    HostProcess::spawn(&["echo"], &toml)
}

/// A canary of `echo` promoted or rolled back only by hand, whatever it does.
const MANUAL_CANARY: &str = "[plugins.rollout.echo]\nwindow = 100000\npromote_after = 100000\nauto_promote = false\nmax_p99_ratio = 1000000.0\n";

/// `echo_v2` as a canary of `echo` serving `weight` percent, through the API.
async fn start_canary(host: &HostProcess, weight: u32) {
    let bytes = std::fs::read(guest("echo_v2")).unwrap();
    let response = http()
        .post(format!("http://{}/api/plugins/echo/canary?weight={weight}", host.addr))
        .bearer_auth(ADMIN)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

async fn serving_version(host: &HostProcess, plugin: &str) -> String {
    let list: Value = http().get(format!("http://{}/api/plugins", host.addr)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let found = list["plugins"].as_array().unwrap().iter().find(|p| p["name"] == plugin);
    found.map(|p| p["version"].as_str().unwrap().to_owned()).unwrap_or_default()
}

/// Open the page logged in through the URL fragment and wait for the live feed.
async fn logged_in(host: &HostProcess) -> Option<Browser> {
    let browser = Browser::start(1280, 900).await?;
    browser.client.goto(&format!("http://{}/dashboard#key={ADMIN}", host.addr)).await.unwrap();
    browser.wait_for("the live feed", PATIENCE, "return document.getElementById('live').textContent === 'live' || null").await;
    Some(browser)
}

async fn show(browser: &Browser, view: &str) {
    browser.click(&format!("nav button[data-view='{view}']")).await;
    browser.wait_for(view, PATIENCE, &format!("return !document.getElementById('view-{view}').hidden || null")).await;
}

/// Run `script` (a function body) in the page and return its value.
async fn run(browser: &Browser, script: &str) -> Value {
    browser.client.execute(script, vec![]).await.unwrap()
}

async fn viewer_client(host: &HostProcess) -> Client {
    let url = format!("ws://{}/ws", host.addr);
    Client::try_connect(&url, &[("authorization", &format!("Bearer {VIEWER}"))]).await.unwrap().acknowledged().await
}

#[tokio::test]
async fn an_admin_key_logs_in_and_a_wrong_or_non_admin_key_is_refused() {
    let host = host();
    let Some(browser) = Browser::start(1280, 900).await else { return };
    let page = format!("http://{}/dashboard", host.addr);
    browser.client.goto(&page).await.unwrap();
    let refused = "const t = document.getElementById('login-error').textContent; return t || null";

    browser.type_into("#key", "not-a-key").await;
    browser.click("#login-button").await;
    let said = browser.wait_for("the wrong key refused", PATIENCE, refused).await;
    assert!(said.as_str().unwrap().contains("not valid"), "{said}");
    assert_eq!(browser.client.execute("return document.getElementById('nav').hidden", vec![]).await.unwrap(), json!(true));

    browser.client.execute("document.getElementById('login-error').textContent = ''", vec![]).await.unwrap();
    browser.type_into("#key", VIEWER).await;
    browser.click("#login-button").await;
    let said = browser.wait_for("the viewer key refused", PATIENCE, refused).await;
    assert!(said.as_str().unwrap().contains("not an admin key"), "{said}");
    browser.screenshot("login-refused").await;

    // An admin key in the fragment logs in, and leaves the address bar at once.
    browser.client.goto("about:blank").await.unwrap();
    browser.client.goto(&format!("{page}#key={ADMIN}")).await.unwrap();
    browser.wait_for("the live feed", PATIENCE, "return document.getElementById('live').textContent === 'live' || null").await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!((url.path(), url.fragment()), ("/dashboard", None), "{url}");
    // Kept for the tab's session: a reload stays logged in.
    browser.client.refresh().await.unwrap();
    browser.wait_for("logged in after a reload", PATIENCE, "return !document.getElementById('nav').hidden || null").await;
    browser.click("#logout").await;
    let stored = browser.client.execute("return sessionStorage.length", vec![]).await.unwrap();
    assert_eq!(stored, json!(0), "logging out forgets the key");
    browser.close().await;
}

#[tokio::test]
async fn a_plugin_swapped_on_disk_appears_on_the_timeline_with_its_new_version() {
    let host = host();
    let Some(browser) = logged_in(&host).await else { return };
    show(&browser, "timeline").await;
    // Written aside and renamed into place, as a deploy script would.
    let aside = host.plugin_dir().join("echo.wasm.part");
    std::fs::copy(guest("echo_v2"), &aside).unwrap();
    std::fs::rename(&aside, host.plugin_dir().join("echo.wasm")).unwrap();
    let swapped = Instant::now();
    let entry = browser
        .wait_for(
            "the swap on the timeline",
            Duration::from_secs(2),
            "const e = document.querySelector('li.timeline-entry[data-event=plugin_swapped][data-plugin=echo][data-version=\"2.0.0\"]'); \
             return e && e.textContent",
        )
        .await;
    eprintln!("the swap was on the timeline {:?} after the file", swapped.elapsed());
    assert!(entry.as_str().unwrap().contains("was 0.1.0"), "{entry}");
    browser.screenshot("timeline").await;
    browser.close().await;
}

#[tokio::test]
async fn a_component_uploaded_from_the_page_is_served() {
    let host = host();
    let Some(browser) = logged_in(&host).await else { return };
    show(&browser, "deploys").await;
    let input = browser.client.find(fantoccini::Locator::Css("#upload-file")).await.unwrap();
    input.send_keys(guest("echo_v2").to_str().unwrap()).await.unwrap();
    let said = browser
        .wait_for("the upload's answer", PATIENCE, "const t = document.getElementById('deploy-result').textContent; return t.includes('2.0.0') ? t : null")
        .await;
    assert!(said.as_str().unwrap().contains("plugin swapped: echo 2.0.0"), "{said}");
    assert_eq!(serving_version(&host, "echo").await, "2.0.0");
    browser.wait_for("the new version in the list", PATIENCE, "return document.querySelector('tr.deploy-row[data-plugin=echo][data-version=\"2.0.0\"]')").await;
    let mut client = viewer_client(&host).await;
    assert_eq!(client.call("echo", json!({"message": "after"})).await["data"], "Echo: after");
    browser.screenshot("deploys").await;
    browser.close().await;
}

#[tokio::test]
async fn a_rollback_from_the_page_serves_the_previous_version() {
    let host = host();
    let Some(browser) = logged_in(&host).await else { return };
    show(&browser, "deploys").await;
    let input = browser.client.find(fantoccini::Locator::Css("#upload-file")).await.unwrap();
    input.send_keys(guest("echo_v2").to_str().unwrap()).await.unwrap();
    browser.wait_for("the upload", PATIENCE, "return document.querySelector('tr.deploy-row[data-plugin=echo][data-version=\"2.0.0\"]')").await;
    assert_eq!(serving_version(&host, "echo").await, "2.0.0");

    browser.click("button.rollback[data-plugin=echo]").await;
    let said = browser
        .wait_for("the rollback's answer", PATIENCE, "const t = document.getElementById('deploy-result').textContent; return t.includes('rolled back') ? t : null")
        .await;
    assert!(said.as_str().unwrap().contains("0.1.0"), "{said}");
    assert_eq!(serving_version(&host, "echo").await, "0.1.0");
    let mut client = viewer_client(&host).await;
    assert_eq!(client.call("echo", json!({"message": "back"})).await["data"], "Echo: back");
    browser.wait_for("the rollback on the timeline", PATIENCE, "return document.querySelector('li.timeline-entry[data-event=plugin_rolled_back][data-plugin=echo]')").await;
    browser.close().await;
}

#[tokio::test]
async fn messages_from_a_client_show_in_the_tail_and_the_counters_and_each_view_is_saved() {
    let host = host();
    let Some(browser) = logged_in(&host).await else { return };
    let mut client = viewer_client(&host).await;
    for i in 0..5 {
        assert_eq!(client.call("echo", json!({"message": format!("tail-probe-{i}")})).await["data"], format!("Echo: tail-probe-{i}"));
    }
    let refused = client.call("no_such_type", json!({})).await;
    assert_eq!(refused["data"]["code"], "UNKNOWN_TYPE", "{refused}");
    // Its type's payloads are private ([storage.history] no_payload_types): counted, shown, not its data.
    client.call("secret_thing", json!({"pin": "8642"})).await;

    show(&browser, "tail").await;
    browser
        .wait_for("five echoes in the tail", PATIENCE, "return document.querySelectorAll('#tail tr.tail-row[data-type=echo]').length >= 5 || null")
        .await;
    let tail = browser.text("#tail").await;
    for i in 0..5 {
        assert!(tail.contains(&format!("tail-probe-{i}")), "{tail}");
    }
    browser.wait_for("the refused message", PATIENCE, "return document.querySelector('#tail tr[data-type=no_such_type][data-outcome=UNKNOWN_TYPE]')").await;
    browser.wait_for("the private message", PATIENCE, "return document.querySelector('#tail tr[data-type=secret_thing]')").await;
    let tail = browser.text("#tail").await;
    assert!(!tail.contains("8642"), "a private payload is never shown: {tail}");

    // Filters.
    browser.type_into("#filter-type", "no_such_type").await;
    let shown = browser.client.execute("return [...document.querySelectorAll('#tail tr.tail-row')].map(r => r.dataset.type)", vec![]).await.unwrap();
    assert_eq!(shown, json!(["no_such_type"]));
    browser.type_into("#filter-type", "").await;
    browser.type_into("#filter-outcome", "OK").await;
    let outcomes = browser.client.execute("return [...new Set([...document.querySelectorAll('#tail tr.tail-row')].map(r => r.dataset.outcome))]", vec![]).await.unwrap();
    assert_eq!(outcomes, json!(["OK"]));
    browser.type_into("#filter-outcome", "").await;
    browser.screenshot("tail").await;

    // Per-type counters.
    show(&browser, "traffic").await;
    browser.wait_for("five echoes counted", PATIENCE, "const c = document.querySelector('tr.type-row[data-type=echo][data-outcome=OK] .total'); return c && c.textContent === '5' || null").await;
    browser.wait_for("the refusal counted", PATIENCE, "return document.querySelector('tr.type-row[data-type=no_such_type][data-outcome=UNKNOWN_TYPE]')").await;
    browser.wait_for("the endpoint's connections", PATIENCE, "const r = document.querySelector('#endpoints tr[data-endpoint=\"/ws\"] td.num'); return r && Number(r.textContent) >= 2 || null").await;
    browser.screenshot("traffic").await;

    // A paused tail takes nothing new; the counters go on.
    show(&browser, "tail").await;
    browser.click("#tail-pause").await;
    client.call("echo", json!({"message": "while-paused"})).await;
    show(&browser, "traffic").await;
    browser.wait_for("the sixth echo counted", PATIENCE, "const c = document.querySelector('tr.type-row[data-type=echo][data-outcome=OK] .total'); return c && c.textContent === '6' || null").await;
    assert!(!browser.text("#tail").await.contains("while-paused"));

    // Plugins, with their charts.
    show(&browser, "plugins").await;
    browser.wait_for("echo's card and charts", PATIENCE, "return document.querySelectorAll('.card.plugin[data-plugin=echo] canvas').length >= 2 || null").await;
    browser.screenshot("plugins").await;

    // Config: a limit changed from the page, and its event on the timeline.
    show(&browser, "config").await;
    browser.type_into("input[data-limit=max_message_bytes]", "32768").await;
    browser.click("#config-save").await;
    browser.wait_for("the change saved", PATIENCE, "return document.getElementById('config-result').textContent.startsWith('saved') || null").await;
    let config: Value = http().get(format!("http://{}/api/config", host.addr)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(config["limits"]["max_message_bytes"], 32768);
    browser.screenshot("config").await;
    show(&browser, "timeline").await;
    let change = browser
        .wait_for("the config change on the timeline", PATIENCE, "const e = document.querySelector('li.timeline-entry[data-event=config_changed]'); return e && e.textContent")
        .await;
    assert!(change.as_str().unwrap().contains("max_message_bytes"), "{change}");
    show(&browser, "deploys").await;
    browser.screenshot("deploys-list").await;

    browser.close().await;
}

/// The feed's rules, without a browser: administrators only, and the same
/// figures through `GET /api/dashboard`.
#[tokio::test]
async fn the_admin_feed_is_for_administrators_and_is_in_the_api() {
    let host = host();
    let base = format!("http://{}", host.addr);
    let mut viewer = viewer_client(&host).await;
    let refused = viewer.call("subscribe", json!({"events": ["dashboard"]})).await;
    assert_eq!(refused["data"]["code"], "FORBIDDEN", "{refused}");
    let response = http().get(format!("{base}/api/dashboard")).bearer_auth(VIEWER).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = http().post(format!("{base}/api/publish/dashboard")).bearer_auth(VIEWER).json(&json!({"fake": true})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let snapshot: Value = http().get(format!("{base}/api/dashboard")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert_eq!(snapshot["plugins"][0]["name"], "echo", "{snapshot}");
    assert_eq!(snapshot["plugins"][0]["version"], "0.1.0");

    let url = format!("ws://{}/ws", host.addr);
    let mut admin = Client::try_connect(&url, &[("authorization", &format!("Bearer {ADMIN}"))]).await.unwrap().acknowledged().await;
    let subscribed = admin.call("subscribe", json!({"events": ["dashboard"]})).await;
    assert!(subscribed["data"]["subscribed"].as_array().is_some(), "{subscribed}");
    viewer.call("echo", json!({"message": "counted"})).await;
    // Snapshots come every interval; the one after the echo counts it and shows it in the tail.
    let event = loop {
        let event = admin.event_on("dashboard").await;
        if event["data"]["messages"]["by_type"].as_array().unwrap().iter().any(|t| t["type"] == "echo") {
            break event;
        }
    };
    let data = &event["data"];
    let echo = data["messages"]["by_type"].as_array().unwrap().iter().find(|t| t["type"] == "echo").unwrap().clone();
    assert_eq!((echo["outcome"].clone(), echo["total"].clone()), (json!("OK"), json!(1)));
    let entry = data["tail"]["entries"].as_array().unwrap().iter().find(|e| e["type"] == "echo").unwrap().clone();
    assert_eq!(entry["payload"], json!({"message": "counted"}).to_string());
    assert_eq!((entry["plugin"].clone(), entry["version"].clone()), (json!("echo"), json!("0.1.0")));
    assert_eq!(data["plugins"][0]["name"], "echo");
    assert!(data["connections"]["by_endpoint"].as_array().unwrap().iter().any(|e| e["endpoint"] == "/ws" && e["connections"] == 2), "{data}");
    // Once someone watches, the API answers with the published snapshot.
    let snapshot: Value = http().get(format!("{base}/api/dashboard")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    assert!(snapshot["messages"]["by_type"].as_array().unwrap().iter().any(|t| t["type"] == "echo"), "{snapshot}");

    // The page and its assets are served to anyone (they hold no secret), with a strict policy.
    let page = http().get(format!("{base}/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(page.text().await.unwrap().contains("uPlot.iife.min.js"));
    let chart = http().get(format!("{base}/dashboard/uPlot.iife.min.js")).send().await.unwrap();
    assert_eq!(chart.headers()["content-type"], "text/javascript; charset=utf-8");
    let missing = http().get(format!("{base}/dashboard/nothing.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_canary_shows_both_versions_side_by_side_and_a_promotion_from_the_page_leaves_one() {
    let host = host_with(MANUAL_CANARY);
    let Some(browser) = logged_in(&host).await else { return };
    start_canary(&host, 50).await;
    let mut client = viewer_client(&host).await;
    for i in 0..40 {
        assert_eq!(client.call("echo", json!({"message": format!("m{i}")})).await["data"], format!("Echo: m{i}"));
    }

    // Both versions on echo's card, each with its own figures and charts.
    let card = ".card.plugin[data-plugin=echo]";
    let figures = browser
        .wait_for(
            "both versions with all 40 calls",
            PATIENCE,
            &format!(
                "const panes = [...document.querySelectorAll('{card} .version-pane')]; \
                 const calls = panes.map(p => Number(p.querySelector('b.calls').textContent)); \
                 return panes.length === 2 && calls[0] + calls[1] === 40 ? \
                   panes.map(p => [p.dataset.role, p.dataset.version, Number(p.querySelector('b.calls').textContent), p.querySelector('.role').textContent, p.querySelectorAll('canvas').length]) : null"
            ),
        )
        .await;
    let panes = figures.as_array().unwrap();
    assert_eq!((panes[0][0].as_str(), panes[0][1].as_str()), (Some("serving"), Some("0.1.0")), "{figures}");
    assert_eq!((panes[1][0].as_str(), panes[1][1].as_str()), (Some("canary"), Some("2.0.0")), "{figures}");
    assert_eq!(panes[1][3], "canary · 50%", "{figures}");
    for pane in panes {
        assert!(pane[2].as_u64().unwrap() > 0, "each version served some of the calls: {figures}");
        assert!(pane[4].as_u64().unwrap() >= 2, "each version has its charts: {figures}");
    }
    // Each version's latency chart has points: its own p50/p99 while it served.
    let charted = run(
        &browser,
        "return [...state.charts.entries()].filter(([id]) => id.startsWith('echo@')).map(([, pane]) => pane.latency.data[1].some(v => v !== null))",
    )
    .await;
    assert_eq!(charted, json!([true, true]), "p50/p99 points for both versions");
    assert_eq!(run(&browser, &format!("return document.querySelector('{card}').classList.contains('split')")).await, json!(true));
    browser.screenshot("plugins-canary").await;

    // Promote from the deploy detail.
    show(&browser, "deploys").await;
    browser.click("tr.deploy-row[data-plugin=echo] button.details").await;
    browser.wait_for("the canary in the versions table", PATIENCE, "return document.querySelector('#versions tr[data-role=canary][data-version=\"2.0.0\"]')").await;
    browser.wait_for("the canary's figures", PATIENCE, "return document.getElementById('canary').textContent.includes('candidate · 50%') || null").await;
    browser.screenshot("deploy-detail").await;
    browser.click("#canary-promote").await;
    let said = browser
        .wait_for("the promotion's answer", PATIENCE, "const t = document.getElementById('deploy-result').textContent; return t.includes('promoted') ? t : null")
        .await;
    assert!(said.as_str().unwrap().contains("canary promoted"), "{said}");
    assert_eq!(serving_version(&host, "echo").await, "2.0.0");

    // One serving version left on the card; the old one is retained.
    show(&browser, "plugins").await;
    let left = browser
        .wait_for(
            "one serving version",
            PATIENCE,
            &format!(
                "const panes = [...document.querySelectorAll('{card} .version-pane')]; \
                 return panes.length === 1 && panes[0].dataset.role === 'serving' ? [panes[0].dataset.version, \
                   [...document.querySelectorAll('{card} .held')].map(h => h.dataset.role + ' ' + h.dataset.version)] : null"
            ),
        )
        .await;
    assert_eq!(left, json!(["2.0.0", ["retained 0.1.0"]]));
    assert_eq!(run(&browser, &format!("return document.querySelector('{card}').classList.contains('split')")).await, json!(false));
    assert_eq!(client.call("echo", json!({"message": "after"})).await["data"], "Echo: after");
    browser.close().await;
}

#[tokio::test]
async fn a_page_opened_after_a_swap_a_canary_and_a_config_change_shows_them() {
    // Through the API only: a file written into the watched folder can be
    // read again by a late watcher event after a rollback has written it back.
    let host = host_with(MANUAL_CANARY);
    let base = format!("http://{}", host.addr);
    let uploaded = http()
        .post(format!("{base}/api/plugins"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/wasm")
        .body(std::fs::read(guest("echo_v2")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED, "{}", uploaded.text().await.unwrap());
    assert_eq!(serving_version(&host, "echo").await, "2.0.0");
    let canary = http().post(format!("{base}/api/plugins/echo/canary")).bearer_auth(ADMIN).json(&json!({"version": "0.1.0", "weight": 10})).send().await.unwrap();
    assert_eq!(canary.status(), StatusCode::CREATED, "{}", canary.text().await.unwrap());
    let ended = http().post(format!("{base}/api/plugins/echo/canary/rollback")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(ended.status(), StatusCode::OK);
    let changed = http().put(format!("{base}/api/config")).bearer_auth(ADMIN).json(&json!({"max_message_bytes": 40000})).send().await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK);

    // The host keeps them, in order, for administrators only.
    let recent: Value = http().get(format!("{base}/api/dashboard/timeline")).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
    let events: Vec<(String, String)> = recent["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["topic"].as_str().unwrap().to_owned(), e["data"]["event"].as_str().unwrap_or("-").to_owned()))
        .collect();
    let expected = [("status", "plugin_swapped"), ("status", "canary_started"), ("status", "canary_rolled_back"), ("config", "-")];
    let tail: Vec<(&str, &str)> = events.iter().rev().take(4).rev().map(|(t, e)| (t.as_str(), e.as_str())).collect();
    assert_eq!(tail, expected, "{recent}");
    let seqs: Vec<u64> = recent["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{recent}");
    let refused = http().get(format!("{base}/api/dashboard/timeline")).bearer_auth(VIEWER).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // A page opened now shows them, newest first.
    let Some(browser) = logged_in(&host).await else { return };
    show(&browser, "timeline").await;
    let entries = browser
        .wait_for(
            "the earlier events on the timeline",
            PATIENCE,
            "const e = [...document.querySelectorAll('li.timeline-entry')].map(li => [li.dataset.event, li.textContent]); return e.length >= 4 ? e : null",
        )
        .await;
    let entries = entries.as_array().unwrap();
    let names: Vec<&str> = entries.iter().take(4).map(|e| e[0].as_str().unwrap()).collect();
    assert_eq!(names, ["config_changed", "canary_rolled_back", "canary_started", "plugin_swapped"], "{entries:?}");
    assert!(entries[0][1].as_str().unwrap().contains("max_message_bytes"), "{entries:?}");
    assert!(entries[2][1].as_str().unwrap().contains("2.0.0 → 0.1.0, 10%"), "{entries:?}");
    assert!(entries[3][1].as_str().unwrap().contains("2.0.0") && entries[3][1].as_str().unwrap().contains("was 0.1.0"), "{entries:?}");

    // A live event is added once, on top of them.
    let changed = http().put(format!("{base}/api/config")).bearer_auth(ADMIN).json(&json!({"max_message_bytes": 50000})).send().await.unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    browser
        .wait_for("the live change", PATIENCE, "const e = document.querySelector('li.timeline-entry'); return e && e.textContent.includes('50000') || null")
        .await;
    let counts = run(
        &browser,
        "const n = (e) => document.querySelectorAll(`li.timeline-entry[data-event=${e}]`).length; \
         return [n('config_changed'), n('plugin_rolled_back'), n('canary_started')]",
    )
    .await;
    assert_eq!(counts, json!([2, 0, 1]), "each event once");
    browser.screenshot("timeline-backfill").await;
    browser.close().await;
}

/// Whether the page is wider than the window, and which visible controls
/// of the shown view (outside a sideways-scrolling table) stick out of it.
const PHONE_CHECK: &str = "const view = document.querySelector('.view:not([hidden])'); \
    const out = [...view.querySelectorAll('button, input, select'), ...document.querySelectorAll('nav button')] \
      .filter(e => e.offsetParent !== null && !e.closest('table')) \
      .filter(e => { const r = e.getBoundingClientRect(); return r.left < 0 || r.right > window.innerWidth + 0.5; }) \
      .map(e => e.id || e.className || e.textContent); \
    return [document.documentElement.scrollWidth <= window.innerWidth, out]";

#[tokio::test]
async fn the_main_views_fit_a_phone_and_their_controls_are_reachable() {
    let host = host_with(MANUAL_CANARY);
    let Some(browser) = Browser::phone(390, 844).await else { return };
    browser.client.goto(&format!("http://{}/dashboard#key={ADMIN}", host.addr)).await.unwrap();
    browser.wait_for("the live feed", PATIENCE, "return document.getElementById('live').textContent === 'live' || null").await;
    let (width, height) = (run(&browser, "return window.innerWidth").await, run(&browser, "return window.innerHeight").await);
    assert_eq!((width.as_i64(), height.as_i64()), (Some(390), Some(844)), "a phone-sized viewport");
    start_canary(&host, 50).await;
    let mut client = viewer_client(&host).await;
    for i in 0..10 {
        client.call("echo", json!({"message": format!("phone-{i}")})).await;
    }

    for view in ["plugins", "timeline", "deploys", "traffic", "tail", "config"] {
        // The nav button is itself a control that must be reachable: WebDriver clicks it as a finger would.
        show(&browser, view).await;
        match view {
            "plugins" => {
                browser.wait_for("both versions", PATIENCE, "return document.querySelectorAll('.version-pane').length === 2 || null").await;
                // Side by side on a wide screen, one above the other here.
                let stacked = run(&browser, "const p = [...document.querySelectorAll('.version-pane')].map(e => e.getBoundingClientRect()); return p[1].top >= p[0].bottom").await;
                assert_eq!(stacked, json!(true));
            }
            "deploys" => {
                browser.click("tr.deploy-row[data-plugin=echo] button.details").await;
                browser.wait_for("the deploy detail", PATIENCE, "return document.querySelector('#versions tr[data-role=canary]')").await;
            }
            "tail" => {
                browser.wait_for("the tail", PATIENCE, "return document.querySelector('#tail tr.tail-row[data-type=echo]')").await;
                browser.click("#tail-pause").await;
                assert_eq!(browser.text("#tail-pause").await, "Resume");
                browser.click("#tail-pause").await;
                browser.type_into("#filter-type", "echo").await;
                browser.type_into("#filter-type", "").await;
            }
            "config" => {
                browser.wait_for("the limits", PATIENCE, "return document.querySelector('input[data-limit=max_message_bytes]')").await;
            }
            _ => {}
        }
        let checked = run(&browser, PHONE_CHECK).await;
        assert_eq!(checked, json!([true, []]), "{view}: [fits the phone's width, controls out of reach]");
        browser.screenshot(&format!("phone-{view}")).await;
    }
    // The deploy detail's controls work from the phone: promote.
    show(&browser, "deploys").await;
    browser.click("#canary-promote").await;
    browser
        .wait_for("the promotion", PATIENCE, "return document.getElementById('deploy-result').textContent.includes('promoted') || null")
        .await;
    assert_eq!(serving_version(&host, "echo").await, "2.0.0");
    browser.close().await;
}

#[tokio::test]
async fn a_shadow_started_from_the_page_shows_its_match_rate_and_a_differing_sample() {
    let toml = format!("debounce_ms = 50\n[[auth.keys]]\nname = \"ops\"\nkey = \"{ADMIN}\"\nadmin = true\n");
    let host = HostProcess::spawn(&["mirror"], &toml);
    let Some(browser) = logged_in(&host).await else { return };
    show(&browser, "deploys").await;
    browser.wait_for("the plugin's row", PATIENCE, "return document.querySelector('tr.deploy-row[data-plugin=mirror]')").await;
    browser.click("tr.deploy-row[data-plugin=mirror] button.details").await;
    let input = browser.client.find(fantoccini::Locator::Css("#shadow-file")).await.unwrap();
    input.send_keys(guest("mirror_v2").to_str().unwrap()).await.unwrap();
    browser.type_into("#shadow-ignore", "/data/served").await;
    browser.click("#shadow-start").await;
    browser.wait_for("the shadow running", PATIENCE, "return document.getElementById('shadow').textContent.includes('compared') || null").await;

    let mut client = Client::connect(&format!("ws://{}/ws", host.addr)).await;
    for n in 0..5 {
        assert_eq!(client.call("mirror.echo", json!({"text": "hi"})).await["meta"]["plugin_version"], "1.0.0");
        assert_eq!(client.call("mirror.add", json!({"a": n, "b": 1})).await["data"]["sum"], n + 1);
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        let shadow: Value =
            http().get(format!("http://{}/api/plugins/mirror/shadow", host.addr)).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        if shadow["compared"].as_u64().unwrap() + shadow["dropped"].as_u64().unwrap() == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "copies still pending: {shadow}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    browser.click("tr.deploy-row[data-plugin=mirror] button.details").await;
    let panel = browser
        .wait_for("the comparison", PATIENCE, "const t = document.getElementById('shadow').textContent; return t.includes('compared 10') ? t : null")
        .await;
    let panel = panel.as_str().unwrap();
    assert!(panel.contains("match rate 0.500"), "{panel}");
    assert!(panel.contains("mirror.add") && panel.contains("/data/sum") && !panel.contains("/data/served"), "{panel}");
    browser.screenshot("deploys-shadow").await;
    browser.click("#shadow-stop").await;
    browser.wait_for("the shadow stopped", PATIENCE, "return document.getElementById('shadow').textContent.includes('no shadow running') || null").await;
    let status = http().get(format!("http://{}/api/plugins/mirror/shadow", host.addr)).bearer_auth(ADMIN).send().await.unwrap().status();
    assert_eq!(status, StatusCode::NOT_FOUND);
    browser.close().await;
}
