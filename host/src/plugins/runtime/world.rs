//! The one `bindgen!` call site for the host side of the plugin worlds.
//!
//! Each released contract version gets its own module, so components built
//! against an older contract keep loading when the contract grows. Exports
//! are loaded per interface (`GuestIndices`), which lets the host accept a
//! component with or without the optional `lifecycle` hooks.

/// `switchyard:plugin@0.1.0`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "plugin",
        // kv writes wait for the durable store's commit (capabilities/kv.rs).
        imports: { "switchyard:plugin/kv.set": async, "switchyard:plugin/kv.delete": async | trappable },
        exports: { default: async },
    });

    pub use self::exports::switchyard::plugin::handler;
    pub use self::switchyard::plugin::{events, kv, log, types};
}

/// `switchyard:plugin@0.2.0`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "plugin-with-hooks",
        // kv writes wait for the durable store's commit (capabilities/kv.rs).
        imports: { "switchyard:plugin/kv.set": async, "switchyard:plugin/kv.delete": async | trappable },
        exports: { default: async },
    });

    pub use self::exports::switchyard::plugin::{handler, lifecycle};
    pub use self::switchyard::plugin::{events, identity, kv, log, rooms, settings, system, types};
}
