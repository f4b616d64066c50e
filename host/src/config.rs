//! The host's configuration: one TOML file, parsed into types and validated once at load.
//!
//! Every error names the file, the key and the problem; nothing is checked again later. Unknown
//! keys are errors (`deny_unknown_fields`), so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::names::{AppName, ConnectorName, EndpointName};

/// Why a config file was refused. The `Display` text is what an operator reads: file, key, problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse into the expected shape (syntax, unknown key, wrong type).
    #[error("invalid config file `{path}`: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's report, with line, column and key.
        message: String,
    },
    /// It parses, but a value is unusable.
    #[error("invalid config file `{path}`: `{key}`: {problem}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The dotted key, e.g. `apps.survey.plugin`.
        key: String,
        /// What is wrong and, where possible, how to fix it.
        problem: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host-wide settings: back ends and engine limits.
    #[serde(default)]
    pub host: HostConfig,
    /// Transports by name; the name is also the transport's connector unless it says otherwise.
    #[serde(default)]
    pub transports: BTreeMap<ConnectorName, TransportConfig>,
    /// Campaign applications (WASM plugins) by name.
    #[serde(default)]
    pub apps: BTreeMap<AppName, AppConfig>,
    /// Dispatchers by name: a router plugin between transport connectors and app connectors.
    #[serde(default)]
    pub routers: BTreeMap<AppName, RouterConfig>,
    /// Where failed messages are kept for inspection.
    #[serde(default)]
    pub failures: FailuresConfig,
    /// The HTTP listener shared by every HTTP transport and the send API.
    #[serde(default)]
    pub http: HttpConfig,
    /// Send-API channels by name (`/api/v1/channels/<name>/messages`).
    #[serde(default)]
    pub channels: BTreeMap<AppName, ChannelConfig>,
    /// How `mo_url` and `event_url` callbacks are delivered.
    #[serde(default)]
    pub callbacks: CallbacksConfig,
    /// Middleware by name: plugins (`world middleware`) and native steps.
    #[serde(default)]
    pub middleware: BTreeMap<AppName, MiddlewareConfig>,
    /// Which middleware runs, in order, on a connector's messages in each direction.
    #[serde(default)]
    pub chains: BTreeMap<ConnectorName, ChainConfig>,
    /// How plugins are compiled, cached and reloaded.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The operators' API (`vumi plugins ...` talks to it). Absent: no admin listener.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The directory relative paths were resolved against (the config file's). Not a TOML key.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

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
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            bus: BusConfig::default(),
            state: StateConfig::default(),
            event_origin_ttl_secs: default_origin_ttl(),
            retry: Default::default(),
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
    /// Tries of one message in place before giving up on it: a `retry-later` message then goes
    /// to the failure path; one held up by a back end that is down goes back on its queue (it is
    /// never dropped), and the waits carry on from the longest.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
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
        Self { initial_ms: default_initial_ms(), max_ms: default_max_ms(), max_attempts: default_max_attempts() }
    }
}

/// Which bus to use. Only the embedded one exists so far.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BusConfig {
    /// In-process queues: nothing to install.
    #[default]
    Embedded,
}

/// Which state store to use. Only the in-memory one exists so far.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StateConfig {
    /// A map in this process, lost on restart.
    #[default]
    Memory,
}

/// The HTTP listener that serves every HTTP transport's routes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on (started only if an HTTP transport is configured).
    #[serde(default = "default_http_bind")]
    pub bind: SocketAddr,
    /// Largest request body accepted; larger is `413`.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { bind: default_http_bind(), max_body_bytes: default_max_body_bytes() }
    }
}

fn default_http_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> usize {
    64 << 10
}

/// One transport.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransportConfig {
    /// Telnet: each TCP connection is a session (for development and demos).
    Telnet(TelnetConfig),
    /// USSD over HTTP in Africa's Talking's protocol, on the shared HTTP listener.
    UssdAt(UssdAtConfig),
    /// SMS from and to an aggregator over HTTP, on the shared HTTP listener.
    SmsHttp(SmsHttpConfig),
    /// Acks every outbound message and delivers nothing: a stand-in for a real channel when
    /// developing and benchmarking.
    Sink(SinkConfig),
}

impl TransportConfig {
    /// Whether it is served on the shared HTTP listener.
    pub fn is_http(&self) -> bool {
        matches!(self, TransportConfig::UssdAt(_) | TransportConfig::SmsHttp(_))
    }

    /// The `transport_type` of its messages.
    pub fn transport_type(&self) -> &'static str {
        match self {
            TransportConfig::Telnet(_) => "telnet",
            TransportConfig::UssdAt(_) => "ussd",
            TransportConfig::SmsHttp(_) | TransportConfig::Sink(_) => "sms",
        }
    }
}

