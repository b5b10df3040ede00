//! `rooms` (0.2 on): named groups of connections, kept by the hub.

use super::events::message;
use crate::plugins::runtime::world::{v0_2, v0_3};
use crate::plugins::runtime::PluginState;

macro_rules! rooms_host {
    ($($v:ident),*) => {$(
        impl $v::rooms::Host for PluginState {
            fn join(&mut self, connection_id: String, room: String) -> Result<(), $v::types::Failure> {
                self.services.rooms.join(&connection_id, &room).map_err(Into::into)
            }

            fn leave(&mut self, connection_id: String) {
                self.services.rooms.leave(&connection_id)
            }

            fn room_of(&mut self, connection_id: String) -> Option<String> {
                self.services.rooms.room_of(&connection_id)
            }

            fn members(&mut self, room: String) -> Vec<$v::types::Member> {
                self.services.rooms.members(&room).into_iter().map(Into::into).collect()
            }

            fn broadcast(&mut self, room: String, json: String, exclude: Option<String>) -> Result<u32, $v::types::Failure> {
                let message = message(json)?;
                self.services.rooms.broadcast(&room, &message, exclude.as_deref()).map_err(Into::into)
            }
        }

        impl From<crate::services::Member> for $v::types::Member {
            fn from(m: crate::services::Member) -> Self {
                $v::types::Member { connection_id: m.connection_id, device_id: m.device_id, identity: m.identity }
            }
        }
    )*};
}
rooms_host!(v0_2, v0_3);
