//! Several hosts serving as one, over NATS (`[cluster]`).
//!
//! Each node delivers to its own connections first, then publishes the
//! message once on one subject per kind (`<cluster>.topic`,
//! `<cluster>.room.<room>`, `<cluster>.broadcast`,
//! `<cluster>.direct.<node>`); every other node hands it to its own hub's
//! fan-out. Local delivery never waits for NATS: outgoing messages go
//! through one bounded queue and one publisher task, and what cannot be
//! sent (NATS down, queue full) is counted (`cluster_unforwarded`) and
//! dropped, as a slow subscriber's frames are.
//!
//! Each node announces every change to its connections (opened, joined,
//! left, identified, closed), numbered, on `<cluster>.members`, and a
//! heartbeat with its last number. The others keep a [`view::View`] from
//! them: `query_room`, direct sends by device and client id, and the
//! connection lists read it. A gap in the numbers (a message lost while
//! NATS was away) or an unknown node makes a node ask for a snapshot; a
//! node silent for `node_ttl_ms` is dropped, and its room members leave,
//! with leave events sent by each node to its own subscribers.
//!
//! This follows Centrifugo's NATS broker: a publish goes to NATS once and
//! each node fans it out locally; presence is kept per node and merged.

mod deploys;
mod kv;
mod view;
mod wire;

pub use deploys::{Deploys, Rejected, Served};
pub use kv::SharedKv;

use crate::config::cluster::ClusterConfig;
use crate::hub::{Broker, Change, Connection, ConnectionInfo, Hub, Recipient};
use crate::lifecycle::Tasks;
use crate::observability::metrics::ClusterMetrics;
use crate::services::Member;
use crate::sync::{read, write};
use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use arc_swap::ArcSwap;
use view::{Interest, Next, View};
use wire::{Announcement, Broadcast, Changed, Direct, Heartbeat, RemoteConnection, RoomMessage, Snapshot, TopicEvent, WorkReply, WorkRequest};
use crate::routing::target::WorkerRoute;
use crate::wire::{Envelope, ErrorCode, Failure, Outcome, Reply, ServedBy};
use crate::workers::{RemoteWorkers, WorkerPool};
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;

/// This node's link to the rest of the cluster.
pub struct Cluster {
    node: String,
    epoch: u64,
    /// `switchyard.<cluster name>`: every subject starts with it.
    prefix: String,
    client: async_nats::Client,
    outgoing: mpsc::Sender<(String, Bytes)>,
    /// The number of this node's last announced change.
    seq: AtomicU64,
    view: RwLock<View>,
    metrics: ClusterMetrics,
    hub: Weak<Hub>,
    config: ClusterConfig,
    /// This node's worker pool, serving the other nodes' requests too.
    workers: OnceLock<Arc<WorkerPool>>,
    /// Rotates the first node tried for a remote worker.
    cursor: AtomicUsize,
    /// Plugin deploys through the object store, once started.
    deploys: OnceLock<Arc<Deploys>>,
    /// The topics other nodes subscribe to, rebuilt from the view when a
    /// pattern comes or goes; read without a lock on every publish.
    interest: ArcSwap<Interest>,
}

/// A cluster node's line in `/api/status`.
#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub connections: usize,
    pub this: bool,
    /// The plugin versions it serves (with cluster deploys).
    pub plugins: Vec<Served>,
    /// Deploys it refused; it serves its previous version of those.
    pub rejected: Vec<Rejected>,
}

