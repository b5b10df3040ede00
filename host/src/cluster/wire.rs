//! What the nodes of a cluster send each other over NATS: JSON bodies,
//! one shape per subject. Messages borrow from the payload they are read
//! from, and clients' JSON travels as it came (raw), never re-parsed.

use super::deploys::{Rejected, Served};
use crate::hub::{ConnectionInfo, Recipient};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// An event published on one node (`<prefix>.topic`).
#[derive(Serialize, Deserialize)]
pub struct TopicEvent<'a> {
    #[serde(borrow)]
    pub topic: Cow<'a, str>,
    #[serde(borrow)]
    pub data: &'a RawValue,
    #[serde(borrow)]
    pub source: Cow<'a, str>,
}

/// A room message (`<prefix>.room.<room>`).
#[derive(Serialize, Deserialize)]
pub struct RoomMessage<'a> {
    #[serde(borrow)]
    pub message: &'a RawValue,
    #[serde(borrow)]
    pub exclude: Option<Cow<'a, str>>,
}

/// A message for every connection (`<prefix>.broadcast`).
#[derive(Serialize, Deserialize)]
pub struct Broadcast<'a> {
    #[serde(borrow)]
    pub message: &'a RawValue,
    #[serde(borrow)]
    pub endpoint: Option<Cow<'a, str>>,
}

/// A direct send to a node's connection (`<prefix>.direct.<node>`).
#[derive(Serialize, Deserialize)]
pub struct Direct<'a> {
    pub to: Recipient,
    #[serde(borrow)]
    pub message: &'a RawValue,
}

/// A connection as the other nodes know it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteConnection {
    pub info: ConnectionInfo,
    pub identity: Option<String>,
}

/// One change to a node's connections (`<prefix>.members`), numbered:
/// a receiver that sees a gap asks for a [`Snapshot`].
#[derive(Serialize, Deserialize)]
pub struct Announcement {
    pub node: String,
    /// This run of the node (a restarted node numbers from 1 again).
    pub epoch: u64,
    pub seq: u64,
    pub change: Changed,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Changed {
    Upsert { connection: Box<RemoteConnection> },
    Closed { id: String },
}

/// A node is alive, and its last change's number (`<prefix>.heartbeat`).
#[derive(Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    pub epoch: u64,
    pub seq: u64,
    /// The types its workers serve.
    #[serde(default)]
    pub workers: Vec<String>,
    /// The plugin versions it serves (with cluster deploys).
    #[serde(default)]
    pub plugins: Vec<Served>,
    /// The deploys it refused, still serving its previous version.
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

/// A message for a worker on another node (`<prefix>.work.<node>`,
/// request/reply).
#[derive(Serialize, Deserialize)]
pub struct WorkRequest {
    pub id: String,
    pub kind: String,
    pub data: Box<RawValue>,
    pub meta: Box<RawValue>,
    pub strategy: crate::config::workers::Strategy,
    pub idempotent: bool,
}

/// The worker's answer, or why there was none (externally tagged: a raw
/// value cannot sit inside an internally tagged enum).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkReply {
    Answered { data: Box<RawValue>, name: String, version: String },
    Failed { code: String, message: String },
}

/// Every connection of a node, as of change `seq` (the answer to a
/// request on `<prefix>.snapshot.<node>`).
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub node: String,
    pub epoch: u64,
    pub seq: u64,
    pub connections: Vec<RemoteConnection>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_reply_with_raw_data_reads_back() {
        let data = serde_json::value::to_raw_value(&serde_json::json!({"done": [1, 2]})).unwrap();
        let text = serde_json::to_vec(&WorkReply::Answered { data, name: "w".into(), version: "1".into() }).unwrap();
        let WorkReply::Answered { data, .. } = serde_json::from_slice(&text).unwrap() else { panic!("answered") };
        assert_eq!(data.get(), r#"{"done":[1,2]}"#);
    }
}
