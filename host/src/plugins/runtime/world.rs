//! The one `bindgen!` call site for the host side of the plugin worlds.
//!
//! Each released contract version gets its own module, so components built
//! against an older contract keep loading when the contract grows. Exports
//! are loaded per interface (`GuestIndices`), which lets the host accept a
//! component with or without the optional `lifecycle` hooks (and, from
//! 0.3, `frames` and `migration`).

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

/// `switchyard:plugin@0.3.0`, bound as its `plugin-full` world: every
/// optional export (`lifecycle`, `frames`, `migration`) is detected per
/// interface at load. `clients.call` waits for a client's answer and `kv`
/// may wait for a durable store, so both are async host functions: while
/// one waits, its instance is parked and every other call runs.
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
        world: "plugin-full",
        imports: {
            "switchyard:plugin/clients.call": async,
            "switchyard:plugin/kv.get": async,
            "switchyard:plugin/kv.set": async,
            "switchyard:plugin/kv.delete": async,
            "switchyard:plugin/kv.keys": async,
        },
        exports: { default: async },
    });

    pub use self::exports::switchyard::plugin::{frames, handler, lifecycle, migration};
    pub use self::switchyard::plugin::{clients, events, identity, kv, log, rooms, settings, system, types};
}
