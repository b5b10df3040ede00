//! This node's view of the other nodes' connections: who is where, in
//! which room, under which device and client id. Kept from the others'
//! numbered announcements and snapshots; a node not heard from within the
//! TTL is dropped with everything it held.

use super::deploys::{Rejected, Served};
use super::wire::RemoteConnection;
use crate::hub::{ConnectionInfo, Recipient};
use crate::routing::router::Claim;
use crate::services::Member;
use std::collections::HashMap;
use std::time::Instant;

/// What one other node holds.
pub struct NodeView {
    pub epoch: u64,
    /// The last change applied; changes arrive in order or a snapshot is asked.
    pub seq: u64,
    pub last_seen: Instant,
    /// A snapshot was asked and has not come yet.
    pub syncing: bool,
    /// Its connections, and the order each joined its room in.
    connections: HashMap<String, (RemoteConnection, u64)>,
    /// The types its workers serve (`None`: every type).
    pub workers: Vec<Option<Claim>>,
    /// The plugin versions it serves, and the deploys it refused, as its
    /// last heartbeat said.
    pub plugins: Vec<Served>,
    pub rejected: Vec<Rejected>,
}

#[derive(Default)]
pub struct View {
    nodes: HashMap<String, NodeView>,
    /// Connection id, device id, client id to the node holding it.
    by_connection: HashMap<String, String>,
    by_device: HashMap<String, String>,
    /// Room to its remote members' (join order, node, connection id).
    rooms: HashMap<String, Vec<(u64, String, String)>>,
    joins: u64,
    /// Topic patterns the other nodes' connections subscribe to, and how
    /// many hold each.
    topics: HashMap<String, usize>,
    /// A pattern came or went since [`interest`](Self::interest) was taken.
    topics_changed: bool,
}

/// The topics some other node has a subscriber for: a publish is sent to
/// the cluster only if it [`wants`](Self::wants) it. Filters are the
/// subscriber's node's business: a publish a remote filter drops is still
/// sent, so the interest is never narrower than the subscriptions.
#[derive(Debug, Default)]
pub struct Interest {
    exact: std::collections::HashSet<String>,
    prefixes: Vec<Claim>,
    /// A pattern this node cannot read: send everything, to be safe.
    all: bool,
}

impl Interest {
    pub fn wants(&self, topic: &str) -> bool {
        self.all || self.exact.contains(topic) || self.prefixes.iter().any(|p| p.matches(topic))
    }
}

/// What an incoming numbered change asks of the view.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Apply,
    /// Already applied (or older than a snapshot): ignore.
    Stale,
    /// A node or a change never seen: ask for its snapshot.
    Sync,
}

impl NodeView {
    /// How many connections it holds.
    pub fn len(&self) -> usize {
        self.connections.len()
    }
}

