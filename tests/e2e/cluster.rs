//! Three host processes as one cluster over a real NATS server on
//! loopback: the room protocol across nodes, topics with subscribers on
//! every node, direct sends by device id, `kill -9` of a node, and a NATS
//! restart in mid-run.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_tests::nats::NatsServer;
use switchyard_tests::{Client, HostProcess};

/// The operator's key, for the connection lists.
const ADMIN: &str = "cluster-test-admin-key";

/// One host of the cluster, named `node`.
fn node(nats: &NatsServer, node: &str) -> HostProcess {
    let toml = format!(
        "[cluster]\nurls = [{:?}]\nnode = {node:?}\nname = \"test\"\nheartbeat_ms = 200\nnode_ttl_ms = 1500\n\
         [[auth.keys]]\nname = \"ops\"\nkey = {ADMIN:?}\nadmin = true\n",
        nats.url
    );
    HostProcess::spawn(&["rooms", "publisher"], &toml)
}

fn ws(host: &HostProcess, path: &str) -> String {
    format!("ws://{}{path}", host.addr)
}

async fn get(host: &HostProcess, path: &str) -> Value {
    let url = format!("http://{}{path}", host.addr);
    let request = reqwest::Client::new().get(&url).bearer_auth(ADMIN);
    request.send().await.expect("GET").json().await.expect("JSON body")
}

