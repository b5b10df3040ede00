-- The room server's five tables, under its names and columns, so that its
-- operators' SQL keeps working. Tables (not views), fed by the history
-- writer from room joins, room broadcasts, direct sends and room queries.
-- Times are UTC text, 'YYYY-MM-DD HH:MM:SS.mmm'.
CREATE TABLE rooms (
    room_id    TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

CREATE TABLE devices (
    device_id         TEXT PRIMARY KEY,
    last_connected_at TEXT,
    last_room_id      TEXT
);

CREATE TABLE connections (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id    TEXT,
    room_id      TEXT NOT NULL,
    client_ip    TEXT,
    connected_at TEXT NOT NULL
);
CREATE INDEX connections_device ON connections (device_id);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id         TEXT,
    from_device_id  TEXT,
    to_device_id    TEXT,
    message_type    TEXT NOT NULL,
    message_content TEXT,
    sent_at         TEXT NOT NULL
);
CREATE INDEX messages_room ON messages (room_id, sent_at);

CREATE TABLE room_queries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  TEXT,
    room_id    TEXT,
    queried_at TEXT NOT NULL
);
CREATE INDEX room_queries_room ON room_queries (room_id);
