//! Reading history back: messages and connections a page at a time,
//! counts by type and outcome, and one room's recent activity. What the
//! history API (`transport/api/history.rs`) and `switchyard history` ask.
//!
//! Every statement is written once with `?` placeholders (numbered for
//! PostgreSQL by [`Database::sql`]); only the timestamp casts of the room
//! server's tables differ per backend. Values are always bound, never
//! spliced in; the only numbers in the text are ours (a `LIMIT`, a prefix
//! length).
//!
//! Pages are keyset-paginated, never `OFFSET`: a [`Cursor`] holds the key
//! of the last row returned (`seq` for messages, `connected_ms` and `id`
//! for connections) and the order, and the next page starts strictly past
//! it. Rows written meanwhile neither shift a walk nor repeat in it.
//!
//! This module reads what history recorded and nothing more: a payload
//! history did not keep (`no_payload_types`, `max_payload_bytes = 0`) is
//! not here to return.

use super::db::{now_ms, text, utc_text, Backend, Database};
use serde::Serialize;
use sqlx::Row;
use std::collections::BTreeMap;
use std::fmt;

/// Most groups a count returns; past this it says `truncated`.
pub const MAX_GROUPS: usize = 1_000;

/// Which way a walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

impl Order {
    fn sql(self) -> &'static str {
        match self {
            Order::NewestFirst => "DESC",
            Order::OldestFirst => "ASC",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Order::NewestFirst => "<",
            Order::OldestFirst => ">",
        }
    }

    fn letter(self) -> char {
        match self {
            Order::NewestFirst => 'd',
            Order::OldestFirst => 'a',
        }
    }
}

/// Where a walk stopped: the key of the last row a page returned. Opaque
/// to callers (hex text); it names what it walks and in which order, so
/// a messages cursor is refused on connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Messages { order: Order, seq: i64 },
    Connections { order: Order, connected_ms: i64, id: String },
}

/// A cursor that is not one this host handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCursor;

impl Cursor {
    pub fn order(&self) -> Order {
        match self {
            Cursor::Messages { order, .. } | Cursor::Connections { order, .. } => *order,
        }
    }

    pub fn parse(cursor: &str) -> Result<Cursor, BadCursor> {
        let bytes = hex::decode(cursor).map_err(|_| BadCursor)?;
        let plain = String::from_utf8(bytes).map_err(|_| BadCursor)?;
        let mut parts = plain.splitn(4, '|');
        let (what, order) = (parts.next(), parts.next());
        let order = match order {
            Some("d") => Order::NewestFirst,
            Some("a") => Order::OldestFirst,
            _ => return Err(BadCursor),
        };
        let number = |part: Option<&str>| part.and_then(|p| p.parse::<i64>().ok()).ok_or(BadCursor);
        match what {
            Some("m") => {
                let seq = number(parts.next())?;
                parts.next().is_none().then_some(Cursor::Messages { order, seq }).ok_or(BadCursor)
            }
            Some("c") => {
                let connected_ms = number(parts.next())?;
                let id = parts.next().filter(|id| !id.is_empty()).ok_or(BadCursor)?.to_owned();
                Ok(Cursor::Connections { order, connected_ms, id })
            }
            _ => Err(BadCursor),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = match self {
            Cursor::Messages { order, seq } => format!("m|{}|{seq}", order.letter()),
            Cursor::Connections { order, connected_ms, id } => format!("c|{}|{connected_ms}|{id}", order.letter()),
        };
        f.write_str(&hex::encode(plain))
    }
}

/// Which message types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeFilter {
    Exact(String),
    /// `video.*`: the types under `video.` (given without the `*`).
    Prefix(String),
}

/// Which outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeFilter {
    Ok,
    /// Any error code.
    Error,
    /// One code (`OK` is [`OutcomeFilter::Ok`]).
    Code(String),
}

/// What to select from `message_history`. Times are milliseconds since
/// the epoch; `since` is inclusive, `until` exclusive.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub room: Option<String>,
    pub device: Option<String>,
    pub kind: Option<TypeFilter>,
    pub outcome: Option<OutcomeFilter>,
    /// `in` or `out`.
    pub direction: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// What to select from `connection_history`.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    /// `Some(true)`: open now (no close recorded, opened since this host
    /// started); `Some(false)`: closed.
    pub active: Option<bool>,
    pub device: Option<String>,
    pub client_id: Option<String>,
    pub endpoint: Option<String>,
    /// Open at some time in `[since, until)`.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// One message as history recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageRow {
    pub seq: i64,
    pub at: String,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub direction: String,
    pub outcome: String,
    pub sender: Option<String>,
    pub target: Option<String>,
    pub device_id: Option<String>,
    pub room_id: Option<String>,
    pub plugin: Option<String>,
    pub plugin_version: Option<String>,
    pub latency_us: i64,
    /// The payload as recorded (cut to `max_payload_bytes`, so not always
    /// whole JSON); `None` when history kept none.
    pub payload: Option<String>,
}

