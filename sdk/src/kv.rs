//! State that outlives a message, private to this app: where a dialogue remembers where it is.
//!
//! Writes take effect at once, even if the handler later fails: write state last, or make it
//! safe to redo.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit::vumi::plugin::kv as raw;
use crate::{Error, Result};

/// The bytes stored under `key`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
    Ok(raw::get(key)?)
}

/// Store `value` under `key`; with `ttl` it disappears after that long (rounded up to a second).
pub fn set(key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
    let ttl = match ttl {
        None => None,
        Some(d) => Some(
            u32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0))
                .map_err(|_| Error::new("kv: ttl longer than u32::MAX seconds"))?
                .max(1),
        ),
    };
    Ok(raw::set(key, value, ttl)?)
}

/// Remove `key`; returns whether it existed.
pub fn delete(key: &str) -> Result<bool> {
    Ok(raw::delete(key)?)
}

/// Add `by` to the integer under `key` (missing counts as 0); returns the new value.
pub fn incr(key: &str, by: i64) -> Result<i64> {
    Ok(raw::incr(key, by)?)
}

/// The text stored under `key` (an error if it is not UTF-8).
pub fn get_string(key: &str) -> Result<Option<String>> {
    get(key)?
        .map(|b| String::from_utf8(b).map_err(|_| Error::new(format!("kv: value under `{key}` is not UTF-8 text"))))
        .transpose()
}

/// Store text under `key`.
pub fn set_string(key: &str, value: &str, ttl: Option<Duration>) -> Result<()> {
    set(key, value.as_bytes(), ttl)
}

/// The JSON value stored under `key`, deserialized.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    get(key)?.map(|b| serde_json::from_slice(&b).map_err(Error::from)).transpose()
}

/// Store `value` as JSON under `key`.
pub fn set_json<T: Serialize>(key: &str, value: &T, ttl: Option<Duration>) -> Result<()> {
    set(key, &serde_json::to_vec(value)?, ttl)
}
