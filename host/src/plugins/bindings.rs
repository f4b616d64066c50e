//! The generated bindings for `wit/` (`vumi:plugin@0.2.1`), private to `plugins`. One
//! `bindgen!` per world; the router and middleware worlds reuse the application world's
//! interfaces (`with`), so each import is implemented once, on [`super::imports::HostState`].
//!
//! The message resources are backed by host types ([`MessageRef`], [`EventRef`]): the guest
//! holds a handle and copies out only the fields it asks for.

pub use super::imports::message::{EventRef, MessageRef};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "vumi:plugin/application",
    imports: {
        // `kv` awaits (a networked store); the rest answer from memory.
        "vumi:plugin/kv": async | trappable,
        // A call waits on the network: the guest is parked, burning no CPU deadline.
        "vumi:plugin/http": async | trappable,
        // A handle the host cannot find is the host's bug, not the guest's: trap, don't guess.
        default: trappable,
    },
    exports: { default: async },
    with: {
        "vumi:plugin/message.user-message": MessageRef,
        "vumi:plugin/message.event": EventRef,
    },
});

pub(crate) use vumi::plugin::{config, http, kv, log, message, outbound, types};

/// `world router`.
pub(crate) mod router {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "vumi:plugin/router",
        exports: { default: async },
        with: {
            "vumi:plugin/types": super::vumi::plugin::types,
            "vumi:plugin/message": super::vumi::plugin::message,
            "vumi:plugin/kv": super::vumi::plugin::kv,
            "vumi:plugin/config": super::vumi::plugin::config,
            "vumi:plugin/log": super::vumi::plugin::log,
        },
    });
}

/// `world middleware`: the only one importing `edit`.
pub(crate) mod middleware {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "vumi:plugin/middleware",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "vumi:plugin/types": super::vumi::plugin::types,
            "vumi:plugin/message": super::vumi::plugin::message,
            "vumi:plugin/kv": super::vumi::plugin::kv,
            "vumi:plugin/config": super::vumi::plugin::config,
            "vumi:plugin/log": super::vumi::plugin::log,
        },
    });
    pub(crate) use vumi::plugin::edit;
}