impl View {
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &NodeView)> {
        self.nodes.iter()
    }

    /// `node` said it is alive at change `seq` of run `epoch`.
    pub fn heard(&mut self, node: &str, epoch: u64, seq: u64) -> Next {
        match self.nodes.get_mut(node) {
            Some(view) if view.epoch == epoch => {
                view.last_seen = Instant::now();
                if seq > view.seq && !view.syncing { Next::Sync } else { Next::Stale }
            }
            _ => Next::Sync,
        }
    }

    /// Whether change `seq` of `node` run `epoch` comes next.
    pub fn next(&mut self, node: &str, epoch: u64, seq: u64) -> Next {
        match self.nodes.get_mut(node) {
            Some(view) if view.epoch == epoch => {
                view.last_seen = Instant::now();
                if seq <= view.seq {
                    Next::Stale
                } else if seq == view.seq + 1 && !view.syncing {
                    view.seq = seq;
                    Next::Apply
                } else if view.syncing {
                    Next::Stale
                } else {
                    Next::Sync
                }
            }
            _ => Next::Sync,
        }
    }

    /// Mark `node` as waiting for its snapshot; false if one is asked already.
    pub fn start_sync(&mut self, node: &str) -> bool {
        match self.nodes.get_mut(node) {
            Some(view) if view.syncing => false,
            Some(view) => {
                view.syncing = true;
                true
            }
            None => {
                let view = NodeView { epoch: 0, seq: 0, last_seen: Instant::now(), syncing: true, connections: HashMap::new(), workers: Vec::new(), plugins: Vec::new(), rejected: Vec::new() };
                self.nodes.insert(node.to_owned(), view);
                true
            }
        }
    }

    pub fn sync_failed(&mut self, node: &str) {
        if let Some(view) = self.nodes.get_mut(node) {
            view.syncing = false;
        }
    }

    /// Replace everything known of `node` by its snapshot; returns the
    /// members that were in a room and are no longer (they left unseen).
    pub fn replace(&mut self, node: &str, epoch: u64, seq: u64, connections: Vec<RemoteConnection>) -> Vec<(String, Member)> {
        let old: Vec<String> = self.nodes.get(node).map(|v| v.connections.keys().cloned().collect()).unwrap_or_default();
        let fresh: HashMap<&str, &RemoteConnection> = connections.iter().map(|c| (c.info.id.as_str(), c)).collect();
        let mut left = Vec::new();
        for id in old {
            let room_now = fresh.get(id.as_str()).and_then(|c| c.info.room.clone());
            if let Some((gone, _)) = self.remove(node, &id) {
                if let Some(room) = gone.info.room.clone().filter(|r| Some(r) != room_now.as_ref()) {
                    left.push((room, member(&gone)));
                }
            }
        }
        let view = self.nodes.entry(node.to_owned()).or_insert_with(|| NodeView {
            epoch,
            seq,
            last_seen: Instant::now(),
            syncing: false,
            connections: HashMap::new(),
            workers: Vec::new(),
            plugins: Vec::new(),
            rejected: Vec::new(),
        });
        (view.epoch, view.seq, view.syncing, view.last_seen) = (epoch, seq, false, Instant::now());
        for connection in connections {
            self.upsert(node, connection);
        }
        left
    }

    /// The topics the other nodes want now, if that changed since last
    /// asked.
    pub fn interest_if_changed(&mut self) -> Option<Interest> {
        if !std::mem::take(&mut self.topics_changed) {
            return None;
        }
        let mut interest = Interest::default();
        for pattern in self.topics.keys() {
            match Claim::parse(pattern) {
                Ok(Claim::Exact(topic)) => {
                    interest.exact.insert(topic);
                }
                Ok(prefix) => interest.prefixes.push(prefix),
                Err(_) => interest.all = true,
            }
        }
        Some(interest)
    }

    fn count_topics(&mut self, patterns: &[String], up: bool) {
        for pattern in patterns {
            if up {
                let n = self.topics.entry(pattern.clone()).or_default();
                *n += 1;
                self.topics_changed |= *n == 1;
            } else if let Some(n) = self.topics.get_mut(pattern) {
                *n -= 1;
                if *n == 0 {
                    self.topics.remove(pattern);
                    self.topics_changed = true;
                }
            }
        }
    }

    /// A connection of `node` opened or changed.
    pub fn upsert(&mut self, node: &str, connection: RemoteConnection) {
        let previous = self.remove(node, &connection.info.id);
        let id = connection.info.id.clone();
        let order = match (&previous, &connection.info.room) {
            (Some((old, order)), Some(room)) if old.info.room.as_ref() == Some(room) => *order,
            _ => {
                self.joins += 1;
                self.joins
            }
        };
        self.by_connection.insert(id.clone(), node.to_owned());
        if let Some(device) = &connection.info.device_id {
            self.by_device.insert(device.clone(), node.to_owned());
        }
        if let Some(room) = &connection.info.room {
            let members = self.rooms.entry(room.clone()).or_default();
            members.push((order, node.to_owned(), id.clone()));
            members.sort();
        }
        if let Some(view) = self.nodes.get_mut(node) {
            // Counted only when kept, so that its removal uncounts it.
            let patterns = connection.info.subscriptions.clone();
            view.connections.insert(id, (connection, order));
            self.count_topics(&patterns, true);
        }
    }

    /// A connection of `node` closed; returns what it was.
    pub fn remove(&mut self, node: &str, id: &str) -> Option<(RemoteConnection, u64)> {
        let (connection, order) = self.nodes.get_mut(node)?.connections.remove(id)?;
        self.count_topics(&connection.info.subscriptions, false);
        self.by_connection.remove(id);
        if let Some(device) = &connection.info.device_id {
            if self.by_device.get(device).is_some_and(|n| n == node) {
                self.by_device.remove(device);
            }
        }
        if let Some(room) = &connection.info.room {
            if let Some(members) = self.rooms.get_mut(room) {
                members.retain(|(_, _, m)| m != id);
                if members.is_empty() {
                    self.rooms.remove(room);
                }
            }
        }
        Some((connection, order))
    }

    /// Forget `node` (gone silent); returns its members that were in rooms.
    pub fn drop_node(&mut self, node: &str) -> Vec<(String, Member)> {
        let ids: Vec<String> = self.nodes.get(node).map(|v| v.connections.keys().cloned().collect()).unwrap_or_default();
        let mut left = Vec::new();
        for id in ids {
            if let Some((gone, _)) = self.remove(node, &id) {
                if let Some(room) = gone.info.room.clone() {
                    left.push((room, member(&gone)));
                }
            }
        }
        self.nodes.remove(node);
        left
    }

    /// `node`'s workers serve `types` now.
    pub fn set_workers(&mut self, node: &str, types: &[String]) {
        if let Some(view) = self.nodes.get_mut(node) {
            view.workers = types.iter().filter_map(|t| if t == "*" { Some(None) } else { Claim::parse(t).ok().map(Some) }).collect();
        }
    }

    /// `node` serves `plugins` and refused `rejected` now.
    pub fn set_plugins(&mut self, node: &str, plugins: Vec<Served>, rejected: Vec<Rejected>) {
        if let Some(view) = self.nodes.get_mut(node) {
            (view.plugins, view.rejected) = (plugins, rejected);
        }
    }

    /// The nodes with a worker for `kind`, by name.
    pub fn workers_for(&self, kind: &str) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, v)| v.workers.iter().any(|t| t.as_ref().is_none_or(|c| c.matches(kind))))
            .map(|(n, _)| n.clone())
            .collect();
        nodes.sort();
        nodes
    }

    /// Whether any other node has a member in `room`.
    pub fn has_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    pub fn members(&self, room: &str) -> Vec<Member> {
        let Some(members) = self.rooms.get(room) else { return Vec::new() };
        members
            .iter()
            .filter_map(|(_, node, id)| self.nodes.get(node)?.connections.get(id))
            .map(|(c, _)| member(c))
            .collect()
    }

    /// The nodes holding `to`, and how many of their connections it names.
    pub fn holders(&self, to: &Recipient) -> Vec<(String, usize)> {
        match to {
            Recipient::Connection(id) => self.by_connection.get(id).map(|n| (n.clone(), 1)).into_iter().collect(),
            Recipient::Device(device) => self.by_device.get(device).map(|n| (n.clone(), 1)).into_iter().collect(),
            Recipient::Client(client) => self
                .nodes
                .iter()
                .map(|(node, view)| (node.clone(), view.connections.values().filter(|(c, _)| c.info.client_id.as_ref() == Some(client)).count()))
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }

    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.nodes.iter().flat_map(|(node, view)| view.connections.values().map(move |(c, _)| ConnectionInfo { node: Some(node.clone()), ..c.info.clone() })).collect()
    }
}

