//! `vumi:plugin/kv`: the app's namespaced view of the host's state store.

use std::time::Duration;

use crate::plugins::bindings::kv::{Host, KvError};
use crate::state::{KvStore, StateError};

use super::HostState;

/// Keys and values beyond these sizes are refused: state is for dialogue progress, not blobs,
/// and Redis round-trips grow with value size.
const MAX_KEY_BYTES: usize = 1024;
const MAX_VALUE_BYTES: usize = 1 << 20;

fn to_wit(e: StateError) -> KvError {
    match e {
        StateError::Unavailable(m) => KvError::Unavailable(m),
        StateError::NotAnInteger { key } => KvError::NotAnInteger(key),
        StateError::Limit(m) => KvError::Limit(m),
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::Limit(format!("key must be 1 to {MAX_KEY_BYTES} bytes, got {}", key.len())));
    }
    Ok(())
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        check_key(&key)?;
        self.ctx.kv.get(&key).await.map_err(to_wit)
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_seconds: Option<u32>) -> Result<(), KvError> {
        check_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::Limit(format!("value must be at most {MAX_VALUE_BYTES} bytes, got {}", value.len())));
        }
        let ttl = match ttl_seconds {
            Some(0) => return Err(KvError::Limit("ttl-seconds must be at least 1".into())),
            Some(s) => Some(Duration::from_secs(u64::from(s))),
            None => None,
        };
        self.ctx.kv.set(&key, &value, ttl).await.map_err(to_wit)
    }

    async fn delete(&mut self, key: String) -> Result<bool, KvError> {
        check_key(&key)?;
        self.ctx.kv.delete(&key).await.map_err(to_wit)
    }

    async fn incr(&mut self, key: String, by: i64) -> Result<i64, KvError> {
        check_key(&key)?;
        self.ctx.kv.incr(&key, by).await.map_err(to_wit)
    }
}
