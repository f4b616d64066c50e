//! `[transports.*]`: one table per transport, tagged by `kind`.

use std::net::SocketAddr;

use serde::Deserialize;

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

pub(super) fn default_request_timeout_ms() -> u64 {
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
