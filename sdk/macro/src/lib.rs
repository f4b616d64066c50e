//! The one thing `vumi-sdk` cannot do with `macro_rules!`: name the WIT directory.
//!
//! `wit_bindgen::generate!` resolves its `path` against the `CARGO_MANIFEST_DIR` of the crate it
//! expands in, which for `export_app!` and friends is the plugin author's crate, wherever that
//! lives. This crate knows the absolute path of the workspace's `wit/` at its own compile time and
//! writes it into the `generate!` call, so a plugin needs no copy of the WIT and no path of its
//! own. Use the `vumi_sdk::export_*` macros; this one is their implementation detail.

#![deny(missing_docs)]

use proc_macro::TokenStream;

/// The contract's version: the one place the SDK names it (`wit/worlds.wit` declares
/// `package vumi:plugin@<this>`; a test of the host checks they agree).
const VERSION: &str = "0.2.1";

/// The absolute path of `wit/`, fixed when this crate is compiled.
const WIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");

/// The interfaces every world imports, with where `vumi-sdk` keeps their bindings. `with` maps
/// each to those, so the plugin's crate generates only its world's exports, and every world's
/// plugin shares the SDK's types. (`generate!` errs on a `with` key the world does not use, so
/// each world names only its own imports.)
const PLATFORM: &[&str] = &["types", "message", "kv", "config", "log"];

/// `__bindings!(application)` (or `router`, `middleware`): a hidden module `__vumi_bindings`
/// holding the world's export bindings and its `export!` macro.
#[proc_macro]
pub fn __bindings(input: TokenStream) -> TokenStream {
    let world = input.to_string();
    let world = world.trim();
    let extra: &[&str] = match world {
        "application" => &["outbound", "http"],
        "router" => &[],
        "middleware" => &["edit"],
        other => {
            return format!(
                "::core::compile_error!(\"vumi-sdk: no world `{other}` (application, router or middleware)\");"
            )
            .parse()
            .unwrap_or_default();
        }
    };
    let with: String = PLATFORM
        .iter()
        .chain(extra)
        .map(|i| format!("\"vumi:plugin/{i}@{VERSION}\": ::vumi_sdk::wit::vumi::plugin::{i},\n"))
        .collect();
    let path = WIT_DIR.replace('\\', "/");
    format!(
        r##"
#[doc(hidden)]
#[allow(missing_docs, unsafe_code, clippy::all)]
mod __vumi_bindings {{
    ::vumi_sdk::__wit_bindgen::generate!({{
        path: r#"{path}"#,
        world: "vumi:plugin/{world}@{VERSION}",
        runtime_path: "::vumi_sdk::__wit_bindgen::rt",
        with: {{
            {with}
        }},
    }});
}}
"##
    )
    .parse()
    .unwrap_or_default()
}

/// `__imports!()`: the SDK's own import bindings (`vumi_sdk::wit`), for a world that imports
/// everything any of the three worlds imports. See `sdk/src/wit.rs`.
#[proc_macro]
pub fn __imports(_input: TokenStream) -> TokenStream {
    let path = WIT_DIR.replace('\\', "/");
    format!(
        r##"
::wit_bindgen::generate!({{
    path: r#"{path}"#,
    inline: "
        package vumi:sdk-imports;

        world imports {{
            include vumi:plugin/platform@{VERSION};
            import vumi:plugin/outbound@{VERSION};
            import vumi:plugin/http@{VERSION};
            import vumi:plugin/edit@{VERSION};
        }}
    ",
    world: "vumi:sdk-imports/imports",
    runtime_path: "::vumi_sdk::__wit_bindgen::rt",
    // `handler-error`, `target`, `direction`, `verdict` are used only by exports, which the
    // plugin's crate generates against these types.
    generate_unused_types: true,
    // The interfaces live in another package than the world above: generate them all here.
    generate_all,
}});
"##
    )
    .parse()
    .unwrap_or_default()
}