/// SMS over HTTP with an aggregator.
///
/// Inbound: the aggregator POSTs `from`, `to`, `content` (form or JSON) to
/// `/transports/<name>/inbound`, and delivery reports (`message_id`, `status`) to
/// `/transports/<name>/delivery-report`. Outbound: each message is POSTed to `outbound_url`; a
/// `2xx` answer is an ack, anything else a nack.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsHttpConfig {
    /// Where outbound SMS are POSTed.
    pub outbound_url: String,
    /// How outbound SMS are encoded.
    #[serde(default)]
    pub outbound_format: BodyFormat,
    /// A bearer token sent with outbound requests, if the aggregator wants one.
    #[serde(default)]
    pub outbound_token: Option<String>,
    /// How long one outbound request may take.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Tries per outbound message when the aggregator is unreachable or answers `5xx`/`429`.
    #[serde(default = "default_sms_attempts")]
    pub max_attempts: u32,
    /// Outbound requests in flight at once.
    #[serde(default = "default_sms_concurrency")]
    pub concurrency: u16,
    /// The sender (short code or number) of outbound SMS that name none: messages an app starts
    /// with `send-to` have no `from_addr`.
    #[serde(default)]
    pub default_from: Option<String>,
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// `application/json`.
    #[default]
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

fn default_request_timeout_ms() -> u64 {
    5_000
}
fn default_sms_attempts() -> u32 {
    3
}
fn default_sms_concurrency() -> u16 {
    32
}

/// The sink transport has nothing to set; the table exists for symmetry and future options.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {}

/// One send-API channel: an HTTP face on a transport's connector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// The transport it sends through (and, with `mo_url`, receives from).
    pub connector: ConnectorName,
    /// The bearer token clients must present.
    pub token: String,
    /// Inbound messages are POSTed here as Vumi JSON. Without it the channel only sends, and
    /// the connector's inbound messages go to whichever app consumes them.
    #[serde(default)]
    pub mo_url: Option<String>,
    /// Events for messages sent through the channel are POSTed here, unless the message names
    /// its own `event_url`.
    #[serde(default)]
    pub event_url: Option<String>,
    /// `from` for messages that do not give one.
    #[serde(default)]
    pub default_from: Option<String>,
    /// How long sent and received messages are kept for `GET` and `reply_to`.
    #[serde(default = "default_message_ttl")]
    pub message_ttl_secs: u64,
}

fn default_message_ttl() -> u64 {
    86_400
}

/// Delivery of `mo_url`/`event_url` callbacks: queued (bounded), retried with exponential
/// backoff, then recorded on the failure path. A slow or dead callback server never holds up
/// message flow.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    /// Callbacks waiting per channel; beyond this, new ones are recorded as failures at once.
    #[serde(default = "default_cb_queue")]
    pub queue_capacity: usize,
    /// Tries per callback.
    #[serde(default = "default_cb_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time, up to `max_backoff_ms`.
    #[serde(default = "default_cb_backoff")]
    pub initial_backoff_ms: u64,
    /// Longest wait between tries.
    #[serde(default = "default_cb_max_backoff")]
    pub max_backoff_ms: u64,
    /// How long one callback request may take.
    #[serde(default = "default_request_timeout_ms")]
    pub timeout_ms: u64,
    /// Callbacks in flight at once per channel.
    #[serde(default = "default_cb_concurrency")]
    pub concurrency: u16,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            queue_capacity: default_cb_queue(),
            max_attempts: default_cb_attempts(),
            initial_backoff_ms: default_cb_backoff(),
            max_backoff_ms: default_cb_max_backoff(),
            timeout_ms: default_request_timeout_ms(),
            concurrency: default_cb_concurrency(),
        }
    }
}

fn default_cb_queue() -> usize {
    10_000
}
fn default_cb_attempts() -> u32 {
    5
}
fn default_cb_backoff() -> u64 {
    500
}
fn default_cb_max_backoff() -> u64 {
    30_000
}
fn default_cb_concurrency() -> u16 {
    16
}

/// Whether `url` is an absolute `http://` or `https://` URL.
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(format!("must be an http:// or https:// URL with a host, got `{url}` (scheme `{}`)", u.scheme())),
        Err(e) => Err(format!("is not a URL ({e}): `{url}`")),
    }
}

