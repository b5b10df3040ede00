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

/// The `handle` export's parameter and result, as the host calls it on
/// every contract version: the `message` record lowered straight from the
/// envelope's and origin's strings, not first copied into the generated
/// bindings' owned records (seven allocations and copies a message). The
/// shapes are checked against each component's export when an instance is
/// made (`plugin.rs`), so a call needs neither the check nor the copy.
pub mod handle {
    use wasmtime::component::{ComponentType, Lift, Lower};

    /// `message`: [`Origin`] on 0.2 and 0.3, [`OriginV1`] on 0.1.
    #[derive(ComponentType, Lower)]
    #[component(record)]
    pub struct Message<'a, O = Origin<'a>> {
        pub id: &'a str,
        #[component(name = "type")]
        pub kind: &'a str,
        pub data: &'a str,
        pub meta: &'a str,
        pub origin: O,
    }

    /// `message` on 0.1.
    pub type MessageV1<'a> = Message<'a, OriginV1<'a>>;

    /// `origin` on 0.2 and 0.3.
    #[derive(ComponentType, Lower)]
    #[component(record)]
    pub struct Origin<'a> {
        #[component(name = "connection-id")]
        pub connection_id: &'a str,
        #[component(name = "client-id")]
        pub client_id: Option<&'a str>,
        pub transport: &'a str,
        pub endpoint: &'a str,
    }

    /// `origin` on 0.1: no `endpoint`.
    #[derive(ComponentType, Lower)]
    #[component(record)]
    pub struct OriginV1<'a> {
        #[component(name = "connection-id")]
        pub connection_id: &'a str,
        #[component(name = "client-id")]
        pub client_id: Option<&'a str>,
        pub transport: &'a str,
    }

    /// `failure`, the same on every version.
    #[derive(ComponentType, Lift, Debug)]
    #[component(record)]
    pub struct Failure {
        pub code: String,
        pub message: String,
    }

    /// What `handle` returns: the reply's data as JSON, or the plugin's failure.
    pub type Answer = (Result<String, Failure>,);
}
