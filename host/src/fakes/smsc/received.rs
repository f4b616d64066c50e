//! What was received: long messages put back together (UDH, SAR, `message_payload`) and decoded, with warnings for what a handset would render wrong.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::transports::smpp::text::{self, Coding, Concat};
use crate::transports::smpp::wire::{Sm, tag};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Method {
    Single,
    Udh8,
    Udh16,
    Sar,
    Payload,
}

impl Method {
    pub(super) fn name(self) -> &'static str {
        match self {
            Method::Single => "single",
            Method::Udh8 => "udh8",
            Method::Udh16 => "udh16",
            Method::Sar => "sar",
            Method::Payload => "payload",
        }
    }
}

/// USSD TLVs of a submit.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct UssdInfo {
    pub(super) op: u8,
    pub(super) session: Option<u16>,
}

/// One message (or incomplete set of parts) as `GET /mt` lists it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct MtEntry {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) text: String,
    pub(super) data_coding: u8,
    pub(super) coding: &'static str,
    pub(super) parts: usize,
    pub(super) total_parts: usize,
    pub(super) method: &'static str,
    pub(super) message_ids: Vec<String>,
    pub(super) registered_delivery: u8,
    pub(super) warnings: Vec<String>,
    pub(super) bind: u64,
    pub(super) incomplete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ussd: Option<UssdInfo>,
}

pub(super) struct PartRec {
    pub(super) data_coding: u8,
    pub(super) body: Vec<u8>,
    pub(super) message_id: String,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct PartKey {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) method: Method,
    pub(super) reference: u16,
    pub(super) total: u8,
}

/// A message being put together (or a single one on its way to the list).
pub(super) struct Assembly {
    pub(super) first_at: Instant,
    pub(super) bind: u64,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) method: Method,
    pub(super) registered_delivery: u8,
    pub(super) ussd: Option<UssdInfo>,
    pub(super) parts: Vec<Option<PartRec>>,
    pub(super) count: usize,
    pub(super) max_seq: u8,
    pub(super) out_of_order: bool,
    pub(super) duplicates: BTreeSet<u8>,
    pub(super) warnings: Vec<String>,
}

impl Assembly {
    pub(super) fn finish(self, incomplete: bool) -> MtEntry {
        let present: Vec<(usize, &PartRec)> =
            self.parts.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (i + 1, p))).collect();
        let mut warnings = self.warnings.clone();
        if self.out_of_order {
            warnings.push("parts arrived out of order".into());
        }
        for n in &self.duplicates {
            warnings.push(format!("part {n} received twice"));
        }
        let data_coding = present.first().map_or(0, |(_, p)| p.data_coding);
        for (n, p) in &present {
            let high_surrogate_last =
                p.body.len() % 2 == 0 && matches!(p.body.as_slice(), [.., 0xD8..=0xDB, _]);
            match Coding::from_data_coding(p.data_coding) {
                Some(Coding::Ucs2) if high_surrogate_last => {
                    warnings.push(format!("part {n} ends inside a surrogate pair"))
                }
                Some(Coding::Gsm7) if p.body.iter().rev().take_while(|o| **o == 0x1B).count() % 2 == 1 => {
                    warnings.push(format!("part {n} ends inside an escape pair"));
                }
                _ => {}
            }
        }
        let mixed = present.iter().any(|(_, p)| p.data_coding != data_coding);
        let (text, bad, is_text) = if mixed {
            warnings.push("mixed coding".into());
            let mut out = (String::new(), 0, true);
            for (_, p) in &present {
                let (s, bad, t) = decode_any(&p.body, p.data_coding);
                out.0.push_str(&s);
                out.1 += bad;
                out.2 &= t;
            }
            out
        } else {
            let octets: Vec<u8> = present.iter().flat_map(|(_, p)| p.body.iter().copied()).collect();
            decode_any(&octets, data_coding)
        };
        if !is_text {
            warnings.push(format!("data_coding 0x{data_coding:02X} is not a text coding; shown as Latin-1"));
        }
        if bad > 0 {
            warnings.push(format!("{bad} octets could not be decoded"));
        }
        MtEntry {
            text,
            data_coding,
            coding: Coding::from_data_coding(data_coding).map_or("other", Coding::name),
            parts: present.len(),
            total_parts: self.parts.len(),
            method: self.method.name(),
            message_ids: present.iter().map(|(_, p)| p.message_id.clone()).collect(),
            registered_delivery: self.registered_delivery,
            warnings,
            bind: self.bind,
            incomplete,
            ussd: self.ussd,
            from: self.from,
            to: self.to,
        }
    }
}

