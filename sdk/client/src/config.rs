//! What a [`crate::Client`] can be tuned with; plain data with defaults
//! that match the host's (15 s heartbeats, 45 s idle timeout).

use crate::backoff::ReconnectPolicy;
use std::time::Duration;

/// Settings for [`crate::Client::connect_with`] and [`crate::Client::spawn`].
///
/// ```
/// use std::time::Duration;
/// use switchyard_client::{ClientConfig, ReconnectPolicy};
///
/// let config = ClientConfig {
///     request_timeout: Duration::from_secs(2),
///     reconnect: ReconnectPolicy { max_attempts: None, ..Default::default() },
///     ..Default::default()
/// };
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// When and how often to reconnect after the connection is lost.
    pub reconnect: ReconnectPolicy,
    /// How long one connection attempt (TCP and WebSocket handshake) may take.
    pub connect_timeout: Duration,
    /// How often to send a WebSocket ping.
    pub heartbeat_interval: Duration,
    /// A connection on which nothing at all (no frame, no pong) arrives for
    /// this long is dead: the client drops it and reconnects. Keep it a few
    /// heartbeat intervals long.
    pub receive_timeout: Duration,
    /// Deadline of [`crate::Client::request`] (time queued included).
    pub request_timeout: Duration,
    /// Frames held while disconnected; when full the oldest is dropped.
    pub offline_queue: usize,
    /// Pushed frames no handler took, held until read; extra ones are dropped.
    pub unhandled_queue: usize,
    /// The messages behind [`crate::Client::join_room`] and `leave_room`.
    pub rooms: RoomMessages,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            reconnect: ReconnectPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(15),
            receive_timeout: Duration::from_secs(45),
            request_timeout: Duration::from_secs(10),
            offline_queue: 256,
            unhandled_queue: 256,
            rooms: RoomMessages::default(),
        }
    }
}

/// How joining and leaving a room is spelled on the wire.
///
/// Provisional: the host has no room message on `/ws` yet (rooms are
/// joined through the `rooms` plugin's identify on `/rooms`, or by a
/// plugin calling the `rooms.join` capability). `join_room("lobby")` sends
/// `{"type": join_type, "data": {room_field: "lobby"}}` and re-sends it
/// after every reconnect; `leave_room` sends `leave_type` the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomMessages {
    pub join_type: String,
    pub leave_type: String,
    pub room_field: String,
}

impl Default for RoomMessages {
    fn default() -> Self {
        RoomMessages { join_type: "rooms.join".into(), leave_type: "rooms.leave".into(), room_field: "room".into() }
    }
}
