//! `events`: publish to a topic, or send to one connection, through the
//! host's [`EventSink`](crate::services::EventSink).

use super::failure;
use crate::wire::ErrorCode;
use crate::wire::Failure;
use crate::plugins::runtime::world::{v0_1, v0_2, v0_3};
use crate::plugins::runtime::PluginState;
use serde_json::value::RawValue;

/// A plugin's JSON text, checked.
pub(super) fn json(text: String) -> Result<Box<RawValue>, Failure> {
    RawValue::from_string(text).map_err(|e| failure(ErrorCode::InvalidData, format!("not JSON: {e}")))
}

/// A plugin's JSON text that must be one whole message object.
pub(super) fn message(text: String) -> Result<Box<RawValue>, Failure> {
    let message = json(text)?;
    if message.get().starts_with('{') {
        Ok(message)
    } else {
        Err(failure(ErrorCode::InvalidData, "a sent message must be a JSON object"))
    }
}

impl PluginState {
    fn publish(&self, topic: &str, data: String) -> Result<(), Failure> {
        self.services.events.publish(topic, &json(data)?, &self.identity.name).map(drop)
    }

    fn send(&self, connection_id: &str, text: String) -> Result<(), Failure> {
        self.services.events.send(connection_id, &message(text)?)
    }
}

macro_rules! events_host {
    ($($v:ident),*) => {$(
        impl $v::events::Host for PluginState {
            fn publish(&mut self, topic: String, json: String) -> Result<(), $v::types::Failure> {
                PluginState::publish(self, &topic, json).map_err(Into::into)
            }

            fn send(&mut self, connection_id: String, json: String) -> Result<(), $v::types::Failure> {
                PluginState::send(self, &connection_id, json).map_err(Into::into)
            }
        }
    )*};
}
events_host!(v0_1, v0_2, v0_3);
