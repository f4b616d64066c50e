//! Delivery receipts the fake sends for what it accepted, and reading a part's text.

use crate::transports::smpp::text::{self, Coding};
use crate::transports::smpp::wire::{Sm, Tlv, tag};

use super::*;

/// The body of a part's text: after the user data header, or in `message_payload`.
pub(super) fn body_of(sm: &Sm) -> &[u8] {
    let octets = sm.tlv(tag::MESSAGE_PAYLOAD).unwrap_or(&sm.short_message);
    if sm.udhi() { text::read_header(octets).map_or(octets, |h| h.body) } else { octets }
}

/// Octets in `data_coding` as text; what is not a text coding is shown as Latin-1, flagged.
pub(super) fn decode_any(octets: &[u8], data_coding: u8) -> (String, usize, bool) {
    match Coding::from_data_coding(data_coding) {
        Some(c) => {
            let (s, bad) = text::decode(octets, c);
            (s, bad, true)
        }
        None => (text::decode(octets, Coding::Latin1).0, 0, false),
    }
}

/// The receipt a submit earns under `s`, if it asked for one.
pub(super) fn receipt_for(sm: &Sm, n: u64, message_id: &str, s: &Settings) -> Option<Box<Sm>> {
    let (word, state, failure) = s.receipt.stat()?;
    let asked = match sm.registered_delivery & 0x03 {
        1 | 3 => true,
        2 => failure,
        _ => false,
    };
    if !asked {
        return None;
    }
    let rid = match s.receipt_id_format {
        ReceiptIdFormat::Same => message_id.to_owned(),
        ReceiptIdFormat::Decimal => n.to_string(),
        ReceiptIdFormat::Hex => format!("{n:x}"),
    };
    let short_message = if s.receipt_as == ReceiptAs::Tlv {
        Vec::new()
    } else {
        let snippet: String = decode_any(body_of(sm), sm.data_coding).0.chars().take(20).collect();
        let date = chrono::Utc::now().format("%y%m%d%H%M");
        let dlvrd = if word == "DELIVRD" { "001" } else { "000" };
        let err = if failure { "001" } else { "000" };
        gsm_lossy(&format!(
            "id:{rid} sub:001 dlvrd:{dlvrd} submit date:{date} done date:{date} stat:{word} err:{err} text:{snippet}"
        ))
    };
    let tlvs = if s.receipt_as == ReceiptAs::Text {
        Vec::new()
    } else {
        vec![Tlv::c_string(tag::RECEIPTED_MESSAGE_ID, &rid), Tlv::new(tag::MESSAGE_STATE, vec![state])]
    };
    Some(Box::new(Sm {
        source_addr_ton: sm.dest_addr_ton,
        source_addr_npi: sm.dest_addr_npi,
        source_addr: sm.destination_addr.clone(),
        dest_addr_ton: sm.source_addr_ton,
        dest_addr_npi: sm.source_addr_npi,
        destination_addr: sm.source_addr.clone(),
        esm_class: 0x04,
        data_coding: 0,
        short_message,
        tlvs,
        ..Sm::default()
    }))
}

/// `s` in GSM 03.38, with `?` for what it cannot write (a receipt quoting an emoji).
pub(super) fn gsm_lossy(s: &str) -> Vec<u8> {
    text::encode(s, Coding::Gsm7).unwrap_or_else(|_| {
        let mut out = Vec::with_capacity(s.len());
        let mut buf = [0u8; 4];
        for ch in s.chars() {
            match text::encode(ch.encode_utf8(&mut buf), Coding::Gsm7) {
                Ok(o) => out.extend(o),
                Err(_) => out.push(b'?'),
            }
        }
        out
    })
}