fn member(connection: &RemoteConnection) -> Member {
    Member { connection_id: connection.info.id.clone(), device_id: connection.info.device_id.clone(), identity: connection.identity.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: &str, room: Option<&str>, device: Option<&str>) -> RemoteConnection {
        let info = ConnectionInfo {
            id: id.into(),
            client_id: None,
            remote: None,
            endpoint: "/rooms".into(),
            key: None,
            connected_at: String::new(),
            room: room.map(Into::into),
            device_id: device.map(Into::into),
            subscriptions: Vec::new(),
            node: None,
        };
        RemoteConnection { info, identity: None }
    }

    #[test]
    fn changes_apply_in_order_and_a_gap_asks_for_a_snapshot() {
        let mut view = View::default();
        assert_eq!(view.next("b", 7, 1), Next::Sync);
        assert!(view.start_sync("b"));
        assert!(!view.start_sync("b"), "one snapshot at a time");
        view.replace("b", 7, 3, vec![connection("c1", Some("R"), Some("d1"))]);
        assert_eq!(view.next("b", 7, 3), Next::Stale);
        assert_eq!(view.next("b", 7, 4), Next::Apply);
        view.upsert("b", connection("c2", Some("R"), None));
        assert_eq!(view.members("R").iter().map(|m| m.connection_id.as_str()).collect::<Vec<_>>(), ["c1", "c2"]);
        assert_eq!(view.holders(&Recipient::Device("d1".into())), [("b".to_owned(), 1)]);
        assert_eq!(view.next("b", 7, 6), Next::Sync, "change 5 was lost");
        assert_eq!(view.heard("b", 8, 1), Next::Sync, "a restarted node is synced again");
    }

    #[test]
    fn a_publish_goes_out_only_for_topics_another_node_subscribes_to() {
        let subscribed = |id: &str, patterns: &[&str]| {
            let mut c = connection(id, None, None);
            c.info.subscriptions = patterns.iter().map(|p| (*p).to_owned()).collect();
            c
        };
        let mut view = View::default();
        assert!(view.interest_if_changed().is_none(), "nothing subscribed, nothing changed");
        view.replace("b", 1, 1, vec![subscribed("c1", &["alert.*"]), subscribed("c2", &["news"])]);
        let interest = view.interest_if_changed().expect("patterns came");
        assert!(interest.wants("alert.cpu") && interest.wants("news"));
        assert!(!interest.wants("alerts") && !interest.wants("news.sport") && !interest.wants("bench.local"));
        // A second subscriber to a pattern, then the first going: no change.
        view.replace("c", 2, 1, vec![subscribed("c3", &["alert.*"])]);
        assert!(view.interest_if_changed().is_none());
        view.remove("b", "c1");
        assert!(view.interest_if_changed().is_none());
        // An unsubscribe (an upsert with fewer patterns) and a node gone.
        view.upsert("b", subscribed("c2", &[]));
        assert!(!view.interest_if_changed().expect("news went").wants("news"));
        view.drop_node("c");
        let interest = view.interest_if_changed().expect("alert.* went");
        assert!(!interest.wants("alert.cpu"));
        // A pattern this build cannot read (a newer node's?) wants everything.
        view.upsert("b", subscribed("c2", &["*"]));
        assert!(view.interest_if_changed().unwrap().wants("anything.at.all"));
    }

    #[test]
    fn a_dropped_node_takes_its_members_out_of_every_room() {
        let mut view = View::default();
        view.replace("b", 1, 1, vec![connection("c1", Some("R"), Some("d1")), connection("c2", None, None)]);
        let left = view.drop_node("b");
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].0.as_str(), left[0].1.device_id.as_deref()), ("R", Some("d1")));
        assert!(view.members("R").is_empty() && !view.has_room("R"));
        assert!(view.holders(&Recipient::Device("d1".into())).is_empty());
        assert!(view.connections().is_empty());
    }
}
