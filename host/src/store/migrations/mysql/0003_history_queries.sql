-- For the history API (`/api/history/...`): each message's device and
-- room, so history can be asked by device and by room, and the indexes
-- its keyset pagination walks.
--
-- device_id: the sending connection's device (a message in), or the
-- device a direct send went to (out). room_id: the sending connection's
-- room (in), or the room a broadcast went to (out).
--
-- The columns the API filters on compare byte for byte (utf8mb4_bin), as
-- on the other backends: a type, device or room is case-sensitive.
ALTER TABLE message_history
    ADD COLUMN device_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    ADD COLUMN room_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    MODIFY msg_type VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY outcome VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY direction VARCHAR(8) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE connection_history
    MODIFY device_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    MODIFY client_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    MODIFY endpoint VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE connections MODIFY room_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE messages MODIFY room_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
ALTER TABLE room_queries MODIFY room_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
UPDATE message_history SET room_id = SUBSTR(target, 6) WHERE direction = 'out' AND SUBSTR(target, 1, 5) = 'room:';
UPDATE message_history SET device_id = SUBSTR(target, 8) WHERE direction = 'out' AND SUBSTR(target, 1, 7) = 'device:';
UPDATE message_history SET device_id = (SELECT c.device_id FROM connection_history c WHERE c.id = message_history.sender)
    WHERE direction = 'in';
CREATE INDEX message_history_device ON message_history (device_id, seq);
CREATE INDEX message_history_room ON message_history (room_id, seq);
CREATE INDEX connection_history_walk ON connection_history (connected_ms, id);
CREATE INDEX connection_history_device ON connection_history (device_id);
CREATE INDEX connections_room ON connections (room_id, connected_at);
