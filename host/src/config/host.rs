//! `[host]` (back ends, retries), `[plugins]`, `[admin]` and `[failures]`: how the host itself
//! runs, whatever it serves.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// Host-wide settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The message bus.
    #[serde(default)]
    pub bus: BusConfig,
    /// The state store.
    #[serde(default)]
    pub state: StateConfig,
    /// How long the host remembers which component sent an outbound message, so the message's
    /// events reach it when several components share a connector.
    #[serde(default = "default_origin_ttl")]
    pub event_origin_ttl_secs: u64,
    /// How a message is retried when a back end is down or a plugin says `retry-later`.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How many messages each queue holds, and how long a publisher waits for room.
    #[serde(default)]
    pub queues: QueueLimits,
    /// On a stop, how long the host goes on delivering what is queued (taking nothing new)
    /// before it stops anyway and reports what is left, in milliseconds.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Which of the config's components this host runs, by name (transports, apps, routers,
    /// channels), so several hosts on one broker share one config file. `@transports`, `@apps`,
    /// `@routers` and `@channels` name every component of a kind. Empty: everything. Middleware
    /// runs on every host: it is part of the message path wherever a message is published.
    /// `vumi run --role` overrides it.
    #[serde(default)]
    pub roles: Vec<String>,
    /// A directory of tenant files (relative to the config file): `<tenant>.toml` each holds
    /// what `[tenants.<tenant>]` would. The admin API writes them when it adds, changes or
    /// removes a tenant's apps, channels and tokens at run time, so a restart keeps the
    /// changes. Paths inside are relative to the config file, as everywhere else.
    #[serde(default)]
    pub tenants_dir: Option<PathBuf>,
    /// Where the host keeps what must outlive a restart (relative to the config file):
    /// deployed plugin versions, each in its owner's directory (`operator/deployed/`,
    /// `tenants/<tenant>/deployed/` unless the tenant has a directory in `tenants_dir`), and
    /// `deployments.json`, which says which component runs which. Default: `data` beside the
    /// config file.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The hosts the operator's own plugins may call through the `http` import (a tenant's
    /// plugins have their tenant's `http_allow`). Empty: none. Calls are bounded as a tenant's
    /// are, by the default tenant limits.
    #[serde(default)]
    pub http_allow: Vec<super::AllowedHost>,
}

fn default_drain_timeout_ms() -> u64 {
    5_000
}

/// Bounds on every queue of the bus (`[host.queues]`). A publisher inside the host that finds a
/// queue full waits for room up to `publish_wait_ms`; after that the publish is refused (an HTTP
/// input answers `503` with `Retry-After`), so memory stays bounded and nothing accepted is
/// dropped for lack of room.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueLimits {
    /// Messages waiting in one queue (`<connector>.inbound`, `.outbound`, `.event`) at most.
    #[serde(default = "default_queue_capacity")]
    pub capacity: usize,
    /// How long a publisher waits for room in a full queue, in milliseconds.
    #[serde(default = "default_publish_wait_ms")]
    pub publish_wait_ms: u64,
}

fn default_queue_capacity() -> usize {
    10_000
}
fn default_publish_wait_ms() -> u64 {
    2_000
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self { capacity: default_queue_capacity(), publish_wait_ms: default_publish_wait_ms() }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            bus: BusConfig::default(),
            state: StateConfig::default(),
            event_origin_ttl_secs: default_origin_ttl(),
            retry: Default::default(),
            queues: Default::default(),
            drain_timeout_ms: default_drain_timeout_ms(),
            roles: Vec::new(),
            tenants_dir: None,
            data_dir: None,
            http_allow: Vec::new(),
        }
    }
}

fn default_origin_ttl() -> u64 {
    86_400
}

