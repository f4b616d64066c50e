//! Key-value state that outlives a message: dialogue progress, session maps, routing memory.
//!
//! [`KvStore`] is the seam between callers and back ends. The in-memory store (`memory.rs`) is the
//! embedded default; a networked store (Redis) implements the same trait and must pass the same
//! behaviour suite (`conformance.rs`), so callers never learn which one they hold.
//!
//! Keys are namespaced with [`Namespaced`] and [`Namespace`]: each plugin sees only its own keys,
//! whatever the back end.

pub mod conformance;
pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use self::redis::{RedisOptions, RedisSequencer, RedisStore};
pub use memory::MemoryStore;

/// Why a state operation failed. [`StateError::is_retryable`] tells callers whether trying again
/// later can help (a Redis connection drop can; a value that is not an integer cannot).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The back end could not be reached or did not answer in time.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// `incr` met a value that is not a decimal integer.
    #[error("value under key `{key}` is not an integer")]
    NotAnInteger {
        /// The key, without its namespace prefix.
        key: String,
    },
    /// A key or value breaks a configured limit.
    #[error("{0}")]
    Limit(String),
}

impl crate::retry::Transient for StateError {
    fn retry_as(&self) -> Option<&'static str> {
        self.is_retryable().then_some("unavailable")
    }
}

impl StateError {
    /// Whether the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StateError::Unavailable(_))
    }
}

/// What [`Sequencer::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The message was finished before (a redelivery of one already handled): ack it, handle
    /// nothing.
    Done,
    /// The message holds ticket `ticket` in its user's line; `go`: it is its turn now.
    Ticket {
        /// Its place in the user's line.
        ticket: u64,
        /// Whether every earlier ticket is finished (or abandoned).
        go: bool,
    },
}

/// Per-user turns shared by every host that names the same store: a user's messages are
/// handled one at a time and in the order their hosts took them from the queue, whichever host
/// took each.
///
/// Each message takes a ticket when it is delivered and runs when every earlier ticket of its
/// user is finished. A ticket holds a lease while it waits or runs, refreshed by its holder;
/// a waiter skips a ticket whose lease expired (its host died, and the broker redelivers that
/// message under a new ticket). A finished message leaves a done marker, so a redelivery of it
/// is recognised and not handled again. The exceptions to order are exactly these: a message
/// redelivered after its host died runs after the messages that overtook it, and two messages
/// of one user taken by two hosts within one round trip to the store run in the order their
/// tickets were issued.
#[async_trait]
pub trait Sequencer: Send + Sync + 'static {
    /// Take a ticket for `message_id` in `user`'s line, or learn that it was finished before.
    async fn take(&self, user: &str, message_id: &str) -> Result<Take, StateError>;
    /// Whether `ticket` may run now (refreshing its lease either way).
    async fn turn(&self, user: &str, ticket: u64) -> Result<bool, StateError>;
    /// Keep the leases of `held` (user line, ticket) while their messages wait or run: one
    /// round trip for all a host holds, since a busy host holds thousands. How many had run
    /// out already (their place in the line may have been given away).
    async fn refresh(&self, held: &[(String, u64)]) -> Result<usize, StateError>;
    /// `ticket` is over: the next may run. With `done`, that message id is marked finished.
    async fn finish(&self, user: &str, ticket: u64, done: Option<&str>) -> Result<(), StateError>;
    /// How long a lease lasts unrefreshed.
    fn lease(&self) -> Duration;
}