impl Cluster {
    /// Connect to NATS and join the cluster: the hub delivers to the other
    /// nodes through the returned cluster from now on.
    pub async fn join(config: &ClusterConfig, default_node: String, hub: &Arc<Hub>, metrics: ClusterMetrics, tasks: &Tasks) -> anyhow::Result<Arc<Cluster>> {
        let node = config.node.clone().unwrap_or(default_node);
        let mut options = match &config.credentials {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .with_context(|| format!("cannot read NATS credentials {}", path.display()))?,
            None => async_nats::ConnectOptions::new(),
        };
        options = options
            .name(format!("switchyard {node}"))
            .no_echo()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            // Back soon after NATS is: at most 500 ms between attempts.
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(500)))
            .event_callback(|event| async move { tracing::info!(%event, "NATS") });
        let urls = config.urls.join(",");
        let client = options.connect(urls.as_str()).await.with_context(|| format!("cannot connect to NATS at {urls}"))?;
        // Joined only once connected, so the first snapshots are served.
        for _ in 0..50 {
            if client.connection_state() == async_nats::connection::State::Connected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (outgoing, queued) = mpsc::channel(config.outgoing_queue);
        let cluster = Arc::new(Cluster {
            node,
            epoch: rand::random::<u64>() >> 12,
            prefix: format!("switchyard.{}", config.name),
            client,
            outgoing,
            seq: AtomicU64::new(0),
            view: RwLock::default(),
            metrics,
            hub: Arc::downgrade(hub),
            config: config.clone(),
            workers: OnceLock::new(),
            cursor: AtomicUsize::new(0),
            deploys: OnceLock::new(),
            interest: ArcSwap::from_pointee(Interest::default()),
        });
        let p = &cluster.prefix;
        let subjects = [
            format!("{p}.topic"),
            format!("{p}.room.>"),
            format!("{p}.broadcast"),
            format!("{p}.direct.{}", cluster.node),
            format!("{p}.members"),
            format!("{p}.heartbeat"),
            format!("{p}.snapshot.{}", cluster.node),
        ];
        for subject in subjects {
            let subscriber = cluster.client.subscribe(subject.clone()).await.with_context(|| format!("cannot subscribe to {subject}"))?;
            let cluster = Arc::clone(&cluster);
            tasks.spawn(|stop| cluster.receive(subscriber, stop));
        }
        let publisher = Arc::clone(&cluster);
        tasks.spawn(|stop| publisher.send_queued(queued, stop));
        let beat = Arc::clone(&cluster);
        tasks.spawn(|stop| beat.heartbeats(stop));
        hub.set_broker(Arc::clone(&cluster) as Arc<dyn Broker>);
        tracing::info!(node = %cluster.node, nats = %urls, "joined the cluster");
        Ok(cluster)
    }

    /// Serve the other nodes' requests with this node's workers, and theirs
    /// with the others' (`<prefix>.work.<node>`, request/reply).
    pub async fn serve_workers(self: &Arc<Self>, pool: Arc<WorkerPool>, tasks: &Tasks) -> anyhow::Result<()> {
        let _ = self.workers.set(Arc::clone(&pool));
        pool.set_remote(Arc::clone(self) as Arc<dyn RemoteWorkers>);
        let subject = format!("{}.work.{}", self.prefix, self.node);
        let subscriber = self.client.subscribe(subject.clone()).await.with_context(|| format!("cannot subscribe to {subject}"))?;
        let cluster = Arc::clone(self);
        tasks.spawn(|stop| cluster.serve_work(subscriber, pool, stop));
        Ok(())
    }

    async fn serve_work(self: Arc<Self>, mut subscriber: async_nats::Subscriber, pool: Arc<WorkerPool>, stop: CancellationToken) {
        loop {
            let message = tokio::select! {
                message = subscriber.next() => message,
                () = stop.cancelled() => None,
            };
            let Some(message) = message else { break };
            let Some(reply_to) = message.reply.clone() else { continue };
            let (pool, client) = (Arc::clone(&pool), self.client.clone());
            tokio::spawn(async move {
                let answer = match serde_json::from_slice::<WorkRequest>(&message.payload) {
                    Ok(request) => {
                        let envelope = Envelope { id: request.id, kind: request.kind, data: request.data, meta: request.meta };
                        let route = WorkerRoute { strategy: request.strategy, idempotent: request.idempotent };
                        match pool.call_here(&envelope, route).await {
                            Ok(reply) => WorkReply::Answered { data: reply.data, name: reply.served_by.name, version: reply.served_by.version },
                            Err(failure) => WorkReply::Failed { code: failure.code.into_owned(), message: failure.message },
                        }
                    }
                    Err(error) => WorkReply::Failed { code: ErrorCode::InvalidMessage.as_str().to_owned(), message: error.to_string() },
                };
                if let Ok(body) = serde_json::to_vec(&answer) {
                    let _ = client.publish(reply_to, body.into()).await;
                }
            });
        }
    }

    /// Share plugin deploys with the other nodes: install what the
    /// cluster's bucket holds now, follow it, and put this node's uploads
    /// in it (see [`deploys`]).
    pub async fn serve_deploys(&self, registry: Arc<crate::plugins::registry::Registry>, dir: std::path::PathBuf, tasks: &Tasks) -> anyhow::Result<()> {
        let deploys = Deploys::start(self.client.clone(), &self.config.name, &self.node, self.config.deploy_from_folder, registry, dir, tasks).await?;
        let _ = self.deploys.set(deploys);
        Ok(())
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Every node, this one first, with its connection count.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let here = self.hub.upgrade().map_or(0, |h| h.connection_count());
        let (plugins, rejected) = self.deploys.get().map(|d| (d.served(), d.rejected())).unwrap_or_default();
        let mut nodes = vec![NodeStatus { node: self.node.clone(), connections: here, this: true, plugins, rejected }];
        let view = read(&self.view);
        let mut others: Vec<NodeStatus> = view
            .nodes()
            .map(|(node, v)| NodeStatus { node: node.clone(), connections: v.len(), this: false, plugins: v.plugins.clone(), rejected: v.rejected.clone() })
            .collect();
        others.sort_by(|a, b| a.node.cmp(&b.node));
        nodes.extend(others);
        nodes
    }

    /// Queue one message for NATS, or count it as not forwarded.
    fn send(&self, subject: String, body: &impl Serialize) {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            self.metrics.unforwarded.inc();
            return;
        }
        let Ok(bytes) = serde_json::to_vec(body) else { return };
        if self.outgoing.try_send((subject, Bytes::from(bytes))).is_err() {
            self.metrics.unforwarded.inc();
        }
    }

    async fn send_queued(self: Arc<Self>, mut queued: mpsc::Receiver<(String, Bytes)>, stop: CancellationToken) {
        loop {
            let next = tokio::select! {
                next = queued.recv() => next,
                () = stop.cancelled() => None,
            };
            let Some((subject, body)) = next else { break };
            match self.client.publish(subject, body).await {
                Ok(()) => self.metrics.forwarded.inc(),
                Err(error) => {
                    tracing::debug!(%error, "not forwarded to the cluster");
                    self.metrics.unforwarded.inc()
                }
            };
        }
    }

    async fn receive(self: Arc<Self>, mut subscriber: async_nats::Subscriber, stop: CancellationToken) {
        loop {
            let message = tokio::select! {
                message = subscriber.next() => message,
                () = stop.cancelled() => None,
            };
            let Some(message) = message else { break };
            self.metrics.received.inc();
            if let Err(error) = self.handle(&message) {
                tracing::warn!(subject = %message.subject, %error, "unreadable cluster message");
            }
        }
    }

    fn handle(self: &Arc<Self>, message: &async_nats::Message) -> anyhow::Result<()> {
        let Some(hub) = self.hub.upgrade() else { return Ok(()) };
        let kind = message.subject.as_str().strip_prefix(self.prefix.as_str()).unwrap_or_default();
        let body = &message.payload;
        match kind {
            ".topic" => {
                let event: TopicEvent = serde_json::from_slice(body)?;
                let _ = hub.fan_out(&event.topic, event.data, &event.source);
            }
            ".broadcast" => {
                let broadcast: Broadcast = serde_json::from_slice(body)?;
                hub.broadcast_here(broadcast.message, broadcast.endpoint.as_deref(), None);
            }
            ".members" => {
                let announcement: Announcement = serde_json::from_slice(body)?;
                let next = write(&self.view).next(&announcement.node, announcement.epoch, announcement.seq);
                match next {
                    Next::Apply => self.apply(&announcement.node, announcement.change),
                    Next::Stale => {}
                    Next::Sync => self.sync(announcement.node),
                }
            }
            ".heartbeat" => {
                let beat: Heartbeat = serde_json::from_slice(body)?;
                let mut view = write(&self.view);
                let next = view.heard(&beat.node, beat.epoch, beat.seq);
                view.set_workers(&beat.node, &beat.workers);
                view.set_plugins(&beat.node, beat.plugins, beat.rejected);
                drop(view);
                if next == Next::Sync {
                    self.sync(beat.node);
                }
            }
            _ if kind.starts_with(".room.") => {
                let room = &kind[".room.".len()..];
                let delivery: RoomMessage = serde_json::from_slice(body)?;
                let _ = hub.room_here(room, delivery.message, delivery.exclude.as_deref());
            }
            _ if kind.starts_with(".direct.") => {
                let direct: Direct = serde_json::from_slice(body)?;
                hub.direct_here(&direct.to, direct.message);
            }
            _ if kind.starts_with(".snapshot.") => {
                if let Some(reply) = message.reply.clone() {
                    let seq = self.seq.load(Ordering::Acquire);
                    let connections = hub.connections().iter().map(|c| remote(c)).collect();
                    let snapshot = Snapshot { node: self.node.clone(), epoch: self.epoch, seq, connections };
                    let body = Bytes::from(serde_json::to_vec(&snapshot)?);
                    let client = self.client.clone();
                    tokio::spawn(async move { client.publish(reply, body).await });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn apply(&self, node: &str, change: Changed) {
        let mut view = write(&self.view);
        match change {
            Changed::Upsert { connection } => view.upsert(node, *connection),
            Changed::Closed { id } => {
                view.remove(node, &id);
            }
        }
        self.refresh_interest(&mut view);
    }

    /// Publish the view's topic interest if it changed; under the view's
    /// write lock, so interests are stored in the order the view changed.
    fn refresh_interest(&self, view: &mut View) {
        if let Some(interest) = view.interest_if_changed() {
            self.interest.store(Arc::new(interest));
        }
    }

    /// Ask `node` for its snapshot (once at a time) and replace its view.
    fn sync(self: &Arc<Self>, node: String) {
        if !write(&self.view).start_sync(&node) {
            return;
        }
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            let subject = format!("{}.snapshot.{node}", cluster.prefix);
            let asked = tokio::time::timeout(Duration::from_secs(2), cluster.client.request(subject, Bytes::new())).await;
            let snapshot = match asked {
                Ok(Ok(reply)) => serde_json::from_slice::<Snapshot>(&reply.payload).map_err(anyhow::Error::from),
                Ok(Err(error)) => Err(error.into()),
                Err(_) => Err(anyhow::anyhow!("no answer in 2 s")),
            };
            match snapshot {
                Ok(snapshot) => {
                    let mut view = write(&cluster.view);
                    let left = view.replace(&node, snapshot.epoch, snapshot.seq, snapshot.connections);
                    cluster.refresh_interest(&mut view);
                    drop(view);
                    cluster.left(&left);
                    tracing::debug!(%node, seq = snapshot.seq, "cluster node synced");
                }
                Err(error) => {
                    tracing::debug!(%node, %error, "cluster node snapshot failed");
                    write(&cluster.view).sync_failed(&node);
                }
            }
        });
    }

    /// Leave events, to this node's subscribers, for members of other
    /// nodes that left without saying so.
    fn left(&self, left: &[(String, Member)]) {
        if let Some(hub) = self.hub.upgrade() {
            for (room, member) in left {
                hub.remote_left(room, member);
            }
        }
    }

    async fn heartbeats(self: Arc<Self>, stop: CancellationToken) {
        let every = Duration::from_millis(self.config.heartbeat_ms);
        let ttl = Duration::from_millis(self.config.node_ttl_ms);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => break,
            }
            let workers = self.workers.get().map(|pool| pool.types_served()).unwrap_or_default();
            let (plugins, rejected) = self.deploys.get().map(|d| (d.served(), d.rejected())).unwrap_or_default();
            let beat = Heartbeat { node: self.node.clone(), epoch: self.epoch, seq: self.seq.load(Ordering::Acquire), workers, plugins, rejected };
            self.send(format!("{}.heartbeat", self.prefix), &beat);
            let silent: Vec<String> = read(&self.view).nodes().filter(|(_, v)| v.last_seen.elapsed() > ttl).map(|(n, _)| n.clone()).collect();
            for node in silent {
                let mut view = write(&self.view);
                let left = view.drop_node(&node);
                self.refresh_interest(&mut view);
                drop(view);
                tracing::warn!(%node, members_left = left.len(), "cluster node silent past its TTL: dropped");
                self.left(&left);
            }
            self.metrics.nodes.set(read(&self.view).nodes().count() as i64);
        }
    }
}

