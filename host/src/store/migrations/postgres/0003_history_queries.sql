-- For the history API (`/api/history/...`): each message's device and
-- room, so history can be asked by device and by room, and the indexes
-- its keyset pagination walks.
--
-- device_id: the sending connection's device (a message in), or the
-- device a direct send went to (out). room_id: the sending connection's
-- room (in), or the room a broadcast went to (out).
ALTER TABLE message_history ADD COLUMN device_id TEXT;
ALTER TABLE message_history ADD COLUMN room_id TEXT;
UPDATE message_history SET room_id = SUBSTR(target, 6) WHERE direction = 'out' AND SUBSTR(target, 1, 5) = 'room:';
UPDATE message_history SET device_id = SUBSTR(target, 8) WHERE direction = 'out' AND SUBSTR(target, 1, 7) = 'device:';
UPDATE message_history SET device_id = (SELECT c.device_id FROM connection_history c WHERE c.id = message_history.sender)
    WHERE direction = 'in';
-- Partial: most messages have neither, and the writer need not index them.
CREATE INDEX message_history_device ON message_history (device_id, seq) WHERE device_id IS NOT NULL;
CREATE INDEX message_history_room ON message_history (room_id, seq) WHERE room_id IS NOT NULL;
CREATE INDEX connection_history_walk ON connection_history (connected_ms, id);
CREATE INDEX connection_history_device ON connection_history (device_id);
CREATE INDEX connections_room ON connections (room_id, connected_at);
