//! The generated bindings for `wit/` — the one `bindgen!` in the host. Private to `plugins`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "vumi:plugin/application",
    imports: {
        // Only `kv` awaits (a networked store); the rest answer from memory.
        "vumi:plugin/kv": async,
    },
    exports: { default: async },
});

pub(crate) use vumi::plugin::{config, kv, log, outbound, types};
