//! What one batch of history records writes: a list of rows, each a
//! [`Statement`] and its values, in order. Nothing here touches a
//! database: the writers ([`super::sqlite_writer`] for SQLite,
//! [`super::server_writer`] for PostgreSQL and MySQL/MariaDB) only bind
//! the values and run the statements, in one
//! transaction per batch.

use super::{cut, Direction, MessageRecord, Record, DEVICE_DIRECT, ROOM_BROADCAST};
use crate::config::storage::Backend;
use crate::store::db::utc_text;
use std::borrow::Cow;

/// A message row's columns, in the order [`rows`] gives its values.
const MESSAGE_COLUMNS: &str =
    "message_id, msg_type, sender, target, direction, outcome, plugin, plugin_version, latency_us, payload, at_ms, device_id, room_id";
/// One message row's placeholders.
const MESSAGE_PLACEHOLDERS: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Message rows per `INSERT` statement (13 parameters each): most of a
/// batch is messages, and one statement for many rows binds and steps
/// once instead of once a row.
pub(super) const MESSAGES_PER_INSERT: usize = 64;

/// The `INSERT` of `count` message rows, with `?` placeholders.
pub(super) fn message_insert(count: usize) -> String {
    let mut text = format!("INSERT INTO message_history ({MESSAGE_COLUMNS}) VALUES ");
    for i in 0..count {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(MESSAGE_PLACEHOLDERS);
    }
    text
}

/// One bound value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value<'a> {
    Text(Option<Cow<'a, str>>),
    Int(i64),
}

/// What a row does: each is one statement of [`Sql`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Statement {
    /// A connection opened (`connection_history`).
    Opened,
    /// A connection identified as a device.
    Identified,
    /// A connection closed.
    Closed,
    /// The room server's `rooms`: a room seen for the first time.
    Room,
    /// The room server's `devices`: a device's last connection and room.
    Device,
    /// The room server's `connections`: a join.
    Connection,
    /// The room server's `messages`: a broadcast or a direct send.
    RoomMessage,
    /// The room server's `room_queries`.
    RoomQuery,
    /// `message_history`: one routed message.
    Message,
}

#[derive(Debug)]
pub(super) struct Row<'a> {
    pub statement: Statement,
    pub values: Vec<Value<'a>>,
}

fn text(value: &str) -> Value<'_> {
    Value::Text(Some(Cow::Borrowed(value)))
}

fn maybe(value: Option<&str>) -> Value<'_> {
    Value::Text(value.map(Cow::Borrowed))
}

fn owned<'a>(value: Option<String>) -> Value<'a> {
    Value::Text(value.map(Cow::Owned))
}

/// The rows `records` write, in the records' order.
pub(super) fn rows(records: &[Record]) -> Vec<Row<'_>> {
    let mut rows = Vec::with_capacity(records.len() + 4);
    let mut push = |statement, values| rows.push(Row { statement, values });
    for record in records {
        match record {
            Record::Opened { id, endpoint, client_id, remote, at } => push(
                Statement::Opened,
                vec![text(id), text(endpoint), maybe(client_id.as_deref()), maybe(remote.as_deref()), Value::Int(*at)],
            ),
            Record::Identified { id, device_id } => push(Statement::Identified, vec![text(device_id), text(id)]),
            Record::Closed { id, device_id, code, reason, at } => push(
                Statement::Closed,
                vec![Value::Int(*at), maybe(device_id.as_deref()), Value::Int(i64::from(*code)), text(reason), text(id)],
            ),
            Record::Joined { room, device_id, client_ip, at } => {
                let at = utc_text(*at);
                push(Statement::Room, vec![text(room), owned(Some(at.clone()))]);
                if let Some(device) = device_id {
                    push(Statement::Device, vec![text(device), owned(Some(at.clone())), text(room)]);
                }
                push(Statement::Connection, vec![maybe(device_id.as_deref()), text(room), maybe(client_ip.as_deref()), owned(Some(at))]);
            }
            Record::Message(m, at) => {
                if let Some((statement, values)) = room_row(m, *at) {
                    push(statement, values);
                }
                let (device, room) = placement(m);
                push(
                    Statement::Message,
                    vec![
                        text(&m.id),
                        text(&m.kind),
                        maybe(m.sender.as_deref()),
                        maybe(m.target.as_deref()),
                        text(m.direction.unwrap_or(Direction::In).as_str()),
                        text(&m.outcome),
                        maybe(m.plugin.as_deref()),
                        maybe(m.plugin_version.as_deref()),
                        Value::Int(m.latency_us),
                        maybe(m.payload.as_deref()),
                        Value::Int(*at),
                        owned(device),
                        owned(room),
                    ],
                );
            }
        }
    }
    rows
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

/// The row a message makes in the room server's tables, if any: a room
/// broadcast or a direct send in `messages`, an answered `query_room` in
/// `room_queries`.
fn room_row(m: &MessageRecord, at: i64) -> Option<(Statement, Vec<Value<'static>>)> {
    let presence = || m.presence.as_ref().map_or((None, None), |p| p.device_and_room());
    match (m.direction, m.kind.as_str()) {
        (Some(Direction::In), kind) if kind.rsplit('.').next() == Some("query_room") && m.outcome == "OK" => {
            let (device, room) = presence();
            Some((Statement::RoomQuery, vec![owned(device), owned(room), owned(Some(utc_text(at)))]))
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
            let values = vec![owned(room), owned(from), owned(to), owned(Some(kind.to_owned())), owned(content), owned(Some(utc_text(at)))];
            Some((Statement::RoomMessage, values))
        }
        _ => None,
    }
}

