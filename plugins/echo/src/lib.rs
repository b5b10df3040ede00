//! `echo`: answers `echo` with `"Echo: <message>"`.

use serde::Deserialize;
use switchyard_sdk::{export_plugin, Failure, Manifest, Message, Plugin, Value};

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
}

export_plugin!(EchoPlugin);