pub(super) struct MtStore {
    pub(super) list: VecDeque<MtEntry>,
    /// Entries forgotten from the front since the last clear: `?since=N` counts from the first
    /// entry ever listed, so a poller never misses one or sees one twice.
    pub(super) evicted: u64,
    /// Sets still missing parts. A part is a duplicate only while its set is here: once complete,
    /// the same reference with the same octets is a new message (8-bit references wrap after
    /// 256, and benchmarks send one text again and again).
    pub(super) pending: HashMap<PartKey, Assembly>,
    pub(super) last_sweep: Instant,
}

impl MtStore {
    pub(super) fn new() -> Self {
        Self { list: VecDeque::new(), evicted: 0, pending: HashMap::new(), last_sweep: Instant::now() }
    }

    pub(super) fn push(&mut self, entry: MtEntry) {
        if self.list.len() >= MAX_MT {
            self.list.pop_front();
            self.evicted += 1;
        }
        self.list.push_back(entry);
    }

    /// List sets that waited too long as incomplete.
    pub(super) fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let old: Vec<PartKey> = self
            .pending
            .iter()
            .filter(|(_, a)| now.duration_since(a.first_at) >= ASSEMBLY_WAIT)
            .map(|(k, _)| k.clone())
            .collect();
        let mut expired: Vec<Assembly> = old.iter().filter_map(|k| self.pending.remove(k)).collect();
        expired.sort_by_key(|a| a.first_at);
        for a in expired {
            self.push(a.finish(true));
        }
    }

    pub(super) fn clear(&mut self) {
        *self = Self::new();
    }

    pub(super) fn add(&mut self, part: PartIn, now: Instant) {
        if now.duration_since(self.last_sweep) >= Duration::from_secs(1) {
            self.sweep(now);
        }
        let PartIn {
            from,
            to,
            method,
            concat,
            data_coding,
            registered_delivery,
            body,
            message_id,
            bind,
            ussd,
            warnings,
        } = part;
        let Some(c) = concat else {
            let rec = PartRec { data_coding, body, message_id };
            let a = Assembly {
                first_at: now,
                bind,
                from,
                to,
                method,
                registered_delivery,
                ussd,
                parts: vec![Some(rec)],
                count: 1,
                max_seq: 1,
                out_of_order: false,
                duplicates: BTreeSet::new(),
                warnings,
            };
            self.push(a.finish(false));
            return;
        };
        let key = PartKey { from, to, method, reference: c.reference, total: c.total };
        let slot = usize::from(c.seq) - 1;
        let rec = PartRec { data_coding, body, message_id };
        if let Some(a) = self.pending.get_mut(&key)
            && let Some(Some(existing)) = a.parts.get(slot)
        {
            if existing.body == rec.body && existing.data_coding == rec.data_coding {
                a.duplicates.insert(c.seq);
                return;
            }
            // The same reference reused for another message: list the old set as it is.
            if let Some(old) = self.pending.remove(&key) {
                self.push(old.finish(true));
            }
        }
        let a = self.pending.entry(key.clone()).or_insert_with(|| Assembly {
            first_at: now,
            bind,
            from: key.from.clone(),
            to: key.to.clone(),
            method,
            registered_delivery,
            ussd,
            parts: (0..c.total).map(|_| None).collect(),
            count: 0,
            max_seq: 0,
            out_of_order: false,
            duplicates: BTreeSet::new(),
            warnings: Vec::new(),
        });
        for w in warnings {
            if !a.warnings.contains(&w) {
                a.warnings.push(w);
            }
        }
        if c.seq < a.max_seq {
            a.out_of_order = true;
        }
        a.max_seq = a.max_seq.max(c.seq);
        if let Some(s) = a.parts.get_mut(slot) {
            *s = Some(rec);
            a.count += 1;
        }
        if a.count == a.parts.len()
            && let Some(done) = self.pending.remove(&key)
        {
            self.push(done.finish(false));
        }
    }
}

