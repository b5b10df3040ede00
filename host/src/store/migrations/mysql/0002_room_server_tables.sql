-- The room server's five tables, under its names and columns, so that its
-- operators' SQL keeps working. Tables (not views), fed by the history
-- writer from room joins, room broadcasts, direct sends and room queries.
-- Times are UTC.
CREATE TABLE rooms (
    room_id    VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
    created_at DATETIME(3) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE devices (
    device_id         VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
    last_connected_at DATETIME(3),
    last_room_id      VARCHAR(64)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE connections (
    id           BIGINT AUTO_INCREMENT PRIMARY KEY,
    device_id    VARCHAR(255),
    room_id      VARCHAR(64) NOT NULL,
    client_ip    VARCHAR(64),
    connected_at DATETIME(3) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX connections_device ON connections (device_id);

CREATE TABLE messages (
    id              BIGINT AUTO_INCREMENT PRIMARY KEY,
    room_id         VARCHAR(64),
    from_device_id  VARCHAR(255),
    to_device_id    VARCHAR(255),
    message_type    VARCHAR(16) NOT NULL,
    message_content MEDIUMTEXT,
    sent_at         DATETIME(3) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX messages_room ON messages (room_id, sent_at);

CREATE TABLE room_queries (
    id         BIGINT AUTO_INCREMENT PRIMARY KEY,
    device_id  VARCHAR(255),
    room_id    VARCHAR(64),
    queried_at DATETIME(3) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX room_queries_room ON room_queries (room_id);
