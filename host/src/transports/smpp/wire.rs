//! The SMPP wire: PDUs framed by `command_length`, decoded and encoded by the `rusmpp` codec.
//! This is the only module that imports `rusmpp` (`.ci/layering` checks it): its 0.5 reworks
//! decode errors, so everything above speaks our own small [`Pdu`] model instead.
//!
//! Why our own framing rather than rusmpp's tokio codec: that codec returns an error for a PDU
//! whose body does not decode, and under `Framed` an error ends the stream, so one bad PDU from
//! a sloppy SMSC would drop the link with nothing answered. Here the frame is cut out by its
//! `command_length` first, and only then decoded; a body that does not decode becomes a
//! [`Frame::Bad`] carrying the header and the answer it is owed (`generic_nack` or the matching
//! `_resp` with an error status), and the next frame starts where this one ended.
//!
//! What cannot be framed: a `command_length` under 16 cannot even hold its header, so its
//! 16 octets are taken as the header, answered `generic_nack ESME_RINVCMDLEN`, and reading goes
//! on after them; one over the configured maximum is answered the same and its octets are
//! skipped as they arrive, never buffered.

use std::fmt;

use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::Length;
use rusmpp::encode::owned::Encode;
use rusmpp::pdus::{
    BindReceiver, BindReceiverResp, BindTransceiver, BindTransceiverResp, BindTransmitter,
    BindTransmitterResp, DeliverSm, DeliverSmResp, SubmitSm, SubmitSmResp,
};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, MessageSubmissionRequestTlvValue, TlvTag, TlvValue};
use rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, PriorityFlag, RegisteredDelivery, ReplaceIfPresentFlag,
    ServiceType, Ton,
};
use rusmpp::{Command, CommandId, CommandStatus};
use tokio_util::bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Octets in a PDU header (`command_length`, `command_id`, `command_status`, `sequence_number`).
pub const HEADER_LEN: usize = 16;

/// `command_id` values (SMPP 3.4 §5.1.2.1). A response is its request's id with bit 31 set.
pub mod id {
    #![allow(missing_docs)]
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    pub const QUERY_SM: u32 = 0x0000_0003;
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    pub const DELIVER_SM: u32 = 0x0000_0005;
    pub const UNBIND: u32 = 0x0000_0006;
    pub const REPLACE_SM: u32 = 0x0000_0007;
    pub const CANCEL_SM: u32 = 0x0000_0008;
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    pub const OUTBIND: u32 = 0x0000_000B;
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    pub const SUBMIT_MULTI: u32 = 0x0000_0021;
    pub const ALERT_NOTIFICATION: u32 = 0x0000_0102;
    pub const DATA_SM: u32 = 0x0000_0103;
    /// Bit 31: this is a response.
    pub const RESP: u32 = 0x8000_0000;
}

/// `command_status` values (SMPP 3.4 §5.1.3) this host sends or reacts to.
pub mod status {
    #![allow(missing_docs)]
    pub const OK: u32 = 0x0000_0000;
    pub const RINVMSGLEN: u32 = 0x0000_0001;
    pub const RINVCMDLEN: u32 = 0x0000_0002;
    pub const RINVCMDID: u32 = 0x0000_0003;
    pub const RINVBNDSTS: u32 = 0x0000_0004;
    pub const RALYBND: u32 = 0x0000_0005;
    pub const RSYSERR: u32 = 0x0000_0008;
    pub const RINVSRCADR: u32 = 0x0000_000A;
    pub const RINVDSTADR: u32 = 0x0000_000B;
    pub const RBINDFAIL: u32 = 0x0000_000D;
    pub const RINVPASWD: u32 = 0x0000_000E;
    pub const RINVSYSID: u32 = 0x0000_000F;
    pub const RMSGQFUL: u32 = 0x0000_0014;
    pub const RINVESMCLASS: u32 = 0x0000_0043;
    pub const RTHROTTLED: u32 = 0x0000_0058;
    pub const RINVDCS: u32 = 0x0000_0104;
    pub const RX_T_APPN: u32 = 0x0000_0064;
    pub const RX_P_APPN: u32 = 0x0000_0065;
    pub const RX_R_APPN: u32 = 0x0000_0066;
    pub const RINVOPTPARSTREAM: u32 = 0x0000_00C0;
    pub const ROPTPARNOTALLWD: u32 = 0x0000_00C1;
    pub const RINVPARLEN: u32 = 0x0000_00C2;
    pub const RMISSINGOPTPARAM: u32 = 0x0000_00C3;
    pub const RINVOPTPARAMVAL: u32 = 0x0000_00C4;
    pub const RDELIVERYFAILURE: u32 = 0x0000_00FE;
    pub const RUNKNOWNERR: u32 = 0x0000_00FF;
}

