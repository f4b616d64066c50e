//! The import bindings, generated once here for every world.
//!
//! The world below is no world a plugin is built for: it imports everything any of the three
//! worlds imports, so these bindings serve all of them. A plugin's `export_*!` macro generates
//! its own world's exports in its own crate and maps every import to this module (`with`), so
//! the component carries its world's exports only. Imports it never calls are not in the
//! component: wit-component keeps only the imports the compiled code uses, so an app, which
//! cannot reach `edit`, does not import it.

#![allow(missing_docs, unsafe_code, clippy::all)]

// The contract version is written in one place, `vumi-sdk-macro`.
vumi_sdk_macro::__imports!();