/// USSD over HTTP (Africa's Talking's protocol).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UssdAtConfig {
    /// The route the aggregator POSTs to.
    #[serde(default = "default_ussd_path")]
    pub path: String,
    /// How long a request waits for the app's reply before the user gets `late_reply_message`.
    #[serde(default = "default_ussd_deadline_ms")]
    pub response_deadline_ms: u64,
    /// How long an idle session is remembered.
    #[serde(default = "default_ussd_session_timeout")]
    pub session_timeout_secs: u64,
    /// What a user is told (with `END`) when the app is too slow.
    #[serde(default = "default_late_message")]
    pub late_reply_message: String,
}

fn default_ussd_path() -> String {
    "/ussd".to_owned()
}
fn default_ussd_deadline_ms() -> u64 {
    10_000
}
fn default_ussd_session_timeout() -> u64 {
    180
}
fn default_late_message() -> String {
    "Sorry, the service is taking too long to answer. Please try again later.".to_owned()
}

/// Telnet transport settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelnetConfig {
    /// Address to listen on, e.g. `127.0.0.1:9010`.
    pub bind: SocketAddr,
    /// The `to_addr` of inbound messages; defaults to the listening address.
    #[serde(default)]
    pub to_addr: Option<String>,
    /// Longest line accepted, in bytes; a longer line is refused with a message to the user.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    4096
}

/// How an app's instances are used (see the design's "Instances").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstancesConfig {
    /// A fresh sandbox per message.
    Fresh,
    /// Reuse instances (up to `max_messages_per_instance` / `max_instance_age_secs`).
    #[default]
    Pooled,
}

/// One campaign application.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The `.wasm` component, relative to the config file.
    pub plugin: PathBuf,
    /// The connector the app consumes (`<connector>.inbound`, `.event`) and sends on (`.outbound`).
    pub connector: ConnectorName,
    /// Instance policy.
    #[serde(default)]
    pub instances: InstancesConfig,
    /// Pooled instances are retired after this many messages.
    #[serde(default = "default_max_messages")]
    pub max_messages_per_instance: u32,
    /// Pooled instances are retired after this many seconds.
    #[serde(default = "default_max_age")]
    pub max_instance_age_secs: u64,
    /// CPU time one message may take, in milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Memory an instance may use, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_limit_mb: u32,
    /// Messages one handler call may send.
    #[serde(default = "default_max_sends")]
    pub max_sends_per_message: u32,
    /// Messages handled at once (messages from one user are still handled in order).
    #[serde(default = "default_concurrency")]
    pub concurrency: u16,
    /// Endpoints the app may `send-to`; `default` is always allowed.
    #[serde(default)]
    pub endpoints: Vec<EndpointName>,
    /// The app's own settings, handed to it through the `config` import.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_max_messages() -> u32 {
    10_000
}
fn default_max_age() -> u64 {
    300
}
fn default_deadline_ms() -> u64 {
    500
}
fn default_memory_mb() -> u32 {
    64
}
fn default_max_sends() -> u32 {
    16
}
fn default_concurrency() -> u16 {
    4
}

/// A dispatcher: a router plugin (`world router`) between transports and apps.
///
/// It takes the inbound messages and events of `transports` and the outbound messages of
/// `apps` (connectors that exist because the router names them: an app sets
/// `connector = "<one of apps>"`), and publishes each where the router says.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// The `.wasm` component (`world router`), relative to the config file.
    pub plugin: PathBuf,
    /// Transport connectors it routes from (inbound, events) and to (outbound).
    pub transports: Vec<ConnectorName>,
    /// Application connectors it routes to (inbound, events) and from (outbound).
    pub apps: Vec<ConnectorName>,
    /// Instance policy.
    #[serde(default)]
    pub instances: InstancesConfig,
    /// CPU time one routing decision may take, in milliseconds.
    #[serde(default = "default_rule_deadline_ms")]
    pub deadline_ms: u64,
    /// Memory an instance may use, in MiB.
    #[serde(default = "default_rule_memory_mb")]
    pub memory_limit_mb: u32,
    /// The router's own settings, handed to it through the `config` import.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_rule_deadline_ms() -> u64 {
    100
}
fn default_rule_memory_mb() -> u32 {
    32
}

/// One middleware.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MiddlewareConfig {
    /// A `world middleware` component.
    Plugin(MiddlewarePluginConfig),
    /// The native logging middleware: logs every message it sees, as Vumi JSON.
    Log(LogMiddlewareConfig),
}

/// A middleware plugin.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiddlewarePluginConfig {
    /// The `.wasm` component (`world middleware`), relative to the config file.
    pub plugin: PathBuf,
    /// Instance policy.
    #[serde(default)]
    pub instances: InstancesConfig,
    /// CPU time one message may take, in milliseconds.
    #[serde(default = "default_rule_deadline_ms")]
    pub deadline_ms: u64,
    /// Memory an instance may use, in MiB.
    #[serde(default = "default_rule_memory_mb")]
    pub memory_limit_mb: u32,
    /// The middleware's own settings, handed to it through the `config` import.
    #[serde(default)]
    pub config: toml::Table,
}