/// The spec's name of a `command_status` (`ESME_RTHROTTLED`), or its hex code when it has none
/// (vendor codes): nack reasons and logs carry both.
pub fn status_name(code: u32) -> String {
    let name = match code {
        0x00 => "ESME_ROK",
        0x01 => "ESME_RINVMSGLEN",
        0x02 => "ESME_RINVCMDLEN",
        0x03 => "ESME_RINVCMDID",
        0x04 => "ESME_RINVBNDSTS",
        0x05 => "ESME_RALYBND",
        0x06 => "ESME_RINVPRTFLG",
        0x07 => "ESME_RINVREGDLVFLG",
        0x08 => "ESME_RSYSERR",
        0x0A => "ESME_RINVSRCADR",
        0x0B => "ESME_RINVDSTADR",
        0x0C => "ESME_RINVMSGID",
        0x0D => "ESME_RBINDFAIL",
        0x0E => "ESME_RINVPASWD",
        0x0F => "ESME_RINVSYSID",
        0x11 => "ESME_RCANCELFAIL",
        0x13 => "ESME_RREPLACEFAIL",
        0x14 => "ESME_RMSGQFUL",
        0x15 => "ESME_RINVSERTYP",
        0x33 => "ESME_RINVNUMDESTS",
        0x34 => "ESME_RINVDLNAME",
        0x40 => "ESME_RINVDESTFLAG",
        0x42 => "ESME_RINVSUBREP",
        0x43 => "ESME_RINVESMCLASS",
        0x44 => "ESME_RCNTSUBDL",
        0x45 => "ESME_RSUBMITFAIL",
        0x48 => "ESME_RINVSRCTON",
        0x49 => "ESME_RINVSRCNPI",
        0x50 => "ESME_RINVDSTTON",
        0x51 => "ESME_RINVDSTNPI",
        0x53 => "ESME_RINVSYSTYP",
        0x54 => "ESME_RINVREPFLAG",
        0x55 => "ESME_RINVNUMMSGS",
        0x58 => "ESME_RTHROTTLED",
        0x61 => "ESME_RINVSCHED",
        0x62 => "ESME_RINVEXPIRY",
        0x63 => "ESME_RINVDFTMSGID",
        0x64 => "ESME_RX_T_APPN",
        0x65 => "ESME_RX_P_APPN",
        0x66 => "ESME_RX_R_APPN",
        0x67 => "ESME_RQUERYFAIL",
        0xC0 => "ESME_RINVOPTPARSTREAM",
        0xC1 => "ESME_ROPTPARNOTALLWD",
        0xC2 => "ESME_RINVPARLEN",
        0xC3 => "ESME_RMISSINGOPTPARAM",
        0xC4 => "ESME_RINVOPTPARAMVAL",
        0xFE => "ESME_RDELIVERYFAILURE",
        0xFF => "ESME_RUNKNOWNERR",
        0x104 => "ESME_RINVDCS",
        _ => return format!("0x{code:08X}"),
    };
    name.to_owned()
}

/// TLV tags (SMPP 3.4 §5.3.2) the transport reads or writes.
pub mod tag {
    #![allow(missing_docs)]
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    pub const USER_MESSAGE_REFERENCE: u16 = 0x0204;
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    pub const MESSAGE_STATE: u16 = 0x0427;
    pub const USSD_SERVICE_OP: u16 = 0x0501;
    pub const ITS_SESSION_INFO: u16 = 0x1383;
}

/// One optional parameter, raw: its tag and value octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// The tag.
    pub tag: u16,
    /// The value's octets (a C-octet string keeps its NUL).
    pub value: Vec<u8>,
}

impl Tlv {
    /// A TLV holding `value`.
    pub fn new(tag: u16, value: impl Into<Vec<u8>>) -> Self {
        Self { tag, value: value.into() }
    }

    /// A C-octet string TLV (`receipted_message_id`): `s` with its NUL.
    pub fn c_string(tag: u16, s: &str) -> Self {
        let mut value = s.as_bytes().to_vec();
        value.push(0);
        Self { tag, value }
    }
}

/// Which kind of bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    /// Sends only (`submit_sm`).
    Transmitter,
    /// Receives only (`deliver_sm`).
    Receiver,
    /// Both.
    Transceiver,
}

