//! `echo`: answers `echo` with `"Echo: <message>"`; on an `opaque`
//! endpoint whose type is `echo`, sends every frame back as it came.

use serde::Deserialize;
use switchyard_sdk::{export_plugin, Failure, Manifest, Message, Origin, Payload, Plugin, Value};

#[derive(Deserialize)]
struct Echo {
    message: String,
}

struct EchoPlugin;

impl Plugin for EchoPlugin {
    fn manifest() -> Manifest {
        Manifest::new("echo", env!("CARGO_PKG_VERSION"))
            .description("Echoes a message back")
            .claim("echo")
    }

    fn handle(msg: Message) -> Result<Value, Failure> {
        let Echo { message } = msg.data()?;
        Ok(Value::String(format!("Echo: {message}")))
    }

    fn handle_frame(_origin: Origin, frame: Payload) -> Result<Option<Payload>, Failure> {
        Ok(Some(frame))
    }
}

export_plugin!(EchoPlugin);