/// The logging middleware.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogMiddlewareConfig {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_log_level() -> String {
    "info".to_owned()
}

/// The middleware on one connector, by direction, each list run in order.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Messages from end users, as published on `<connector>.inbound`.
    #[serde(default)]
    pub inbound: Vec<AppName>,
    /// Messages to end users, as published on `<connector>.outbound`.
    #[serde(default)]
    pub outbound: Vec<AppName>,
    /// Acks, nacks and delivery reports on `<connector>.event` (native middleware only).
    #[serde(default)]
    pub event: Vec<AppName>,
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
    /// The bearer token every request but `/health` must carry.
    pub token: String,
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

/// A plugin's CPU deadline and memory cap in range, or the key at fault and why.
fn check_limits(deadline_ms: u64, memory_limit_mb: u32) -> Result<(), (&'static str, String)> {
    let ranges: [(&str, u64, u64, u64); 2] = [
        ("deadline_ms", deadline_ms, 1, 60_000),
        ("memory_limit_mb", u64::from(memory_limit_mb), 1, u64::from(MAX_MEMORY_LIMIT_MB)),
    ];
    for (k, v, lo, hi) in ranges {
        if v < lo || v > hi {
            return Err((k, format!("must be between {lo} and {hi}, got {v}")));
        }
    }
    Ok(())
}

/// The largest memory cap an app may ask for: the engine reserves this much address space per
/// instance slot.
pub const MAX_MEMORY_LIMIT_MB: u32 = 4096;