impl BindKind {
    /// Its name, as config and logs say it.
    pub fn name(self) -> &'static str {
        match self {
            BindKind::Transmitter => "transmitter",
            BindKind::Receiver => "receiver",
            BindKind::Transceiver => "transceiver",
        }
    }

    /// Whether it may submit.
    pub fn sends(self) -> bool {
        self != BindKind::Receiver
    }

    /// Whether the SMSC may deliver to it.
    pub fn receives(self) -> bool {
        self != BindKind::Transmitter
    }
}

/// A `bind_*` request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bind {
    /// The account.
    pub system_id: String,
    /// Its password.
    pub password: String,
    /// `system_type`, often empty.
    pub system_type: String,
    /// 0x34 from us.
    pub interface_version: u8,
    /// `addr_ton`.
    pub addr_ton: u8,
    /// `addr_npi`.
    pub addr_npi: u8,
    /// `address_range`.
    pub address_range: String,
}

/// A `submit_sm` or `deliver_sm`: the fields of both (they share a layout).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sm {
    /// `service_type` (USSD profiles use it).
    pub service_type: String,
    /// `source_addr_ton`.
    pub source_addr_ton: u8,
    /// `source_addr_npi`.
    pub source_addr_npi: u8,
    /// `source_addr`.
    pub source_addr: String,
    /// `dest_addr_ton`.
    pub dest_addr_ton: u8,
    /// `dest_addr_npi`.
    pub dest_addr_npi: u8,
    /// `destination_addr`.
    pub destination_addr: String,
    /// `esm_class`: 0x40 is UDHI, bits 2–5 0x04 mark a delivery receipt.
    pub esm_class: u8,
    /// `protocol_id`.
    pub protocol_id: u8,
    /// `priority_flag`.
    pub priority_flag: u8,
    /// `registered_delivery`: 0x01 asks for a receipt of the final outcome.
    pub registered_delivery: u8,
    /// `data_coding`.
    pub data_coding: u8,
    /// `short_message`, at most 254 octets.
    pub short_message: Vec<u8>,
    /// Optional parameters, in wire order.
    pub tlvs: Vec<Tlv>,
}

impl Sm {
    /// The first TLV with `tag`, if present.
    pub fn tlv(&self, tag: u16) -> Option<&[u8]> {
        self.tlvs.iter().find(|t| t.tag == tag).map(|t| t.value.as_slice())
    }

    /// A one- or two-octet integer TLV.
    pub fn tlv_int(&self, tag: u16) -> Option<u16> {
        match self.tlv(tag)? {
            [b] => Some(u16::from(*b)),
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// A C-octet string TLV as text (without its NUL).
    pub fn tlv_str(&self, tag: u16) -> Option<String> {
        let v = self.tlv(tag)?;
        let v = v.strip_suffix(&[0]).unwrap_or(v);
        Some(String::from_utf8_lossy(v).into_owned())
    }

    /// Whether `short_message` starts with a user data header.
    pub fn udhi(&self) -> bool {
        self.esm_class & 0x40 != 0
    }

    /// Whether this `deliver_sm` reports on a message rather than carrying one: `esm_class`
    /// message type 0x04 (SMSC delivery receipt), 0x08 (SME delivery acknowledgement) or 0x20
    /// (intermediate delivery notification), SMPP 3.4 §5.2.12.
    pub fn is_receipt(&self) -> bool {
        matches!(self.esm_class & 0x3C, 0x04 | 0x08 | 0x20)
    }
}

/// A PDU's body, by command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `bind_transmitter`, `bind_receiver` or `bind_transceiver`.
    Bind(BindKind, Bind),
    /// Its response: the SMSC's `system_id` (absent on an error answered header-only).
    BindResp(BindKind, String),
    /// `submit_sm`.
    SubmitSm(Box<Sm>),
    /// `submit_sm_resp`: the SMSC's message id (empty on an error).
    SubmitSmResp(String),
    /// `deliver_sm`.
    DeliverSm(Box<Sm>),
    /// `deliver_sm_resp`.
    DeliverSmResp,
    /// `enquire_link`.
    EnquireLink,
    /// `enquire_link_resp`.
    EnquireLinkResp,
    /// `unbind`.
    Unbind,
    /// `unbind_resp`.
    UnbindResp,
    /// `generic_nack`.
    GenericNack,
    /// Any other command (well formed as far as the header goes): answered
    /// `generic_nack ESME_RINVCMDID` if it is a request.
    Other(u32),
}

impl Body {
    /// Its `command_id`.
    pub fn command_id(&self) -> u32 {
        match self {
            Body::Bind(k, _) => bind_id(*k),
            Body::BindResp(k, _) => bind_id(*k) | id::RESP,
            Body::SubmitSm(_) => id::SUBMIT_SM,
            Body::SubmitSmResp(_) => id::SUBMIT_SM | id::RESP,
            Body::DeliverSm(_) => id::DELIVER_SM,
            Body::DeliverSmResp => id::DELIVER_SM | id::RESP,
            Body::EnquireLink => id::ENQUIRE_LINK,
            Body::EnquireLinkResp => id::ENQUIRE_LINK | id::RESP,
            Body::Unbind => id::UNBIND,
            Body::UnbindResp => id::UNBIND | id::RESP,
            Body::GenericNack => id::GENERIC_NACK,
            Body::Other(c) => *c,
        }
    }

