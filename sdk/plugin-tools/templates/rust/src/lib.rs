//! `__NAME__`: a Switchyard plugin.
//!
//! `__NAME__.hello` {"name": "Ada"} → {"greeting": "Hello, Ada!", "count": 1},
//! where `count` is kept in the host's key-value store across swaps.

use serde::Deserialize;
use switchyard_sdk::{export_plugin, json, kv, Failure, Manifest, Message, Plugin, Value};

#[derive(Deserialize)]
struct Hello {
    name: String,
}

struct Handler;

impl Plugin for Handler {
    fn manifest() -> Manifest {
        Manifest::new("__NAME__", env!("CARGO_PKG_VERSION")).claim("__NAME__.*")
    }

    fn handle(msg: Message) -> Result<Value, Failure> {
        match msg.type_.as_str() {
            "__NAME__.hello" => {
                let hello: Hello = msg.data()?;
                let count = kv::get::<u64>("count")?.unwrap_or(0) + 1;
                kv::set("count", &count)?;
                Ok(json!({ "greeting": format!("Hello, {}!", hello.name), "count": count }))
            }
            other => Err(Failure::new("UNKNOWN_ACTION", format!("no action {other:?}"))),
        }
    }
}

export_plugin!(Handler);