/// One connection as history recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRow {
    pub id: String,
    pub endpoint: String,
    pub client_id: Option<String>,
    pub device_id: Option<String>,
    pub remote_addr: Option<String>,
    pub connected_at: String,
    pub disconnected_at: Option<String>,
    pub close_code: Option<i64>,
    pub close_reason: Option<String>,
}

/// One page, and the cursor of the next if there is more.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub next: Option<Cursor>,
}

/// Messages of one type and outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Count {
    #[serde(rename = "type")]
    pub kind: String,
    pub outcome: String,
    pub count: i64,
}

/// The groups of a count, largest first, at most [`MAX_GROUPS`].
#[derive(Debug, Clone)]
pub struct Counts {
    pub groups: Vec<Count>,
    pub truncated: bool,
}

/// One room over the last minutes, from history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoomActivity {
    /// When the room was first joined, if history saw it.
    pub created_at: Option<String>,
    /// Joins (`connections` rows) in the window, and how many devices.
    pub joins: i64,
    pub devices_joined: i64,
    /// `message_history` rows filed under the room in the window, by type.
    pub messages: BTreeMap<String, i64>,
    /// The room server's `messages` rows in the window: `broadcast`, `direct`.
    pub sent: BTreeMap<String, i64>,
    /// `room_queries` rows in the window.
    pub queries: i64,
}

/// A value bound to a `?`.
enum Bind {
    Int(i64),
    Text(String),
}

/// A `WHERE` clause and its values, built up condition by condition.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    binds: Vec<Bind>,
}

impl Where {
    fn push(&mut self, condition: impl Into<String>, binds: impl IntoIterator<Item = Bind>) {
        self.conditions.push(condition.into());
        self.binds.extend(binds);
    }

    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        }
    }

    fn bind<'q>(&'q self, mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for bind in &self.binds {
            query = match bind {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(v.as_str()),
            };
        }
        query
    }
}

fn message_where(filter: &MessageFilter) -> Where {
    let mut w = Where::default();
    if let Some(room) = &filter.room {
        w.push("room_id = ?", [Bind::Text(room.clone())]);
    }
    if let Some(device) = &filter.device {
        w.push("device_id = ?", [Bind::Text(device.clone())]);
    }
    match &filter.kind {
        Some(TypeFilter::Exact(kind)) => w.push("msg_type = ?", [Bind::Text(kind.clone())]),
        // SUBSTR, not LIKE: a type's `_` is no wildcard, and no dialect's
        // escaping is needed. The length is ours, in characters.
        Some(TypeFilter::Prefix(prefix)) => {
            w.push(format!("SUBSTR(msg_type, 1, {}) = ?", prefix.chars().count()), [Bind::Text(prefix.clone())]);
        }
        None => {}
    }
    match &filter.outcome {
        Some(OutcomeFilter::Ok) => w.push("outcome = 'OK'", []),
        Some(OutcomeFilter::Error) => w.push("outcome <> 'OK'", []),
        Some(OutcomeFilter::Code(code)) => w.push("outcome = ?", [Bind::Text(code.clone())]),
        None => {}
    }
    if let Some(direction) = &filter.direction {
        w.push("direction = ?", [Bind::Text(direction.clone())]);
    }
    if let Some(since) = filter.since_ms {
        w.push("at_ms >= ?", [Bind::Int(since)]);
    }
    if let Some(until) = filter.until_ms {
        w.push("at_ms < ?", [Bind::Int(until)]);
    }
    w
}

