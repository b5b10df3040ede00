//! Writes history batches to a SQLite file through rusqlite, on a blocking
//! thread, with one prepared statement per kind of row kept across
//! batches.
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

use super::batch::{rows, Sql, Statement, Value};
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
    // IMMEDIATE: the write lock is taken at the start, waiting out
    // `busy_timeout` for a kv commit, not at the first insert, where a
    // commit that slipped in after its read snapshot fails it at once
    // (SQLITE_BUSY_SNAPSHOT) instead of waiting.
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        // Most rows are messages: their statement is taken out of the cache once.
        let mut message = tx.prepare_cached(sql.of(Statement::Message))?;
        for row in rows(records) {
            if row.statement == Statement::Message {
                execute(&mut message, &row.values)?;
            } else {
                let mut statement = tx.prepare_cached(sql.of(row.statement))?;
                execute(&mut statement, &row.values)?;
            }
        }
    }
    tx.commit()
}

fn execute(statement: &mut rusqlite::Statement<'_>, values: &[Value<'_>]) -> rusqlite::Result<()> {
    for (i, value) in values.iter().enumerate() {
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