fn remote(connection: &Connection) -> RemoteConnection {
    RemoteConnection { info: connection.info(), identity: connection.member().identity }
}

impl Broker for Cluster {
    fn publish(&self, topic: &str, data: &RawValue, source: &str) {
        // Only topics another node has a subscriber for leave this node.
        if !self.interest.load().wants(topic) {
            return;
        }
        let event = TopicEvent { topic: Cow::Borrowed(topic), data, source: Cow::Borrowed(source) };
        self.send(format!("{}.topic", self.prefix), &event);
    }

    fn room(&self, room: &str, message: &RawValue, exclude: Option<&str>) {
        if !read(&self.view).has_room(room) {
            return;
        }
        self.send(format!("{}.room.{room}", self.prefix), &RoomMessage { message, exclude: exclude.map(Cow::Borrowed) });
    }

    fn broadcast(&self, message: &RawValue, endpoint: Option<&str>) {
        self.send(format!("{}.broadcast", self.prefix), &Broadcast { message, endpoint: endpoint.map(Cow::Borrowed) });
    }

    fn direct(&self, to: &Recipient, message: &RawValue) -> usize {
        let holders = read(&self.view).holders(to);
        let mut count = 0;
        for (node, n) in holders {
            self.send(format!("{}.direct.{node}", self.prefix), &Direct { to: to.clone(), message });
            count += n;
        }
        count
    }

