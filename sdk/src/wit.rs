//! The import bindings, generated once here for every world.
//!
//! The world below is no world a plugin is built for: it imports everything any of the three
//! worlds imports, so these bindings serve all of them. A plugin's `export_*!` macro generates
//! its own world's exports in its own crate and maps every import to this module (`with`), so
//! the component carries its world's exports only. Imports it never calls are not in the
//! component: wit-component keeps only the imports the compiled code uses, so an app, which
//! cannot reach `edit`, does not import it.

#![allow(missing_docs, unsafe_code, clippy::all)]

wit_bindgen::generate!({
    path: "../wit",
    inline: "
        package vumi:sdk-imports;

        world imports {
            include vumi:plugin/platform@0.2.1;
            import vumi:plugin/outbound@0.2.1;
            import vumi:plugin/http@0.2.1;
            import vumi:plugin/edit@0.2.1;
        }
    ",
    world: "vumi:sdk-imports/imports",
    runtime_path: "::vumi_sdk::__wit_bindgen::rt",
    // `handler-error`, `target`, `direction`, `verdict` are used only by exports, which the
    // plugin's crate generates against these types.
    generate_unused_types: true,
    // The interfaces live in another package than the world above: generate them all here.
    generate_all,
});