/// How a component retries (`[host.retry]` in config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// The first wait, in milliseconds.
    #[serde(default = "default_initial_ms")]
    pub initial_ms: u64,
    /// The longest wait, in milliseconds: the doubling stops here.
    #[serde(default = "default_max_ms")]
    pub max_ms: u64,
    /// Tries of one message in place before it goes to the retry path (a `retry-later`
    /// answer, or a back end that is down): it is set aside off its queue for the next delay
    /// tier, so the queue keeps flowing.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// The retry path's delay tiers in milliseconds, shortest first (on RabbitMQ, one queue
    /// `<queue>.retry.<delay>` each). A message that has waited out every tier and still
    /// cannot be handled goes to the failure path as a temporary failure. `[]`: straight there.
    #[serde(default = "default_tiers_ms")]
    pub tiers_ms: Vec<u64>,
}

fn default_tiers_ms() -> Vec<u64> {
    vec![1_000, 10_000, 60_000, 600_000]
}

impl RetryPolicy {
    /// The delay tiers.
    pub fn tiers(&self) -> Vec<std::time::Duration> {
        self.tiers_ms.iter().map(|ms| std::time::Duration::from_millis(*ms)).collect()
    }
}

fn default_initial_ms() -> u64 {
    100
}
fn default_max_ms() -> u64 {
    10_000
}
fn default_max_attempts() -> u32 {
    8
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_ms: default_initial_ms(),
            max_ms: default_max_ms(),
            max_attempts: default_max_attempts(),
            tiers_ms: default_tiers_ms(),
        }
    }
}

/// Which bus to use (`[host.bus] kind = ...`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusConfig {
    /// In-process queues: nothing to install, one host.
    #[default]
    Embedded,
    /// RabbitMQ, with legacy Vumi's exchange, queues and bodies: many hosts, and old Vumi
    /// workers, share it.
    Amqp(AmqpBusConfig),
}

/// `[host.bus] kind = "amqp"`. The defaults reach a broker installed on this machine; legacy
/// Vumi deployments used vhost `/develop` with user and password `vumi`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpBusConfig {
    /// Broker host.
    #[serde(default = "default_amqp_host")]
    pub host: String,
    /// Broker port.
    #[serde(default = "default_amqp_port")]
    pub port: u16,
    /// Virtual host.
    #[serde(default = "default_amqp_vhost")]
    pub vhost: String,
    /// User.
    #[serde(default = "default_amqp_user")]
    pub username: String,
    /// Password.
    #[serde(default = "default_amqp_user")]
    pub password: String,
    /// Heartbeat interval in seconds (0: none; a dead peer is then seen only when its socket fails).
    #[serde(default = "default_amqp_heartbeat")]
    pub heartbeat_secs: u16,
    /// Publishes awaiting their broker confirm at once, across the host.
    #[serde(default = "default_amqp_window")]
    pub confirm_window: usize,
    /// The largest prefetch any consumer of this host asks for (app workers ask for their
    /// lanes' worth).
    #[serde(default = "default_amqp_prefetch")]
    pub max_prefetch: u16,
    /// While the broker is unreachable, how long a publish waits for it before the publisher's
    /// own retry takes over.
    #[serde(default = "default_amqp_publish_wait")]
    pub publish_wait_ms: u64,
    /// First wait before reconnecting; it doubles, with jitter, up to `reconnect_max_ms`.
    #[serde(default = "default_amqp_reconnect_initial")]
    pub reconnect_initial_ms: u64,
    /// Longest wait between reconnection attempts.
    #[serde(default = "default_amqp_reconnect_max")]
    pub reconnect_max_ms: u64,
    /// How this host names itself to the broker and in its status events (default: `vumi@<hostname>`).
    #[serde(default)]
    pub name: Option<String>,
}