    fn changed(&self, change: Change<'_>) {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        let change = match change {
            Change::Upsert(connection) => Changed::Upsert { connection: Box::new(remote(connection)) },
            Change::Closed(id) => Changed::Closed { id: id.to_owned() },
        };
        let announcement = Announcement { node: self.node.clone(), epoch: self.epoch, seq, change };
        self.send(format!("{}.members", self.prefix), &announcement);
    }

    fn members(&self, room: &str) -> Vec<Member> {
        read(&self.view).members(room)
    }

    fn connections(&self) -> Vec<ConnectionInfo> {
        read(&self.view).connections()
    }

    fn node(&self) -> &str {
        &self.node
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.config.name,
            "node": self.node,
            "nats": format!("{:?}", self.client.connection_state()).to_lowercase(),
            "nodes": self.nodes(),
            "unforwarded": self.metrics.unforwarded.get(),
        })
    }
}

/// Remote workers by request/reply to the node holding them, not a NATS
/// queue group: the node that holds the workers applies the type's
/// strategy among them (least loaded, weights, concurrency limits, the
/// idempotent retry), which a queue group's random pick of a subscriber
/// could not, and a node with no free worker answers at once instead of
/// holding a message no one else may take. Nodes with a worker for the
/// type are tried in turn; one that answers `NO_AVAILABLE_WORKERS` (its
/// worker just left) passes the request to the next.
impl RemoteWorkers for Cluster {
    fn serves(&self, kind: &str) -> bool {
        !read(&self.view).workers_for(kind).is_empty()
    }