/// One accepted `submit_sm`, classified.
pub(super) struct PartIn {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) method: Method,
    pub(super) concat: Option<Concat>,
    pub(super) data_coding: u8,
    pub(super) registered_delivery: u8,
    pub(super) body: Vec<u8>,
    pub(super) message_id: String,
    pub(super) bind: u64,
    pub(super) ussd: Option<UssdInfo>,
    pub(super) warnings: Vec<String>,
}

/// Which concatenation IE a user data header holds (the last one, as `text::read_header` reads).
pub(super) fn concat_iei(octets: &[u8]) -> Option<u8> {
    let len = usize::from(*octets.first()?);
    let mut ies = octets.get(1..1 + len)?;
    let mut found = None;
    while let [iei, n, rest @ ..] = ies {
        let n = usize::from(*n);
        if rest.len() < n {
            break;
        }
        if (*iei == 0x00 && n == 3) || (*iei == 0x08 && n == 4) {
            found = Some(*iei);
        }
        ies = &rest[n..];
    }
    found
}

pub(super) fn record_mt(shared: &Shared, mut sm: Sm, message_id: String, bind: u64) {
    let mut warnings = Vec::new();
    let ussd = sm
        .tlv(tag::USSD_SERVICE_OP)
        .and_then(|v| v.first().copied())
        .map(|op| UssdInfo { op, session: sm.tlv_int(tag::ITS_SESSION_INFO) });
    let payload =
        sm.tlvs.iter().position(|t| t.tag == tag::MESSAGE_PAYLOAD).map(|i| sm.tlvs.swap_remove(i).value);
    let (mut method, octets) = match payload {
        Some(p) => (Method::Payload, p),
        None => (Method::Single, std::mem::take(&mut sm.short_message)),
    };
    let mut concat = None;
    let body = if sm.udhi() {
        match text::read_header(&octets) {
            Ok(h) => {
                if method == Method::Single
                    && let Some(c) = h.concat
                {
                    concat = Some(c);
                    method = if concat_iei(&octets) == Some(0x08) { Method::Udh16 } else { Method::Udh8 };
                }
                h.body.to_vec()
            }
            Err(e) => {
                warnings.push(format!("user data header: {e}"));
                octets
            }
        }
    } else {
        octets
    };
    if method == Method::Single
        && let (Some(reference), Some(total), Some(seq)) = (
            sm.tlv_int(tag::SAR_MSG_REF_NUM),
            sm.tlv_int(tag::SAR_TOTAL_SEGMENTS),
            sm.tlv_int(tag::SAR_SEGMENT_SEQNUM),
        )
    {
        method = Method::Sar;
        // Out of range reads as 0, which is refused below with the rest.
        concat = Some(Concat {
            reference,
            total: u8::try_from(total).unwrap_or(0),
            seq: u8::try_from(seq).unwrap_or(0),
        });
    }
    if let Some(c) = concat
        && (c.total == 0 || c.seq == 0 || c.seq > c.total)
    {
        warnings.push(format!("concatenation says part {} of {}", c.seq, c.total));
        concat = None;
    }
    let part = PartIn {
        from: std::mem::take(&mut sm.source_addr),
        to: std::mem::take(&mut sm.destination_addr),
        method,
        concat,
        data_coding: sm.data_coding,
        registered_delivery: sm.registered_delivery,
        body,
        message_id,
        bind,
        ussd,
        warnings,
    };
    lock(&shared.mt).add(part, Instant::now());
}
