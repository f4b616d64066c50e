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
    /// SMPP 3.4 towards an SMSC: SMS out and in, delivery reports, USSD over SMPP.
    Smpp(Box<SmppConfig>),
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
            TransportConfig::Smpp(s) if s.ussd.is_some() => "ussd",
            TransportConfig::Smpp(_) => "sms",
        }
    }
}

/// One line an operator reads in `vumi config check`: what the transport does and where, with
/// the settings that matter, never a secret.
impl std::fmt::Display for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportConfig::Telnet(t) => {
                write!(f, "telnet on {}, lines up to {} bytes", t.bind, t.max_line_bytes)?;
                if let Some(to) = &t.to_addr {
                    write!(f, ", to_addr {to}")?;
                }
                Ok(())
            }
            TransportConfig::UssdAt(u) => write!(
                f,
                "USSD over HTTP (Africa's Talking) at POST {} on the HTTP listener; an answer within {} ms, sessions end after {} s idle",
                u.path, u.response_deadline_ms, u.session_timeout_secs
            ),
            TransportConfig::SmsHttp(s) => {
                let format = match s.outbound_format {
                    BodyFormat::Json => "JSON",
                    BodyFormat::Form => "a form",
                };
                write!(
                    f,
                    "SMS over HTTP: outbound POSTed as {format} to {} ({} at once, {} ms each{}{}); inbound and delivery reports on the HTTP listener",
                    s.outbound_url,
                    s.concurrency,
                    s.request_timeout_ms,
                    if s.outbound_token.is_some() { ", with a bearer token" } else { "" },
                    match &s.retry {
                        Some(r) => format!(", retried up to {} tries", r.max_attempts),
                        None => String::new(),
                    },
                )
            }
            TransportConfig::Sink(_) => f.write_str("sink: acks every outbound message, delivers nothing"),
            TransportConfig::Smpp(s) => {
                let binds = match s.bind_mode {
                    BindMode::Transceiver => format!("{} transceiver bind(s)", s.binds),
                    BindMode::TransmitterReceiver => {
                        format!("{} transmitter and {} receiver bind(s)", s.binds, s.binds)
                    }
                };
                let rate = if s.tps == 0 {
                    "no rate cap".to_owned()
                } else {
                    format!("{} submit_sm/s per bind", s.tps)
                };
                write!(
                    f,
                    "SMPP 3.4 to {} as `{}`: {binds}, window {}, {rate}; coding {}, long messages by {}; delivery reports {}{}",
                    s.address,
                    s.system_id,
                    s.window,
                    s.coding,
                    s.split,
                    if s.delivery_reports { "asked for" } else { "off" },
                    if s.ussd.is_some() { "; USSD (Mica profile)" } else { "" },
                )
            }
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
    /// How an outbound message is retried when the aggregator is unreachable or answers
    /// `5xx`/`429`: `initial_ms`, `max_ms`, `max_attempts` as in `[host.retry]` (its delay
    /// tiers do not apply: after the last try the message is nacked). Absent: `[host.retry]`.
    #[serde(default)]
    pub retry: Option<super::RetryPolicy>,
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

