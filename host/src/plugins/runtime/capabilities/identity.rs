//! `identity` (0.2 on): which device is on a connection.

use super::events::message;
use crate::plugins::runtime::world::{v0_2, v0_3};
use crate::plugins::runtime::PluginState;

macro_rules! identity_host {
    ($($v:ident),*) => {$(
        impl $v::identity::Host for PluginState {
            fn set(&mut self, connection_id: String, device_id: String, identity: Option<String>) -> Result<(), $v::types::Failure> {
                self.services.rooms.set_identity(&connection_id, &device_id, identity).map_err(Into::into)
            }

            fn get(&mut self, connection_id: String) -> Option<$v::types::Member> {
                self.services.rooms.identity(&connection_id).map(Into::into)
            }

            fn send_to_device(&mut self, device_id: String, json: String) -> Result<(), $v::types::Failure> {
                let message = message(json)?;
                self.services.rooms.send_to_device(&device_id, &message).map_err(Into::into)
            }
        }
    )*};
}
identity_host!(v0_2, v0_3);
