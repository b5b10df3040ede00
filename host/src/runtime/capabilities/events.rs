//! `events`: publish to a topic, or send to one connection, through the
//! host's [`EventSink`](crate::services::EventSink).

use super::failure;
use crate::runtime::world::v0_1::{events::Host, types::Failure};
use crate::runtime::PluginState;
use serde_json::value::RawValue;

impl Host for PluginState {
    fn publish(&mut self, topic: String, json: String) -> Result<(), Failure> {
        let data = parse(json)?;
        self.services.events.publish(&topic, &data, &self.identity.name).map(drop).map_err(Into::into)
    }

    fn send(&mut self, connection_id: String, json: String) -> Result<(), Failure> {
        let message = parse(json)?;
        if !message.get().starts_with('{') {
            return Err(failure("INVALID_DATA", "a sent message must be a JSON object"));
        }
        self.services.events.send(&connection_id, &message).map_err(Into::into)
    }
}

fn parse(json: String) -> Result<Box<RawValue>, Failure> {
    RawValue::from_string(json).map_err(|e| failure("INVALID_DATA", format!("not JSON: {e}")))
}

impl From<crate::envelope::Failure> for Failure {
    fn from(f: crate::envelope::Failure) -> Self {
        failure(&f.code, f.message)
    }
}