/// SMPP 3.4: this host is the ESME, binding to an SMSC.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppConfig {
    /// The SMSC, `host:port` (`127.0.0.1:2775` is `vumi fake-smsc`).
    pub address: String,
    /// The account (`system_id`), at most 15 characters.
    pub system_id: String,
    /// Its password, at most 8 characters.
    pub password: String,
    /// `system_type`, if the SMSC wants one.
    #[serde(default)]
    pub system_type: String,
    /// One transceiver per bind, or a transmitter plus a receiver.
    #[serde(default)]
    pub bind_mode: BindMode,
    /// How many binds (of each kind) to hold; outbound parts go round robin across them.
    #[serde(default = "one")]
    pub binds: u16,
    /// `submit_sm`s in flight per bind, counted in PDUs (a long message's parts each count).
    #[serde(default = "default_window")]
    pub window: u16,
    /// `submit_sm`s per second per bind, `0` for no limit.
    #[serde(default)]
    pub tps: u32,
    /// How long the whole bind pauses after `ESME_RTHROTTLED` or `ESME_RMSGQFUL`.
    #[serde(default = "default_throttle_delay_ms")]
    pub throttle_delay_ms: u64,
    /// How long a request waits for its response.
    #[serde(default = "default_smpp_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// What a `submit_sm` whose response never came does: `retry` (sent again, up to
    /// `max_resends` times, then nacked) or `nack`.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Sends of one part, after a timeout or a dropped link, before its message is nacked.
    #[serde(default = "default_max_resends")]
    pub max_resends: u32,
    /// `enquire_link` after this long without traffic.
    #[serde(default = "default_enquire_link_ms")]
    pub enquire_link_ms: u64,
    /// Reconnection back-off: first wait, and most.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// See `reconnect_min_ms`.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// The largest PDU read, in octets; a longer one is answered `generic_nack` and skipped.
    #[serde(default = "default_max_pdu_bytes")]
    pub max_pdu_bytes: usize,
    /// Outbound coding: `auto` (GSM 03.38 if every character has a code, else UCS-2),
    /// `gsm7`, `ascii`, `latin1` or `ucs2`. A message may override it with
    /// `helper_metadata.smpp.coding`.
    #[serde(default = "default_coding")]
    pub coding: String,
    /// How long messages are sent: `udh8`, `udh16`, `sar` or `payload`.
    #[serde(default = "default_split")]
    pub split: String,
    /// How this SMSC writes its ids, so a receipt's id matches its `submit_sm_resp`'s:
    /// `as_is`, `lowercase`, `strip_zeros`, `hex_decimal`.
    #[serde(default = "default_id_form")]
    pub id_form: String,
    /// Ask for delivery receipts (`registered_delivery` 1).
    #[serde(default = "yes")]
    pub delivery_reports: bool,
    /// How long an SMSC id is remembered for its receipt.
    #[serde(default = "default_receipt_ttl_secs")]
    pub receipt_ttl_secs: u64,
    /// How long a receipt that names an id not (yet) known is retried before it is published
    /// as an unmatched receipt.
    #[serde(default = "default_unmatched_wait_ms")]
    pub unmatched_wait_ms: u64,
    /// How long the parts of a long inbound message have to all arrive.
    #[serde(default = "default_reassembly_ttl_secs")]
    pub reassembly_ttl_secs: u64,
    /// `source_addr` of outbound messages that name no `from_addr`.
    #[serde(default)]
    pub default_from: Option<String>,
    /// TON/NPI of addresses we send: source then destination.
    #[serde(default = "default_ton_npi")]
    pub source_ton_npi: [u8; 2],
    /// See `source_ton_npi`.
    #[serde(default = "default_ton_npi")]
    pub dest_ton_npi: [u8; 2],
    /// USSD over SMPP with this vendor profile (`mica`), instead of SMS.
    #[serde(default)]
    pub ussd: Option<UssdProfile>,
}

/// How a transport binds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// One `bind_transceiver` per bind.
    #[default]
    Transceiver,
    /// A `bind_transmitter` and a `bind_receiver` per bind.
    TransmitterReceiver,
}

/// What a response timeout does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Send the part again (first, before newer ones).
    #[default]
    Retry,
    /// Nack its message.
    Nack,
}

/// A USSD-over-SMPP vendor profile: how sessions ride on `ussd_service_op` and
/// `its_session_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UssdProfile {
    /// The profile of Vumi's Mica SMSC (vumi PR#753): the session is `its_session_info`, the
    /// operation `ussd_service_op` (1 PSSR request = new, 18 PSSR response = resume, 17 USSN
    /// release/cancel = close).
    Mica,
}

fn one() -> u16 {
    1
}
fn yes() -> bool {
    true
}
fn default_window() -> u16 {
    10
}
fn default_throttle_delay_ms() -> u64 {
    1_000
}
fn default_smpp_response_timeout_ms() -> u64 {
    10_000
}
fn default_max_resends() -> u32 {
    3
}
fn default_enquire_link_ms() -> u64 {
    30_000
}
fn default_reconnect_min_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_max_pdu_bytes() -> usize {
    65_536
}
fn default_coding() -> String {
    "auto".into()
}
fn default_split() -> String {
    "udh8".into()
}
fn default_id_form() -> String {
    "as_is".into()
}
fn default_receipt_ttl_secs() -> u64 {
    3 * 86_400
}
fn default_unmatched_wait_ms() -> u64 {
    2_000
}
fn default_reassembly_ttl_secs() -> u64 {
    300
}
fn default_ton_npi() -> [u8; 2] {
    [1, 1]
}