    fn call<'a>(&'a self, envelope: &'a Envelope, route: WorkerRoute, timeout: Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>> {
        Box::pin(async move {
            let mut nodes = read(&self.view).workers_for(&envelope.kind);
            if nodes.is_empty() {
                return Err(Failure::new(ErrorCode::NoAvailableWorkers, "No available workers"));
            }
            let turn = self.cursor.fetch_add(1, Ordering::Relaxed) % nodes.len();
            nodes.rotate_left(turn);
            let request = WorkRequest {
                id: envelope.id.clone(),
                kind: envelope.kind.clone(),
                data: envelope.data.clone(),
                meta: envelope.meta.clone(),
                strategy: route.strategy,
                idempotent: route.idempotent,
            };
            let body = Bytes::from(serde_json::to_vec(&request).map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?);
            let deadline = tokio::time::Instant::now() + timeout;
            let mut last = Failure::new(ErrorCode::NoAvailableWorkers, "No available workers");
            for node in nodes {
                let subject = format!("{}.work.{node}", self.prefix);
                // The serving node keeps the worker deadline; this waits a little longer for its answer.
                let asked = tokio::time::timeout_at(deadline + Duration::from_millis(500), self.client.request(subject, body.clone())).await;
                let reply = match asked {
                    Err(_) => return Err(Failure::new(ErrorCode::WorkerTimeout, "Worker response timeout")),
                    Ok(Err(error)) => {
                        tracing::debug!(%node, %error, "remote worker request failed");
                        last = Failure::new(ErrorCode::NoAvailableWorkers, format!("No available workers (node {node}: {error})"));
                        continue;
                    }
                    Ok(Ok(message)) => message,
                };
                match serde_json::from_slice::<WorkReply>(&reply.payload) {
                    Ok(WorkReply::Answered { data, name, version }) => {
                        return Ok(Reply { data, served_by: ServedBy { name, version }, reply_type: "reply" });
                    }
                    Ok(WorkReply::Failed { code, message }) if code == ErrorCode::NoAvailableWorkers.as_str() => {
                        last = Failure::from_plugin(code, message);
                    }
                    Ok(WorkReply::Failed { code, message }) => return Err(Failure::from_plugin(code, message)),
                    Err(error) => last = Failure::new(ErrorCode::Internal, format!("unreadable answer from node {node}: {error}")),
                }
            }
            Err(last)
        })
    }
}
