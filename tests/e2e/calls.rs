//! Calls to clients: a plugin (the `caller` fixture, contract 0.3.0), the
//! HTTP API and the console ask a connected client and get its answer, in
//! the dialect that client speaks, with the failures a caller must be able
//! to tell apart.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use switchyard::config::ApiKeyConfig;
use switchyard::Config;
use switchyard_client::{calls, ConnectionState};
use switchyard_tests::{metric_at, python_with_websockets, workspace_root, Client, Host};
use tokio::io::{AsyncBufReadExt, BufReader};

const ADMIN: &str = "admin-key-0123456789abcdef";

fn with_admin(config: &mut Config) {
    config.auth.keys = vec![ApiKeyConfig::admin("ops", ADMIN)];
}

/// Ask `connection` for `action` through the `caller` plugin; the reply frame.
async fn ask(asker: &mut Client, connection: &str, action: &str, params: Value, timeout_ms: u32) -> Value {
    asker.call("caller.ask", json!({"connection": connection, "action": action, "params": params, "timeout_ms": timeout_ms})).await
}

fn code(reply: &Value) -> &str {
    assert_eq!(reply["type"], "error", "expected an error: {reply}");
    reply["data"]["code"].as_str().unwrap_or_default()
}

/// A Rust client-SDK client answering `get_time` and (refusing)
/// `execute_command`; its connection id.
async fn rust_client(host: &Host, client_id: &str) -> (switchyard_client::Client, String) {
    let client = switchyard_client::Client::connect(&format!("{}?client_id={client_id}", host.url())).await.unwrap();
    client.answer("get_time", calls::get_time);
    client.answer("execute_command", calls::execute_command);
    let mut states = client.watch_state();
    let id = loop {
        if let ConnectionState::Connected { connection_id: Some(id) } = &*states.borrow_and_update() {
            break id.clone();
        }
        states.changed().await.unwrap();
    };
    (client, id)
}

