//! `[storage]`: where durable state and history are kept, and what history
//! records.
//!
//! Plain data, read from the configuration; [`crate::store::db`] opens the
//! database and [`crate::store::history`] applies the history settings.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// `[storage]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite://PATH`, `postgres://USER:PASS@HOST:PORT/DB` or
    /// `mysql://USER:PASS@HOST:PORT/DB`. Unset: a SQLite file
    /// `switchyard.db` in `data_dir`. `SWITCHYARD_DATABASE_URL` (or
    /// `serve --database-url`) overrides it.
    pub url: Option<String>,
    /// Most connections the host keeps open to a PostgreSQL or MySQL server.
    pub max_connections: u32,
    /// How long a `kv` write waits for its commit (and for a connection)
    /// before it fails with `KV_UNAVAILABLE`. Keep it under
    /// `plugins.deadline_ms`.
    pub timeout_ms: u64,
    pub history: HistoryConfig,
    pub retention: RetentionConfig,
}

/// `[storage.retention]`: how long history is kept. Tables not named are
/// kept whole.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How often retention runs.
    pub every_ms: u64,
    /// Most rows one delete statement removes.
    pub batch: u32,
    /// By table: `message_history`, `connection_history`, `messages`,
    /// `connections`, `room_queries`.
    pub tables: BTreeMap<String, TableRetention>,
}

/// `[storage.retention.tables.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableRetention {
    /// Rows older than this many seconds are deleted.
    pub max_age_s: Option<u64>,
    /// Only the newest this many rows are kept.
    pub max_rows: Option<u64>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { every_ms: 60_000, batch: 1_000, tables: BTreeMap::new() }
    }
}

/// `[storage.history]`: connection and message history.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Record connections and messages at all.
    pub enabled: bool,
    /// Records waiting to be written; past this, new ones are counted in
    /// `switchyard_history_dropped_total` and not recorded.
    pub queue: usize,
    /// Most records written in one transaction.
    pub batch: usize,
    /// How long the writer lets records gather before it writes a batch
    /// that is not full: fewer, larger transactions, so history takes less
    /// of the CPU routing needs. A record reaches the database this much
    /// later at most (plus the write). 0 writes whatever is queued at once.
    pub flush_ms: u64,
    /// Payload bytes kept per message (0: none); longer payloads are cut.
    pub max_payload_bytes: usize,
    /// Message types whose payload is never recorded (the message still is).
    pub no_payload_types: BTreeSet<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { url: None, max_connections: 8, timeout_ms: 1_000, history: HistoryConfig::default(), retention: RetentionConfig::default() }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { enabled: true, queue: 65_536, batch: 512, flush_ms: 20, max_payload_bytes: 4_096, no_payload_types: BTreeSet::new() }
    }
}

/// Which server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    /// The backend of `url`, from its scheme.
    pub fn of(url: &str) -> anyhow::Result<Backend> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::Mysql),
            _ => anyhow::bail!("storage.url must start with sqlite://, postgres:// or mysql:// (got {:?})", redact(url)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let credentials = &url[start + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..start + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The history tables `[storage.retention.tables]` may name (`rooms` and
/// `devices` are current state, not history, and are kept).
pub const RETENTION_TABLES: [&str; 5] = ["message_history", "connection_history", "messages", "connections", "room_queries"];