/// `ms` as RFC 3339 UTC text with milliseconds.
fn rfc3339(ms: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// A timestamp column's text (each backend's own spelling of UTC) as
/// RFC 3339, as the rest of the API writes times.
fn timestamp_text(stored: &str) -> String {
    match humantime::parse_rfc3339_weak(stored.trim()) {
        Ok(time) => humantime::format_rfc3339_millis(time).to_string(),
        Err(_) => stored.to_owned(),
    }
}

fn required(row: &sqlx::any::AnyRow, index: usize) -> Result<String, sqlx::Error> {
    Ok(text(row, index)?.unwrap_or_default())
}

/// Reads history from the database it is written to.
#[derive(Clone)]
pub struct HistoryQueries {
    db: Database,
    /// When this host started (ms): a connection opened before then and
    /// never closed ended with an earlier run, not open now.
    started_ms: i64,
}

impl HistoryQueries {
    pub fn new(db: Database) -> HistoryQueries {
        HistoryQueries { db, started_ms: now_ms() }
    }

    /// A page of messages, `limit` rows at most, from `cursor` on.
    pub async fn messages(&self, filter: &MessageFilter, order: Order, cursor: Option<i64>, limit: u32) -> Result<Page<MessageRow>, sqlx::Error> {
        let mut w = message_where(filter);
        if let Some(seq) = cursor {
            w.push(format!("seq {} ?", order.past()), [Bind::Int(seq)]);
        }
        let sql = format!(
            "SELECT seq, message_id, msg_type, direction, outcome, sender, target, device_id, room_id, plugin, plugin_version, latency_us, payload, at_ms \
             FROM message_history{} ORDER BY seq {} LIMIT {}",
            w.sql(),
            order.sql(),
            u64::from(limit) + 1
        );
        let sql = self.db.sql(&sql);
        let rows = w.bind(sqlx::query(&sql)).fetch_all(self.db.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(MessageRow {
                seq: row.try_get(0)?,
                id: required(row, 1)?,
                kind: required(row, 2)?,
                direction: required(row, 3)?,
                outcome: required(row, 4)?,
                sender: text(row, 5)?,
                target: text(row, 6)?,
                device_id: text(row, 7)?,
                room_id: text(row, 8)?,
                plugin: text(row, 9)?,
                plugin_version: text(row, 10)?,
                latency_us: row.try_get(11)?,
                payload: text(row, 12)?,
                at: rfc3339(row.try_get(13)?),
            });
        }
        let more = out.len() > limit as usize;
        out.truncate(limit as usize);
        let next = more.then(|| out.last().map(|m| Cursor::Messages { order, seq: m.seq })).flatten();
        Ok(Page { rows: out, next })
    }

    /// A page of connections, newest (or oldest) opened first.
    pub async fn connections(
        &self,
        filter: &ConnectionFilter,
        order: Order,
        cursor: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Page<ConnectionRow>, sqlx::Error> {
        let mut w = Where::default();
        match filter.active {
            Some(true) => w.push("disconnected_ms IS NULL AND connected_ms >= ?", [Bind::Int(self.started_ms)]),
            Some(false) => w.push("disconnected_ms IS NOT NULL", []),
            None => {}
        }
        if let Some(device) = &filter.device {
            w.push("device_id = ?", [Bind::Text(device.clone())]);
        }
        if let Some(client) = &filter.client_id {
            w.push("client_id = ?", [Bind::Text(client.clone())]);
        }
        if let Some(endpoint) = &filter.endpoint {
            w.push("endpoint = ?", [Bind::Text(endpoint.clone())]);
        }
        if let Some(until) = filter.until_ms {
            w.push("connected_ms < ?", [Bind::Int(until)]);
        }
        if let Some(since) = filter.since_ms {
            w.push("(disconnected_ms IS NULL OR disconnected_ms >= ?)", [Bind::Int(since)]);
        }
        if let Some((connected_ms, id)) = cursor {
            let past = order.past();
            w.push(
                format!("(connected_ms {past} ? OR (connected_ms = ? AND id {past} ?))"),
                [Bind::Int(connected_ms), Bind::Int(connected_ms), Bind::Text(id)],
            );
        }
        let sql = format!(
            "SELECT id, endpoint, client_id, device_id, remote_addr, connected_ms, disconnected_ms, close_code, close_reason \
             FROM connection_history{} ORDER BY connected_ms {o}, id {o} LIMIT {}",
            w.sql(),
            u64::from(limit) + 1,
            o = order.sql(),
        );
        let sql = self.db.sql(&sql);
        let rows = w.bind(sqlx::query(&sql)).fetch_all(self.db.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let connected_ms: i64 = row.try_get(5)?;
            let disconnected_ms: Option<i64> = row.try_get(6)?;
            let close_code = match row.try_get::<Option<i32>, _>(7) {
                Ok(code) => code.map(i64::from),
                Err(_) => row.try_get::<Option<i64>, _>(7)?,
            };
            let id = required(row, 0)?;
            keys.push((connected_ms, id.clone()));
            out.push(ConnectionRow {
                id,
                endpoint: required(row, 1)?,
                client_id: text(row, 2)?,
                device_id: text(row, 3)?,
                remote_addr: text(row, 4)?,
                connected_at: rfc3339(connected_ms),
                disconnected_at: disconnected_ms.map(rfc3339),
                close_code,
                close_reason: text(row, 8)?,
            });
        }
        let more = out.len() > limit as usize;
        out.truncate(limit as usize);
        keys.truncate(limit as usize);
        let next = more.then(|| keys.pop().map(|(connected_ms, id)| Cursor::Connections { order, connected_ms, id })).flatten();
        Ok(Page { rows: out, next })
    }

    /// How many messages of each type and outcome match `filter`.
    pub async fn counts(&self, filter: &MessageFilter) -> Result<Counts, sqlx::Error> {
        let w = message_where(filter);
        let sql = format!(
            "SELECT msg_type, outcome, COUNT(*) FROM message_history{} GROUP BY msg_type, outcome ORDER BY COUNT(*) DESC LIMIT {}",
            w.sql(),
            MAX_GROUPS + 1
        );
        let sql = self.db.sql(&sql);
        let rows = w.bind(sqlx::query(&sql)).fetch_all(self.db.pool()).await?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in &rows {
            groups.push(Count { kind: required(row, 0)?, outcome: required(row, 1)?, count: row.try_get(2)? });
        }
        let truncated = groups.len() > MAX_GROUPS;
        groups.truncate(MAX_GROUPS);
        // The same order on every backend, whatever its collation.
        groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.kind.cmp(&b.kind)).then_with(|| a.outcome.cmp(&b.outcome)));
        Ok(Counts { groups, truncated })
    }

    /// What history saw of `room` since `since_ms`; `None` if history
    /// never saw the room at all.
    pub async fn room_activity(&self, room: &str, since_ms: i64) -> Result<Option<RoomActivity>, sqlx::Error> {
        let db = &self.db;
        let (ts, as_text) = match db.backend() {
            Backend::Sqlite => ("?", "created_at"),
            Backend::Postgres => ("CAST(? AS TIMESTAMP(3))", "CAST(created_at AS TEXT)"),
            Backend::Mysql => ("CAST(? AS DATETIME(3))", "CAST(created_at AS CHAR)"),
        };
        let since_ts = utc_text(since_ms);
        let created = sqlx::query(&db.sql(&format!("SELECT {as_text} FROM rooms WHERE room_id = ?"))).bind(room).fetch_optional(db.pool()).await?;
        let created_at = match &created {
            Some(row) => text(row, 0)?.map(|t| timestamp_text(&t)),
            None => None,
        };
        let joins = sqlx::query(&db.sql(&format!(
            "SELECT COUNT(*), COUNT(DISTINCT device_id) FROM connections WHERE room_id = ? AND connected_at >= {ts}"
        )))
        .bind(room)
        .bind(&since_ts)
        .fetch_one(db.pool())
        .await?;
        let grouped = |sql: String, since: Bind| async move {
            let query = sqlx::query(&sql).bind(room);
            let query = match since {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
            let mut out = BTreeMap::new();
            for row in query.fetch_all(db.pool()).await? {
                out.insert(required(&row, 0)?, row.try_get::<i64, _>(1)?);
            }
            Ok::<_, sqlx::Error>(out)
        };
        let messages = grouped(
            db.sql(&format!("SELECT msg_type, COUNT(*) FROM message_history WHERE room_id = ? AND at_ms >= ? GROUP BY msg_type LIMIT {MAX_GROUPS}"))
                .into_owned(),
            Bind::Int(since_ms),
        )
        .await?;
        let sent = grouped(
            db.sql(&format!("SELECT message_type, COUNT(*) FROM messages WHERE room_id = ? AND sent_at >= {ts} GROUP BY message_type")).into_owned(),
            Bind::Text(since_ts.clone()),
        )
        .await?;
        let queries: i64 = sqlx::query_scalar(&db.sql(&format!("SELECT COUNT(*) FROM room_queries WHERE room_id = ? AND queried_at >= {ts}")))
            .bind(room)
            .bind(&since_ts)
            .fetch_one(db.pool())
            .await?;
        if created.is_none() && messages.is_empty() {
            return Ok(None);
        }
        Ok(Some(RoomActivity {
            created_at,
            joins: joins.try_get(0)?,
            devices_joined: joins.try_get(1)?,
            messages,
            sent,
            queries,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_write() {
        for cursor in [
            Cursor::Messages { order: Order::NewestFirst, seq: 42 },
            Cursor::Messages { order: Order::OldestFirst, seq: 0 },
            Cursor::Connections { order: Order::NewestFirst, connected_ms: 1_764_610_580_123, id: "c-1|x".into() },
        ] {
            assert_eq!(Cursor::parse(&cursor.to_string()), Ok(cursor));
        }
        for bad in ["", "zz", "6d7c647c", &hex::encode("m|x|1"), &hex::encode("m|d|1|2"), &hex::encode("c|d|1|"), &hex::encode("q|d|1")] {
            assert_eq!(Cursor::parse(bad), Err(BadCursor), "{bad}");
        }
    }

    #[test]
    fn stored_timestamps_read_as_rfc3339() {
        assert_eq!(timestamp_text("2025-12-01 17:36:20.123"), "2025-12-01T17:36:20.123Z");
        assert_eq!(timestamp_text("2025-12-01 17:36:20"), "2025-12-01T17:36:20.000Z");
        assert_eq!(rfc3339(1_764_610_580_123), "2025-12-01T17:36:20.123Z");
    }

    /// 25 messages on a fresh SQLite file: every filter selects exactly
    /// its rows, and a walk in pages of 7 sees each row once.
    #[tokio::test]
    async fn filters_and_pages_on_sqlite() {
        let dir = std::env::temp_dir().join(format!("switchyard-queries-{}", uuid::Uuid::new_v4().simple()));
        let db = Database::open(&super::super::db::default_url(&dir), 2, std::time::Duration::from_secs(5)).await.unwrap();
        let insert = "INSERT INTO message_history (message_id, msg_type, direction, outcome, latency_us, at_ms, device_id, room_id) \
                      VALUES (?, ?, 'in', ?, 1, ?, ?, ?)";
        for n in 0..25i64 {
            let kind = if n % 5 == 0 { "video.play" } else { "get_time" };
            let outcome = if n % 4 == 0 { "UNKNOWN_TYPE" } else { "OK" };
            let device = format!("d{}", n % 3);
            sqlx::query(insert).bind(format!("m{n}")).bind(kind).bind(outcome).bind(1_000 + n).bind(device).bind("R").execute(db.pool()).await.unwrap();
        }
        let queries = HistoryQueries::new(db.clone());
        let ids = |page: &Page<MessageRow>| page.rows.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        let all = |filter: MessageFilter| {
            let queries = queries.clone();
            async move { ids(&queries.messages(&filter, Order::OldestFirst, None, 100).await.unwrap()) }
        };
        let expect = |f: &dyn Fn(i64) -> bool| (0..25).filter(|n| f(*n)).map(|n| format!("m{n}")).collect::<Vec<_>>();
        assert_eq!(all(MessageFilter { device: Some("d1".into()), ..Default::default() }).await, expect(&|n| n % 3 == 1));
        assert_eq!(all(MessageFilter { kind: Some(TypeFilter::Prefix("video.".into())), ..Default::default() }).await, expect(&|n| n % 5 == 0));
        assert_eq!(all(MessageFilter { kind: Some(TypeFilter::Exact("get_time".into())), ..Default::default() }).await, expect(&|n| n % 5 != 0));
        assert_eq!(all(MessageFilter { outcome: Some(OutcomeFilter::Error), ..Default::default() }).await, expect(&|n| n % 4 == 0));
        assert_eq!(all(MessageFilter { since_ms: Some(1_010), until_ms: Some(1_015), ..Default::default() }).await, expect(&|n| (10..15).contains(&n)));
        assert!(all(MessageFilter { room: Some("other".into()), ..Default::default() }).await.is_empty());

        for order in [Order::NewestFirst, Order::OldestFirst] {
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page = queries.messages(&MessageFilter::default(), order, cursor, 7).await.unwrap();
                assert!(page.rows.len() <= 7);
                seen.extend(ids(&page));
                match page.next {
                    Some(Cursor::Messages { seq, .. }) => cursor = Some(seq),
                    _ => break,
                }
            }
            let mut want = expect(&|_| true);
            if order == Order::NewestFirst {
                want.reverse();
            }
            assert_eq!(seen, want);
        }
        let counts = queries.counts(&MessageFilter::default()).await.unwrap();
        let total: i64 = counts.groups.iter().map(|c| c.count).sum();
        assert_eq!(total, 25);
        assert!(!counts.truncated);
        db.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
