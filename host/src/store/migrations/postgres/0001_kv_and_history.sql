-- Plugin key-value state, and connection and message history.
-- Times are milliseconds since the Unix epoch (UTC).
CREATE TABLE kv (
    plugin     TEXT NOT NULL,
    kv_key     TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (plugin, kv_key)
);

CREATE TABLE connection_history (
    id              TEXT PRIMARY KEY,
    endpoint        TEXT NOT NULL,
    client_id       TEXT,
    device_id       TEXT,
    remote_addr     TEXT,
    connected_ms    BIGINT NOT NULL,
    disconnected_ms BIGINT,
    close_code      INTEGER,
    close_reason    TEXT
);
CREATE INDEX connection_history_connected ON connection_history (connected_ms);

CREATE TABLE message_history (
    seq            BIGSERIAL PRIMARY KEY,
    message_id     TEXT NOT NULL,
    msg_type       TEXT NOT NULL,
    sender         TEXT,
    target         TEXT,
    direction      TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    plugin         TEXT,
    plugin_version TEXT,
    latency_us     BIGINT NOT NULL,
    payload        TEXT,
    at_ms          BIGINT NOT NULL
);
CREATE INDEX message_history_at ON message_history (at_ms);
CREATE INDEX message_history_type ON message_history (msg_type, at_ms);