    /// The command's name, for logs and metrics (`submit_sm`).
    pub fn name(&self) -> &'static str {
        command_name(self.command_id())
    }
}

fn bind_id(k: BindKind) -> u32 {
    match k {
        BindKind::Transmitter => id::BIND_TRANSMITTER,
        BindKind::Receiver => id::BIND_RECEIVER,
        BindKind::Transceiver => id::BIND_TRANSCEIVER,
    }
}

/// A command's name (`deliver_sm_resp`), or `unknown` for an id SMPP 3.4 does not define.
pub fn command_name(command_id: u32) -> &'static str {
    match command_id {
        id::GENERIC_NACK => "generic_nack",
        0x01 => "bind_receiver",
        0x8000_0001 => "bind_receiver_resp",
        0x02 => "bind_transmitter",
        0x8000_0002 => "bind_transmitter_resp",
        0x03 => "query_sm",
        0x8000_0003 => "query_sm_resp",
        0x04 => "submit_sm",
        0x8000_0004 => "submit_sm_resp",
        0x05 => "deliver_sm",
        0x8000_0005 => "deliver_sm_resp",
        0x06 => "unbind",
        0x8000_0006 => "unbind_resp",
        0x07 => "replace_sm",
        0x8000_0007 => "replace_sm_resp",
        0x08 => "cancel_sm",
        0x8000_0008 => "cancel_sm_resp",
        0x09 => "bind_transceiver",
        0x8000_0009 => "bind_transceiver_resp",
        0x0B => "outbind",
        0x15 => "enquire_link",
        0x8000_0015 => "enquire_link_resp",
        0x21 => "submit_multi",
        0x8000_0021 => "submit_multi_resp",
        0x102 => "alert_notification",
        0x103 => "data_sm",
        0x8000_0103 => "data_sm_resp",
        _ => "unknown",
    }
}

/// One PDU: header fields and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// `command_status`.
    pub status: u32,
    /// `sequence_number`.
    pub sequence: u32,
    /// The body, which names the command.
    pub body: Body,
}

impl Pdu {
    /// A request (status 0).
    pub fn request(sequence: u32, body: Body) -> Self {
        Self { status: status::OK, sequence, body }
    }

    /// A response with `status`.
    pub fn response(sequence: u32, status: u32, body: Body) -> Self {
        Self { status, sequence, body }
    }

    /// Whether this is a response (bit 31 of its `command_id`).
    pub fn is_response(&self) -> bool {
        self.body.command_id() & id::RESP != 0
    }
}

/// A frame that could not be read as a PDU, and what it is owed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    /// Its `command_id` (0 when the frame was too short to have one).
    pub command_id: u32,
    /// Its `command_status`.
    pub status: u32,
    /// Its `sequence_number`.
    pub sequence: u32,
    /// What was wrong, for the log.
    pub reason: String,
    /// The answer to send, if it was a request (a response that does not decode is answered
    /// with nothing: the requester treats it as that response with an error).
    pub reply: Option<Pdu>,
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A PDU.
    Pdu(Pdu),
    /// A frame that did not decode; the link goes on.
    Bad(BadFrame),
}

