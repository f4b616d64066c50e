//! The app's configuration: the `[apps.<name>.config]` table of the host's config file.

use serde::de::DeserializeOwned;

use crate::wit::vumi::plugin::config as raw;
use crate::{Error, Result};

/// A top-level key: strings as they are, other values as JSON text.
pub fn get(key: &str) -> Option<String> {
    raw::get(key)
}

/// The whole table.
pub fn json() -> serde_json::Value {
    serde_json::from_str(&raw::get_json()).unwrap_or(serde_json::Value::Object(Default::default()))
}

/// The whole table as your own type (derive `serde::Deserialize`; give optional keys defaults).
pub fn get_as<T: DeserializeOwned>() -> Result<T> {
    serde_json::from_str(&raw::get_json()).map_err(|e| Error::new(format!("invalid app config: {e}")))
}
