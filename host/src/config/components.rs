//! `[apps.*]`, `[routers.*]`, `[middleware.*]` and `[chains.*]`: the plugins and how they are
//! wired.

use std::path::PathBuf;

use serde::Deserialize;

use crate::names::{ComponentName, ConnectorName, EndpointName};

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
    /// `user` (the default): one user's messages are handled one at a time and in order, across
    /// every host sharing the queues (on RabbitMQ with Redis state, through a per-user
    /// sequencer in Redis; on one host the lanes alone do it). `none`: no cross-host order, two
    /// fewer Redis round trips per message.
    #[serde(default)]
    pub ordering: Ordering,
    /// The app's own settings, handed to it through the `config` import.
    #[serde(default)]
    pub config: toml::Table,
}

/// Per-user ordering of an app's messages (`apps.<name>.ordering`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// One user's messages one at a time, in order, on every host.
    #[default]
    User,
    /// In order within a host only.
    None,
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
    pub inbound: Vec<ComponentName>,
    /// Messages to end users, as published on `<connector>.outbound`.
    #[serde(default)]
    pub outbound: Vec<ComponentName>,
    /// Acks, nacks and delivery reports on `<connector>.event` (native middleware only).
    #[serde(default)]
    pub event: Vec<ComponentName>,
}