impl std::fmt::Debug for AmqpBusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBusConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("vhost", &self.vhost)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Default for AmqpBusConfig {
    fn default() -> Self {
        toml::from_str("").unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

fn default_amqp_host() -> String {
    "127.0.0.1".into()
}
fn default_amqp_port() -> u16 {
    5672
}
fn default_amqp_vhost() -> String {
    "/".into()
}
fn default_amqp_user() -> String {
    "guest".into()
}
fn default_amqp_heartbeat() -> u16 {
    20
}
fn default_amqp_window() -> usize {
    256
}
fn default_amqp_prefetch() -> u16 {
    300
}
fn default_amqp_publish_wait() -> u64 {
    10_000
}
fn default_amqp_reconnect_initial() -> u64 {
    100
}
fn default_amqp_reconnect_max() -> u64 {
    5_000
}

/// Which state store to use (`[host.state] kind = ...`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateConfig {
    /// A map in this process, lost on restart.
    #[default]
    Memory,
    /// A Redis server, shared by every host that names it: sessions and routing memory survive
    /// a restart (as far as Redis's own persistence goes) and can continue on another host.
    Redis(RedisStateConfig),
}

/// `[host.state] kind = "redis"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStateConfig {
    /// `redis://[user:password@]host[:port][/db]` (or `rediss://` for TLS).
    #[serde(default = "default_redis_url")]
    pub url: String,
    /// How long one command may take before it counts as failed (outcome unknown).
    #[serde(default = "default_redis_timeout_ms")]
    pub response_timeout_ms: u64,
    /// How long one connection attempt may take.
    #[serde(default = "default_redis_timeout_ms")]
    pub connection_timeout_ms: u64,
    /// Reconnection attempts after a lost connection, with doubling jittered waits, before the
    /// commands waiting on it fail (redis-rs's default is 6; each later command tries again).
    #[serde(default = "default_redis_retries")]
    pub reconnect_attempts: usize,
    /// The longest wait between reconnection attempts.
    #[serde(default = "default_redis_max_delay_ms")]
    pub reconnect_max_delay_ms: u64,
}

impl Default for RedisStateConfig {
    fn default() -> Self {
        Self {
            url: default_redis_url(),
            response_timeout_ms: default_redis_timeout_ms(),
            connection_timeout_ms: default_redis_timeout_ms(),
            reconnect_attempts: default_redis_retries(),
            reconnect_max_delay_ms: default_redis_max_delay_ms(),
        }
    }
}

fn default_redis_url() -> String {
    "redis://127.0.0.1:6379".to_owned()
}
fn default_redis_timeout_ms() -> u64 {
    1000
}
fn default_redis_retries() -> usize {
    16
}
fn default_redis_max_delay_ms() -> u64 {
    5000
}

/// How plugins are compiled, cached and reloaded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Reload a plugin when its `.wasm` file changes, and the config when the config file changes.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// How long a file must be quiet before it is reloaded (a copy of a large file is many writes).
    #[serde(default = "default_debounce")]
    pub watch_debounce_ms: u64,
    /// Keep compiled components on disk so a restart does not recompile them.
    #[serde(default = "default_true")]
    pub cache: bool,
    /// Where (relative to the config file). Default: `$XDG_CACHE_HOME/vumi/components`, else
    /// `~/.cache/vumi/components`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self { watch: true, watch_debounce_ms: default_debounce(), cache: true, cache_dir: None }
    }
}

fn default_true() -> bool {
    true
}

fn default_debounce() -> u64 {
    50
}

/// The admin API's listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens. Keep it on loopback or a private network.
    #[serde(default = "default_admin_bind")]
    pub bind: SocketAddr,
    /// The operator's bearer token: every request but `/health` must carry it or a tenant's
    /// (`tenants.<t>.admin_tokens`), and only the operator's sees everything. Written as the
    /// token or as `sha256:<hex>` (`vumi token hash`); held hashed either way.
    pub token: super::Secret,
    /// The largest plugin upload accepted.
    #[serde(default = "default_max_upload")]
    pub max_upload_bytes: usize,
}

fn default_admin_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

fn default_max_upload() -> usize {
    64 << 20
}

/// The failure path.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailuresConfig {
    /// Append every failure as a JSON line to this file (relative to the config file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// How many recent failures to keep in memory for the admin API.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

impl Default for FailuresConfig {
    fn default() -> Self {
        Self { path: None, keep: default_keep() }
    }
}

fn default_keep() -> usize {
    1000
}
