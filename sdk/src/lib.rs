//! Write Switchyard plugins in Rust.
//!
//! A plugin is a WebAssembly component of the `switchyard:plugin@0.3.0`
//! world `plugin-full`. This crate hides the generated bindings:
//! implement [`Plugin`], call [`export_plugin!`], and build for
//! `wasm32-wasip2`. Everything but [`Plugin::manifest`] and
//! [`Plugin::handle`] has a default: the lifecycle hooks
//! ([`Plugin::tick`], [`Plugin::connection_opened`],
//! [`Plugin::connection_closed`]) do nothing, [`Plugin::handle_frame`]
//! refuses with `UNSUPPORTED_FRAME`, and [`Plugin::migrate`] accepts any
//! previous version.
//!
//! Host capabilities are modules: [`log`], [`kv`] (fallible: a storage
//! outage is a failure to hand on with `?`), [`events`], [`clients`]
//! (ask a connected client and wait for its answer), [`rooms`],
//! [`identity`], [`settings`] and [`system`].
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
        path: "../wit/v0.3.0",
        world: "plugin-full",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "switchyard_sdk::bindings",
        runtime_path: "switchyard_sdk::wit_bindgen::rt",
    });
}

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use bindings::switchyard::plugin::types::{ClientRef, Failure, Member, Message, Origin, Payload, PluginManifest as Manifest};

/// A Switchyard plugin: what it claims and how it answers.
pub trait Plugin {
    /// The plugin's name, version and claimed message types.
    fn manifest() -> Manifest;
    /// Answer one message; `Ok` becomes the reply's `data`.
    fn handle(msg: Message) -> Result<Value, Failure>;

    /// Called every [`Manifest::tick_every`] interval, under the same limits as `handle`.
    fn tick() -> Result<(), Failure> {
        Ok(())
    }

    /// A connection is about to send this plugin its first message.
    fn connection_opened(_connection_id: &str) {}

    /// A connection that sent this plugin a message has closed.
    fn connection_closed(_connection_id: &str) {}

    /// Answer one whole frame on an `opaque` endpoint whose type this plugin
    /// claims: `Some` goes back as one frame of the same kind. A failure
    /// closes that connection (1011).
    fn handle_frame(_origin: Origin, _frame: Payload) -> Result<Option<Payload>, Failure> {
        Err(Failure::new("UNSUPPORTED_FRAME", "this plugin does not handle whole frames"))
    }

    /// Runs once on this version, before it takes traffic, with the version
    /// it replaces; it may rewrite the plugin's [`kv`]. A failure refuses
    /// the swap and the previous version keeps serving.
    fn migrate(_from_version: &str) -> Result<(), Failure> {
        Ok(())
    }
}

impl Manifest {
    /// A manifest with no description and no claims yet.
    pub fn new(name: &str, version: &str) -> Self {
        Manifest {
            name: name.to_owned(),
            version: version.to_owned(),
            description: String::new(),
            claims: Vec::new(),
            tick_interval_ms: None,
        }
    }

