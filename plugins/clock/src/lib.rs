//! `clock`: answers `get_time` with the current UTC time.

use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_sdk::{export_plugin, json, Failure, Manifest, Message, Plugin, Value};

struct Clock;

impl Plugin for Clock {
    fn manifest() -> Manifest {
        Manifest::new("clock", env!("CARGO_PKG_VERSION"))
            .description("Current time in ISO-8601 UTC and unix milliseconds")
            .claim("get_time")
    }

    fn handle(_msg: Message) -> Result<Value, Failure> {
        let now = SystemTime::now();
        let unix_ms = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Failure::new("CLOCK_BEFORE_EPOCH", "the host clock is before 1970"))?
            .as_millis() as u64;
        Ok(json!({
            "iso": humantime::format_rfc3339_millis(now).to_string(),
            "unix_ms": unix_ms,
        }))
    }
}

export_plugin!(Clock);
