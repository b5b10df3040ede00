//! Connection and message history, recorded off the hot path.
//!
//! Whoever records ([`History::opened`], [`History::closed`],
//! [`History::message`]) only puts a record in a bounded queue with
//! `try_send`: it never waits and never touches the database. One writer
//! task takes up to `batch` records at a time and writes them in one
//! transaction. If the database is slow or down, the writer retries the
//! batch (reconnecting through the pool) while the queue fills; a record
//! that finds the queue full is counted in
//! `switchyard_history_dropped_total` and logged (at most once a second),
//! never dropped silently. The guarantee: **a message whose reply was sent
//! is in history unless `switchyard_history_dropped_total` rose.**

use super::db::{now_ms, utc_text, Backend, Database};
use crate::config::storage::HistoryConfig;
use crate::observability::metrics::HistoryMetrics;
use sqlx::{Connection, Executor};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest text kept in an indexed column; longer values are cut.
const MAX_FIELD_CHARS: usize = 255;
/// Message rows per `INSERT` statement (13 parameters each).
const MESSAGES_PER_INSERT: usize = 64;
/// A batch the database refuses (not an outage) is tried this many times.
const REFUSED_ATTEMPTS: u32 = 3;

/// What of a message's payload is kept (`[storage.history]`'s
/// `max_payload_bytes` and `no_payload_types`): history's rule, which the
/// dashboard's tail follows too.
#[derive(Debug, Clone, Default)]
pub struct PayloadPolicy {
    max_bytes: usize,
    skipped_types: BTreeSet<String>,
}

impl PayloadPolicy {
    pub fn new(config: &HistoryConfig) -> PayloadPolicy {
        PayloadPolicy { max_bytes: config.max_payload_bytes, skipped_types: config.no_payload_types.clone() }
    }

    /// Whether a `kind` message's payload is kept at all.
    pub fn keeps(&self, kind: &str) -> bool {
        self.max_bytes > 0 && !self.skipped_types.contains(kind)
    }

    /// Cut a kept payload to the configured size, and to at most `cap`
    /// bytes, on a character boundary.
    pub fn cut(&self, payload: &mut String, cap: usize) {
        payload.truncate(payload.floor_char_boundary(self.max_bytes.min(cap)));
    }
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a client to the host.
    In,
    /// From the host to clients (events, room broadcasts, direct sends).
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// What a connection is at the moment: its device and its room. The
/// writer asks, off the hot path, for the room server's tables.
pub trait Presence: Send + Sync {
    fn device_and_room(&self) -> (Option<String>, Option<String>);
}

/// One routed message, as history keeps it.
#[derive(Clone, Default)]
pub struct MessageRecord {
    pub id: String,
    pub kind: String,
    /// A connection id, or `device:ID` once the connection identified.
    pub sender: Option<String>,
    /// `connection:ID`, `device:ID`, `room:NAME` or `topic:NAME`.
    pub target: Option<String>,
    pub direction: Option<Direction>,
    /// `OK` or the error code.
    pub outcome: String,
    pub plugin: Option<String>,
    pub plugin_version: Option<String>,
    pub latency_us: i64,
    pub payload: Option<String>,
    /// For the room server's tables: the sender (a query, a broadcast) or
    /// the target (a direct send) connection.
    pub presence: Option<Arc<dyn Presence>>,
}

enum Record {
    Opened { id: String, endpoint: String, client_id: Option<String>, remote: Option<String>, at: i64 },
    Identified { id: String, device_id: String },
    Closed { id: String, device_id: Option<String>, code: u16, reason: String, at: i64 },
    Joined { room: String, device_id: Option<String>, client_ip: Option<String>, at: i64 },
    Message(MessageRecord, i64),
}

/// The handle that records: cheap to clone; off when history is disabled.
#[derive(Clone, Default)]
pub struct History {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    tx: mpsc::Sender<Record>,
    metrics: HistoryMetrics,
    payloads: PayloadPolicy,
    /// When a drop was last logged (ms), so a flood logs once a second.
    last_drop_log: AtomicI64,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: CancellationToken,
}

impl History {
    /// History that records nothing.
    pub fn off() -> History {
        History::default()
    }

