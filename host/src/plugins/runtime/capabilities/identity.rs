//! `identity` (0.2): which device is on a connection.

use super::events::message;
use crate::plugins::runtime::world::v0_2::{identity::Host, types};
use crate::plugins::runtime::PluginState;

impl Host for PluginState {
    fn set(&mut self, connection_id: String, device_id: String, identity: Option<String>) -> Result<(), types::Failure> {
        self.services.rooms.set_identity(&connection_id, &device_id, identity).map_err(Into::into)
    }

    fn get(&mut self, connection_id: String) -> Option<types::Member> {
        self.services.rooms.identity(&connection_id).map(Into::into)
    }

    fn send_to_device(&mut self, device_id: String, json: String) -> Result<(), types::Failure> {
        let message = message(json)?;
        self.services.rooms.send_to_device(&device_id, &message).map_err(Into::into)
    }
}