/// Every statement's text in one backend's dialect (`?` placeholders,
/// numbered for PostgreSQL; the room server's times cast to its
/// timestamp types).
pub(super) struct Sql {
    opened: String,
    identified: String,
    closed: String,
    room: String,
    device: String,
    connection: String,
    room_message: String,
    room_query: String,
    message: String,
    /// [`MESSAGES_PER_INSERT`] message rows in one statement.
    messages: String,
}

impl Sql {
    pub fn new(backend: Backend) -> Sql {
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
        let sql = |q: &str| backend.sql(q).into_owned();
        Sql {
            opened: sql("INSERT INTO connection_history (id, endpoint, client_id, remote_addr, connected_ms) VALUES (?, ?, ?, ?, ?)"),
            identified: sql("UPDATE connection_history SET device_id = ? WHERE id = ?"),
            closed: sql(
                "UPDATE connection_history SET disconnected_ms = ?, device_id = COALESCE(?, device_id), close_code = ?, close_reason = ? WHERE id = ?",
            ),
            room: sql(&room),
            device: sql(&device),
            connection: sql(&format!("INSERT INTO connections (device_id, room_id, client_ip, connected_at) VALUES (?, ?, ?, {ts})")),
            room_message: sql(&format!(
                "INSERT INTO messages (room_id, from_device_id, to_device_id, message_type, message_content, sent_at) VALUES (?, ?, ?, ?, ?, {ts})"
            )),
            room_query: sql(&format!("INSERT INTO room_queries (device_id, room_id, queried_at) VALUES (?, ?, {ts})")),
            message: sql(&message_insert(1)),
            messages: sql(&message_insert(MESSAGES_PER_INSERT)),
        }
    }

    /// The `INSERT` of [`MESSAGES_PER_INSERT`] message rows, built once.
    pub fn messages(&self) -> &str {
        &self.messages
    }

    /// The text of `statement` (a message: one row).
    pub fn of(&self, statement: Statement) -> &str {
        match statement {
            Statement::Opened => &self.opened,
            Statement::Identified => &self.identified,
            Statement::Closed => &self.closed,
            Statement::Room => &self.room,
            Statement::Device => &self.device,
            Statement::Connection => &self.connection,
            Statement::RoomMessage => &self.room_message,
            Statement::RoomQuery => &self.room_query,
            Statement::Message => &self.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::Presence;
    use std::sync::Arc;

    struct InRoom;

    impl Presence for InRoom {
        fn device_and_room(&self) -> (Option<String>, Option<String>) {
            (Some("cam-1".into()), Some("lobby".into()))
        }
    }

    fn values(row: &Row<'_>) -> Vec<Option<String>> {
        row.values
            .iter()
            .map(|v| match v {
                Value::Text(t) => t.as_ref().map(|t| t.to_string()),
                Value::Int(i) => Some(i.to_string()),
            })
            .collect()
    }

    #[test]
    fn a_batch_writes_its_records_in_order_with_the_room_servers_rows() {
        let presence: Arc<dyn Presence> = Arc::new(InRoom);
        let records = vec![
            Record::Opened { id: "c1".into(), endpoint: "/rooms".into(), client_id: None, remote: Some("127.0.0.1".into()), at: 5 },
            Record::Joined { room: "lobby".into(), device_id: Some("cam-1".into()), client_ip: None, at: 6 },
            Record::Message(
                MessageRecord {
                    id: "7".into(),
                    kind: "rooms.query_room".into(),
                    sender: Some("c1".into()),
                    direction: Some(Direction::In),
                    outcome: "OK".into(),
                    latency_us: 12,
                    presence: Some(Arc::clone(&presence)),
                    ..MessageRecord::default()
                },
                7,
            ),
            Record::Message(
                MessageRecord {
                    kind: DEVICE_DIRECT.into(),
                    target: Some("device:cam-2".into()),
                    direction: Some(Direction::Out),
                    outcome: "OK".into(),
                    payload: Some(r#"{"from_device_id":"cam-1","content":{"n":1}}"#.into()),
                    presence: Some(presence),
                    ..MessageRecord::default()
                },
                8,
            ),
            Record::Closed { id: "c1".into(), device_id: Some("cam-1".into()), code: 1000, reason: String::new(), at: 9 },
        ];
        let rows = rows(&records);
        let statements: Vec<Statement> = rows.iter().map(|r| r.statement).collect();
        use Statement::*;
        assert_eq!(statements, [Opened, Room, Device, Connection, RoomQuery, Message, RoomMessage, Message, Closed]);
        // A query is filed under its sender's device and room.
        let query = values(&rows[5]);
        assert_eq!(query.len(), 13);
        assert_eq!(query[..2], [Some("7".into()), Some("rooms.query_room".into())]);
        assert_eq!(query[11..], [Some("cam-1".into()), Some("lobby".into())]);
        // A direct send: the room server's row names both devices and keeps the content as JSON text.
        let direct = values(&rows[6]);
        assert_eq!(
            direct[..5],
            [Some("lobby".into()), Some("cam-1".into()), Some("cam-2".into()), Some("direct".into()), Some(r#"{"n":1}"#.into())]
        );
        assert_eq!(values(&rows[7])[11..], [Some("cam-2".into()), Some("lobby".into())]);
        for row in &rows {
            let placeholders = Sql::new(Backend::Sqlite).of(row.statement).matches('?').count();
            assert_eq!(placeholders, row.values.len(), "{:?}", row.statement);
        }
    }
}