    /// Start the writer on `db`.
    pub fn start(db: Database, config: &HistoryConfig, metrics: HistoryMetrics) -> History {
        if !config.enabled {
            return History::off();
        }
        let (tx, rx) = mpsc::channel(config.queue);
        let stop = CancellationToken::new();
        let flush = Duration::from_millis(config.flush_ms);
        let writer = tokio::spawn(write_loop(db, rx, config.batch, flush, metrics.clone(), stop.clone()));
        History {
            shared: Some(Arc::new(Shared {
                tx,
                metrics,
                payloads: PayloadPolicy::new(config),
                last_drop_log: AtomicI64::new(0),
                writer: Mutex::new(Some(writer)),
                stop,
            })),
        }
    }

    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Whether the payload of a `kind` message is kept (so callers skip
    /// copying it when not).
    pub fn keeps_payload(&self, kind: &str) -> bool {
        self.shared.as_ref().is_some_and(|s| s.payloads.keeps(kind))
    }

    pub fn opened(&self, id: &str, endpoint: &str, client_id: Option<&str>, remote: Option<String>) {
        let Some(shared) = &self.shared else { return };
        shared.push(Record::Opened {
            id: id.to_owned(),
            endpoint: cut(endpoint),
            client_id: client_id.map(cut),
            remote,
            at: now_ms(),
        });
    }

    pub fn closed(&self, id: &str, device_id: Option<&str>, code: u16, reason: &str) {
        let Some(shared) = &self.shared else { return };
        shared.push(Record::Closed { id: id.to_owned(), device_id: device_id.map(cut), code, reason: cut(reason), at: now_ms() });
    }

    /// Connection `id` identified as device `device_id` (recorded at
    /// once, not only when it closes).
    pub fn identified(&self, id: &str, device_id: &str) {
        let Some(shared) = &self.shared else { return };
        shared.push(Record::Identified { id: id.to_owned(), device_id: cut(device_id) });
    }

    /// A connection joined `room` (the room server's `rooms`, `devices`
    /// and `connections` tables).
    pub fn joined(&self, room: &str, device_id: Option<&str>, client_ip: Option<String>) {
        let Some(shared) = &self.shared else { return };
        shared.push(Record::Joined { room: cut(room), device_id: device_id.map(cut), client_ip, at: now_ms() });
    }

    /// Record one message of type `kind`, built by `record` only when
    /// history is on; it is told whether to include the payload, which is
    /// then cut to the configured size.
    pub fn message(&self, kind: &str, record: impl FnOnce(bool) -> MessageRecord) {
        let Some(shared) = &self.shared else { return };
        let mut record = record(self.keeps_payload(kind));
        if let Some(payload) = &mut record.payload {
            shared.payloads.cut(payload, usize::MAX);
        }
        let fields = [&mut record.sender, &mut record.target, &mut record.plugin, &mut record.plugin_version].into_iter().flatten();
        for field in fields.chain([&mut record.id, &mut record.kind, &mut record.outcome]) {
            shorten(field);
        }
        shared.push(Record::Message(record, now_ms()));
    }

    /// Stop taking records, write what is queued, and wait for the
    /// writer (at most `wait`). What cannot be written by then is counted
    /// as dropped.
    pub async fn finish(&self, wait: Duration) {
        let Some(shared) = &self.shared else { return };
        shared.stop.cancel();
        let writer = crate::sync::lock(&shared.writer).take();
        if let Some(mut writer) = writer {
            if tokio::time::timeout(wait, &mut writer).await.is_err() {
                writer.abort();
                tracing::warn!("history writer did not finish within {wait:?}");
            }
        }
    }
}

impl Shared {
    fn push(&self, record: Record) {
        if self.tx.try_send(record).is_ok() {
            return;
        }
        self.metrics.dropped.inc();
        let now = now_ms();
        let last = self.last_drop_log.load(Ordering::Relaxed);
        if now - last >= 1_000 && self.last_drop_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(dropped_total = self.metrics.dropped.get(), "history queue full or closed: records not recorded");
        }
    }
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_FIELD_CHARS).collect()
}

/// [`cut`] in place, without a copy for the usual short field.
fn shorten(field: &mut String) {
    // Fewer bytes than the limit is fewer characters too.
    if field.len() > MAX_FIELD_CHARS {
        if let Some((end, _)) = field.char_indices().nth(MAX_FIELD_CHARS) {
            field.truncate(end);
        }
    }
}