    /// Ask the host to call [`Plugin::tick`] every `ms` milliseconds.
    pub fn tick_every(mut self, ms: u32) -> Self {
        self.tick_interval_ms = Some(ms);
        self
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

/// The plugin's key-value store: JSON values, kept by the host across hot
/// swaps (and restarts, with a database). Every function fails with
/// `KV_UNAVAILABLE` when the store cannot be reached; hand that on with `?`.
pub mod kv {
    use super::*;
    use crate::bindings::switchyard::plugin::kv as host;

    /// The value at `key`: `None` when it is absent or not a `T`.
    pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Failure> {
        Ok(host::get(key)?.and_then(|text| serde_json::from_str(&text).ok()))
    }

    /// Store `value` at `key`; fails with `KV_QUOTA_EXCEEDED` over the
    /// plugin's quota. Durable when it returns.
    pub fn set<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Failure> {
        host::set(key, &to_json(value)?)
    }

    pub fn delete(key: &str) -> Result<(), Failure> {
        host::delete(key)
    }

    /// Keys starting with `prefix`, sorted.
    pub fn keys(prefix: &str) -> Result<Vec<String>, Failure> {
        host::keys(prefix)
    }
}

/// Requests to connected clients, answered by them (the server side of
/// "emit with acknowledgement").
pub mod clients {
    use super::*;
    use crate::bindings::switchyard::plugin::clients as host;

    /// Send `action` with `params` to a client, in the format it speaks,
    /// and wait for its answer's data: at most `timeout_ms`, and never
    /// past this call's own deadline. Fails with `NOT_FOUND`,
    /// `CLIENT_TIMEOUT`, `CLIENT_DISCONNECTED`, `CLIENT_BUSY`,
    /// `CLIENT_FAILED` or the client's own code. While it waits, the host
    /// serves other calls with other instances.
    ///
    /// ```ignore
    /// let target = ClientRef::Connection(msg.origin.connection_id.clone());
    /// let time = switchyard_sdk::clients::call(&target, "get_time", &json!({}), 2_000)?;
    /// ```
    pub fn call<T: Serialize + ?Sized>(target: &ClientRef, action: &str, params: &T, timeout_ms: u32) -> Result<Value, Failure> {
        let answer = host::call(target, action, &to_json(params)?, timeout_ms)?;
        serde_json::from_str(&answer).map_err(|e| Failure::new("INVALID_DATA", format!("the client's answer is not JSON: {e}")))
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

/// Rooms: named groups of connections, kept by the host.
pub mod rooms {
    use super::*;
    use crate::bindings::switchyard::plugin::rooms as host;

    /// Put a connection in `room`, leaving the room it was in.
    pub fn join(connection_id: &str, room: &str) -> Result<(), Failure> {
        host::join(connection_id, room)
    }

    pub fn leave(connection_id: &str) {
        host::leave(connection_id)
    }

    pub fn room_of(connection_id: &str) -> Option<String> {
        host::room_of(connection_id)
    }

    /// Members in the order they joined.
    pub fn members(room: &str) -> Vec<Member> {
        host::members(room)
    }

    /// Send a whole message to every member but `exclude`; how many it reached.
    pub fn broadcast<T: Serialize + ?Sized>(room: &str, message: &T, exclude: Option<&str>) -> Result<u32, Failure> {
        host::broadcast(room, &to_json(message)?, exclude)
    }
}

/// Which device is on a connection.
pub mod identity {
    use super::*;
    use crate::bindings::switchyard::plugin::identity as host;

    pub fn set(connection_id: &str, device_id: &str, identity: Option<&str>) -> Result<(), Failure> {
        host::set(connection_id, device_id, identity)
    }

    pub fn get(connection_id: &str) -> Option<Member> {
        host::get(connection_id)
    }

    pub fn send_to_device<T: Serialize + ?Sized>(device_id: &str, message: &T) -> Result<(), Failure> {
        host::send_to_device(device_id, &to_json(message)?)
    }
}

/// This plugin's `[plugins.settings.<name>]` values.
pub mod settings {
    pub fn get(key: &str) -> Option<String> {
        crate::bindings::switchyard::plugin::settings::get(key)
    }

    /// A setting parsed as `T`, or `default` when absent or unparsable.
    pub fn get_or<T: std::str::FromStr>(key: &str, default: T) -> T {
        get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
    }
}

/// Host system figures, when the host grants `system` to this plugin.
pub mod system {
    pub use crate::bindings::switchyard::plugin::system::{figures, HostFigures};
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

        impl $crate::bindings::exports::switchyard::plugin::lifecycle::Guest for __SwitchyardExport {
            fn connection_opened(connection_id: ::std::string::String) {
                <$plugin as $crate::Plugin>::connection_opened(&connection_id)
            }

            fn connection_closed(connection_id: ::std::string::String) {
                <$plugin as $crate::Plugin>::connection_closed(&connection_id)
            }

            fn tick() -> ::core::result::Result<(), $crate::Failure> {
                <$plugin as $crate::Plugin>::tick()
            }
        }

        impl $crate::bindings::exports::switchyard::plugin::frames::Guest for __SwitchyardExport {
            fn handle_frame(
                origin: $crate::Origin,
                frame: $crate::Payload,
            ) -> ::core::result::Result<::core::option::Option<$crate::Payload>, $crate::Failure> {
                <$plugin as $crate::Plugin>::handle_frame(origin, frame)
            }
        }

        impl $crate::bindings::exports::switchyard::plugin::migration::Guest for __SwitchyardExport {
            fn migrate(from_version: ::std::string::String) -> ::core::result::Result<(), $crate::Failure> {
                <$plugin as $crate::Plugin>::migrate(&from_version)
            }
        }

        $crate::bindings::__export_plugin_world!(__SwitchyardExport with_types_in $crate::bindings);
    };
}
