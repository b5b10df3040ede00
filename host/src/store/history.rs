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

use super::db::{now_ms, Database};
use crate::config::storage::HistoryConfig;
use crate::observability::metrics::HistoryMetrics;
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

/// One routed message, as history keeps it.
#[derive(Debug, Clone, Default)]
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
}

enum Record {
    Opened { id: String, endpoint: String, client_id: Option<String>, remote: Option<String>, at: i64 },
    Closed { id: String, device_id: Option<String>, code: u16, reason: String, at: i64 },
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
    max_payload_bytes: usize,
    no_payload_types: BTreeSet<String>,
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
        let writer = tokio::spawn(write_loop(db, rx, config.batch, metrics.clone(), stop.clone()));
        History {
            shared: Some(Arc::new(Shared {
                tx,
                metrics,
                max_payload_bytes: config.max_payload_bytes,
                no_payload_types: config.no_payload_types.clone(),
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
        self.shared.as_ref().is_some_and(|s| s.max_payload_bytes > 0 && !s.no_payload_types.contains(kind))
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

    /// Record one message of type `kind`, built by `record` only when
    /// history is on; it is told whether to include the payload, which is
    /// then cut to the configured size.
    pub fn message(&self, kind: &str, record: impl FnOnce(bool) -> MessageRecord) {
        let Some(shared) = &self.shared else { return };
        let mut record = record(self.keeps_payload(kind));
        if let Some(payload) = &mut record.payload {
            if payload.len() > shared.max_payload_bytes {
                let mut end = shared.max_payload_bytes;
                while !payload.is_char_boundary(end) {
                    end -= 1;
                }
                payload.truncate(end);
            }
        }
        for field in [&mut record.sender, &mut record.target, &mut record.plugin, &mut record.plugin_version].into_iter().flatten() {
            if field.chars().count() > MAX_FIELD_CHARS {
                *field = cut(field);
            }
        }
        record.id = cut(&record.id);
        record.kind = cut(&record.kind);
        record.outcome = cut(&record.outcome);
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

/// Write batches until told to stop, then write what is queued and end.
/// A batch is retried while the database is unreachable (until the stop);
/// one the database refuses is retried a few times, then counted dropped.
async fn write_loop(db: Database, mut rx: mpsc::Receiver<Record>, batch: usize, metrics: HistoryMetrics, stop: CancellationToken) {
    let mut records = Vec::with_capacity(batch);
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
            return;
        }
        let mut refused = 0;
        let mut backoff = Duration::from_millis(50);
        loop {
            let why = match write_batch(&db, &records).await {
                Ok(()) => {
                    metrics.written.inc_by(records.len() as u64);
                    break;
                }
                // The server answered and said no: not an outage, so not
                // retried for ever.
                Err(sqlx::Error::Database(error)) if !is_connection_error(&*error) => {
                    refused += 1;
                    if refused >= REFUSED_ATTEMPTS {
                        metrics.dropped.inc_by(records.len() as u64);
                        tracing::error!(records = records.len(), "history batch refused by the database, not recorded: {error}");
                        break;
                    }
                    error.to_string()
                }
                Err(error) => error.to_string(),
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

/// A server error that means the connection went (PostgreSQL's admin
/// shutdown, MySQL's server gone): an outage, retried like one.
fn is_connection_error(error: &dyn sqlx::error::DatabaseError) -> bool {
    let code = error.code().unwrap_or_default();
    code.starts_with("57P") || code.starts_with("08") || code == "HY000" && error.message().contains("shutdown")
}

async fn write_batch(db: &Database, records: &[Record]) -> Result<(), sqlx::Error> {
    let open = db.sql(
        "INSERT INTO connection_history (id, endpoint, client_id, remote_addr, connected_ms) VALUES (?, ?, ?, ?, ?)",
    );
    let close = db.sql(
        "UPDATE connection_history SET disconnected_ms = ?, device_id = COALESCE(?, device_id), close_code = ?, close_reason = ? WHERE id = ?",
    );
    let message = db.sql(
        "INSERT INTO message_history (message_id, msg_type, sender, target, direction, outcome, plugin, plugin_version, latency_us, payload, at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    let mut tx = db.pool().begin().await?;
    for record in records {
        match record {
            Record::Opened { id, endpoint, client_id, remote, at } => {
                sqlx::query(&open).bind(id).bind(endpoint).bind(client_id.as_deref()).bind(remote.as_deref()).bind(*at).execute(&mut *tx).await?;
            }
            Record::Closed { id, device_id, code, reason, at } => {
                sqlx::query(&close).bind(*at).bind(device_id.as_deref()).bind(i32::from(*code)).bind(reason).bind(id).execute(&mut *tx).await?;
            }
            Record::Message(m, at) => {
                sqlx::query(&message)
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
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await
}
