//! The seam between the hub and the other hosts of a cluster.
//!
//! The hub always delivers to its own connections first and then hands the
//! same message to its [`Broker`], once per publish (never once per
//! subscriber). A single host has no broker and pays one empty
//! `OnceLock` read per delivery. Every method returns at once: a broker
//! queues what it forwards and counts what it cannot.

use super::ConnectionInfo;
use crate::services::Member;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Who a direct send is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", content = "id", rename_all = "snake_case")]
pub enum Recipient {
    Connection(String),
    Device(String),
    /// Every connection with this client id.
    Client(String),
}

/// What changed about one local connection, for the other nodes' views.
pub enum Change<'a> {
    /// Opened, joined or left a room, or identified.
    Upsert(&'a super::Connection),
    Closed(&'a str),
}

/// Carries the hub's deliveries to the other nodes and knows what they
/// hold.
pub trait Broker: Send + Sync + 'static {
    /// An event published on this node, for subscribers elsewhere.
    fn publish(&self, topic: &str, data: &RawValue, source: &str);
    /// A room message, for the room's members elsewhere.
    fn room(&self, room: &str, message: &RawValue, exclude: Option<&str>);
    /// A message for every connection elsewhere (on `endpoint` only, if set).
    fn broadcast(&self, message: &RawValue, endpoint: Option<&str>);
    /// A direct send to a recipient on another node: how many remote
    /// connections it was forwarded to (0: no node holds it).
    fn direct(&self, to: &Recipient, message: &RawValue) -> usize;
    /// A local connection changed.
    fn changed(&self, change: Change<'_>);
    /// The room's members on other nodes, in the order they joined.
    fn members(&self, room: &str) -> Vec<Member>;
    /// Every connection on other nodes.
    fn connections(&self) -> Vec<ConnectionInfo>;
    /// This node's name.
    fn node(&self) -> &str;
    /// The cluster as `/api/status` shows it.
    fn status(&self) -> serde_json::Value;
}