/// A key-value store with expiry and atomic increment: the operations Vumi's sandbox `kv` resource
/// offered, which is what campaign apps and transports need.
///
/// Values are bytes; `incr` stores integers as decimal text, as Redis does, so a value written by
/// `incr` reads back as text through `get` on every back end.
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The value under `key`, or `None` if absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Store `value` under `key`; with `ttl` the key expires after that long. Replaces any previous
    /// value and any previous expiry.
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError>;
    /// Remove `key`; returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, StateError>;
    /// Add `by` to the integer under `key` (absent counts as 0) and return the new value. Keeps
    /// an existing expiry, as Redis `INCRBY` does.
    async fn incr(&self, key: &str, by: i64) -> Result<i64, StateError>;
    /// Append `value` to the value under `key`, keeping its expiry, if the key exists; whether
    /// it did. An absent or expired key is not created, so a record that has expired is not
    /// brought back without its expiry. (Redis: `EXISTS` then `APPEND`, in one script.) It lets
    /// a growing record, such as a message's events, be extended without reading it back.
    async fn append(&self, key: &str, value: &[u8]) -> Result<bool, StateError>;
    /// Whether the back end answers now, by a real round trip (`/health` asks). An in-process
    /// store always does.
    async fn ping(&self) -> Result<(), StateError> {
        Ok(())
    }
    /// [`KvStore::set`], counted in `quota`'s account: refused with [`StateError::Limit`] if a
    /// new key would take the account over its keys, or the value over its bytes. Replacing a
    /// key counts only the difference; a key that expired stops counting (reclaimed by the next
    /// counted operation on the account), so abandoned sessions do not use up a quota.
    async fn set_counted(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        quota: &Quota,
    ) -> Result<(), StateError>;
    /// [`KvStore::delete`], uncounting the key.
    async fn delete_counted(&self, key: &str, quota: &Quota) -> Result<bool, StateError>;
    /// [`KvStore::incr`], counting a new key (and the digits' bytes).
    async fn incr_counted(&self, key: &str, by: i64, quota: &Quota) -> Result<i64, StateError>;
    /// What `quota`'s account holds now (expired keys reclaimed first).
    async fn usage(&self, quota: &Quota) -> Result<Usage, StateError>;
}

/// An account of keys and bytes shared by several namespaces (a tenant's plugins), and its
/// limits. The account's records live under [`Namespace::Quota`]; the keys it counts must share
/// its hash tag, so that Redis Cluster can run a counted write as one script
/// ([`Namespace::Plugin`] tags a tenant's plugin keys with the tenant for this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The account's key prefix (`Namespace::Quota(..).prefix()`).
    pub account: String,
    /// Who is counted, for messages (e.g. tenant `acme`).
    pub owner: String,
    /// Keys the account may hold.
    pub max_keys: u64,
    /// Bytes of values the account may hold.
    pub max_bytes: u64,
}

impl Quota {
    /// The account of tenant `tenant`.
    pub fn tenant(tenant: &str, max_keys: u64, max_bytes: u64) -> Self {
        Self {
            account: Namespace::Quota(tenant).prefix(),
            owner: format!("tenant `{tenant}`"),
            max_keys,
            max_bytes,
        }
    }

    /// The refusal of one more key.
    pub fn over_keys(&self, held: u64) -> StateError {
        StateError::Limit(format!(
            "{} holds {held} kv keys, its limit (`limits.kv_max_keys` is {}): delete keys or give them a TTL",
            self.owner, self.max_keys
        ))
    }

    /// The refusal of `more` bytes on top of `held`.
    pub fn over_bytes(&self, held: u64, more: u64) -> StateError {
        StateError::Limit(format!(
            "{} holds {held} bytes of kv values (besides this key); {more} more would pass its limit (`limits.kv_max_bytes` is {})",
            self.owner, self.max_bytes
        ))
    }
}

/// What a quota's account holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Usage {
    /// Live keys.
    pub keys: u64,
    /// Bytes of their values.
    pub bytes: u64,
}

