//! The plugin's configuration: the `config` table of its entry in the host's config file
//! (`[apps.<name>.config]`, `[routers.<name>.config]`, `[middleware.<name>.config]`).
//!
//! Usually you do not call this module: give the export macro `config = YourType` and each
//! handler receives the table parsed, once per instance (the table cannot change under a running
//! instance, and handlers are on every message's path). These functions are for reading a key or
//! two without a type.

use std::sync::OnceLock;

use serde::de::DeserializeOwned;

use crate::wit::vumi::plugin::config as raw;

/// A top-level key: strings as they are, other values as JSON text.
pub fn get(key: &str) -> Option<String> {
    raw::get(key)
}

/// The whole table (an empty object if the host sent something unreadable).
pub fn json() -> serde_json::Value {
    serde_json::from_str(&raw::get_json()).unwrap_or_else(|_| serde_json::Value::Object(Default::default()))
}

/// The whole table as your own type (derive `serde::Deserialize`; give optional keys defaults),
/// parsed now. A table that does not fit is a reject whose reason names the field.
pub fn get_as<T: DeserializeOwned>() -> crate::Result<T> {
    parse("plugin")
}

fn parse<T: DeserializeOwned>(world: &str) -> crate::Result<T> {
    serde_json::from_str(&raw::get_json())
        .map_err(|e| crate::Error::reject(format!("invalid {world} config: {e}")))
}

/// The config for the export macros: parsed on first use and kept in `cell` (a `static` the
/// macro makes in the plugin's crate), the error too, so a bad config rejects every call with
/// the same reason. `world` names the table in that reason (`app`, `router`, `middleware`).
#[doc(hidden)]
pub fn __cached<T: DeserializeOwned + Send + Sync>(
    cell: &'static OnceLock<crate::Result<T>>,
    world: &str,
) -> crate::Result<&'static T> {
    cell.get_or_init(|| parse(world)).as_ref().map_err(Clone::clone)
}
