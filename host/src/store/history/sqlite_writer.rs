//! Writes history batches to a SQLite file through rusqlite, on a blocking
//! thread, with its prepared statements kept across batches: one per kind
//! of row, and for messages, most of a batch, one of
//! [`MESSAGES_PER_INSERT`] rows as well (binding and stepping once for
//! them instead of once a row). The one-connection p99.9, which the time a
//! batch holds a core sets (the README's "History and the tail"), went
//! from 1.61 to 1.71 ms to 1.23 to 1.29 ms for `ping`, and from 1.56 to
//! 1.74 ms to 1.47 to 1.54 ms for `get_time`, in three pairs.
//!
//! Why not sqlx, which serves everything else: its SQLite driver runs each
//! statement on a worker thread of its own, so every bound value is copied
//! into an owned argument list, sent over a channel and freed on the
//! other thread, and a history row binds 13. A `perf` profile of the
//! storage bench had that thread at 13% of the host's CPU at about 45k
//! msg/s, a fifth of it in those copies and frees. Both crates link the
//! same bundled SQLite (libsqlite3-sys), and the file is the same one:
//! this connection writes, in WAL mode, beside sqlx's pool, which reads
//! history and writes kv (a writer waits for the other's transaction
//! through `busy_timeout`).

use super::batch::{rows, Row, Sql, Statement, Value, MESSAGES_PER_INSERT};
use super::{Record, WriteError};
use crate::config::storage::Backend;
use rusqlite::{ErrorCode, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a batch waits for another connection's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct SqliteWriter {
    path: PathBuf,
    sql: Sql,
    /// Dropped after any error, and opened again.
    connection: Option<rusqlite::Connection>,
}

impl SqliteWriter {
    pub fn new(path: &Path) -> SqliteWriter {
        SqliteWriter { path: path.to_owned(), sql: Sql::new(Backend::Sqlite), connection: None }
    }

    /// Write `records` in one transaction. Blocks: call it off the runtime.
    pub fn write(&mut self, records: &[Record]) -> Result<(), WriteError> {
        let written = match &mut self.connection {
            Some(connection) => write_batch(connection, &self.sql, records),
            None => open(&self.path).and_then(|connection| write_batch(self.connection.insert(connection), &self.sql, records)),
        };
        written.map_err(|error| {
            self.connection = None;
            classify(error)
        })
    }

    /// Close the connection (after a panic mid-write): the next write opens
    /// another.
    pub fn reset(&mut self) {
        self.connection = None;
    }
}

/// Open the writer's connection. The file is the database's, already
/// created and migrated (and set to WAL) by
/// [`Database::open`](crate::store::db::Database::open). `synchronous =
/// NORMAL`: in WAL mode a commit is not synced to disk, so an OS crash or
/// power loss can lose the last batches, never tear the file; a killed
/// host loses nothing committed.
fn open(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = rusqlite::Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.set_prepared_statement_cache_capacity(16);
    Ok(connection)
}

fn write_batch(connection: &mut rusqlite::Connection, sql: &Sql, records: &[Record]) -> rusqlite::Result<()> {
    let rows = rows(records);
    let (messages, others): (Vec<&Row<'_>>, Vec<&Row<'_>>) = rows.iter().partition(|row| row.statement == Statement::Message);
    // IMMEDIATE: the write lock is taken at the start, waiting out
    // `busy_timeout` for a kv commit, not at the first insert, where a
    // commit that slipped in after its read snapshot fails it at once
    // (SQLITE_BUSY_SNAPSHOT) instead of waiting.
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for row in others {
        let mut statement = tx.prepare_cached(sql.of(row.statement))?;
        execute(&mut statement, row.values.iter())?;
    }
    // Messages go in many rows per statement, as on the servers; the last
    // few one at a time, so the statement cache holds two texts, not one
    // per remainder.
    let mut chunks = messages.chunks_exact(MESSAGES_PER_INSERT);
    if chunks.len() > 0 {
        let mut many = tx.prepare_cached(sql.messages())?;
        for chunk in &mut chunks {
            execute(&mut many, chunk.iter().flat_map(|row| row.values.iter()))?;
        }
    }
    let mut one = tx.prepare_cached(sql.of(Statement::Message))?;
    for row in chunks.remainder() {
        execute(&mut one, row.values.iter())?;
    }
    drop(one);
    tx.commit()
}

fn execute<'v>(statement: &mut rusqlite::Statement<'_>, values: impl Iterator<Item = &'v Value<'v>>) -> rusqlite::Result<()> {
    for (i, value) in values.enumerate() {
        match value {
            Value::Text(text) => statement.raw_bind_parameter(i + 1, text.as_deref())?,
            Value::Int(number) => statement.raw_bind_parameter(i + 1, number)?,
        }
    }
    statement.raw_execute().map(drop)
}

/// A busy or unreadable file is an outage (retried until it clears); a
/// statement SQLite refuses (a constraint, a malformed value) is not.
fn classify(error: rusqlite::Error) -> WriteError {
    let outage = matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::DiskFull)
    );
    if outage {
        WriteError::Outage(error.to_string())
    } else {
        WriteError::Refused(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{default_url, Database};
    use crate::store::history::MessageRecord;
    use std::time::Duration;

    #[tokio::test]
    async fn a_batch_writes_its_messages_many_to_a_statement_in_order_beside_the_other_rows() {
        let dir = std::env::temp_dir().join(format!("switchyard-writer-{}", uuid::Uuid::new_v4().simple()));
        let db = Database::open(&default_url(&dir), 2, Duration::from_secs(5)).await.unwrap();
        // Two whole statements' worth of messages and a remainder of three,
        // with a connection opened before them and closed after.
        let count = 2 * MESSAGES_PER_INSERT + 3;
        let mut records = vec![Record::Opened { id: "c1".into(), endpoint: "/ws".into(), client_id: None, remote: None, at: 1 }];
        records.extend((0..count).map(|n| {
            let message = MessageRecord { id: format!("m{n}"), kind: "echo".into(), sender: Some("c1".into()), outcome: "OK".into(), latency_us: n as i64, ..MessageRecord::default() };
            Record::Message(message, 2 + n as i64)
        }));
        records.push(Record::Closed { id: "c1".into(), device_id: None, code: 1000, reason: String::new(), at: 9_999 });
        let path = db.sqlite_file().unwrap().to_owned();
        let mut writer = SqliteWriter::new(&path);
        assert!(tokio::task::spawn_blocking(move || writer.write(&records).is_ok()).await.unwrap());

        let ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM message_history ORDER BY seq").fetch_all(db.pool()).await.unwrap();
        assert_eq!(ids, (0..count).map(|n| format!("m{n}")).collect::<Vec<_>>(), "every message, in the order recorded");
        let latency: i64 = sqlx::query_scalar("SELECT latency_us FROM message_history WHERE message_id = 'm130'").fetch_one(db.pool()).await.unwrap();
        assert_eq!(latency, 130, "each row's values bound to its own placeholders");
        let closed: Option<i64> = sqlx::query_scalar("SELECT close_code FROM connection_history WHERE id = 'c1'").fetch_one(db.pool()).await.unwrap();
        assert_eq!(closed, Some(1000));
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
