//! Write Switchyard plugins in Rust.
//!
//! A plugin is a WebAssembly component exporting the `switchyard:plugin@0.1.0`
//! world. This crate hides the generated bindings: implement [`Plugin`], call
//! [`export_plugin!`], and build for `wasm32-wasip2`.
//!
//! ```ignore
//! use switchyard_sdk::{export_plugin, json, Failure, Manifest, Message, Plugin, Value};
//!
//! struct Greeter;
//!
//! impl Plugin for Greeter {
//!     fn manifest() -> Manifest {
//!         Manifest::new("greeter", env!("CARGO_PKG_VERSION"))
//!             .description("Says hello")
//!             .claim("greet")
//!     }
//!
//!     fn handle(msg: Message) -> Result<Value, Failure> {
//!         #[derive(serde::Deserialize)]
//!         struct Greet { name: String }
//!         let greet: Greet = msg.data()?;
//!         switchyard_sdk::log::info(&format!("greeting {}", greet.name));
//!         Ok(json!({ "greeting": format!("Hello, {}!", greet.name) }))
//!     }
//! }
//!
//! export_plugin!(Greeter);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the file
//! `target/wasm32-wasip2/release/greeter.wasm` is the component to drop into
//! the host's plugin folder (copy it beside, then rename into place).
//!
//! A failure returned from `handle` reaches the client with its code and
//! message. A panic traps: the client gets `PLUGIN_FAILED` and the host
//! replaces the instance.

// Lets the generated bindings name this crate the same way from inside and outside.
extern crate self as switchyard_sdk;

pub use serde_json::{json, Value};
pub use wit_bindgen;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "switchyard_sdk::bindings",
        runtime_path: "switchyard_sdk::wit_bindgen::rt",
    });
}

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use bindings::switchyard::plugin::types::{Failure, Message, Origin, PluginManifest as Manifest};

/// A Switchyard plugin: what it claims and how it answers.
pub trait Plugin {
    /// The plugin's name, version and claimed message types.
    fn manifest() -> Manifest;
    /// Answer one message; `Ok` becomes the reply's `data`.
    fn handle(msg: Message) -> Result<Value, Failure>;
}

impl Manifest {
    /// A manifest with no description and no claims yet.
    pub fn new(name: &str, version: &str) -> Self {
        Manifest {
            name: name.to_owned(),
            version: version.to_owned(),
            description: String::new(),
            claims: Vec::new(),
        }
    }

    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_owned();
        self
    }

    /// Claim an exact type (`get_time`) or a prefix pattern (`video.*`).
    pub fn claim(mut self, pattern: &str) -> Self {
        self.claims.push(pattern.to_owned());
        self
    }
}

impl Failure {
    /// A failure with a stable machine `code` (UPPER_SNAKE_CASE by convention).
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Failure { code: code.to_owned(), message: message.into() }
    }

    /// The message's data did not have the expected shape.
    pub fn invalid_data(message: impl Into<String>) -> Self {
        Failure::new("INVALID_DATA", message)
    }
}

impl Message {
    /// The message's `data`, parsed into `T`; a mismatch is an `INVALID_DATA` failure.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_str(&self.data).map_err(|e| Failure::invalid_data(format!("data: {e}")))
    }

    /// The message's `meta` object.
    pub fn meta(&self) -> Value {
        serde_json::from_str(&self.meta).unwrap_or(Value::Null)
    }
}

/// Logging into the host's log, tagged with the plugin's name.
pub mod log {
    use crate::bindings::switchyard::plugin::log::{log, Level};

    pub fn trace(message: &str) { log(Level::Trace, message) }
    pub fn debug(message: &str) { log(Level::Debug, message) }
    pub fn info(message: &str) { log(Level::Info, message) }
    pub fn warn(message: &str) { log(Level::Warn, message) }
    pub fn error(message: &str) { log(Level::Error, message) }
}

/// The plugin's key-value store: JSON values, kept by the host across hot swaps.
pub mod kv {
    use super::*;
    use crate::bindings::switchyard::plugin::kv as host;

    /// The value at `key`, or `None` when it is absent or not a `T`.
    pub fn get<T: DeserializeOwned>(key: &str) -> Option<T> {
        host::get(key).and_then(|text| serde_json::from_str(&text).ok())
    }

    pub fn set<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Failure> {
        host::set(key, &to_json(value)?)
    }

    pub fn delete(key: &str) {
        host::delete(key)
    }

    pub fn keys(prefix: &str) -> Vec<String> {
        host::keys(prefix)
    }
}

/// Messages to connected clients.
pub mod events {
    use super::*;
    use crate::bindings::switchyard::plugin::events as host;

    /// Publish `data` to every connection subscribed to `topic`.
    pub fn publish<T: Serialize + ?Sized>(topic: &str, data: &T) -> Result<(), Failure> {
        host::publish(topic, &to_json(data)?)
    }

    /// Send a whole message object to one connection.
    pub fn send<T: Serialize + ?Sized>(connection_id: &str, message: &T) -> Result<(), Failure> {
        host::send(connection_id, &to_json(message)?)
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::new("INVALID_DATA", format!("not JSON: {e}")))
}

#[doc(hidden)]
pub fn __handle<P: Plugin>(msg: Message) -> Result<String, Failure> {
    let reply = P::handle(msg)?;
    to_json(&reply)
}

/// Export a [`Plugin`] implementation as the component's `handler`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __SwitchyardExport;

        impl $crate::bindings::exports::switchyard::plugin::handler::Guest for __SwitchyardExport {
            fn manifest() -> $crate::Manifest {
                <$plugin as $crate::Plugin>::manifest()
            }

            fn handle(msg: $crate::Message) -> ::core::result::Result<::std::string::String, $crate::Failure> {
                $crate::__handle::<$plugin>(msg)
            }
        }

        $crate::bindings::__export_plugin_world!(__SwitchyardExport with_types_in $crate::bindings);
    };
}
