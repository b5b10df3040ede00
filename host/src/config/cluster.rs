//! `[cluster]`: several hosts serving as one over NATS. Off unless `urls`
//! names at least one server; a single host reads nothing here and starts
//! nothing for it.
//!
//! Plain data, like the rest of `config/`: the host's `cluster` module
//! connects and runs it.

use serde::Deserialize;
use std::path::PathBuf;

/// `[cluster]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS servers (`nats://host:4222`); empty turns cluster mode off.
    pub urls: Vec<String>,
    /// This host's name, unique in the cluster (default: the machine's
    /// host name and the listening port).
    pub node: Option<String>,
    /// The cluster's name: the first segment of every subject and bucket,
    /// so several clusters can share one NATS.
    pub name: String,
    /// A NATS credentials file (`.creds`), if the server asks for one.
    pub credentials: Option<PathBuf>,
    /// How often this node tells the others it is alive.
    pub heartbeat_ms: u64,
    /// A node silent this long is gone: its connections leave every room
    /// on the others (with leave events) and stop being listed.
    pub node_ttl_ms: u64,
    /// Messages waiting to go to NATS; past it they are counted as not
    /// forwarded and dropped (local delivery never waits for NATS).
    pub outgoing_queue: usize,
    /// Plugin key-value state in the cluster's JetStream key-value bucket
    /// (shared by every node) instead of this host's database.
    pub shared_kv: bool,
    /// Plugin deploys shared by every node: a component uploaded to any
    /// node goes into the JetStream object store bucket `<name>-plugins`
    /// and every node loads it.
    pub deploys: bool,
    /// With `deploys`, components written in (or deleted from) a node's
    /// plugin folder are deployed to (removed from) the cluster too.
    pub deploy_from_folder: bool,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        let segment = |s: &str| !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        anyhow::ensure!(segment(&self.name), "cluster.name {:?} must be 1-64 of A-Z a-z 0-9 _ -", self.name);
        if let Some(node) = &self.node {
            anyhow::ensure!(segment(node), "cluster.node {node:?} must be 1-64 of A-Z a-z 0-9 _ -");
        }
        anyhow::ensure!(self.heartbeat_ms > 0, "cluster.heartbeat_ms must be positive");
        anyhow::ensure!(self.node_ttl_ms > self.heartbeat_ms, "cluster.node_ttl_ms must be longer than cluster.heartbeat_ms");
        anyhow::ensure!(self.outgoing_queue > 0, "cluster.outgoing_queue must be positive");
        Ok(())
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            urls: Vec::new(),
            node: None,
            name: "switchyard".into(),
            credentials: None,
            heartbeat_ms: 1_000,
            node_ttl_ms: 3_000,
            outgoing_queue: 65_536,
            shared_kv: true,
            deploys: true,
            deploy_from_folder: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_checked_when_on() {
        let off: ClusterConfig = toml::from_str("").unwrap();
        assert!(!off.enabled());
        off.validate().unwrap();
        let on: ClusterConfig = toml::from_str("urls = [\"nats://127.0.0.1:4222\"]\nnode = \"a-1\"").unwrap();
        assert!(on.enabled());
        on.validate().unwrap();
        let bad: ClusterConfig = toml::from_str("urls = [\"nats://x\"]\nnode = \"a.b\"").unwrap();
        assert!(bad.validate().unwrap_err().to_string().contains("cluster.node"));
        let short: ClusterConfig = toml::from_str("urls = [\"nats://x\"]\nnode_ttl_ms = 500").unwrap();
        assert!(short.validate().is_err());
    }
}
