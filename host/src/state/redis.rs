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

use super::{KvStore, Quota, Sequencer, StateError, Take, Usage};

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

/// The counted operations of a quota account (`KvStore::set_counted` and the rest). Every
/// script gets the data key and the account's three records as KEYS: `sizes` (a hash, key →
/// bytes: its length is the key count), `expiring` (a sorted set, key → when it expires, in
/// ms) and `bytes` (the total). Each first uncounts up to 256 keys that have expired, by the
/// server's clock. Scripts run whole, so two hosts counting for one tenant never race; the
/// keys share the tenant's hash tag, so Redis Cluster can run them.
const QUOTA_RECLAIM: &str = r"
local function reclaim()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 256)
  for _, k in ipairs(due) do
    redis.call('ZREM', KEYS[3], k)
    if redis.call('EXISTS', k) == 0 then
      local size = redis.call('HGET', KEYS[2], k)
      if size then
        redis.call('HDEL', KEYS[2], k)
        redis.call('DECRBY', KEYS[4], size)
      end
    end
  end
  return now
end
";

/// ARGV: value, ttl in ms (0: none), max keys, max bytes. Returns {0} or {1, keys held} or
/// {2, bytes held, bytes asked}.
const QUOTA_SET: &str = r"
local now = reclaim()
local new = string.len(ARGV[1])
local old = redis.call('HGET', KEYS[2], KEYS[1])
local held = tonumber(redis.call('GET', KEYS[4]) or '0')
if old then
  held = held - tonumber(old)
else
  local n = redis.call('HLEN', KEYS[2])
  if n >= tonumber(ARGV[3]) then return {1, n} end
end
if held + new > tonumber(ARGV[4]) then return {2, held, new} end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
  redis.call('ZADD', KEYS[3], now + ttl, KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[3], KEYS[1])
end
redis.call('HSET', KEYS[2], KEYS[1], new)
redis.call('SET', KEYS[4], held + new)
return {0}
";

/// Returns whether the key existed.
const QUOTA_DELETE: &str = r"
reclaim()
local old = redis.call('HGET', KEYS[2], KEYS[1])
if old then
  redis.call('HDEL', KEYS[2], KEYS[1])
  redis.call('DECRBY', KEYS[4], old)
end
redis.call('ZREM', KEYS[3], KEYS[1])
return redis.call('DEL', KEYS[1])
";

/// ARGV: by, max keys, max bytes. Returns {0, value} or {1, keys held} or {2, bytes held,
/// bytes asked} or {3, Redis's refusal}. The new value's length is known only after INCRBY, so
/// a refusal for bytes puts the old value back.
const QUOTA_INCR: &str = r"
reclaim()
local old = redis.call('HGET', KEYS[2], KEYS[1])
if not old then
  local n = redis.call('HLEN', KEYS[2])
  if n >= tonumber(ARGV[2]) then return {1, n} end
end
local before = redis.call('GET', KEYS[1])
local v = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(v) == 'table' and v.err then return {3, v.err} end
local new = string.len(tostring(v))
local held = tonumber(redis.call('GET', KEYS[4]) or '0') - tonumber(old or '0')
if held + new > tonumber(ARGV[3]) then
  if before then redis.call('SET', KEYS[1], before, 'KEEPTTL') else redis.call('DEL', KEYS[1]) end
  return {2, held, new}
end
redis.call('HSET', KEYS[2], KEYS[1], new)
redis.call('SET', KEYS[4], held + new)
return {0, v}
";

/// Returns {keys, bytes}.
const QUOTA_USAGE: &str = r"
reclaim()
return {redis.call('HLEN', KEYS[2]), tonumber(redis.call('GET', KEYS[4]) or '0')}
";

/// The scripts of the counted operations, each with the reclaim function in front.
#[derive(Clone)]
struct QuotaScripts {
    set: redis::Script,
    delete: redis::Script,
    incr: redis::Script,
    usage: redis::Script,
}

impl QuotaScripts {
    fn new() -> Self {
        let with = |body: &str| redis::Script::new(&format!("{QUOTA_RECLAIM}{body}"));
        Self {
            set: with(QUOTA_SET),
            delete: with(QUOTA_DELETE),
            incr: with(QUOTA_INCR),
            usage: with(QUOTA_USAGE),
        }
    }
}

/// A counted script invoked on `key` and `quota`'s three records.
fn counted<'a>(script: &'a redis::Script, key: &str, quota: &Quota) -> redis::ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    inv.key(key)
        .key(format!("{}sizes", quota.account))
        .key(format!("{}expiring", quota.account))
        .key(format!("{}bytes", quota.account));
    inv
}

