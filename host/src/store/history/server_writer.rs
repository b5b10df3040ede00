//! Writes history batches through sqlx, to PostgreSQL and MySQL/MariaDB.
//! Messages go in many rows per `INSERT`, the rest one statement per row.

use super::batch::{message_insert, rows, Row, Sql, Statement, Value, MESSAGES_PER_INSERT};
use super::{Record, WriteError};
use crate::store::db::{Backend, Database};
use sqlx::{Connection, Executor};

/// The writer's own connection, taken out of the pool (which opens a
/// replacement, so kv writes and history queries keep every pooled one)
/// and made cheap to commit on: PostgreSQL `synchronous_commit = off`
/// (the server flushes within moments; its crash can lose the last
/// batches, never tear them). MySQL's
/// equivalent is server-wide, so it is left alone. kv writes keep their
/// pooled, fully synced connections. Dropped after any error, and opened
/// again.
pub(super) struct ServerWriter {
    db: Database,
    sql: Sql,
    connection: Option<sqlx::AnyConnection>,
}

impl ServerWriter {
    pub fn new(db: Database) -> ServerWriter {
        ServerWriter { sql: Sql::new(db.backend()), db, connection: None }
    }

    /// Write `records` in one transaction.
    pub async fn write(&mut self, records: &[Record]) -> Result<(), WriteError> {
        let written = match &mut self.connection {
            Some(connection) => write_batch(connection, self.db.backend(), &self.sql, records).await,
            None => match connect(&self.db).await {
                Ok(connection) => write_batch(self.connection.insert(connection), self.db.backend(), &self.sql, records).await,
                Err(error) => Err(error),
            },
        };
        written.map_err(|error| {
            self.connection = None;
            match error {
                // The server answered and said no: not an outage.
                sqlx::Error::Database(error) if !is_connection_error(&*error) => WriteError::Refused(error.to_string()),
                other => WriteError::Outage(other.to_string()),
            }
        })
    }
}

async fn connect(db: &Database) -> Result<sqlx::AnyConnection, sqlx::Error> {
    let mut connection = db.pool().acquire().await?.detach();
    if db.backend() == Backend::Postgres {
        connection.execute("SET synchronous_commit = off").await?;
    }
    Ok(connection)
}

/// A server error that means the connection went (PostgreSQL's admin
/// shutdown, MySQL's server gone): an outage, retried like one.
fn is_connection_error(error: &dyn sqlx::error::DatabaseError) -> bool {
    let code = error.code().unwrap_or_default();
    code.starts_with("57P") || code.starts_with("08") || code == "HY000" && error.message().contains("shutdown")
}

fn bind<'q>(mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>, values: &'q [Value<'_>]) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for value in values {
        query = match value {
            Value::Text(text) => query.bind(text.as_deref()),
            Value::Int(number) => query.bind(*number),
        };
    }
    query
}

async fn write_batch(connection: &mut sqlx::AnyConnection, backend: Backend, sql: &Sql, records: &[Record]) -> Result<(), sqlx::Error> {
    let rows = rows(records);
    let (messages, others): (Vec<&Row<'_>>, Vec<&Row<'_>>) = rows.iter().partition(|row| row.statement == Statement::Message);
    let mut tx = connection.begin().await?;
    for row in others {
        bind(sqlx::query(sql.of(row.statement)), &row.values).execute(&mut *tx).await?;
    }
    // Messages go in many rows per statement: most of a batch is messages.
    for chunk in messages.chunks(MESSAGES_PER_INSERT) {
        // Whole chunks reuse the text built once; only the last may be short.
        let short;
        let text = if chunk.len() == MESSAGES_PER_INSERT {
            sql.messages()
        } else {
            short = backend.sql(&message_insert(chunk.len())).into_owned();
            &short
        };
        let mut query = sqlx::query(text);
        for row in chunk {
            query = bind(query, &row.values);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await
}
