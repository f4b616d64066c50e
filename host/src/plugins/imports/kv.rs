//! `vumi:plugin/kv`: the plugin's namespaced view of the host's state store.

use std::time::Duration;

use crate::plugins::bindings::kv::{Host, KvError};
use crate::state::{KvStore, StateError};

use super::HostState;

type R<T> = wasmtime::Result<T>;

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
    async fn get(&mut self, key: String) -> R<Result<Option<Vec<u8>>, KvError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(self.ctx.kv.get(&key).await.map_err(to_wit))
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> R<Result<(), KvError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        let max = self.ctx.kv_max_value.min(MAX_VALUE_BYTES);
        if value.len() > max {
            return Ok(Err(KvError::Limit(format!(
                "value must be at most {max} bytes, got {}",
                value.len()
            ))));
        }
        let ttl = match ttl_ms {
            Some(0) => return Ok(Err(KvError::Limit("ttl-ms must be at least 1".into()))),
            Some(ms) => Some(Duration::from_millis(ms)),
            None => None,
        };
        Ok(self.ctx.kv.set(&key, &value, ttl).await.map_err(to_wit))
    }

    async fn delete(&mut self, key: String) -> R<Result<bool, KvError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(self.ctx.kv.delete(&key).await.map_err(to_wit))
    }

    async fn incr(&mut self, key: String, by: i64) -> R<Result<i64, KvError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(self.ctx.kv.incr(&key, by).await.map_err(to_wit))
    }
}