/// A counted script's answer: `{0, value?}` is done (the value, for `incr`), `{1, keys}` and
/// `{2, bytes held, bytes asked}` are the quota's refusals.
fn quota_outcome(r: &[redis::Value], quota: &Quota) -> Result<i64, StateError> {
    let int = |i: usize| match r.get(i) {
        Some(redis::Value::Int(n)) => *n,
        _ => 0,
    };
    match int(0) {
        0 => Ok(int(1)),
        1 => Err(quota.over_keys(int(1).max(0) as u64)),
        _ => Err(quota.over_bytes(int(1).max(0) as u64, int(2).max(0) as u64)),
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

/// [`Sequencer::take`]: a done marker means "finished before"; else the message's ticket (the
/// one it took before, if a take whose answer was lost ran after all: so a retried take never
/// queues the message behind the user's later ones, nor leaves an orphan ticket) or a new one,
/// its lease, then the turn check. KEYS[1] is the user's line (a hash: `next`, `serving`); its
/// leases, tickets by message and done markers are `<line>:lease:<t>`, `<line>:tk:<id>` and
/// `<line>:done:<id>`, in its hash slot.
const TAKE: &str = r"
local line = KEYS[1]
if redis.call('EXISTS', line .. ':done:' .. ARGV[1]) == 1 then return {-1, 0} end
local tk = line .. ':tk:' .. ARGV[1]
local t = tonumber(redis.call('GET', tk) or '0')
if t == 0 then
  t = redis.call('HINCRBY', line, 'next', 1)
  redis.call('SET', tk, t, 'PX', ARGV[3])
end
redis.call('SET', line .. ':lease:' .. t, '1', 'PX', ARGV[2])
redis.call('PEXPIRE', line, ARGV[3])
local s = tonumber(redis.call('HGET', line, 'serving') or '0')
while s < t - 1 do
  if redis.call('EXISTS', line .. ':lease:' .. (s + 1)) == 1 then return {t, 0} end
  s = s + 1
  redis.call('HSET', line, 'serving', s)
end
return {t, 1}
";

/// [`Sequencer::turn`]: skip earlier tickets whose lease expired; go when all before are over.
/// (The asker's own lease is kept by its holder's refresh, not here: a waiting ticket's poll
/// writes nothing unless the line moves.)
const TURN: &str = r"
local line = KEYS[1]
local t = tonumber(ARGV[1])
local s = tonumber(redis.call('HGET', line, 'serving') or '0')
while s < t - 1 do
  if redis.call('EXISTS', line .. ':lease:' .. (s + 1)) == 1 then return 0 end
  s = s + 1
  redis.call('HSET', line, 'serving', s)
end
return 1
";

/// [`Sequencer::finish`]: the done marker, then the line moves on past `t`.
const FINISH: &str = r"
local line = KEYS[1]
if ARGV[2] ~= '' then
  redis.call('SET', line .. ':done:' .. ARGV[2], '1', 'PX', ARGV[3])
  redis.call('DEL', line .. ':tk:' .. ARGV[2])
end
local s = tonumber(redis.call('HGET', line, 'serving') or '0')
if s < tonumber(ARGV[1]) then redis.call('HSET', line, 'serving', ARGV[1]) end
redis.call('DEL', line .. ':lease:' .. ARGV[1])
return 1
";

/// [`Sequencer`] on the same server as a [`RedisStore`]: three Lua scripts on one hash-tagged
/// line per user, so each step is atomic and Redis Cluster keeps a line in one slot.
#[derive(Clone)]
pub struct RedisSequencer {
    store: RedisStore,
    take: redis::Script,
    turn: redis::Script,
    finish: redis::Script,
    lease: Duration,
    done_ttl: Duration,
}

impl std::fmt::Debug for RedisSequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSequencer")
            .field("server", &self.store.server)
            .field("lease", &self.lease)
            .finish()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisSequencer {
    /// The line of `user`, hash-tagged.
    fn line(user: &str) -> String {
        format!("vumi:seq:{{{user}}}")
    }
}

#[async_trait]
impl Sequencer for RedisSequencer {
    async fn take(&self, user: &str, message_id: &str) -> Result<Take, StateError> {
        let mut conn = self.store.conn.clone();
        let (t, go): (i64, i64) = self
            .take
            .key(Self::line(user))
            .arg(message_id)
            .arg(ms(self.lease))
            .arg(ms(self.done_ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.store.unavailable(&e))?;
        Ok(if t < 0 { Take::Done } else { Take::Ticket { ticket: t as u64, go: go == 1 } })
    }

    async fn turn(&self, user: &str, ticket: u64) -> Result<bool, StateError> {
        let mut conn = self.store.conn.clone();
        let go: i64 = self
            .turn
            .key(Self::line(user))
            .arg(ticket)
            .arg(ms(self.lease))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.store.unavailable(&e))?;
        Ok(go == 1)
    }

    async fn refresh(&self, held: &[(String, u64)]) -> Result<usize, StateError> {
        if held.is_empty() {
            return Ok(0);
        }
        // One pipeline: one round trip, and with AOF `always` one fsync for the lot rather
        // than one per ticket.
        let mut pipe = redis::pipe();
        for (user, ticket) in held {
            pipe.cmd("PEXPIRE").arg(format!("{}:lease:{ticket}", Self::line(user))).arg(ms(self.lease));
        }
        let mut conn = self.store.conn.clone();
        let kept: Vec<i64> = pipe.query_async(&mut conn).await.map_err(|e| self.store.unavailable(&e))?;
        Ok(kept.iter().filter(|k| **k == 0).count())
    }

    async fn finish(&self, user: &str, ticket: u64, done: Option<&str>) -> Result<(), StateError> {
        let mut conn = self.store.conn.clone();
        self.finish
            .key(Self::line(user))
            .arg(ticket)
            .arg(done.unwrap_or(""))
            .arg(ms(self.done_ttl))
            .invoke_async::<()>(&mut conn)
            .await
            .map_err(|e| self.store.unavailable(&e))
    }

    fn lease(&self) -> Duration {
        self.lease
    }
}

/// [`KvStore`] on a Redis server.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    append: redis::Script,
    quota: QuotaScripts,
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
        // redis-rs reconnects on its own schedule: doubling, jittered (backon's, as ours), up to
        // `reconnect_max_delay`, so hosts that lost Redis together do not reconnect in step.
        let manager = ConnectionManagerConfig::new()
            .set_number_of_retries(config.reconnect_attempts)
            .set_max_delay(config.reconnect_max_delay)
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connection_timeout));
        let conn = ConnectionManager::new_with_config(client, manager)
            .await
            .map_err(|e| StateError::Unavailable(format!("cannot reach Redis at {server}: {e}")))?;
        Ok(Self { conn, append: redis::Script::new(APPEND_IF_EXISTS), quota: QuotaScripts::new(), server })
    }

    /// Per-user turns on this server: leases of `lease`, done markers kept `done_ttl`.
    pub fn sequencer(&self, lease: Duration, done_ttl: Duration) -> RedisSequencer {
        RedisSequencer {
            store: self.clone(),
            take: redis::Script::new(TAKE),
            turn: redis::Script::new(TURN),
            finish: redis::Script::new(FINISH),
            lease,
            done_ttl,
        }
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
        let n: i64 =
            redis::cmd("DEL").arg(key).query_async(&mut conn).await.map_err(|e| self.unavailable(&e))?;
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
        let done: i64 = self
            .append
            .key(key)
            .arg(value)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(done == 1)
    }

    async fn set_counted(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        quota: &Quota,
    ) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let ttl_ms = ttl.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
        let r: Vec<redis::Value> = counted(&self.quota.set, key, quota)
            .arg(value)
            .arg(ttl_ms)
            .arg(quota.max_keys)
            .arg(quota.max_bytes)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&e))?;
        quota_outcome(&r, quota).map(|_| ())
    }

    async fn delete_counted(&self, key: &str, quota: &Quota) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let n: i64 = counted(&self.quota.delete, key, quota)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(n > 0)
    }

    async fn incr_counted(&self, key: &str, by: i64, quota: &Quota) -> Result<i64, StateError> {
        let mut conn = self.conn.clone();
        let r: Vec<redis::Value> = counted(&self.quota.incr, key, quota)
            .arg(by)
            .arg(quota.max_keys)
            .arg(quota.max_bytes)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&e))?;
        match r.first() {
            Some(redis::Value::Int(3)) => {
                let why = r
                    .get(1)
                    .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
                    .unwrap_or_default();
                Err(if why.contains("overflow") {
                    StateError::Limit(format!("incr of `{key}` by {by} overflows a 64-bit integer"))
                } else {
                    StateError::NotAnInteger { key: key.to_owned() }
                })
            }
            _ => quota_outcome(&r, quota),
        }
    }

    async fn usage(&self, quota: &Quota) -> Result<super::Usage, StateError> {
        let mut conn = self.conn.clone();
        let (keys, bytes): (u64, u64) = counted(&self.quota.usage, "", quota)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(Usage { keys, bytes })
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
        let url =
            std::env::var("VUMI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let config = RedisOptions { reconnect_attempts: 0, ..RedisOptions::new(url.clone()) };
        RedisStore::connect(&config).await.unwrap_or_else(|e| {
            panic!("{e}\nThese tests need Redis at {url}: start one with `redis-server --port 6379 --save '' --appendonly no`, or set VUMI_TEST_REDIS_URL.")
        })
    }

    /// Delete every key whose name holds `run`, the conformance run's id.
    async fn clean(store: &RedisStore, run: &str) {
        let mut conn = store.conn.clone();
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("*{run}*")).query_async(&mut conn).await.expect("KEYS");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("DEL");
        }
        let left: Vec<String> =
            redis::cmd("KEYS").arg(format!("*{run}*")).query_async(&mut conn).await.expect("KEYS");
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
        let run = crate::message::test_run(32);
        let tenant = format!("t{run}");
        let view =
            crate::state::Namespaced::new(inner.clone(), crate::state::Namespace::plugin("app", &tenant));
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

    #[tokio::test]
    async fn the_sequencer_runs_a_users_messages_in_turn_skips_a_dead_holder_and_knows_a_finished_one() {
        let store = store().await;
        let run = crate::message::test_run(32);
        let seq = store.sequencer(Duration::from_millis(300), Duration::from_secs(60));
        let r = run.clone();
        let outcome = async move {
            let (alice, bob) = (format!("{r}|alice"), format!("{r}|bob"));
            let Take::Ticket { ticket: a1, go: true } = seq.take(&alice, "m1").await.expect("take") else {
                panic!("the first runs at once")
            };
            let Take::Ticket { ticket: a2, go: false } = seq.take(&alice, "m2").await.expect("take") else {
                panic!("the second waits")
            };
            assert_eq!((a1, a2), (1, 2));
            // Another user is not held up by alice.
            assert!(matches!(
                seq.take(&bob, "b1").await.expect("take"),
                Take::Ticket { ticket: 1, go: true }
            ));
            assert!(!seq.turn(&alice, a2).await.expect("turn"), "not while m1 runs");
            assert_eq!(seq.refresh(&[(alice.clone(), a1)]).await.expect("refresh"), 0, "a1's lease held");
            seq.finish(&alice, a1, Some("m1")).await.expect("finish");
            assert_eq!(seq.refresh(&[(alice.clone(), a1)]).await.expect("refresh"), 1, "a1's lease is over");
            assert!(seq.turn(&alice, a2).await.expect("turn"), "m2's turn once m1 is finished");
            // m1 delivered again: recognised, not handled again.
            assert_eq!(seq.take(&alice, "m1").await.expect("take"), Take::Done);
            // m2's holder dies without finishing: m3 waits out its lease, then goes.
            let Take::Ticket { ticket: a3, go: false } = seq.take(&alice, "m3").await.expect("take") else {
                panic!("m3 waits for m2")
            };
            assert!(!seq.turn(&alice, a3).await.expect("turn"), "m2's lease is fresh");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            // m3's holder keeps its lease, as a host's refresher does while it waits.
            while !(seq.refresh(&[(alice.clone(), a3)]).await.expect("refresh") == 0
                && seq.turn(&alice, a3).await.expect("turn"))
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a dead holder's ticket is skipped once its lease expires"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // A ticket given up without a done marker lets the next go, and its message can run later.
            let Take::Ticket { ticket: a4, go: false } = seq.take(&alice, "m4").await.expect("take") else {
                panic!("m4 waits for m3")
            };
            seq.finish(&alice, a3, None).await.expect("give up");
            assert!(seq.turn(&alice, a4).await.expect("turn"));
            assert!(
                matches!(seq.take(&alice, "m3").await.expect("take"), Take::Ticket { ticket, .. } if ticket == a3),
                "m3 was not marked done, and keeps its ticket"
            );
            // A take whose answer was lost ran anyway: taken again, the message keeps its
            // ticket, ahead of the user's later messages, and no orphan ticket blocks them.
            let Take::Ticket { ticket: a5, .. } = seq.take(&alice, "m5").await.expect("take") else {
                panic!()
            };
            let Take::Ticket { ticket: a6, go: false } = seq.take(&alice, "m6").await.expect("take") else {
                panic!("m6 waits for m5")
            };
            assert!(
                matches!(seq.take(&alice, "m5").await.expect("take"), Take::Ticket { ticket, .. } if ticket == a5)
            );
            assert!(a5 < a6);
            seq.finish(&alice, a5, Some("m5")).await.expect("finish");
            assert!(
                seq.turn(&alice, a6).await.expect("turn"),
                "m6 goes once m5 is done: no second ticket of m5"
            );
        };
        let outcome = tokio::spawn(outcome).await;
        clean(&store, &run).await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