/// Whose keys a [`Namespaced`] view holds. Every namespace in the host is built here, and
/// nowhere else, so that no two owners can meet.
///
/// A namespace is written `{<kind>:<name>...}:` before each key: the parts are validated names
/// (`names`), which cannot contain `{`, `}` or `:`, so one namespace's prefix is never a prefix
/// of another's keys, whatever keys a plugin writes. (A router named `x` that writes the key
/// `origin:<id>` stays inside `{plugin:router:x}:`; the records that send its messages' events
/// home live in `{origins:router:x}:`.) The braces are also Redis Cluster's hash tag, so every
/// key of one owner lands on one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace<'a> {
    /// A plugin's own `kv`: `kind` is `app`, `router` or `middleware`.
    Plugin {
        /// The plugin's kind.
        kind: &'static str,
        /// Its name in config.
        name: &'a str,
    },
    /// Which component sent each outbound message: a dispatcher's (`owner` `router:<name>`) or
    /// a shared connector's (`owner` `connector:<name>`).
    Origins {
        /// Whose records.
        owner: &'static str,
        /// Its name.
        name: &'a str,
    },
    /// A transport's own state (session maps, message ids).
    Transport(&'a str),
    /// A send-API channel's message store.
    Channel(&'a str),
    /// A tenant's kv account (see [`Quota`]).
    Quota(&'a str),
}

impl Namespace<'_> {
    /// A plugin's namespace.
    pub fn plugin<'a>(kind: &'static str, name: &'a str) -> Namespace<'a> {
        Namespace::Plugin { kind, name }
    }

    /// The origin records of a dispatcher (`owner` `router`) or a shared connector (`owner`
    /// `connector`).
    pub fn origins<'a>(owner: &'static str, name: &'a str) -> Namespace<'a> {
        Namespace::Origins { owner, name }
    }

    /// The key prefix, `{...}:`.
    pub fn prefix(&self) -> String {
        match self {
            // A tenant's plugin keys carry the tenant's hash tag, which its quota account shares.
            Namespace::Plugin { kind, name } => match crate::names::tenant_of(name) {
                Some(t) => format!("{{tenant:{t}}}:plugin:{kind}:{name}:"),
                None => format!("{{plugin:{kind}:{name}}}:"),
            },
            Namespace::Origins { owner, name } => format!("{{origins:{owner}:{name}}}:"),
            Namespace::Transport(name) => format!("{{transport:{name}}}:"),
            Namespace::Channel(name) => format!("{{channel:{name}}}:"),
            Namespace::Quota(tenant) => format!("{{tenant:{tenant}}}:quota:"),
        }
    }
}

/// A view of a store in which every key is prefixed with its [`Namespace`], so that tenants,
/// plugins and the host's own records sharing one back end (one Redis) never see each other's
/// keys.
#[derive(Clone)]
pub struct Namespaced {
    inner: Arc<dyn KvStore>,
    prefix: String,
    /// Writes through this view are counted here (a tenant's plugin).
    quota: Option<Quota>,
}

impl Namespaced {
    /// Keys written through this view are stored under `namespace` in `inner`.
    pub fn new(inner: Arc<dyn KvStore>, namespace: Namespace<'_>) -> Self {
        Self { inner, prefix: namespace.prefix(), quota: None }
    }

    /// This view with its writes counted in `quota` (`None`: uncounted).
    pub fn counted(mut self, quota: Option<Quota>) -> Self {
        self.quota = quota;
        self
    }

    /// The account this view's writes are counted in, if any.
    pub fn quota(&self) -> Option<&Quota> {
        self.quota.as_ref()
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }
}

impl std::fmt::Debug for Namespaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespaced").field("prefix", &self.prefix).finish()
    }
}

#[async_trait]
impl KvStore for Namespaced {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.inner.get(&self.key(key)).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
        match &self.quota {
            Some(q) => self.inner.set_counted(&self.key(key), value, ttl, q).await,
            None => self.inner.set(&self.key(key), value, ttl).await,
        }
    }
    async fn delete(&self, key: &str) -> Result<bool, StateError> {
        match &self.quota {
            Some(q) => self.inner.delete_counted(&self.key(key), q).await,
            None => self.inner.delete(&self.key(key)).await,
        }
    }
    async fn incr(&self, key: &str, by: i64) -> Result<i64, StateError> {
        let full = self.key(key);
        let result = match &self.quota {
            Some(q) => self.inner.incr_counted(&full, by, q).await,
            None => self.inner.incr(&full, by).await,
        };
        // Report the caller's key, not the prefixed one, in errors.
        result.map_err(|e| match e {
            StateError::NotAnInteger { .. } => StateError::NotAnInteger { key: key.to_owned() },
            other => other,
        })
    }
    async fn append(&self, key: &str, value: &[u8]) -> Result<bool, StateError> {
        self.inner.append(&self.key(key), value).await
    }
    async fn ping(&self) -> Result<(), StateError> {
        self.inner.ping().await
    }
    async fn set_counted(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        quota: &Quota,
    ) -> Result<(), StateError> {
        self.inner.set_counted(&self.key(key), value, ttl, quota).await
    }
    async fn delete_counted(&self, key: &str, quota: &Quota) -> Result<bool, StateError> {
        self.inner.delete_counted(&self.key(key), quota).await
    }
    async fn incr_counted(&self, key: &str, by: i64, quota: &Quota) -> Result<i64, StateError> {
        self.inner.incr_counted(&self.key(key), by, quota).await
    }
    async fn usage(&self, quota: &Quota) -> Result<Usage, StateError> {
        self.inner.usage(quota).await
    }
}
