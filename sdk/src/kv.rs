//! State that outlives a message, private to this plugin: where a dialogue remembers where it
//! is, a router its sticky assignments, a middleware its opt-out list.
//!
//! Keys are the plugin's own (the host keeps each plugin's keys apart). Writes take effect at
//! once, even if the handler later fails: write state last, or make it safe to redo.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit::vumi::plugin::kv as raw;

/// Why a state operation failed: WIT's `kv-error`, mirrored so a plugin can `match` on it.
///
/// `?` in a handler turns [`Error::Unavailable`] into [`crate::Error::RetryLater`] (the host
/// hands the message back once the store may be back) and the others into
/// [`crate::Error::Reject`] (retrying would not help).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The store could not be reached or timed out; retrying later may help.
    Unavailable(String),
    /// The key or value breaks a limit (size, key count); retrying will not help.
    Limit(String),
    /// `incr` found a value that is not an integer (the payload names the key).
    NotAnInteger(String),
}

impl From<raw::KvError> for Error {
    fn from(e: raw::KvError) -> Self {
        match e {
            raw::KvError::Unavailable(why) => Self::Unavailable(why),
            raw::KvError::Limit(why) => Self::Limit(why),
            raw::KvError::NotAnInteger(key) => Self::NotAnInteger(key),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "kv unavailable: {why}"),
            Self::Limit(why) => write!(f, "kv limit: {why}"),
            Self::NotAnInteger(key) => write!(f, "kv: value under `{key}` is not an integer"),
        }
    }
}

impl std::error::Error for Error {}

/// The bytes stored under `key`, or `None`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(raw::get(key)?)
}

/// Store `value` under `key`, replacing what was there. With `ttl` the key disappears after that
/// long (to the millisecond, rounded up): use it for sessions that users abandon.
pub fn set(key: &str, value: impl AsRef<[u8]>, ttl: Option<Duration>) -> Result<(), Error> {
    Ok(raw::set(key, value.as_ref(), ttl.map(ttl_ms))?)
}

/// A TTL in whole milliseconds, never rounded down to none at all.
fn ttl_ms(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// Remove `key`; returns whether it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    Ok(raw::delete(key)?)
}

/// Add `by` to the integer under `key` (a missing key counts as 0); returns the new value.
/// Integers are stored as decimal text, so [`get_string`] reads them too.
pub fn incr(key: &str, by: i64) -> Result<i64, Error> {
    Ok(raw::incr(key, by)?)
}

/// The text stored under `key` (a reject if it is not UTF-8).
pub fn get_string(key: &str) -> crate::Result<Option<String>> {
    get(key)?
        .map(|b| {
            String::from_utf8(b)
                .map_err(|_| crate::Error::reject(format!("kv: value under `{key}` is not UTF-8 text")))
        })
        .transpose()
}

/// Store text under `key`.
pub fn set_string(key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error> {
    set(key, value, ttl)
}

/// The JSON value stored under `key`, deserialized (a reject if it does not fit `T`).
pub fn get_json<T: DeserializeOwned>(key: &str) -> crate::Result<Option<T>> {
    get(key)?.map(|b| serde_json::from_slice(&b).map_err(crate::Error::from)).transpose()
}

/// Store `value` as JSON under `key`.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T, ttl: Option<Duration>) -> crate::Result<()> {
    Ok(set(key, serde_json::to_vec(value)?, ttl)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_the_millisecond() {
        assert_eq!(ttl_ms(Duration::from_secs(600)), 600_000);
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1_500)), 2);
        assert_eq!(ttl_ms(Duration::ZERO), 0);
        assert_eq!(ttl_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn only_an_unavailable_store_is_worth_a_retry() {
        assert_eq!(
            crate::Error::from(Error::Unavailable("down".into())),
            crate::Error::retry_later("kv unavailable: down")
        );
        assert_eq!(crate::Error::from(Error::Limit("big".into())), crate::Error::reject("kv limit: big"));
        assert_eq!(
            crate::Error::from(Error::NotAnInteger("n".into())),
            crate::Error::reject("kv: value under `n` is not an integer")
        );
    }
}
