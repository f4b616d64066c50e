//! The generated bindings for `wit/`, private to `plugins`. One `bindgen!` per world; the router
//! and middleware worlds reuse the application world's interfaces (`with`), so each import is implemented once.

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

/// `world router`.
pub(crate) mod router {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "vumi:plugin/router",
        exports: { default: async },
        with: {
            "vumi:plugin/types": super::vumi::plugin::types,
            "vumi:plugin/kv": super::vumi::plugin::kv,
            "vumi:plugin/config": super::vumi::plugin::config,
            "vumi:plugin/log": super::vumi::plugin::log,
        },
    });
}

/// `world middleware`.
pub(crate) mod middleware {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "vumi:plugin/middleware",
        exports: { default: async },
        with: {
            "vumi:plugin/types": super::vumi::plugin::types,
            "vumi:plugin/kv": super::vumi::plugin::kv,
            "vumi:plugin/config": super::vumi::plugin::config,
            "vumi:plugin/log": super::vumi::plugin::log,
        },
    });
}