/// Why a PDU cannot be encoded: a field over the spec's size, or not ASCII where a C-octet
/// string must be. Caught before anything is written, so the link is unharmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {command}: field `{field}` {problem}")]
pub struct EncodeError {
    /// Which command.
    pub command: &'static str,
    /// Which field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Frames PDUs by `command_length` (at most `max_len` octets) both ways.
#[derive(Debug)]
pub struct Codec {
    max_len: usize,
    /// Octets of an over-long frame still to be skipped.
    skipping: usize,
}

impl Codec {
    /// A codec refusing frames over `max_len` octets (at least a header's 16).
    pub fn new(max_len: usize) -> Self {
        Self { max_len: max_len.max(HEADER_LEN), skipping: 0 }
    }
}

fn generic_nack(sequence: u32, status: u32) -> Pdu {
    Pdu::response(sequence, status, Body::GenericNack)
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if self.skipping > 0 {
            let n = self.skipping.min(src.len());
            src.advance(n);
            self.skipping -= n;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let word = |i: usize| u32::from_be_bytes([src[i], src[i + 1], src[i + 2], src[i + 3]]);
        let (length, command_id, command_status, sequence) = (word(0) as usize, word(4), word(8), word(12));
        if length < HEADER_LEN || length > self.max_len {
            // Nothing past the header can be trusted: answer it and go on after what it
            // claimed (skipped as it arrives), or after its 16 octets when it claimed fewer.
            let reason = if length < HEADER_LEN {
                format!("command_length {length} is shorter than a header (16)")
            } else {
                format!("command_length {length} is over the maximum {}", self.max_len)
            };
            let consumed = length.max(HEADER_LEN);
            let now = consumed.min(src.len());
            src.advance(now);
            self.skipping = consumed - now;
            return Ok(Some(Frame::Bad(BadFrame {
                command_id,
                status: command_status,
                sequence,
                reason,
                reply: Some(generic_nack(sequence, status::RINVCMDLEN)),
            })));
        }
        if src.len() < length {
            src.reserve(length - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(length);
        // A submit_sm or deliver_sm: rusmpp decodes the mandatory fields, we read the TLVs
        // (see `split_tlvs`).
        let tlvs = match command_id {
            id::SUBMIT_SM | id::DELIVER_SM => split_tlvs(&mut frame),
            _ => None,
        };
        frame.advance(4);
        let body_len = frame.len();
        Ok(Some(match Command::decode(&mut frame, body_len) {
            Ok((command, _)) => match (from_command(command), tlvs) {
                (Ok(mut pdu), Some(tlvs)) => match (&mut pdu.body, tlvs) {
                    (Body::SubmitSm(sm) | Body::DeliverSm(sm), Ok(tlvs)) => {
                        sm.tlvs = tlvs;
                        Frame::Pdu(pdu)
                    }
                    (_, Err(reason)) => bad(command_id, command_status, sequence, reason),
                    _ => Frame::Pdu(pdu),
                },
                (Ok(pdu), None) => Frame::Pdu(pdu),
                (Err(reason), _) => bad(command_id, command_status, sequence, reason),
            },
            Err(e) => bad(command_id, command_status, sequence, describe(&e)),
        }))
    }
}

/// Cut the TLVs off a `submit_sm`/`deliver_sm` frame (header included), leaving the header and
/// mandatory fields with `command_length` to match, and read them ourselves: a tag, a length,
/// that many octets, as raw values.
///
/// Why not rusmpp's: it decodes a known tag by its type and ignores `value_length` (a
/// `receipted_message_id` without its NUL, or a one-octet `sar_msg_ref_num`, misreads every
/// TLV after it or fails the whole PDU), and a sloppy SMSC's receipt is still a receipt. We keep
/// TLVs raw anyway, so this also saves a typed decode and re-encode per TLV. `None` when the
/// mandatory fields do not scan (rusmpp then says what is wrong with them).
fn split_tlvs(frame: &mut BytesMut) -> Option<Result<Vec<Tlv>, String>> {
    let body = frame.get(HEADER_LEN..)?;
    let mut at = 0;
    let c_string = |at: &mut usize, max: usize| -> Option<()> {
        let n = body.get(*at..)?.iter().take(max).position(|&b| b == 0)?;
        *at += n + 1;
        Some(())
    };
    c_string(&mut at, 6)?; // service_type
    at += 2; // source_addr_ton, _npi
    c_string(&mut at, 21)?;
    at += 2; // dest_addr_ton, _npi
    c_string(&mut at, 21)?;
    at += 3; // esm_class, protocol_id, priority_flag
    c_string(&mut at, 17)?; // schedule_delivery_time
    c_string(&mut at, 17)?; // validity_period
    at += 4; // registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id
    let sm_length = usize::from(*body.get(at)?);
    at += 1 + sm_length;
    if at > body.len() {
        return None;
    }
    let mut raw = &body[at..];
    let mut tlvs = Vec::new();
    while !raw.is_empty() {
        let [t0, t1, l0, l1, rest @ ..] = raw else {
            return Some(Err(format!("a TLV stream ending in {} stray octets", raw.len())));
        };
        let (tag, len) = (u16::from_be_bytes([*t0, *t1]), usize::from(u16::from_be_bytes([*l0, *l1])));
        let Some(value) = rest.get(..len) else {
            return Some(Err(format!("TLV 0x{tag:04X} says {len} octets, {} remain", rest.len())));
        };
        tlvs.push(Tlv::new(tag, value));
        raw = &rest[len..];
    }
    let keep = HEADER_LEN + at;
    frame.truncate(keep);
    frame[..4].copy_from_slice(&(keep as u32).to_be_bytes());
    Some(Ok(tlvs))
}

/// A decode error in words, naming the field where rusmpp says which.
fn describe(e: &rusmpp::decode::DecodeError) -> String {
    let mut out = format!("{:?}", e.kind());
    let mut source = e.source();
    let mut path = Vec::new();
    while let Some(s) = source {
        path.push(format!("{:?}", s.field()));
        source = s.error().source();
    }
    if !path.is_empty() {
        out = format!("{out} in {}", path.join(" > "));
    }
    out
}

fn bad(command_id: u32, command_status: u32, sequence: u32, reason: String) -> Frame {
    let reply = if command_id & id::RESP != 0 {
        None
    } else {
        match command_id {
            // Requests we take: the matching response, with an error status a sender can act on.
            id::SUBMIT_SM
            | id::DELIVER_SM
            | id::BIND_RECEIVER
            | id::BIND_TRANSMITTER
            | id::BIND_TRANSCEIVER => {
                let status = if reason.to_ascii_lowercase().contains("tlv") {
                    status::RINVOPTPARSTREAM
                } else {
                    status::RINVCMDLEN
                };
                let body = match command_id {
                    id::SUBMIT_SM => Body::SubmitSmResp(String::new()),
                    id::DELIVER_SM => Body::DeliverSmResp,
                    id::BIND_RECEIVER => Body::BindResp(BindKind::Receiver, String::new()),
                    id::BIND_TRANSMITTER => Body::BindResp(BindKind::Transmitter, String::new()),
                    _ => Body::BindResp(BindKind::Transceiver, String::new()),
                };
                Some(Pdu::response(sequence, status, body))
            }
            id::ENQUIRE_LINK | id::UNBIND => Some(generic_nack(sequence, status::RINVCMDLEN)),
            _ => Some(generic_nack(sequence, status::RINVCMDID)),
        }
    };
    Frame::Bad(BadFrame { command_id, status: command_status, sequence, reason, reply })
}

fn text<const MIN: usize, const MAX: usize>(s: &COctetString<MIN, MAX>) -> String {
    String::from_utf8_lossy(s.as_ref().strip_suffix(&[0]).unwrap_or(s.as_ref())).into_owned()
}

fn raw_tlv(value: &TlvValue) -> Tlv {
    let mut buf = BytesMut::with_capacity(value.length());
    match value {
        TlvValue::Other { tag, value } => Tlv { tag: u16::from(*tag), value: value.as_ref().to_vec() },
        v => {
            v.encode(&mut buf);
            Tlv { tag: u16::from(v.tag()), value: buf.to_vec() }
        }
    }
}

fn tlvs(list: &[rusmpp::tlvs::Tlv]) -> Vec<Tlv> {
    list.iter()
        .map(|t| match t.value() {
            Some(v) => raw_tlv(v),
            None => Tlv { tag: u16::from(t.tag()), value: Vec::new() },
        })
        .collect()
}

macro_rules! sm_from {
    ($s:expr) => {{
        let s = $s;
        Sm {
            service_type: text(s.service_type.value()),
            source_addr_ton: s.source_addr_ton.into(),
            source_addr_npi: s.source_addr_npi.into(),
            source_addr: text(&s.source_addr),
            dest_addr_ton: s.dest_addr_ton.into(),
            dest_addr_npi: s.dest_addr_npi.into(),
            destination_addr: text(&s.destination_addr),
            esm_class: s.esm_class.into(),
            protocol_id: s.protocol_id,
            priority_flag: s.priority_flag.into(),
            registered_delivery: s.registered_delivery.into(),
            data_coding: s.data_coding.into(),
            short_message: s.short_message().as_ref().to_vec(),
            tlvs: tlvs(s.tlvs()),
        }
    }};
}

fn from_command(command: Command) -> Result<Pdu, String> {
    let (status, sequence, cid) =
        (u32::from(command.status()), command.sequence_number(), u32::from(command.id()));
    use rusmpp::Pdu as P;
    let body = match command.pdu() {
        None => match cid {
            // Header-only responses (errors, mostly) are responses all the same.
            r if r == id::BIND_RECEIVER | id::RESP => Body::BindResp(BindKind::Receiver, String::new()),
            r if r == id::BIND_TRANSMITTER | id::RESP => Body::BindResp(BindKind::Transmitter, String::new()),
            r if r == id::BIND_TRANSCEIVER | id::RESP => Body::BindResp(BindKind::Transceiver, String::new()),
            r if r == id::SUBMIT_SM | id::RESP => Body::SubmitSmResp(String::new()),
            r if r == id::DELIVER_SM | id::RESP => Body::DeliverSmResp,
            id::ENQUIRE_LINK => Body::EnquireLink,
            r if r == id::ENQUIRE_LINK | id::RESP => Body::EnquireLinkResp,
            id::UNBIND => Body::Unbind,
            r if r == id::UNBIND | id::RESP => Body::UnbindResp,
            id::GENERIC_NACK => Body::GenericNack,
            // A command that has a body, sent without one, is not an unknown command but a
            // malformed one: a bad frame, owed its own `_resp` (see `bad`).
            id::BIND_RECEIVER
            | id::BIND_TRANSMITTER
            | id::BIND_TRANSCEIVER
            | id::SUBMIT_SM
            | id::DELIVER_SM => {
                return Err(format!("{} with no body", command_name(cid)));
            }
            other => Body::Other(other),
        },
        Some(pdu) => match pdu {
            P::BindTransmitter(b) => Body::Bind(BindKind::Transmitter, bind_from!(b)),
            P::BindReceiver(b) => Body::Bind(BindKind::Receiver, bind_from!(b)),
            P::BindTransceiver(b) => Body::Bind(BindKind::Transceiver, bind_from!(b)),
            P::BindTransmitterResp(b) => Body::BindResp(BindKind::Transmitter, text(&b.system_id)),
            P::BindReceiverResp(b) => Body::BindResp(BindKind::Receiver, text(&b.system_id)),
            P::BindTransceiverResp(b) => Body::BindResp(BindKind::Transceiver, text(&b.system_id)),
            P::SubmitSm(s) => Body::SubmitSm(Box::new(sm_from!(s))),
            P::SubmitSmResp(r) => Body::SubmitSmResp(text(r.message_id())),
            P::DeliverSm(s) => Body::DeliverSm(Box::new(sm_from!(s))),
            P::DeliverSmResp(_) => Body::DeliverSmResp,
            P::EnquireLink => Body::EnquireLink,
            P::EnquireLinkResp => Body::EnquireLinkResp,
            P::Unbind => Body::Unbind,
            P::UnbindResp => Body::UnbindResp,
            P::GenericNack => Body::GenericNack,
            _ => Body::Other(cid),
        },
    };
    if body.command_id() != cid && !matches!(body, Body::Other(_)) {
        return Err(format!("command_id 0x{cid:08X} decoded as {}", body.name()));
    }
    Ok(Pdu { status, sequence, body })
}

macro_rules! bind_from {
    ($b:expr) => {{
        let b = $b;
        Bind {
            system_id: text(&b.system_id),
            password: text(&b.password),
            system_type: text(&b.system_type),
            interface_version: b.interface_version.into(),
            addr_ton: b.addr_ton.into(),
            addr_npi: b.addr_npi.into(),
            address_range: text(&b.address_range),
        }
    }};
}
use bind_from;

fn c_str<const MIN: usize, const MAX: usize>(
    command: &'static str,
    field: &'static str,
    s: &str,
) -> Result<COctetString<MIN, MAX>, EncodeError> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    COctetString::from_vec(v).map_err(|e| EncodeError {
        command,
        field,
        problem: format!("{s:?}: {e:?} (at most {} ASCII characters)", MAX - 1),
    })
}

macro_rules! bind_to {
    ($ty:ident, $b:expr) => {{
        let b = $b;
        const C: &str = "bind";
        $ty::new(
            c_str(C, "system_id", &b.system_id)?,
            c_str(C, "password", &b.password)?,
            c_str(C, "system_type", &b.system_type)?,
            InterfaceVersion::from(b.interface_version),
            Ton::from(b.addr_ton),
            Npi::from(b.addr_npi),
            c_str(C, "address_range", &b.address_range)?,
        )
    }};
}

macro_rules! sm_to {
    ($ty:ident, $tlv:ident, $cmd:expr, $s:expr) => {{
        let s = $s;
        let short = OctetString::<0, 255>::from_slice(&s.short_message).map_err(|e| EncodeError {
            command: $cmd,
            field: "short_message",
            problem: format!("{e:?} (at most 254 octets)"),
        })?;
        let tlvs = s
            .tlvs
            .iter()
            .map(|t| $tlv::Other { tag: TlvTag::from(t.tag), value: AnyOctetString::from_slice(&t.value) })
            .collect();
        let service_type = ServiceType::new(c_str($cmd, "service_type", &s.service_type)?);
        $ty::new(
            service_type,
            Ton::from(s.source_addr_ton),
            Npi::from(s.source_addr_npi),
            c_str($cmd, "source_addr", &s.source_addr)?,
            Ton::from(s.dest_addr_ton),
            Npi::from(s.dest_addr_npi),
            c_str($cmd, "destination_addr", &s.destination_addr)?,
            EsmClass::from(s.esm_class),
            s.protocol_id,
            PriorityFlag::from(s.priority_flag),
            EmptyOrFullCOctetString::empty(),
            EmptyOrFullCOctetString::empty(),
            RegisteredDelivery::from(s.registered_delivery),
            ReplaceIfPresentFlag::default(),
            DataCoding::from(s.data_coding),
            0,
            short,
            tlvs,
        )
    }};
}

fn to_command(pdu: &Pdu) -> Result<Command, EncodeError> {
    use rusmpp::Pdu as P;
    let st = CommandStatus::from(pdu.status);
    let seq = pdu.sequence;
    if pdu.status != status::OK && pdu.is_response() {
        // An error response carries no body (SMPP 3.4 §3.2.2 lets it, and many peers expect it).
        let command_id = CommandId::from(pdu.body.command_id());
        return Ok(Command::new(st, seq, P::Other { command_id, body: AnyOctetString::empty() }));
    }
    let body: P = match &pdu.body {
        Body::Bind(BindKind::Transmitter, b) => bind_to!(BindTransmitter, b).into(),
        Body::Bind(BindKind::Receiver, b) => bind_to!(BindReceiver, b).into(),
        Body::Bind(BindKind::Transceiver, b) => bind_to!(BindTransceiver, b).into(),
        Body::BindResp(k, system_id) => {
            let sid = c_str("bind_resp", "system_id", system_id)?;
            match k {
                BindKind::Transmitter => BindTransmitterResp::new(sid, None).into(),
                BindKind::Receiver => BindReceiverResp::new(sid, None).into(),
                BindKind::Transceiver => BindTransceiverResp::new(sid, None).into(),
            }
        }
        Body::SubmitSm(s) => sm_to!(SubmitSm, MessageSubmissionRequestTlvValue, "submit_sm", s).into(),
        Body::SubmitSmResp(message_id) => {
            SubmitSmResp::new(c_str("submit_sm_resp", "message_id", message_id)?, Vec::new()).into()
        }
        Body::DeliverSm(s) => sm_to!(DeliverSm, MessageDeliveryRequestTlvValue, "deliver_sm", s).into(),
        Body::DeliverSmResp => DeliverSmResp::new(COctetString::null(), Vec::new()).into(),
        Body::EnquireLink => P::EnquireLink,
        Body::EnquireLinkResp => P::EnquireLinkResp,
        Body::Unbind => P::Unbind,
        Body::UnbindResp => P::UnbindResp,
        Body::GenericNack => P::GenericNack,
        Body::Other(command_id) => {
            P::Other { command_id: CommandId::from(*command_id), body: AnyOctetString::empty() }
        }
    };
    Ok(Command::new(st, seq, body))
}

/// `pdu`'s octets, `command_length` first.
pub fn encode(pdu: &Pdu) -> Result<Vec<u8>, EncodeError> {
    let mut buf = BytesMut::new();
    encode_into(pdu, &mut buf)?;
    Ok(buf.to_vec())
}

/// Append `pdu`'s octets to `dst`.
pub fn encode_into(pdu: &Pdu, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let command = to_command(pdu)?;
    let len = 4 + command.length();
    dst.reserve(len);
    dst.extend_from_slice(&(len as u32).to_be_bytes());
    command.encode(dst);
    Ok(())
}

impl Encoder<&Pdu> for Codec {
    type Error = std::io::Error;

    fn encode(&mut self, pdu: &Pdu, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        encode_into(pdu, dst).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }
}

impl fmt::Display for Pdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} seq {}", self.body.name(), self.sequence)?;
        if self.status != status::OK {
            write!(f, " status {}", status_name(self.status))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
