//! `[http]`, `[channels.*]` and `[callbacks]`: the shared HTTP listener and the send API.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::names::ConnectorName;

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

/// One send-API channel: an HTTP face on a transport's connector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// The transport it sends through (and, with `mo_url`, receives from).
    pub connector: ConnectorName,
    /// The bearer token clients must present: the token, or `sha256:<hex>` (`vumi token
    /// hash`); held hashed either way.
    pub token: super::Secret,
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
/// backoff, then recorded on the failure path. A slow or dead callback server holds up nothing
/// until `queue_capacity` callbacks wait; then the channel waits too, and its transport refuses
/// new messages with `503` rather than accept what it cannot deliver.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    /// Callbacks waiting per channel; when they are this many, the channel waits for room and
    /// takes no more messages meanwhile (so its transport refuses new ones with `503`).
    #[serde(default = "default_cb_queue")]
    pub queue_capacity: usize,
    /// How a callback is retried: `initial_ms`, `max_ms`, `max_attempts` as in `[host.retry]`
    /// (its delay tiers do not apply: after the last try a callback goes to the failure
    /// path). Absent: `[host.retry]`.
    #[serde(default)]
    pub retry: Option<super::RetryPolicy>,
    /// How long one callback request may take.
    #[serde(default = "super::transports::default_request_timeout_ms")]
    pub timeout_ms: u64,
    /// Callbacks in flight at once per channel.
    #[serde(default = "default_cb_concurrency")]
    pub concurrency: u16,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            queue_capacity: default_cb_queue(),
            retry: None,
            timeout_ms: super::transports::default_request_timeout_ms(),
            concurrency: default_cb_concurrency(),
        }
    }
}

fn default_cb_queue() -> usize {
    10_000
}
fn default_cb_concurrency() -> u16 {
    16
}

/// Whether `url` is an absolute `http://` or `https://` URL.
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(format!(
            "must be an http:// or https:// URL with a host, got `{url}` (scheme `{}`)",
            u.scheme()
        )),
        Err(e) => Err(format!("is not a URL ({e}): `{url}`")),
    }
}
