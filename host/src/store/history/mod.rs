//! Connection and message history, recorded off the hot path.
//!
//! Whoever records ([`History::opened`], [`History::closed`],
//! [`History::message`]) only puts a record in a bounded queue with
//! `try_send`: it never waits and never touches the database. One writer
//! task takes up to `batch` records at a time and writes them in one
//! transaction: [`batch`] says what rows a batch makes, and a writer runs
//! them, [`sqlite_writer`] for a SQLite file (its own connection, on a
//! blocking thread) and [`server_writer`] for the rest (through sqlx). If
//! the database is slow or down, the writer retries the batch
//! (reconnecting) while the queue fills; a record
//! that finds the queue full is counted in
//! `switchyard_history_dropped_total` and logged (at most once a second),
//! never dropped silently. The guarantee: **a message whose reply was sent
//! is in history unless `switchyard_history_dropped_total` rose.**

mod batch;
mod server_writer;
mod sqlite_writer;

use super::db::{now_ms, Database};
use crate::config::storage::HistoryConfig;
use crate::observability::metrics::HistoryMetrics;
use server_writer::ServerWriter;
use sqlite_writer::SqliteWriter;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest text kept in an indexed column; longer values are cut.
const MAX_FIELD_CHARS: usize = 255;
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

    /// What is kept of a payload: its first bytes up to the configured
    /// size, and at most `cap`, ending on a character boundary.
    pub fn prefix<'a>(&self, payload: &'a str, cap: usize) -> &'a str {
        &payload[..payload.floor_char_boundary(self.max_bytes.min(cap))]
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
    /// Set by [`History::message`]: what history keeps of the payload.
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
    /// history is on; its payload is the configured prefix of `payload`
    /// (copied, so a large message is not held in the queue whole), or
    /// none if `kind`'s payloads are not kept.
    pub fn message(&self, kind: &str, payload: &str, record: impl FnOnce() -> MessageRecord) {
        let Some(shared) = &self.shared else { return };
        let mut record = record();
        record.payload = shared.payloads.keeps(kind).then(|| shared.payloads.prefix(payload, usize::MAX).to_owned());
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
            // A copy, not a truncation, so a long id does not keep its
            // whole allocation while it waits in the queue.
            *field = field[..end].to_owned();
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
    let mut writer = Writer::for_database(db);
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
            let written;
            (records, written) = writer.write(records).await;
            let why = match written {
                Ok(()) => {
                    metrics.written.inc_by(records.len() as u64);
                    metrics.batches.inc();
                    metrics.queued.set(rx.len() as i64);
                    break;
                }
                // The database answered and said no: not an outage, so
                // not retried for ever.
                Err(WriteError::Refused(error)) => {
                    refused += 1;
                    if refused >= REFUSED_ATTEMPTS {
                        metrics.dropped.inc_by(records.len() as u64);
                        tracing::error!(records = records.len(), "history batch refused by the database, not recorded: {error}");
                        break;
                    }
                    error
                }
                Err(WriteError::Outage(error)) => error,
                Err(WriteError::Lost(count, error)) => {
                    metrics.dropped.inc_by(count as u64);
                    tracing::error!(records = count, "history batch lost: {error}");
                    break;
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

/// Why a batch was not written.
enum WriteError {
    /// The database cannot be reached (or is busy): retried until it can.
    Outage(String),
    /// The database refused the batch: retried a few times, then dropped.
    Refused(String),
    /// The batch's records went with a thread that did not come back
    /// (the runtime shutting down): this many, counted dropped.
    Lost(usize, String),
}

/// What writes the batches: SQLite through its own connection on a
/// blocking thread, PostgreSQL and MySQL through sqlx.
enum Writer {
    /// `None` while a batch is being written; the file's path.
    Sqlite(Option<SqliteWriter>, std::path::PathBuf),
    Server(ServerWriter),
}

impl Writer {
    fn for_database(db: Database) -> Writer {
        match db.sqlite_file() {
            Some(path) => Writer::Sqlite(Some(SqliteWriter::new(path)), path.to_owned()),
            None => Writer::Server(ServerWriter::new(db)),
        }
    }

    /// Write `records` in one transaction; hands them back for a retry.
    async fn write(&mut self, records: Vec<Record>) -> (Vec<Record>, Result<(), WriteError>) {
        match self {
            Writer::Server(writer) => {
                let written = writer.write(&records).await;
                (records, written)
            }
            Writer::Sqlite(slot, path) => {
                let mut writer = slot.take().unwrap_or_else(|| SqliteWriter::new(path));
                let count = records.len();
                let blocking = tokio::task::spawn_blocking(move || {
                    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.write(&records)));
                    let written = written.unwrap_or_else(|_| {
                        writer.reset();
                        Err(WriteError::Refused("the history writer panicked".to_owned()))
                    });
                    (writer, records, written)
                });
                match blocking.await {
                    Ok((writer, records, written)) => {
                        *slot = Some(writer);
                        (records, written)
                    }
                    Err(error) => (Vec::new(), Err(WriteError::Lost(count, error.to_string()))),
                }
            }
        }
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
        assert_eq!(policy.prefix("ééé", usize::MAX), "éé");
        assert_eq!(policy.prefix("abc", usize::MAX), "abc");
        assert_eq!(policy.prefix("abcdef", 2), "ab");
        assert!(!PayloadPolicy::new(&HistoryConfig { max_payload_bytes: 0, ..HistoryConfig::default() }).keeps("echo"));
    }

    /// A record waits in the queue until its batch is written: it holds
    /// what history keeps, not the whole message (a slow database with a
    /// full queue of 4 MiB messages would otherwise pin 65,536 of them).
    #[tokio::test]
    async fn a_large_message_is_queued_as_the_part_history_keeps() {
        let (tx, mut rx) = mpsc::channel(4);
        let config = HistoryConfig { max_payload_bytes: 16, ..HistoryConfig::default() };
        let history = History {
            shared: Some(Arc::new(Shared {
                tx,
                metrics: HistoryMetrics::default(),
                payloads: PayloadPolicy::new(&config),
                last_drop_log: AtomicI64::new(0),
                writer: Mutex::new(None),
                stop: CancellationToken::new(),
            })),
        };
        let message = format!("\"{}\"", "x".repeat(1 << 20));
        let id = "i".repeat(100_000);
        history.message("echo", &message, || MessageRecord { id: id.clone(), kind: "echo".into(), outcome: "OK".into(), ..MessageRecord::default() });
        let Some(Record::Message(record, _)) = rx.recv().await else { panic!("a message record") };
        let payload = record.payload.expect("echo's payload is kept");
        assert_eq!(payload, format!("\"{}", "x".repeat(15)));
        assert!(payload.capacity() < 1_024, "the queued payload holds {} bytes", payload.capacity());
        assert_eq!(record.id.len(), MAX_FIELD_CHARS);
        assert!(record.id.capacity() < 1_024, "the queued id holds {} bytes", record.id.capacity());
    }
}