impl Config {
    /// Read, parse and validate `path`. Relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    /// Parse and validate `text` as if read from `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.validate(path)?;
        Ok(config)
    }

    /// Where compiled components are cached, if anywhere.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if !self.plugins.cache {
            return None;
        }
        if let Some(d) = &self.plugins.cache_dir {
            return Some(self.resolve(d));
        }
        let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache"));
        xdg.or(home).map(|d| d.join("vumi").join("components"))
    }

    /// `p` resolved against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.base_dir.join(p) }
    }

    /// Whether the shared HTTP listener is needed.
    pub fn serves_http(&self) -> bool {
        !self.channels.is_empty() || self.transports.values().any(TransportConfig::is_http)
    }

    /// Check the routers; the app connectors they create.
    fn validate_routers(&self, path: &Path) -> Result<std::collections::BTreeSet<ConnectorName>, ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        let mut app_connectors = std::collections::BTreeSet::new();
        for (name, r) in &self.routers {
            let key = |k: &str| format!("routers.{name}.{k}");
            if self.apps.contains_key(name) || self.channels.contains_key(name) {
                return Err(invalid(key("plugin"), format!("`{name}` also names an app or a channel; component names must be unique")));
            }
            let file = self.resolve(&r.plugin);
            if !file.is_file() {
                return Err(invalid(key("plugin"), format!("no plugin file at `{}` (build it with `vumi plugin build`)", file.display())));
            }
            if r.transports.is_empty() || r.apps.is_empty() {
                return Err(invalid(key("transports"), "a router needs at least one transport and one app connector".into()));
            }
            for t in &r.transports {
                if !self.transports.contains_key(t) {
                    return Err(invalid(key("transports"), format!("no transport named `{t}` in this config")));
                }
            }
            for a in &r.apps {
                if self.transports.contains_key(a) {
                    return Err(invalid(key("apps"), format!("`{a}` is a transport; name a new connector for the apps behind this router")));
                }
                if !app_connectors.insert(a.clone()) {
                    return Err(invalid(key("apps"), format!("connector `{a}` is already an app connector of another router")));
                }
            }
            check_limits(r.deadline_ms, r.memory_limit_mb).map_err(|(k, p)| invalid(key(k), p))?;
        }
        Ok(app_connectors)
    }

    /// Check the middleware and the chains that use them, on the connectors that exist.
    fn validate_middleware(&self, path: &Path, router_apps: &std::collections::BTreeSet<ConnectorName>) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        for (name, m) in &self.middleware {
            let key = |k: &str| format!("middleware.{name}.{k}");
            if self.apps.contains_key(name) || self.channels.contains_key(name) || self.routers.contains_key(name) {
                return Err(invalid(key("kind"), format!("`{name}` also names an app, channel or router; component names must be unique")));
            }
            match m {
                MiddlewareConfig::Plugin(p) => {
                    let file = self.resolve(&p.plugin);
                    if !file.is_file() {
                        return Err(invalid(key("plugin"), format!("no plugin file at `{}` (build it with `vumi plugin build`)", file.display())));
                    }
                    check_limits(p.deadline_ms, p.memory_limit_mb).map_err(|(k, p)| invalid(key(k), p))?;
                }
                MiddlewareConfig::Log(l) => {
                    if l.level.parse::<tracing::Level>().is_err() {
                        return Err(invalid(key("level"), format!("must be trace, debug, info, warn or error, got `{}`", l.level)));
                    }
                }
            }
        }
        for (connector, chain) in &self.chains {
            if !self.transports.contains_key(connector) && !router_apps.contains(connector) {
                let known: Vec<_> = self.transports.keys().chain(router_apps.iter()).map(|k| format!("`{k}`")).collect();
                return Err(invalid(
                    format!("chains.{connector}"),
                    format!("no transport or router app connector named `{connector}` in this config (known: {})", known.join(", ")),
                ));
            }
            for (direction, steps) in [("inbound", &chain.inbound), ("outbound", &chain.outbound), ("event", &chain.event)] {
                let key = format!("chains.{connector}.{direction}");
                let mut seen = std::collections::BTreeSet::new();
                for step in steps {
                    match self.middleware.get(step) {
                        None => {
                            let known: Vec<_> = self.middleware.keys().map(|k| format!("`{k}`")).collect();
                            let known = if known.is_empty() { "none defined".to_owned() } else { known.join(", ") };
                            return Err(invalid(key, format!("no middleware named `{step}` under [middleware] (known: {known})")));
                        }
                        Some(MiddlewareConfig::Plugin(_)) if direction == "event" => {
                            return Err(invalid(
                                key,
                                format!("`{step}` is a plugin; plugin middleware sees user messages only, so an event chain takes native middleware (`kind = \"log\"`)"),
                            ));
                        }
                        Some(_) => {}
                    }
                    if !seen.insert(step) {
                        return Err(invalid(key, format!("`{step}` is listed twice")));
                    }
                }
            }
        }
        Ok(())
    }

    fn validate_channels(&self, path: &Path, router_apps: &std::collections::BTreeSet<ConnectorName>) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        for (name, ch) in &self.channels {
            let key = |k: &str| format!("channels.{name}.{k}");
            if !self.transports.contains_key(&ch.connector) && !router_apps.contains(&ch.connector) {
                return Err(invalid(key("connector"), format!("no transport or router app connector named `{}` in this config", ch.connector)));
            }
            if ch.token.len() < 8 {
                return Err(invalid(key("token"), "must be at least 8 characters".into()));
            }
            for (k, url) in [("mo_url", &ch.mo_url), ("event_url", &ch.event_url)] {
                if let Some(u) = url {
                    check_url(u).map_err(|p| invalid(key(k), p))?;
                }
            }
            if ch.message_ttl_secs == 0 {
                return Err(invalid(key("message_ttl_secs"), "must be at least 1".into()));
            }
        }
        let cb = &self.callbacks;
        let ranges: [(&str, u64, u64, u64); 6] = [
            ("queue_capacity", cb.queue_capacity as u64, 1, 10_000_000),
            ("max_attempts", u64::from(cb.max_attempts), 1, 100),
            ("initial_backoff_ms", cb.initial_backoff_ms, 1, 3_600_000),
            ("max_backoff_ms", cb.max_backoff_ms, cb.initial_backoff_ms, 3_600_000),
            ("timeout_ms", cb.timeout_ms, 1, 120_000),
            ("concurrency", u64::from(cb.concurrency), 1, 4096),
        ];
        for (k, v, lo, hi) in ranges {
            if v < lo || v > hi {
                return Err(invalid(format!("callbacks.{k}"), format!("must be between {lo} and {hi}, got {v}")));
            }
        }
        if self.host.event_origin_ttl_secs == 0 {
            return Err(invalid("host.event_origin_ttl_secs".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    fn validate(&mut self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        if let Some(admin) = &self.admin {
            if admin.token.trim().len() < 8 {
                return Err(invalid("admin.token".into(), "must be at least 8 characters: it guards plugin uploads".into()));
            }
            if admin.max_upload_bytes < 1024 {
                return Err(invalid("admin.max_upload_bytes".into(), format!("must be at least 1024, got {}", admin.max_upload_bytes)));
            }
            if self.serves_http() && admin.bind == self.http.bind && admin.bind.port() != 0 {
                return Err(invalid("admin.bind".into(), format!("{} is already `http.bind`: the admin API needs its own listener", admin.bind)));
            }
        }
        if self.plugins.watch_debounce_ms == 0 || self.plugins.watch_debounce_ms > 10_000 {
            return Err(invalid(
                "plugins.watch_debounce_ms".into(),
                format!("must be between 1 and 10000, got {}", self.plugins.watch_debounce_ms),
            ));
        }
        let mut binds: BTreeMap<SocketAddr, &ConnectorName> = BTreeMap::new();
        let mut paths: BTreeMap<&str, &ConnectorName> = BTreeMap::new();
        for (name, t) in &self.transports {
            match t {
                TransportConfig::UssdAt(u) => {
                    if !u.path.starts_with('/') || u.path.contains(['{', '}', '*']) {
                        return Err(invalid(
                            format!("transports.{name}.path"),
                            format!("must be a plain path starting with `/`, got `{}`", u.path),
                        ));
                    }
                    if let Some(other) = paths.insert(u.path.as_str(), name) {
                        return Err(invalid(
                            format!("transports.{name}.path"),
                            format!("`{}` is already served by transport `{other}`", u.path),
                        ));
                    }
                    if u.response_deadline_ms == 0 || u.response_deadline_ms > 120_000 {
                        return Err(invalid(
                            format!("transports.{name}.response_deadline_ms"),
                            format!("must be between 1 and 120000, got {}", u.response_deadline_ms),
                        ));
                    }
                    if u.session_timeout_secs == 0 {
                        return Err(invalid(format!("transports.{name}.session_timeout_secs"), "must be at least 1".into()));
                    }
                }
                TransportConfig::SmsHttp(sc) => {
                    check_url(&sc.outbound_url).map_err(|p| invalid(format!("transports.{name}.outbound_url"), p))?;
                    let ranges: [(&str, u64, u64, u64); 3] = [
                        ("request_timeout_ms", sc.request_timeout_ms, 1, 120_000),
                        ("max_attempts", u64::from(sc.max_attempts), 1, 100),
                        ("concurrency", u64::from(sc.concurrency), 1, 4096),
                    ];
                    for (k, v, lo, hi) in ranges {
                        if v < lo || v > hi {
                            return Err(invalid(format!("transports.{name}.{k}"), format!("must be between {lo} and {hi}, got {v}")));
                        }
                    }
                }
                TransportConfig::Sink(_) => {}
                TransportConfig::Telnet(tc) => {
                    // Port 0 asks the OS for a free port: never a clash.
                    if let Some(other) = binds.insert(tc.bind, name).filter(|_| tc.bind.port() != 0) {
                        return Err(invalid(
                            format!("transports.{name}.bind"),
                            format!("{} is already used by transport `{other}`", tc.bind),
                        ));
                    }
                    if tc.max_line_bytes < 16 || tc.max_line_bytes > 1 << 20 {
                        return Err(invalid(
                            format!("transports.{name}.max_line_bytes"),
                            format!("must be between 16 and 1048576, got {}", tc.max_line_bytes),
                        ));
                    }
                }
            }
        }
        if self.serves_http() {
            if let Some(other) = binds.get(&self.http.bind).filter(|_| self.http.bind.port() != 0) {
                return Err(invalid("http.bind".into(), format!("{} is already used by transport `{other}`", self.http.bind)));
            }
            if self.http.max_body_bytes < 1024 {
                return Err(invalid("http.max_body_bytes".into(), format!("must be at least 1024, got {}", self.http.max_body_bytes)));
            }
        }
        let router_apps = self.validate_routers(path)?;
        self.validate_channels(path, &router_apps)?;
        self.validate_middleware(path, &router_apps)?;
        // A connector's inbound messages go to one component: two would each get a random half.
        let mut inbound_owner: BTreeMap<&ConnectorName, String> = BTreeMap::new();
        let owners = self
            .apps
            .iter()
            .map(|(n, a)| (&a.connector, format!("apps.{n}")))
            .chain(self.channels.iter().filter(|(_, c)| c.mo_url.is_some()).map(|(n, c)| (&c.connector, format!("channels.{n}"))))
            .chain(self.routers.iter().flat_map(|(n, r)| r.transports.iter().map(move |t| (t, format!("routers.{n}")))));
        for (connector, owner) in owners {
            if let Some(first) = inbound_owner.insert(connector, owner.clone()) {
                return Err(invalid(
                    format!("{owner}.connector"),
                    format!(
                        "`{first}` already receives connector `{connector}`'s inbound messages; each connector's inbound goes to one app or one channel with `mo_url` (give them separate transports)"
                    ),
                ));
            }
        }
        for (name, app) in &self.apps {
            let key = |k: &str| format!("apps.{name}.{k}");
            if self.channels.contains_key(name) {
                return Err(invalid(key("connector"), format!("`{name}` names both an app and a channel; component names must be unique")));
            }
            let file = self.resolve(&app.plugin);
            if !file.is_file() {
                return Err(invalid(
                    key("plugin"),
                    format!(
                        "no plugin file at `{}` (resolved against the config file's directory; build the example plugins with `vumi plugin build`)",
                        file.display()
                    ),
                ));
            }
            // With the embedded bus an app can only reach transports in this process.
            if matches!(self.host.bus, BusConfig::Embedded)
                && !self.transports.contains_key(&app.connector)
                && !router_apps.contains(&app.connector)
            {
                let known: Vec<_> = self.transports.keys().chain(router_apps.iter()).map(|k| format!("`{k}`")).collect();
                return Err(invalid(
                    key("connector"),
                    format!(
                        "no transport or router app connector named `{}` in this config (the embedded bus only reaches connectors in this process; known: {})",
                        app.connector,
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                ));
            }
            let ranges: [(&str, u64, u64, u64); 6] = [
                ("deadline_ms", app.deadline_ms, 1, 60_000),
                ("memory_limit_mb", u64::from(app.memory_limit_mb), 1, u64::from(MAX_MEMORY_LIMIT_MB)),
                ("max_sends_per_message", u64::from(app.max_sends_per_message), 0, 10_000),
                ("concurrency", u64::from(app.concurrency), 1, 1024),
                ("max_messages_per_instance", u64::from(app.max_messages_per_instance), 1, u64::from(u32::MAX)),
                ("max_instance_age_secs", app.max_instance_age_secs, 1, 86_400 * 365),
            ];
            for (k, v, lo, hi) in ranges {
                if v < lo || v > hi {
                    return Err(invalid(key(k), format!("must be between {lo} and {hi}, got {v}")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_plugin(dir: &Path) -> PathBuf {
        let p = dir.join("app.wasm");
        std::fs::write(&p, b"\0asm").expect("write");
        p
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("vumi-config-test-{}", crate::message::new_id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        with_plugin(&dir);
        Config::from_toml(text, &dir.join("vumi.toml"))
    }

    const GOOD: &str = r#"
[transports.telnet]
kind = "telnet"
bind = "127.0.0.1:9010"

[apps.survey]
plugin = "app.wasm"
connector = "telnet"
instances = "fresh"
[apps.survey.config]
title = "Survey"
"#;

    #[test]
    fn a_good_config_loads_with_defaults() {
        let c = load(GOOD).expect("valid");
        let app = &c.apps[&"survey".parse::<AppName>().expect("name")];
        assert_eq!(app.instances, InstancesConfig::Fresh);
        assert_eq!(app.deadline_ms, 500);
        assert_eq!(app.config["title"].as_str(), Some("Survey"));
        assert!(c.resolve(&app.plugin).is_file());
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = load(&GOOD.replace("instances = \"fresh\"", "instanses = \"fresh\"")).expect_err("typo").to_string();
        assert!(err.contains("vumi.toml"), "{err}");
        assert!(err.contains("unknown field `instanses`"), "{err}");
        assert!(err.contains("line 9"), "{err}");
    }

    #[test]
    fn missing_plugin_names_file_key_and_fix() {
        let err = load(&GOOD.replace("app.wasm", "nope.wasm")).expect_err("missing").to_string();
        assert!(err.contains("`apps.survey.plugin`"), "{err}");
        assert!(err.contains("nope.wasm"), "{err}");
        assert!(err.contains("vumi plugin build"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = load(&GOOD.replace("instances = \"fresh\"", "deadline_ms = 0")).expect_err("zero").to_string();
        assert!(err.contains("`apps.survey.deadline_ms`: must be between 1 and 60000, got 0"), "{err}");
        let err = load(&GOOD.replace("127.0.0.1:9010", "nowhere")).expect_err("bad addr").to_string();
        assert!(err.contains("invalid socket address"), "{err}");
        let err = load(&GOOD.replace("connector = \"telnet\"", "connector = \"sms\"")).expect_err("conn").to_string();
        assert!(err.contains("`apps.survey.connector`: no transport or router app connector named `sms`"), "{err}");
        let err = load(&GOOD.replace("[apps.survey]", "[apps.\"bad name\"]")).expect_err("name").to_string();
        assert!(err.contains("bad name"), "{err}");
        let err = load(&GOOD.replace("kind = \"telnet\"", "kind = \"smoke-signals\"")).expect_err("kind").to_string();
        assert!(err.contains("smoke-signals"), "{err}");
    }

    const HTTP: &str = r#"
[transports.sms]
kind = "sms_http"
outbound_url = "http://127.0.0.1:9099/sms"

[channels.api]
connector = "sms"
token = "long-enough"
mo_url = "http://127.0.0.1:9200/mo"
"#;

    #[test]
    fn http_channels_load_and_their_mistakes_are_named() {
        let c = load(HTTP).expect("valid");
        assert!(c.serves_http());
        assert_eq!(c.http.bind.port(), 8080);
        assert_eq!(c.callbacks.max_attempts, 5);
        let err = load(&HTTP.replace("http://127.0.0.1:9200/mo", "ftp://x/mo")).expect_err("scheme").to_string();
        assert!(err.contains("`channels.api.mo_url`: must be an http:// or https:// URL"), "{err}");
        let err = load(&HTTP.replace("http://127.0.0.1:9099/sms", "not a url")).expect_err("url").to_string();
        assert!(err.contains("`transports.sms.outbound_url`: is not a URL"), "{err}");
        let err = load(&HTTP.replace("connector = \"sms\"", "connector = \"ussd\"")).expect_err("conn").to_string();
        assert!(err.contains("`channels.api.connector`: no transport or router app connector named `ussd`"), "{err}");
        let err = load(&HTTP.replace("long-enough", "short")).expect_err("token").to_string();
        assert!(err.contains("`channels.api.token`: must be at least 8 characters"), "{err}");
        let both = format!("{HTTP}\n[apps.echo]\nplugin = \"app.wasm\"\nconnector = \"sms\"\n");
        let err = load(&both).expect_err("two inbound owners").to_string();
        assert!(err.contains("each connector's inbound goes to one app or one channel"), "{err}");
        let app_named_like_channel = both.replace("[apps.echo]", "[apps.api]").replace("mo_url", "event_url");
        let err = load(&app_named_like_channel).expect_err("same name").to_string();
        assert!(err.contains("names both an app and a channel"), "{err}");
        let err = load(&format!("{HTTP}\n[callbacks]\nmax_attempts = 0\n")).expect_err("attempts").to_string();
        assert!(err.contains("`callbacks.max_attempts`: must be between 1 and 100, got 0"), "{err}");
    }

    const CHAINS: &str = r#"
[middleware.opt_out]
kind = "plugin"
plugin = "app.wasm"
config = { keywords = ["STOP"] }

[middleware.log]
kind = "log"
level = "debug"

[chains.sms]
inbound = ["log", "opt_out"]
outbound = ["opt_out"]
event = ["log"]
"#;

    #[test]
    fn middleware_chains_load_and_their_mistakes_are_named() {
        let c = load(&format!("{HTTP}{CHAINS}")).expect("valid");
        assert_eq!(c.chains[&"sms".parse::<ConnectorName>().expect("name")].inbound.len(), 2);
        let cases = [
            (CHAINS.replace("[chains.sms]", "[chains.ussd]"), "`chains.ussd`: no transport or router app connector named `ussd` in this config (known: `sms`)"),
            (CHAINS.replace("outbound = [\"opt_out\"]", "outbound = [\"optout\"]"), "`chains.sms.outbound`: no middleware named `optout` under [middleware] (known: `log`, `opt_out`)"),
            (CHAINS.replace("event = [\"log\"]", "event = [\"opt_out\"]"), "`chains.sms.event`: `opt_out` is a plugin; plugin middleware sees user messages only"),
            (CHAINS.replace("[\"log\", \"opt_out\"]", "[\"log\", \"log\"]"), "`chains.sms.inbound`: `log` is listed twice"),
            (CHAINS.replace("level = \"debug\"", "level = \"loud\""), "`middleware.log.level`: must be trace, debug, info, warn or error, got `loud`"),
            (CHAINS.replace("plugin = \"app.wasm\"", "plugin = \"gone.wasm\""), "`middleware.opt_out.plugin`: no plugin file at"),
            (CHAINS.replace("kind = \"plugin\"", "kind = \"plugin\"\ndeadline_ms = 0"), "`middleware.opt_out.deadline_ms`: must be between 1 and 60000, got 0"),
            (CHAINS.replace("[middleware.log]", "[middleware.api]"), "`middleware.api.kind`: `api` also names an app, channel or router"),
        ];
        for (chains, want) in cases {
            let err = load(&format!("{HTTP}{chains}")).expect_err(want).to_string();
            assert!(err.contains(want), "want {want:?} in: {err}");
        }
        let err = load(&format!("{HTTP}{}", CHAINS.replace("kind = \"log\"", "kind = \"shout\""))).expect_err("kind").to_string();
        assert!(err.contains("unknown variant `shout`, expected `plugin` or `log`"), "{err}");
    }
}
