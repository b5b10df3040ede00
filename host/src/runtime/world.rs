//! The one `bindgen!` call site for the host side of the plugin world.
//!
//! Each released contract version gets its own module (`v0_1`, later
//! `v0_2`), so components built against an older contract keep loading when
//! the contract grows.

/// `switchyard:plugin@0.1.0`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugin",
        exports: { default: async },
    });

    pub use self::exports::switchyard::plugin::handler;
    pub use self::switchyard::plugin::{events, kv, log, types};
}
