//! Retention: a background task that deletes history older than a table's
//! `max_age_s` and beyond its newest `max_rows`, in bounded batches (one
//! short statement each, a pause between), so it never holds the tables
//! long or competes with the writer for more than one batch at a time.

use super::db::{now_ms, utc_text, Backend, Database};
use crate::config::storage::{RetentionConfig, TableRetention};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How a history table is ordered and dated.
struct Table {
    name: &'static str,
    /// Increasing with age order; rows at or below a cut-off go.
    key: &'static str,
    time: &'static str,
    /// `time` holds milliseconds since the epoch (else a UTC timestamp).
    time_in_ms: bool,
}

/// The tables retention applies to, as `config::storage::RETENTION_TABLES`
/// names them (`rooms` and `devices` are current state, not history, and
/// are kept).
const TABLES: [Table; 5] = [
    Table { name: "message_history", key: "seq", time: "at_ms", time_in_ms: true },
    Table { name: "connection_history", key: "connected_ms", time: "connected_ms", time_in_ms: true },
    Table { name: "messages", key: "id", time: "sent_at", time_in_ms: false },
    Table { name: "connections", key: "id", time: "connected_at", time_in_ms: false },
    Table { name: "room_queries", key: "id", time: "queried_at", time_in_ms: false },
];

/// Apply `config` every `every_ms` until `stop`.
pub async fn run(db: Database, config: RetentionConfig, stop: CancellationToken) {
    if config.tables.is_empty() {
        return;
    }
    let every = Duration::from_millis(config.every_ms);
    loop {
        for table in &TABLES {
            if let Some(rule) = config.tables.get(table.name) {
                match apply(&db, table, rule, config.batch, &stop).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(table = table.name, deleted, "retention deleted old history"),
                    Err(error) => tracing::warn!(table = table.name, "retention failed, retrying next round: {error}"),
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One round on one table; how many rows it deleted.
async fn apply(db: &Database, table: &Table, rule: &TableRetention, batch: u32, stop: &CancellationToken) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    if let Some(max_age_s) = rule.max_age_s {
        let cutoff_ms = now_ms() - (max_age_s as i64).saturating_mul(1000);
        let (cond, value) = match (table.time_in_ms, db.backend()) {
            (true, _) => (format!("{} < ?", table.time), Cutoff::Int(cutoff_ms)),
            (false, Backend::Sqlite) => (format!("{} < ?", table.time), Cutoff::Text(utc_text(cutoff_ms))),
            (false, Backend::Postgres) => (format!("{} < CAST(? AS TIMESTAMP(3))", table.time), Cutoff::Text(utc_text(cutoff_ms))),
            (false, Backend::Mysql) => (format!("{} < CAST(? AS DATETIME(3))", table.time), Cutoff::Text(utc_text(cutoff_ms))),
        };
        deleted += delete_where(db, table, &cond, &value, batch, stop).await?;
    }
    if let Some(max_rows) = rule.max_rows {
        // The newest row beyond the first max_rows, and everything older, go.
        let newest_gone = format!("SELECT {key} FROM {name} ORDER BY {key} DESC LIMIT 1 OFFSET {max_rows}", key = table.key, name = table.name);
        let cutoff: Option<i64> = sqlx::query_scalar(&newest_gone).fetch_optional(db.pool()).await?;
        if let Some(cutoff) = cutoff {
            deleted += delete_where(db, table, &format!("{} <= ?", table.key), &Cutoff::Int(cutoff), batch, stop).await?;
        }
    }
    Ok(deleted)
}

enum Cutoff {
    Int(i64),
    Text(String),
}

/// Delete the rows matching `cond` (one `?`), oldest first, `batch` at a time.
async fn delete_where(db: &Database, table: &Table, cond: &str, value: &Cutoff, batch: u32, stop: &CancellationToken) -> Result<u64, sqlx::Error> {
    let (name, key) = (table.name, table.key);
    let sql = match db.backend() {
        Backend::Mysql => format!("DELETE FROM {name} WHERE {cond} ORDER BY {key} LIMIT {batch}"),
        Backend::Sqlite | Backend::Postgres => {
            format!("DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM {name} WHERE {cond} ORDER BY {key} LIMIT {batch})")
        }
    };
    let sql = db.sql(&sql);
    let mut deleted = 0;
    loop {
        let query = sqlx::query(&sql);
        let query = match value {
            Cutoff::Int(v) => query.bind(*v),
            Cutoff::Text(v) => query.bind(v.as_str()),
        };
        let n = query.execute(db.pool()).await?.rows_affected();
        deleted += n;
        if n < u64::from(batch) || stop.is_cancelled() {
            return Ok(deleted);
        }
        // Let the history writer in between batches.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_configurable_tables_are_the_tables_retention_applies_to() {
        let names: Vec<_> = super::TABLES.iter().map(|t| t.name).collect();
        assert_eq!(names, crate::config::storage::RETENTION_TABLES);
    }
}
