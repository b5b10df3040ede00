-- The room server's five tables, under its names and columns, so that its
-- operators' SQL keeps working. Tables (not views), fed by the history
-- writer from room joins, room broadcasts, direct sends and room queries.
-- Times are UTC, without a time zone.
CREATE TABLE rooms (
    room_id    TEXT PRIMARY KEY,
    created_at TIMESTAMP(3) NOT NULL
);

CREATE TABLE devices (
    device_id         TEXT PRIMARY KEY,
    last_connected_at TIMESTAMP(3),
    last_room_id      TEXT
);

CREATE TABLE connections (
    id           BIGSERIAL PRIMARY KEY,
    device_id    TEXT,
    room_id      TEXT NOT NULL,
    client_ip    TEXT,
    connected_at TIMESTAMP(3) NOT NULL
);
CREATE INDEX connections_device ON connections (device_id);

CREATE TABLE messages (
    id              BIGSERIAL PRIMARY KEY,
    room_id         TEXT,
    from_device_id  TEXT,
    to_device_id    TEXT,
    message_type    TEXT NOT NULL,
    message_content TEXT,
    sent_at         TIMESTAMP(3) NOT NULL
);
CREATE INDEX messages_room ON messages (room_id, sent_at);

CREATE TABLE room_queries (
    id         BIGSERIAL PRIMARY KEY,
    device_id  TEXT,
    room_id    TEXT,
    queried_at TIMESTAMP(3) NOT NULL
);
CREATE INDEX room_queries_room ON room_queries (room_id);