/// Wait (at most 20 s) until `check` holds on `host`'s `path`.
async fn until(host: &HostProcess, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = get(host, path).await;
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: still {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ids of the connections in `room`, cluster-wide, as `host` lists them.
fn in_room(connections: &Value, room: &str) -> usize {
    connections["connections"].as_array().map_or(0, |list| list.iter().filter(|c| c["room"] == room).count())
}

/// How many connections, cluster-wide, hold a subscription to `pattern`.
fn subscribed_to(connections: &Value, pattern: &str) -> usize {
    let holds = |c: &&Value| c["subscriptions"].as_array().is_some_and(|s| s.iter().any(|p| p == pattern));
    connections["connections"].as_array().map_or(0, |list| list.iter().filter(holds).count())
}

async fn device(host: &HostProcess, identify: Value) -> (Client, Vec<Value>) {
    let mut client = Client::connect_without_ack(&ws(host, "/rooms")).await;
    client.send_text(&identify.to_string()).await;
    let frames = vec![client.recv_frame().await, client.recv_frame().await];
    (client, frames)
}

#[tokio::test]
async fn the_room_protocol_across_three_nodes_and_a_node_killed() {
    let nats = NatsServer::start();
    let (n1, n2, mut n3) = (node(&nats, "n1"), node(&nats, "n2"), Some(node(&nats, "n3")));
    let host3 = n3.as_ref().unwrap();
    until(&n1, "/api/status", "n1 sees the two others", |s| s["cluster"]["nodes"].as_array().is_some_and(|n| n.len() == 3)).await;

    let (mut a, frames) = device(&n1, json!({"device_id": "device_a", "identity": "mobile_user"})).await;
    assert_eq!(frames[0], json!({"type": "connection", "message": "Connected successfully"}));
    assert_eq!(frames[1]["status"], "created_new");
    let room = frames[1]["room_id"].as_str().unwrap().to_owned();
    // The room was created on n1; n2 and n3 know it (shared key-value state).
    let (mut b, frames) = device(&n2, json!({"device_id": "device_b", "identity": "tablet", "room_id": room})).await;
    assert_eq!(frames[1], json!({"type": "room", "room_id": room, "status": "joined_existing"}));
    let (mut c, frames) = device(host3, json!({"device_id": "device_c", "identity": "tv", "room_id": room})).await;
    assert_eq!(frames[1]["status"], "joined_existing");
    let mut watcher = Client::connect(&ws(&n2, "/ws")).await;
    watcher.call("subscribe", json!({"events": ["presence.*"]})).await;
    for host in [&n1, &n2, host3] {
        until(host, "/api/connections", "every node sees the three members", |c| in_room(c, &room) == 3).await;
    }

    // Broadcast from n1 reaches n2 and n3, not the sender.
    a.send_text(r#"{"type":"message","content":"hello all","timestamp":"2025-04-25T13:51:00Z"}"#).await;
    for other in [&mut b, &mut c] {
        assert_eq!(
            other.recv_frame().await,
            json!({"type": "message", "content": "hello all", "from_device_id": "device_a", "message_type": "broadcast", "timestamp": "2025-04-25T13:51:00Z"})
        );
    }
    // A direct message by device id, n2 to n3, reaches that device only.
    b.send_text(r#"{"type":"message","content":"psst","target_device_id":"device_c","timestamp":"t1"}"#).await;
    let direct = c.recv_frame().await;
    assert_eq!((direct["message_type"].as_str(), direct["from_device_id"].as_str(), direct["content"].as_str()), (Some("direct"), Some("device_b"), Some("psst")));
    a.assert_quiet(Duration::from_millis(300)).await;

    // query_room on n1 lists the members of every node.
    a.send_text(r#"{"type":"query_room"}"#).await;
    let info = a.recv_frame().await;
    assert_eq!((info["type"].as_str(), info["total_clients"].as_u64()), (Some("room_info"), Some(3)), "{info}");
    let mut devices: Vec<&str> = info["clients"].as_array().unwrap().iter().map(|c| c["device_id"].as_str().unwrap()).collect();
    devices.sort();
    assert_eq!(devices, ["device_b", "device_c"]);

    // /api/status and the connection list show the cluster, each entry with its node.
    let connections = get(&n2, "/api/connections").await;
    let c_entry = connections["connections"].as_array().unwrap().iter().find(|e| e["device_id"] == "device_c").cloned().unwrap();
    assert_eq!(c_entry["node"], "n3");
    let status = get(&n1, "/api/status").await;
    assert_eq!(status["cluster"]["node"], "n1");
    assert!(status["rooms"].as_array().unwrap().iter().any(|r| r["name"] == room && r["members"] == 3), "{status}");

    // kill -9 of n3: within the TTL its member leaves every room, with a leave event.
    drop(n3.take());
    let leave = loop {
        let event = watcher.event().await;
        if event["data"]["event"] == "leave" {
            break event;
        }
    };
    assert_eq!(leave["meta"]["topic"], format!("presence.{room}"));
    assert_eq!(leave["data"]["device_id"], "device_c", "{leave}");
    until(&n1, "/api/connections", "n1 forgets n3's member", |c| in_room(c, &room) == 2).await;
    a.send_text(r#"{"type":"query_room"}"#).await;
    let info = a.recv_frame().await;
    assert_eq!(info["total_clients"], 2, "{info}");
    // Nothing else is disturbed: n1 and n2 still talk.
    b.send_text(r#"{"type":"message","content":"still here"}"#).await;
    assert_eq!(a.recv_frame().await["content"], "still here");
}

#[tokio::test]
async fn a_topic_with_subscribers_on_all_three_nodes_and_a_nats_restart() {
    let mut nats = NatsServer::start();
    let nodes = [node(&nats, "t1"), node(&nats, "t2"), node(&nats, "t3")];
    let mut watchers = Vec::new();
    for host in &nodes {
        let mut watcher = Client::connect(&ws(host, "/ws")).await;
        let reply = watcher.call("subscribe", json!({"events": ["alert.*"], "filters": {"level": ["critical"]}})).await;
        assert_eq!(reply["data"]["subscriptions"], json!(["alert.*"]));
        watchers.push(watcher);
    }
    // A node forwards a topic once it has heard that another node subscribes to it.
    until(&nodes[1], "/api/connections", "t2 knows every node's subscriber", |c| subscribed_to(c, "alert.*") == 3).await;
    let mut producer = Client::connect(&ws(&nodes[1], "/ws")).await;
    producer.call("pub.publish", json!({"topic": "alert.cpu", "data": {"level": "info"}})).await;
    producer.call("pub.publish", json!({"topic": "alert.cpu", "data": {"level": "critical"}})).await;
    for watcher in &mut watchers {
        let event = watcher.event().await;
        assert_eq!((event["meta"]["topic"].as_str(), event["data"]["level"].as_str()), (Some("alert.cpu"), Some("critical")), "{event}");
    }

    // NATS goes away: each node keeps serving its own connections and
    // counts what it could not forward.
    nats.stop();
    until(&nodes[1], "/api/status", "t2 notices NATS is gone", |s| s["cluster"]["nats"] != "connected").await;
    producer.call("pub.publish", json!({"topic": "alert.disk", "data": {"level": "critical"}})).await;
    assert_eq!(watchers[1].event().await["meta"]["topic"], "alert.disk", "local delivery goes on");
    let status = get(&nodes[1], "/api/status").await;
    assert!(status["cluster"]["unforwarded"].as_u64().unwrap() >= 1, "{status}");
    let metrics = reqwest::get(format!("http://{}/metrics", nodes[1].addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("switchyard_cluster_unforwarded_total ") && !l.ends_with(" 0")), "{metrics}");

    // NATS is back: the nodes reconnect by themselves and deliver across again.
    nats.run();
    for host in &nodes {
        until(host, "/api/status", "the node reconnects", |s| s["cluster"]["nats"] == "connected").await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    'recovered: loop {
        assert!(Instant::now() < deadline, "no delivery across nodes after NATS came back");
        producer.call("pub.publish", json!({"topic": "alert.net", "data": {"level": "critical"}})).await;
        let wait = tokio::time::timeout(Duration::from_millis(500), watchers[0].event()).await;
        if let Ok(event) = wait {
            if event["meta"]["topic"] == "alert.net" {
                break 'recovered;
            }
        }
    }
}

#[tokio::test]
async fn the_client_sdk_fails_over_to_a_live_node_and_restores_its_subscriptions_and_room() {
    use switchyard_client::{Client as SdkClient, ClientConfig, ReconnectPolicy};
    let nats = NatsServer::start();
    let (c1, c2, mut c3) = (node(&nats, "c1"), node(&nats, "c2"), Some(node(&nats, "c3")));
    let (mut owner, frames) = device(&c2, json!({"device_id": "owner"})).await;
    let room = frames[1]["room_id"].as_str().unwrap().to_owned();

    let config = ClientConfig {
        reconnect: ReconnectPolicy { initial_backoff: Duration::from_millis(50), max_backoff: Duration::from_millis(200), ..ReconnectPolicy::default() },
        ..ClientConfig::default()
    };
    let (first, second) = (ws(c3.as_ref().unwrap(), "/ws"), ws(&c1, "/ws"));
    let client = SdkClient::connect_any(&[&first, &second], config).await.expect("connects to c3");
    assert_eq!(client.url(), first);
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    client.on("alert", move |event| drop(events_tx.send(event.clone())));
    let (direct_tx, mut directs) = tokio::sync::mpsc::unbounded_channel();
    client.on("message", move |message| drop(direct_tx.send(message.clone())));
    client.subscribe(["alert.*"], json!({})).await.unwrap();
    client.remember("identify", "rooms.identify", json!({"device_id": "roamer", "room_id": room})).await.unwrap();
    until(&c2, "/api/connections", "c2 sees the roamer in the room", |c| in_room(c, &room) == 2).await;

    drop(c3.take());
    // The roamer is back in the room, from c1, and its subscription holds there.
    // (c3's old connection leaves with c3, within its TTL.)
    until(&c2, "/api/connections", "the roamer rejoins from c1", |c| {
        in_room(c, &room) == 2
            && c["connections"].as_array().unwrap().iter().any(|e| e["device_id"] == "roamer" && e["node"] == "c1" && e["room"] == room.as_str())
            && subscribed_to(c, "alert.*") == 1
    })
    .await;
    assert_eq!(client.url(), second);
    owner.send_text(r#"{"type":"message","content":"found you","target_device_id":"roamer"}"#).await;
    let direct = tokio::time::timeout(Duration::from_secs(10), directs.recv()).await.expect("the direct message arrives").unwrap();
    assert_eq!((direct["content"].as_str(), direct["from_device_id"].as_str()), (Some("found you"), Some("owner")), "{direct}");
    let mut publisher = Client::connect(&ws(&c2, "/ws")).await;
    publisher.call("pub.publish", json!({"topic": "alert.mem", "data": {"level": "critical"}})).await;
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("the event arrives").unwrap();
    assert_eq!(event["meta"]["topic"], "alert.mem");
    client.close().await;
}

#[tokio::test]
async fn a_worker_on_node_1_serves_requests_from_node_3() {
    use switchyard_client::{Worker, WorkerConfig};
    let nats = NatsServer::start();
    let cluster = |name: &str| format!("[cluster]\nurls = [{:?}]\nnode = {name:?}\nname = \"work\"\nheartbeat_ms = 200\nnode_ttl_ms = 1500\n[workers]\ntimeout_ms = 1000\n[[workers.types]]\ntype = \"job\"\n[[workers.types]]\ntype = \"slow\"\n", nats.url);
    let endpoints = "[[endpoints]]\npath = \"/ws\"\n[[endpoints]]\npath = \"/workers\"\nrole = \"workers\"\n";
    let w1 = HostProcess::spawn(&[], &format!("{}{endpoints}", cluster("w1")));
    let (_w2, w3) = (HostProcess::spawn(&[], &cluster("w2")), HostProcess::spawn(&[], &cluster("w3")));

    let worker = Worker::connect(ws(&w1, "/workers"))
        .worker_id("far-worker")
        .concurrency(4)
        .config(WorkerConfig { heartbeat_interval: Duration::from_millis(500), ..WorkerConfig::default() })
        .handle("job", |params| async move { Ok(json!({ "done": params })) })
        .handle("slow", |_| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(json!("late"))
        })
        .spawn()
        .unwrap();
    let mut client = Client::connect(&ws(&w3, "/ws")).await;
    // Once n3 has heard of n1's worker (its next heartbeat), n1's worker answers n3's clients.
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let reply = client.call("job", json!({"n": 7})).await;
        if reply["data"]["code"] != "NO_AVAILABLE_WORKERS" {
            break reply;
        }
        assert!(Instant::now() < deadline, "n3 never used n1's worker: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(reply["data"], json!({"done": {"n": 7}}));
    assert_eq!(reply["meta"]["plugin"], "far-worker", "{reply}");

    // The same timeout code as on one host.
    let reply = client.call("slow", json!({})).await;
    assert_eq!((reply["data"]["code"].as_str(), reply["data"]["message"].as_str()), (Some("WORKER_TIMEOUT"), Some("Worker response timeout")), "{reply}");

    // The worker leaves: n3 answers NO_AVAILABLE_WORKERS, as one host would.
    worker.shutdown().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = client.call("job", json!({})).await;
        if reply["data"]["code"] == "NO_AVAILABLE_WORKERS" {
            break;
        }
        assert!(Instant::now() < deadline, "n3 still reaches a worker: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Upload `guest`'s component to `host` (`POST /api/plugins`): the status.
async fn upload(host: &HostProcess, guest: &str) -> (u16, Value) {
    let bytes = std::fs::read(switchyard_tests::guest(guest)).expect("guest component");
    let url = format!("http://{}/api/plugins", host.addr);
    let response = reqwest::Client::new().post(&url).bearer_auth(ADMIN).body(bytes).send().await.expect("POST");
    (response.status().as_u16(), response.json().await.expect("JSON body"))
}

/// Call `kind` on `host` until its reply comes from `version` (at most 20 s).
async fn served_by(host: &HostProcess, kind: &str, data: Value, version: &str) -> Value {
    let mut client = Client::connect(&ws(host, "/ws")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = client.call(kind, data.clone()).await;
        if reply["meta"]["plugin_version"] == version {
            return reply;
        }
        assert!(Instant::now() < deadline, "{} never served {kind} from {version}: {reply}", host.addr);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `node`'s line in a `/api/status` body.
fn node_status<'a>(status: &'a Value, node: &str) -> &'a Value {
    status["cluster"]["nodes"].as_array().and_then(|nodes| nodes.iter().find(|n| n["node"] == node)).unwrap_or(&Value::Null)
}

/// The version and hash `node` serves `plugin` from, as `status` says.
fn serves(status: &Value, node: &str, plugin: &str) -> Option<(String, String)> {
    let plugins = node_status(status, node)["plugins"].as_array()?;
    let entry = plugins.iter().find(|p| p["plugin"] == plugin)?;
    Some((entry["version"].as_str()?.to_owned(), entry["hash"].as_str()?.to_owned()))
}

#[tokio::test]
async fn a_plugin_uploaded_on_node_2_serves_on_all_three_and_a_node_that_refuses_it_keeps_its_version() {
    let nats = NatsServer::start();
    let cluster = |name: &str| {
        format!(
            "[cluster]\nurls = [{:?}]\nnode = {name:?}\nname = \"deploy\"\nheartbeat_ms = 200\nnode_ttl_ms = 1500\n\
             [[auth.keys]]\nname = \"ops\"\nkey = {ADMIN:?}\nadmin = true\n",
            nats.url
        )
    };
    // d3 alone serves `stateful` 1.0.0: the broken 2.0.1's migrate fails there only.
    let (d1, d2, d3) = (HostProcess::spawn(&["echo"], &cluster("d1")), HostProcess::spawn(&["echo"], &cluster("d2")), HostProcess::spawn(&["echo", "stateful"], &cluster("d3")));
    until(&d1, "/api/status", "d1 sees the two others", |s| s["cluster"]["nodes"].as_array().is_some_and(|n| n.len() == 3)).await;
    let mut status_events = Client::connect(&ws(&d1, "/ws")).await;
    status_events.call("subscribe", json!({"events": ["status"]})).await;

    // echo 2.0.0, uploaded on d2, serves on d1 and d3.
    let (code, body) = upload(&d2, "echo-v2").await;
    assert_eq!(code, 201, "{body}");
    let hash = body["plugin"]["hash"].as_str().map(str::to_owned);
    for host in [&d1, &d3] {
        let reply = served_by(host, "echo", json!({"message": "hi"}), "2.0.0").await;
        assert_eq!(reply["type"], "reply", "{reply}");
    }
    // /api/status, on any node, says which version and hash each node serves.
    let status = until(&d3, "/api/status", "every node reports echo 2.0.0", |s| {
        ["d1", "d2", "d3"].iter().all(|n| serves(s, n, "echo").is_some_and(|(v, _)| v == "2.0.0"))
    })
    .await;
    let hashes: Vec<String> = ["d1", "d2", "d3"].iter().map(|n| serves(&status, n, "echo").unwrap().1).collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "one component everywhere: {status}");
    if let Some(hash) = hash {
        assert_eq!(hashes[0], hash, "{body}");
    }

    // stateful 2.0.1, uploaded on d2 (which serves no stateful: no migrate),
    // loads on d1; d3's migrate from 1.0.0 fails: d3 refuses it, says so,
    // and keeps serving 1.0.0.
    let (code, body) = upload(&d2, "stateful-v2-broken").await;
    assert_eq!(code, 201, "{body}");
    served_by(&d1, "state.ping", json!({}), "2.0.1").await;
    let refused = loop {
        let event = status_events.event().await;
        if event["data"]["event"] == "deploy_rejected" {
            break event;
        }
    };
    assert_eq!((refused["data"]["node"].as_str(), refused["data"]["plugin"].as_str()), (Some("d3"), Some("stateful")), "{refused}");
    assert_eq!((refused["data"]["error"]["code"].as_str(), refused["data"]["serving"].as_str()), (Some("MIGRATION_FAILED"), Some("1.0.0")), "{refused}");
    let reply = Client::connect(&ws(&d3, "/ws")).await.call("state.ping", json!({})).await;
    assert_eq!((reply["meta"]["plugin_version"].as_str(), reply["data"]["pong"].as_str()), (Some("1.0.0"), Some("1.0.0")), "{reply}");
    let status = until(&d1, "/api/status", "d1 sees d3's refusal", |s| node_status(s, "d3")["rejected"].as_array().is_some_and(|r| !r.is_empty())).await;
    let rejected = &node_status(&status, "d3")["rejected"][0];
    assert_eq!((rejected["plugin"].as_str(), rejected["version"].as_str(), rejected["code"].as_str()), (Some("stateful"), Some("2.0.1"), Some("MIGRATION_FAILED")), "{status}");
    assert_eq!(serves(&status, "d3", "stateful").map(|(v, _)| v).as_deref(), Some("1.0.0"), "{status}");
    assert_eq!(serves(&status, "d1", "stateful").map(|(v, _)| v).as_deref(), Some("2.0.1"), "{status}");

    // A node joining later serves the cluster's components from its start.
    let d4 = HostProcess::spawn(&["echo"], &cluster("d4"));
    let reply = Client::connect(&ws(&d4, "/ws")).await.call("echo", json!({"message": "late"})).await;
    assert_eq!(reply["meta"]["plugin_version"], "2.0.0", "{reply}");

    // Removed on one node, removed from all.
    let url = format!("http://{}/api/plugins/stateful", d1.addr);
    let response = reqwest::Client::new().delete(&url).bearer_auth(ADMIN).send().await.expect("DELETE");
    assert_eq!(response.status().as_u16(), 200);
    for host in [&d2, &d3, &d4] {
        until(host, "/api/status", "stateful is unloaded everywhere", |s| serves(s, s["cluster"]["node"].as_str().unwrap_or_default(), "stateful").is_none()).await;
    }
    let reply = Client::connect(&ws(&d2, "/ws")).await.call("state.ping", json!({})).await;
    assert_eq!(reply["data"]["code"], "UNKNOWN_TYPE", "{reply}");
}
