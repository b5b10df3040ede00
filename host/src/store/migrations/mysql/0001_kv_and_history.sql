-- Plugin key-value state, and connection and message history.
-- Times are milliseconds since the Unix epoch (UTC). Keys compare
-- byte for byte (utf8mb4_bin), as on the other backends.
CREATE TABLE kv (
    plugin     VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    kv_key     VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    value      MEDIUMTEXT CHARACTER SET utf8mb4 NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (plugin, kv_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE connection_history (
    id              VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
    endpoint        VARCHAR(255) NOT NULL,
    client_id       VARCHAR(255),
    device_id       VARCHAR(255),
    remote_addr     VARCHAR(64),
    connected_ms    BIGINT NOT NULL,
    disconnected_ms BIGINT,
    close_code      INTEGER,
    close_reason    VARCHAR(255)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX connection_history_connected ON connection_history (connected_ms);

CREATE TABLE message_history (
    seq            BIGINT AUTO_INCREMENT PRIMARY KEY,
    message_id     VARCHAR(255) NOT NULL,
    msg_type       VARCHAR(255) NOT NULL,
    sender         VARCHAR(255),
    target         VARCHAR(255),
    direction      VARCHAR(8) NOT NULL,
    outcome        VARCHAR(64) NOT NULL,
    plugin         VARCHAR(128),
    plugin_version VARCHAR(64),
    latency_us     BIGINT NOT NULL,
    payload        MEDIUMTEXT,
    at_ms          BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE INDEX message_history_at ON message_history (at_ms);
CREATE INDEX message_history_type ON message_history (msg_type, at_ms);