/// The metric line `name` of `/metrics`, as a number.
async fn metric(host: &Host, name: &str) -> f64 {
    let (value, page) = metric_at(&host.http("/metrics"), name).await;
    value.unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

#[tokio::test]
async fn a_plugin_calls_a_python_client_that_answers_in_the_request_form() {
    let python = python_with_websockets();
    let host = Host::start(&["caller"]).await;
    let mut command = tokio::process::Command::from(python);
    command.arg(workspace_root().join("tests/clients/answer.py")).arg(host.url());
    let mut child = command.stdout(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap().unwrap();
    let python_id = serde_json::from_str::<Value>(&first).unwrap()["connection_id"].as_str().unwrap().to_owned();

    let mut asker = host.connect().await;
    let reply = ask(&mut asker, &python_id, "get_time", json!({"tz": "UTC"}), 5_000).await;
    assert_eq!(reply["type"], "reply", "{reply}");
    let answer = &reply["data"]["answer"];
    assert!(answer["time"].as_f64().unwrap() > 0.0, "{answer}");
    // The request went out in the client's own form.
    let seen = &answer["seen"];
    assert_eq!((seen["type"].as_str(), seen["data"]["action"].as_str()), (Some("request"), Some("get_time")), "{seen}");
    assert_eq!(seen["data"]["params"], json!({"tz": "UTC"}));
    assert!(seen["msg_id"].as_str().is_some_and(|id| !id.is_empty()), "{seen}");

    // The client's own error reaches the plugin, which hands it on.
    let failed = ask(&mut asker, &python_id, "fail", json!({}), 5_000).await;
    assert_eq!((code(&failed), failed["data"]["message"].as_str()), ("DISK_FULL", Some("disk full")));
    let unknown = ask(&mut asker, &python_id, "reboot", json!({}), 5_000).await;
    assert_eq!(code(&unknown), "UNKNOWN_ACTION");

    assert_eq!(metric(&host, "switchyard_client_calls_answered_total").await, 3.0);
    assert_eq!(metric(&host, "switchyard_client_calls_waiting").await, 0.0);
    drop(child);
    host.shutdown().await;
}

#[tokio::test]
async fn a_plugin_calls_a_rust_sdk_client_that_answers_in_the_canonical_form() {
    let host = Host::start(&["caller"]).await;
    let (client, id) = rust_client(&host, "sdk-1").await;
    let mut asker = host.connect().await;

    let reply = ask(&mut asker, &id, "get_time", json!({}), 5_000).await;
    assert!(reply["data"]["answer"]["unix_ms"].as_u64().unwrap() > 1_700_000_000_000, "{reply}");
    let refused = ask(&mut asker, &id, "execute_command", json!({"command": "rm", "args": ["-rf", "/"]}), 5_000).await;
    assert_eq!(code(&refused), "COMMAND_REFUSED");
    let unknown = ask(&mut asker, &id, "get_weather", json!({}), 5_000).await;
    assert_eq!(code(&unknown), "UNKNOWN_ACTION", "a call with no handler is answered, not left to time out");

    let nobody = ask(&mut asker, "no-such-connection", "get_time", json!({}), 5_000).await;
    assert_eq!(code(&nobody), "NOT_FOUND");
    client.close().await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_plugin_may_call_the_client_whose_message_it_is_answering() {
    let host = Host::start(&["caller"]).await;
    let mut client = host.connect().await;
    client.send_text(&json!({"type": "caller.ask_me", "id": "q1", "data": {"action": "confirm", "params": {"n": 1}}}).to_string()).await;
    // The host's request comes while this client's own request waits.
    let call = client.recv_frame().await;
    assert_eq!((call["type"].as_str(), &call["data"]), (Some("confirm"), &json!({"n": 1})), "{call}");
    let call_id = call["id"].as_str().unwrap();
    assert!(call_id.starts_with("call-"), "{call}");
    client.send_text(&json!({"type": "reply", "id": call_id, "data": {"confirmed": true}}).to_string()).await;
    let reply = client.reply().await;
    assert_eq!((reply["id"].as_str(), &reply["data"]["answer"]), (Some("q1"), &json!({"confirmed": true})), "{reply}");
    host.shutdown().await;
}

#[tokio::test]
async fn a_client_that_leaves_while_a_plugin_calls_it_about_its_own_message_ends_the_call_at_once() {
    let host = Host::start_with(&["caller"], |config| config.plugins.deadline_ms = 60_000).await;
    let mut client = host.connect().await;
    let ask = json!({"action": "confirm", "timeout_ms": 50_000});
    client.send_text(&json!({"type": "caller.ask_me", "id": "q", "data": ask}).to_string()).await;
    assert_eq!(client.recv_frame().await["type"], "confirm");
    client.close().await;
    // The call ends as the client goes, long before its 50 s timeout.
    let ended = async {
        while metric(&host, "switchyard_client_calls_disconnected_total").await < 1.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(switchyard_tests::PATIENCE, ended).await.expect("the call ends with the client");
    assert_eq!(metric(&host, "switchyard_client_calls_waiting").await, 0.0);
    host.shutdown().await;
}

#[tokio::test]
async fn a_call_that_gets_no_answer_in_time_fails_with_client_timeout() {
    let host = Host::start(&["caller"]).await;
    let mut silent = host.connect().await;
    let silent_id = silent.connection_id().to_owned();
    let mut asker = host.connect().await;
    let reply = ask(&mut asker, &silent_id, "get_time", json!({}), 200).await;
    assert_eq!(code(&reply), "CLIENT_TIMEOUT");
    // The request did reach the client; its late answer is dropped, not routed.
    let call = silent.recv_frame().await;
    silent.send_text(&json!({"type": "reply", "id": call["id"], "data": 1}).to_string()).await;
    silent.assert_quiet(Duration::from_millis(300)).await;
    assert_eq!(metric(&host, "switchyard_client_calls_timed_out_total").await, 1.0);
    assert_eq!(metric(&host, "switchyard_client_answers_unmatched_total").await, 1.0);
    assert_eq!(silent.call("ping", json!({})).await["type"], "pong", "the client's connection is fine");
    host.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_answers_does_not_hold_the_plugin_past_its_deadline() {
    let host = Host::start_with(&["caller"], |config| {
        config.plugins.deadline_ms = 1_000;
        config.plugins.max_instances = 2;
    })
    .await;
    let mut silent = host.connect().await;
    let silent_id = silent.connection_id().to_owned();
    let mut waiting = host.connect().await;
    let ask = json!({"connection": silent_id, "action": "get_time", "timeout_ms": 60_000});
    waiting.send_text(&json!({"type": "caller.ask", "id": "w", "data": ask}).to_string()).await;
    // The call is out: the plugin's instance waits on the client...
    assert_eq!(silent.recv_frame().await["type"], "get_time");
    // ...and other calls to the same plugin are served meanwhile.
    let mut other = host.connect().await;
    let echo = other.call("caller.echo", json!({"still": "served"})).await;
    assert_eq!(echo["data"], json!({"still": "served"}), "{echo}");
    // The wait ends with the plugin's deadline, not the call's 60 s.
    let ended = waiting.reply().await;
    assert!(["CLIENT_TIMEOUT", "PLUGIN_TIMEOUT"].contains(&code(&ended)), "{ended}");
    assert_eq!(metric(&host, "switchyard_client_calls_waiting").await, 0.0);
    // And the plugin serves the next call.
    assert_eq!(other.call("caller.echo", json!(2)).await["data"], json!(2));
    host.shutdown().await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_call_fails_the_call_with_client_disconnected() {
    let host = Host::start(&["caller"]).await;
    let mut leaving = host.connect().await;
    let leaving_id = leaving.connection_id().to_owned();
    let mut asker = host.connect().await;
    let ask = json!({"connection": leaving_id, "action": "get_time", "timeout_ms": 10_000});
    asker.send_text(&json!({"type": "caller.ask", "id": "d", "data": ask}).to_string()).await;
    assert_eq!(leaving.recv_frame().await["type"], "get_time");
    leaving.close().await;
    let reply = asker.reply().await;
    assert_eq!(code(&reply), "CLIENT_DISCONNECTED");
    assert_eq!(metric(&host, "switchyard_client_calls_disconnected_total").await, 1.0);
    host.shutdown().await;
}

#[tokio::test]
async fn a_client_with_too_many_calls_waiting_is_busy() {
    let host = Host::start_with(&["caller"], |config| config.limits.max_client_calls = 1).await;
    let mut target = host.connect().await;
    let target_id = target.connection_id().to_owned();
    let mut first = host.connect().await;
    let ask_it = json!({"connection": target_id, "action": "slow", "timeout_ms": 10_000});
    first.send_text(&json!({"type": "caller.ask", "id": "1", "data": ask_it}).to_string()).await;
    let call = target.recv_frame().await;

    let mut second = host.connect().await;
    let busy = ask(&mut second, &target_id, "slow", json!({}), 10_000).await;
    assert_eq!(code(&busy), "CLIENT_BUSY");
    // An error answer in the canonical form is the client's own failure.
    target.send_text(&json!({"type": "error", "id": call["id"], "data": {"code": "TOO_SLOW", "message": "later"}}).to_string()).await;
    assert_eq!(code(&first.reply().await), "TOO_SLOW");
    // The place is given back.
    let again = ask(&mut second, &target_id, "slow", json!({}), 10_000);
    let answer = async {
        let call = target.recv_frame().await;
        target.send_text(&json!({"type": "reply", "id": call["id"], "data": "done"}).to_string()).await;
    };
    let (again, ()) = tokio::join!(again, answer);
    assert_eq!(again["data"]["answer"], "done", "{again}");
    assert_eq!(metric(&host, "switchyard_client_calls_busy_total").await, 1.0);
    host.shutdown().await;
}

#[tokio::test]
async fn the_http_api_calls_a_live_client() {
    let host = Host::start_with(&[], with_admin).await;
    let (client, id) = rust_client(&host, "kiosk-4").await;
    let http = reqwest::Client::new();
    let call = |id: &str, body: Value| http.post(host.http(&format!("/api/connections/{id}/call"))).bearer_auth(ADMIN).json(&body).send();

    let response = call(&id, json!({"action": "get_time"})).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["connection_id"].as_str(), body["action"].as_str()), (Some(id.as_str()), Some("get_time")));
    assert!(body["data"]["unix_ms"].as_u64().unwrap() > 0, "{body}");

    let refused = call(&id, json!({"action": "execute_command", "params": {"command": "ls"}})).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "a client's own code is a 422, like a plugin's");
    assert_eq!(refused.json::<Value>().await.unwrap()["data"]["code"], "COMMAND_REFUSED");

    let missing = call("nope", json!({"action": "get_time"})).await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<Value>().await.unwrap()["data"]["code"], "NOT_FOUND");

    let silent = host.connect().await;
    let timed_out = call(silent.connection_id(), json!({"action": "get_time", "timeout_ms": 100})).await.unwrap();
    assert_eq!(timed_out.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(timed_out.json::<Value>().await.unwrap()["data"]["code"], "CLIENT_TIMEOUT");

    let bad = call(&id, json!({"params": {}})).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let anonymous = http.post(host.http(&format!("/api/connections/{id}/call"))).json(&json!({"action": "get_time"})).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    client.close().await;
    host.shutdown().await;
}

#[tokio::test]
async fn plugins_of_every_contract_load_and_serve_side_by_side() {
    let host = Host::start(&["legacy-echo", "hooks-v2", "caller"]).await;
    let plugins = host.server().registry().plugins();
    let contract = |name: &str| {
        let plugin = plugins.iter().find(|p| p.name() == name).unwrap_or_else(|| panic!("{name} loaded"));
        (plugin.contract, plugin.has_hooks(), plugin.has_frames(), plugin.has_migration())
    };
    assert_eq!(contract("legacy-echo"), ("0.1.0", false, false, false));
    assert_eq!(contract("hooks-v2"), ("0.2.0", true, false, false));
    // The Rust SDK builds the whole 0.3 world, with defaults.
    assert_eq!(contract("caller"), ("0.3.0", true, true, true));

    let mut client = host.connect().await;
    assert_eq!(client.call("legacy_echo", json!({"n": 1})).await["data"]["legacy"], json!({"n": 1}));
    let v2 = client.call("hooks_v2", json!({"n": 2})).await;
    assert_eq!((v2["data"]["contract"].as_str(), &v2["data"]["last"]), (Some("0.2.0"), &json!({"n": 2})), "{v2}");
    assert_eq!(client.call("caller.echo", json!({"n": 3})).await["data"], json!({"n": 3}));
    host.shutdown().await;
}