/// Close, as of the last time they recorded anything, the connections an
/// earlier run of the host left open in history (it was killed, or the
/// machine stopped): close code 1006, reason `host stopped`. Run at start,
/// before any connection of this run is recorded. Returns how many.
pub async fn close_left_open(db: &Database) -> Result<u64, sqlx::Error> {
    // The earlier run's last record: its newest message or connection.
    let last_message: Option<i64> = sqlx::query_scalar("SELECT MAX(at_ms) FROM message_history").fetch_one(db.pool()).await?;
    let last_open: Option<i64> = sqlx::query_scalar("SELECT MAX(connected_ms) FROM connection_history").fetch_one(db.pool()).await?;
    let Some(last) = last_message.max(last_open) else { return Ok(0) };
    let closed = sqlx::query(&db.sql(
        "UPDATE connection_history SET disconnected_ms = ?, close_code = 1006, close_reason = 'host stopped' WHERE disconnected_ms IS NULL",
    ))
    .bind(last)
    .execute(db.pool())
    .await?;
    Ok(closed.rows_affected())
}

/// Write batches until told to stop, then write what is queued and end.
/// A batch that is not full waits `flush` for more records first, so a
/// stream of messages makes a few large transactions, not many small ones.
/// A batch is retried while the database is unreachable (until the stop);
/// one the database refuses is retried a few times, then counted dropped.
async fn write_loop(
    db: Database,
    mut rx: mpsc::Receiver<Record>,
    batch: usize,
    flush: Duration,
    metrics: HistoryMetrics,
    stop: CancellationToken,
) {
    let mut records = Vec::with_capacity(batch);
    let backend = db.backend();
    let mut writer = WriterConnection { db, connection: None };
    let mut closing = false;
    loop {
        let received = tokio::select! {
            biased;
            received = rx.recv_many(&mut records, batch) => received,
            _ = stop.cancelled(), if !closing => {
                // No more records; what is queued is still received.
                closing = true;
                rx.close();
                continue;
            }
        };
        if received == 0 {
            metrics.queued.set(0);
            return;
        }
        if records.len() < batch && !closing && !flush.is_zero() {
            // Sleep rather than wait on the queue: a waiting receiver is
            // woken by every record, which is the cost this avoids.
            tokio::select! {
                _ = tokio::time::sleep(flush) => {}
                _ = stop.cancelled() => {}
            }
            while records.len() < batch {
                match rx.try_recv() {
                    Ok(record) => records.push(record),
                    Err(_) => break,
                }
            }
        }
        let mut refused = 0;
        let mut backoff = Duration::from_millis(50);
        loop {
            let written = match writer.connection().await {
                Ok(connection) => write_batch(connection, backend, &records).await,
                Err(error) => Err(error),
            };
            let why = match written {
                Ok(()) => {
                    metrics.written.inc_by(records.len() as u64);
                    metrics.batches.inc();
                    metrics.queued.set(rx.len() as i64);
                    break;
                }
                // The server answered and said no: not an outage, so not
                // retried for ever.
                Err(sqlx::Error::Database(error)) if !is_connection_error(&*error) => {
                    writer.connection = None;
                    refused += 1;
                    if refused >= REFUSED_ATTEMPTS {
                        metrics.dropped.inc_by(records.len() as u64);
                        tracing::error!(records = records.len(), "history batch refused by the database, not recorded: {error}");
                        break;
                    }
                    error.to_string()
                }
                Err(error) => {
                    writer.connection = None;
                    error.to_string()
                }
            };
            if stop.is_cancelled() {
                metrics.dropped.inc_by(records.len() as u64);
                tracing::error!(records = records.len(), "history database unavailable at shutdown, batch not recorded: {why}");
                break;
            }
            tracing::warn!(records = records.len(), retry_in = ?backoff, "history batch not written, retrying: {why}");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        records.clear();
    }
}

/// The writer's own connection, taken out of the pool (which opens a
/// replacement, so kv writes and history queries keep every pooled one)
/// and made cheap to commit on: SQLite `synchronous = NORMAL` (in WAL
/// mode a commit is not synced to disk; an OS crash or power loss can
/// lose the last batches, never tear the file), PostgreSQL
/// `synchronous_commit = off` (the server flushes within moments; its
/// crash can lose the last batches, never tear them). MySQL's equivalent
/// is server-wide, so it is left alone. kv writes keep their pooled,
/// fully synced connections. Dropped after any error, and opened again.
struct WriterConnection {
    db: Database,
    connection: Option<sqlx::AnyConnection>,
}

impl WriterConnection {
    async fn connection(&mut self) -> Result<&mut sqlx::AnyConnection, sqlx::Error> {
        let connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let mut connection = self.db.pool().acquire().await?.detach();
                match self.db.backend() {
                    Backend::Sqlite => {
                        connection.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Backend::Postgres => {
                        connection.execute("SET synchronous_commit = off").await?;
                    }
                    Backend::Mysql => {}
                }
                connection
            }
        };
        Ok(self.connection.insert(connection))
    }
}

