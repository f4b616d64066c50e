//! The networked state back end: Redis, shared by every host that names it. The only module
//! that imports `redis`.
//!
//! It runs on redis-rs's `ConnectionManager`, which reconnects by itself. Two of its defaults
//! are wrong for a host: it gives up after 6 reconnection attempts (then every waiting command
//! fails), and a command that meets the broken connection fails rather than being retried. So
//! the attempts and the longest wait come from config, and a failed command is
//! [`StateError::Unavailable`]: the callers (dispatchers, app lanes, channels) already retry
//! in place with a backoff, then take the retry path, and never drop.
//!
//! A timed-out command may still have been applied (redis-rs cannot cancel one in flight): its
//! outcome is unknown, which is what `Unavailable` tells the caller. Keys arrive namespaced by
//! `state::Namespace`, whose `{kind:name}:` prefixes are Redis Cluster hash tags, so one
//! owner's keys share a slot and multi-key scripts will work there later.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{KvStore, StateError};

/// How to reach the server and how patient to be (the supervisor fills it from
/// `[host.state]`).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[user:password@]host[:port][/db]`.
    pub url: String,
    /// How long one command may take before it counts as failed (outcome unknown).
    pub response_timeout: Duration,
    /// How long one connection attempt may take.
    pub connection_timeout: Duration,
    /// Reconnection attempts after a lost connection before waiting commands fail.
    pub reconnect_attempts: usize,
    /// The longest wait between reconnection attempts.
    pub reconnect_max_delay: Duration,
}

impl RedisOptions {
    /// `url` with one-second timeouts, 16 reconnection attempts, waits of at most 5 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            response_timeout: Duration::from_secs(1),
            connection_timeout: Duration::from_secs(1),
            reconnect_attempts: 16,
            reconnect_max_delay: Duration::from_secs(5),
        }
    }
}

/// Append to a key only if it exists, in one step (`KvStore::append`): `APPEND` alone would
/// create a missing key without an expiry.
const APPEND_IF_EXISTS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('APPEND', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// [`KvStore`] on a Redis server.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    append: redis::Script,
    /// The URL without its password, for error messages.
    server: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("server", &self.server).finish()
    }
}

impl RedisStore {
    /// Connect to the server `config` names. Fails if it cannot be reached now: a host that
    /// starts without its state store would only fail every message instead.
    pub async fn connect(config: &RedisOptions) -> Result<Self, StateError> {
        let server = redact(&config.url);
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| StateError::Unavailable(format!("`{server}` is not a Redis URL: {e}")))?;
        let manager = ConnectionManagerConfig::new()
            .set_number_of_retries(config.reconnect_attempts)
            .set_max_delay(config.reconnect_max_delay)
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connection_timeout));
        let conn = ConnectionManager::new_with_config(client, manager)
            .await
            .map_err(|e| StateError::Unavailable(format!("cannot reach Redis at {server}: {e}")))?;
        Ok(Self { conn, append: redis::Script::new(APPEND_IF_EXISTS), server })
    }

    fn unavailable(&self, e: &redis::RedisError) -> StateError {
        StateError::Unavailable(format!("Redis at {}: {e}", self.server))
    }
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() + 3 => {
            let userinfo = &rest[..at - scheme.len() - 3];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{}", &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[async_trait]
impl KvStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET").arg(key).query_async(&mut conn).await.map_err(|e| self.unavailable(&e))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            // `PX 0` is an error in Redis; a zero TTL means "already expired", so 1 ms.
            cmd.arg("PX").arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        cmd.query_async::<()>(&mut conn).await.map_err(|e| self.unavailable(&e))
    }

    async fn delete(&self, key: &str) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let n: i64 = redis::cmd("DEL").arg(key).query_async(&mut conn).await.map_err(|e| self.unavailable(&e))?;
        Ok(n > 0)
    }

    async fn incr(&self, key: &str, by: i64) -> Result<i64, StateError> {
        let mut conn = self.conn.clone();
        redis::cmd("INCRBY").arg(key).arg(by).query_async(&mut conn).await.map_err(|e| {
            // Redis's own words for the two refusals `incr` can meet.
            let detail = e.detail().unwrap_or_default();
            if detail.contains("not an integer") {
                StateError::NotAnInteger { key: key.to_owned() }
            } else if detail.contains("overflow") {
                StateError::Limit(format!("incr of `{key}` by {by} overflows a 64-bit integer"))
            } else {
                self.unavailable(&e)
            }
        })
    }

    async fn append(&self, key: &str, value: &[u8]) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let done: i64 = self.append.key(key).arg(value).invoke_async(&mut conn).await.map_err(|e| self.unavailable(&e))?;
        Ok(done == 1)
    }

    async fn ping(&self) -> Result<(), StateError> {
        // A real command: some failures leave the manager wedged while it looks connected.
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await.map_err(|e| self.unavailable(&e))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The shared Redis of this machine (`VUMI_TEST_REDIS_URL` to point elsewhere). A test that
    /// cannot reach it fails and says how to start one; it never passes silently.
    async fn store() -> RedisStore {
        let url = std::env::var("VUMI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let config = RedisOptions { reconnect_attempts: 0, ..RedisOptions::new(url.clone()) };
        RedisStore::connect(&config).await.unwrap_or_else(|e| {
            panic!("{e}\nThese tests need Redis at {url}: start one with `redis-server --port 6379 --save '' --appendonly no`, or set VUMI_TEST_REDIS_URL.")
        })
    }

    /// Delete every key whose name holds `run`, the conformance run's id.
    async fn clean(store: &RedisStore, run: &str) {
        let mut conn = store.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("*{run}*")).query_async(&mut conn).await.expect("KEYS");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("DEL");
        }
        let left: Vec<String> = redis::cmd("KEYS").arg(format!("*{run}*")).query_async(&mut conn).await.expect("KEYS");
        assert!(left.is_empty(), "the run cleaned up after itself: {left:?}");
    }

    #[tokio::test]
    async fn redis_store_passes_the_conformance_suite() {
        let store = store().await;
        let run = crate::state::conformance::run_all(&store).await;
        clean(&store, &run).await;
    }

    #[tokio::test]
    async fn namespaced_redis_store_passes_the_conformance_suite() {
        let store = store().await;
        let inner: Arc<dyn KvStore> = Arc::new(store.clone());
        let run = crate::message::new_id();
        let tenant = format!("t{run}");
        let view = crate::state::Namespaced::new(inner.clone(), crate::state::Namespace::plugin("app", &tenant));
        let inner_run = crate::state::conformance::run_all(&view).await;
        let isolated_run = crate::state::conformance::namespaces_are_isolated(inner).await;
        for r in [run, inner_run, isolated_run] {
            clean(&store, &r).await;
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_and_says_where() {
        // Nothing listens on port 9 (discard) here; the password must not appear in the error.
        let config = RedisOptions {
            reconnect_attempts: 0,
            connection_timeout: Duration::from_millis(300),
            ..RedisOptions::new("redis://vumi:s3cret@127.0.0.1:9")
        };
        let err = RedisStore::connect(&config).await.expect_err("nothing listens on port 9");
        let text = err.to_string();
        assert!(matches!(err, StateError::Unavailable(_)) && err.is_retryable(), "{text}");
        assert!(text.contains("redis://vumi:***@127.0.0.1:9") && !text.contains("s3cret"), "{text}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("rediss://user:pw@h:1"), "rediss://user:***@h:1");
    }
}
