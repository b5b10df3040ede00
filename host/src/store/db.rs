//! The database behind durable state and history: SQLite (the default, a
//! file in the data folder, WAL mode, created on first start), PostgreSQL
//! or MySQL/MariaDB, chosen by the URL's scheme.
//!
//! One library, sqlx, serves the three through its `Any` driver: one pool
//! type and one query API, so each statement is written once (with `?`
//! placeholders, numbered for PostgreSQL by [`Database::sql`]) and only the
//! schema differs per backend. The pool reconnects by itself: a connection
//! the server dropped is replaced on the next acquire. One exception, for
//! speed: history's batches to a SQLite file go through a rusqlite
//! connection of their own (see `history/sqlite_writer.rs`).
//!
//! The schema is versioned: `migrations/<backend>/NNNN_name.sql`, embedded
//! in the binary, applied at start-up in order, each version recorded in
//! `_sqlx_migrations` (with a checksum, so an edited migration is refused).

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::Executor;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::config::storage::{redact, Backend};

impl Backend {
    /// The schema's migrations for this backend, oldest first.
    fn migrations(self) -> &'static [(i64, &'static str, &'static str)] {
        match self {
            Backend::Sqlite => &[
                (1, "kv and history", include_str!("migrations/sqlite/0001_kv_and_history.sql")),
                (2, "room server tables", include_str!("migrations/sqlite/0002_room_server_tables.sql")),
                (3, "history queries", include_str!("migrations/sqlite/0003_history_queries.sql")),
            ],
            Backend::Postgres => &[
                (1, "kv and history", include_str!("migrations/postgres/0001_kv_and_history.sql")),
                (2, "room server tables", include_str!("migrations/postgres/0002_room_server_tables.sql")),
                (3, "history queries", include_str!("migrations/postgres/0003_history_queries.sql")),
            ],
            Backend::Mysql => &[
                (1, "kv and history", include_str!("migrations/mysql/0001_kv_and_history.sql")),
                (2, "room server tables", include_str!("migrations/mysql/0002_room_server_tables.sql")),
                (3, "history queries", include_str!("migrations/mysql/0003_history_queries.sql")),
            ],
        }
    }
}

/// The default database: `switchyard.db` in the data folder.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("switchyard.db").display())
}

/// An open, migrated database.
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// A SQLite database's file (none for PostgreSQL and MySQL).
    file: Option<PathBuf>,
}

/// The embedded migrations of one backend, as sqlx's migrator reads them.
#[derive(Debug)]
struct Embedded(Backend);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> futures_util::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        let migrations = self
            .0
            .migrations()
            .iter()
            .map(|&(version, name, sql)| Migration::new(version, Cow::Borrowed(name), MigrationType::Simple, Cow::Borrowed(sql), false))
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

impl Database {
    /// Connect (creating a SQLite file and its folder if missing), set
    /// SQLite's WAL mode, and apply the migrations not yet applied.
    /// `timeout` bounds each wait for a connection, so an unreachable
    /// server fails a call instead of stalling it.
    pub async fn open(url: &str, max_connections: u32, timeout: Duration) -> anyhow::Result<Database> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let mut connect_url = url.to_owned();
        let mut file = None;
        if backend == Backend::Sqlite {
            let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
            let (path, options) = path.split_once('?').unwrap_or((path, ""));
            let in_memory = path.is_empty() || path == ":memory:" || options.split('&').any(|o| o == "mode=memory");
            if in_memory {
                anyhow::bail!(
                    "storage.url ({}) names an in-memory SQLite database, which is not supported: each pooled connection would open its own, empty one; use a file, sqlite://PATH",
                    redact(url)
                );
            }
            file = Some(PathBuf::from(path));
            if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create database folder {}", dir.display()))?;
            }
            if !connect_url.contains('?') {
                connect_url.push_str("?mode=rwc");
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { max_connections.min(4) } else { max_connections })
            .acquire_timeout(timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await
            .with_context(|| format!("cannot open database {}", redact(url)))?;
        let migrator = Migrator::new(Embedded(backend)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        migrator.run(&pool).await.with_context(|| format!("cannot migrate database {}", redact(url)))?;
        let database = Database { pool, backend, file };
        tracing::info!(database = %redact(url), backend = backend.name(), version = database.version().await?, "database ready");
        Ok(database)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A SQLite database's file.
    pub fn sqlite_file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The schema version: the newest migration applied.
    pub async fn version(&self) -> anyhow::Result<i64> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE").fetch_one(&self.pool).await?;
        Ok(version.unwrap_or(0))
    }

    /// `sql` with its `?` placeholders as this backend wants them
    /// (`$1`, `$2`... for PostgreSQL). Statements hold no `?` in literals.
    pub fn sql<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        self.backend.sql(sql)
    }

    /// Close every connection (at shutdown, after the last write).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Backend {
    /// `sql` with its `?` placeholders as this backend wants them.
    pub fn sql(self, sql: &str) -> Cow<'_, str> {
        if self != Backend::Postgres || !sql.contains('?') {
            return Cow::Borrowed(sql);
        }
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    }
}

/// Column `index` of `row` as text. MySQL's `TEXT` columns reach the
/// `Any` driver as blobs; their bytes are UTF-8 text all the same.
pub fn text(row: &sqlx::any::AnyRow, index: usize) -> Result<Option<String>, sqlx::Error> {
    use sqlx::Row;
    match row.try_get::<Option<String>, _>(index) {
        Ok(text) => Ok(text),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let bytes: Option<Vec<u8>> = row.try_get(index)?;
            bytes
                .map(|b| String::from_utf8(b).map_err(|e| sqlx::Error::Decode(Box::new(e))))
                .transpose()
        }
        Err(other) => Err(other),
    }
}

/// `ms` (since the epoch) as UTC text, `YYYY-MM-DD HH:MM:SS.mmm`, which
/// each backend reads as a timestamp.
pub fn utc_text(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let text = humantime::format_rfc3339_millis(time).to_string();
    text.trim_end_matches('Z').replacen('T', " ", 1)
}

/// Milliseconds since the Unix epoch, the history tables' time unit.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_scheme_and_passwords_hidden() {
        assert_eq!(Backend::of("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgres://u:p@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("mysql://u@h/db").unwrap(), Backend::Mysql);
        let error = Backend::of("redis://u:secret@h").unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
        assert_eq!(redact("postgres://u:pw@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(utc_text(1_764_610_580_123), "2025-12-01 17:36:20.123");
    }

    #[tokio::test]
    async fn an_in_memory_sqlite_database_is_refused_with_the_reason() {
        for url in ["sqlite::memory:", "sqlite://:memory:", "sqlite://x.db?mode=memory"] {
            let error = Database::open(url, 4, Duration::from_secs(5)).await.err().expect(url).to_string();
            assert!(error.contains("in-memory SQLite database, which is not supported"), "{url}: {error}");
        }
    }

    #[tokio::test]
    async fn sqlite_file_is_created_migrated_and_reopened() {
        let dir = std::env::temp_dir().join(format!("switchyard-db-{}", uuid::Uuid::new_v4().simple()));
        let url = default_url(&dir.join("data"));
        let db = Database::open(&url, 4, Duration::from_secs(5)).await.unwrap();
        assert_eq!(db.version().await.unwrap(), 3);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(db.pool()).await.unwrap();
        assert_eq!(mode, "wal");
        db.close().await;
        let again = Database::open(&url, 4, Duration::from_secs(5)).await.unwrap();
        assert_eq!(again.version().await.unwrap(), 3, "a second start applies nothing twice");
        again.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