/// A server error that means the connection went (PostgreSQL's admin
/// shutdown, MySQL's server gone): an outage, retried like one.
fn is_connection_error(error: &dyn sqlx::error::DatabaseError) -> bool {
    let code = error.code().unwrap_or_default();
    code.starts_with("57P") || code.starts_with("08") || code == "HY000" && error.message().contains("shutdown")
}

async fn write_batch(connection: &mut sqlx::AnyConnection, backend: Backend, records: &[Record]) -> Result<(), sqlx::Error> {
    let open = backend.sql(
        "INSERT INTO connection_history (id, endpoint, client_id, remote_addr, connected_ms) VALUES (?, ?, ?, ?, ?)",
    );
    let close = backend.sql(
        "UPDATE connection_history SET disconnected_ms = ?, device_id = COALESCE(?, device_id), close_code = ?, close_reason = ? WHERE id = ?",
    );
    let identified = backend.sql("UPDATE connection_history SET device_id = ? WHERE id = ?");
    let rooms = RoomSql::new(backend);
    let mut tx = connection.begin().await?;
    for record in records {
        match record {
            Record::Joined { room, device_id, client_ip, at } => {
                let at = utc_text(*at);
                sqlx::query(&rooms.room).bind(room).bind(&at).execute(&mut *tx).await?;
                if let Some(device) = device_id {
                    sqlx::query(&rooms.device).bind(device).bind(&at).bind(room).execute(&mut *tx).await?;
                }
                sqlx::query(&rooms.connection).bind(device_id.as_deref()).bind(room).bind(client_ip.as_deref()).bind(&at).execute(&mut *tx).await?;
            }
            Record::Opened { id, endpoint, client_id, remote, at } => {
                sqlx::query(&open).bind(id).bind(endpoint).bind(client_id.as_deref()).bind(remote.as_deref()).bind(*at).execute(&mut *tx).await?;
            }
            Record::Identified { id, device_id } => {
                sqlx::query(&identified).bind(device_id).bind(id).execute(&mut *tx).await?;
            }
            Record::Closed { id, device_id, code, reason, at } => {
                sqlx::query(&close).bind(*at).bind(device_id.as_deref()).bind(i32::from(*code)).bind(reason).bind(id).execute(&mut *tx).await?;
            }
            Record::Message(m, at) => rooms.message(m, *at, &mut tx).await?,
        }
    }
    // Messages go in many rows per statement: most of a batch is messages.
    let messages: Vec<(&MessageRecord, i64)> =
        records.iter().filter_map(|r| if let Record::Message(m, at) = r { Some((m, *at)) } else { None }).collect();
    for chunk in messages.chunks(MESSAGES_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO message_history (message_id, msg_type, sender, target, direction, outcome, plugin, plugin_version, latency_us, payload, at_ms, device_id, room_id) VALUES ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 { "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" });
        }
        let sql = backend.sql(&sql);
        let mut query = sqlx::query(&sql);
        for (m, at) in chunk {
            let (device, room) = placement(m);
            query = query
                .bind(&m.id)
                .bind(&m.kind)
                .bind(m.sender.as_deref())
                .bind(m.target.as_deref())
                .bind(m.direction.unwrap_or(Direction::In).as_str())
                .bind(&m.outcome)
                .bind(m.plugin.as_deref())
                .bind(m.plugin_version.as_deref())
                .bind(m.latency_us)
                .bind(m.payload.as_deref())
                .bind(*at)
                .bind(device)
                .bind(room);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// The device and room a message is filed under (`device_id`, `room_id`):
/// a message in, its sender's, asked when it is written (so a message
/// sent in the instant before its connection closed may have neither);
/// a message out, the device or room it went to.
fn placement(m: &MessageRecord) -> (Option<String>, Option<String>) {
    let presence = || m.presence.as_ref().map_or((None, None), |p| p.device_and_room());
    let target = m.target.as_deref().unwrap_or_default();
    match m.direction {
        Some(Direction::Out) => match (target.strip_prefix("device:"), target.strip_prefix("room:")) {
            (Some(device), _) => (Some(cut(device)), presence().1),
            (_, Some(room)) => (None, Some(cut(room))),
            _ => (None, None),
        },
        Some(Direction::In) | None => presence(),
    }
}

/// The room server's tables' statements, in the backend's dialect.
struct RoomSql {
    room: String,
    device: String,
    connection: String,
    message: String,
    query: String,
}

impl RoomSql {
    fn new(backend: Backend) -> RoomSql {
        let ts = match backend {
            Backend::Sqlite => "?",
            Backend::Postgres => "CAST(? AS TIMESTAMP(3))",
            Backend::Mysql => "CAST(? AS DATETIME(3))",
        };
        let (room, device) = match backend {
            Backend::Mysql => (
                format!("INSERT IGNORE INTO rooms (room_id, created_at) VALUES (?, {ts})"),
                format!(
                    "INSERT INTO devices (device_id, last_connected_at, last_room_id) VALUES (?, {ts}, ?) \
                     ON DUPLICATE KEY UPDATE last_connected_at = VALUES(last_connected_at), last_room_id = VALUES(last_room_id)"
                ),
            ),
            Backend::Sqlite | Backend::Postgres => (
                format!("INSERT INTO rooms (room_id, created_at) VALUES (?, {ts}) ON CONFLICT (room_id) DO NOTHING"),
                format!(
                    "INSERT INTO devices (device_id, last_connected_at, last_room_id) VALUES (?, {ts}, ?) \
                     ON CONFLICT (device_id) DO UPDATE SET last_connected_at = excluded.last_connected_at, last_room_id = excluded.last_room_id"
                ),
            ),
        };
        let sql = |q: String| backend.sql(&q).into_owned();
        RoomSql {
            room: sql(room),
            device: sql(device),
            connection: sql(format!("INSERT INTO connections (device_id, room_id, client_ip, connected_at) VALUES (?, ?, ?, {ts})")),
            message: sql(format!(
                "INSERT INTO messages (room_id, from_device_id, to_device_id, message_type, message_content, sent_at) VALUES (?, ?, ?, ?, ?, {ts})"
            )),
            query: sql(format!("INSERT INTO room_queries (device_id, room_id, queried_at) VALUES (?, ?, {ts})")),
        }
    }

    /// The rows a message makes in the room server's tables: a room
    /// broadcast or a direct send in `messages`, an answered `query_room`
    /// in `room_queries`.
    async fn message(&self, m: &MessageRecord, at: i64, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<(), sqlx::Error> {
        let presence = || m.presence.as_ref().map_or((None, None), |p| p.device_and_room());
        match (m.direction, m.kind.as_str()) {
            (Some(Direction::In), kind) if kind.rsplit('.').next() == Some("query_room") && m.outcome == "OK" => {
                let (device, room) = presence();
                sqlx::query(&self.query).bind(device).bind(room).bind(utc_text(at)).execute(&mut **tx).await?;
            }
            (Some(Direction::Out), kind @ (ROOM_BROADCAST | DEVICE_DIRECT)) => {
                let sent: Option<serde_json::Value> = m.payload.as_deref().and_then(|p| serde_json::from_str(p).ok());
                let field = |name: &str| sent.as_ref().and_then(|v| v.get(name)).cloned();
                let content = field("content").map(|c| match c {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                });
                let from = field("from_device_id").and_then(|v| v.as_str().map(str::to_owned));
                let target = m.target.as_deref().unwrap_or_default();
                let (room, from, to, kind) = if kind == ROOM_BROADCAST {
                    let from = from.or_else(|| presence().0);
                    (target.strip_prefix("room:").map(str::to_owned), from, None, "broadcast")
                } else {
                    (presence().1, from, target.strip_prefix("device:").map(str::to_owned), "direct")
                };
                sqlx::query(&self.message).bind(room).bind(from).bind(to).bind(kind).bind(content).bind(utc_text(at)).execute(&mut **tx).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The kinds of the messages the hub sends out to a room and to a device.
pub const ROOM_BROADCAST: &str = "room.broadcast";
pub const DEVICE_DIRECT: &str = "device.direct";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_kept_by_type_and_cut_on_a_character_boundary() {
        let config = HistoryConfig { max_payload_bytes: 5, no_payload_types: ["login".to_owned()].into(), ..HistoryConfig::default() };
        let policy = PayloadPolicy::new(&config);
        assert!(policy.keeps("echo"));
        assert!(!policy.keeps("login"));
        // "é" is two bytes: a cut at 5 would split the third one.
        let mut payload = "ééé".to_owned();
        policy.cut(&mut payload, usize::MAX);
        assert_eq!(payload, "éé");
        let mut short = "abc".to_owned();
        policy.cut(&mut short, usize::MAX);
        assert_eq!(short, "abc");
        let mut capped = "abcdef".to_owned();
        policy.cut(&mut capped, 2);
        assert_eq!(capped, "ab");
        assert!(!PayloadPolicy::new(&HistoryConfig { max_payload_bytes: 0, ..HistoryConfig::default() }).keeps("echo"));
    }
}
