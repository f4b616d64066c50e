//! SMS text on the SMPP wire: the codings (`data_coding`), which one a message needs, and long
//! messages split into parts and put back together.
//!
//! No crate does all of this (the candidates encode only, pack septets, or lose emoji: see
//! `smpp.md`), so it is ours, and tested with vectors below.
//!
//! - **GSM 03.38** default alphabet with its extension table (`{`, `€`, …: two septets, `ESC`
//!   then the code), one septet per octet (unpacked, as SMPP carries it; the SMSC packs).
//! - **IA5/ASCII** and **Latin-1** one octet per character.
//! - **UCS-2**, written as UTF-16BE with surrogate pairs, so emoji survive (handsets read it so).
//!
//! A part boundary never falls inside an escape pair or a surrogate pair: a character that does
//! not fit whole goes to the next part. Parts hold 153 septets, 134 octets or 67 UTF-16 units
//! with an 8-bit concatenation reference (152, 133, 66 with a 16-bit one); a message that fits
//! one SMS (160, 140, 70) is sent whole.

/// A `data_coding` this transport speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// GSM 03.38 default alphabet, unpacked (`data_coding` 0, the SMSC default).
    Gsm7,
    /// IA5 / ASCII (`data_coding` 1).
    Ascii,
    /// ISO-8859-1 (`data_coding` 3).
    Latin1,
    /// UCS-2, as UTF-16BE (`data_coding` 8).
    Ucs2,
}

impl Coding {
    /// The `data_coding` octet.
    pub fn data_coding(self) -> u8 {
        match self {
            Coding::Gsm7 => 0x00,
            Coding::Ascii => 0x01,
            Coding::Latin1 => 0x03,
            Coding::Ucs2 => 0x08,
        }
    }

    /// The coding of a `data_coding` octet, if it is text we read. Classes with a message class
    /// (0xF0–0xF7: bit 2 says 8-bit) map to GSM or Latin-1.
    pub fn from_data_coding(dc: u8) -> Option<Coding> {
        match dc {
            0x00 => Some(Coding::Gsm7),
            0x01 => Some(Coding::Ascii),
            0x03 => Some(Coding::Latin1),
            0x08 => Some(Coding::Ucs2),
            0xF0..=0xF3 => Some(Coding::Gsm7),
            0xF4..=0xF7 => Some(Coding::Latin1),
            _ => None,
        }
    }

    /// Its name in config, `helper_metadata` and the fake SMSC's listing.
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gsm7 => "gsm7",
            Coding::Ascii => "ascii",
            Coding::Latin1 => "latin1",
            Coding::Ucs2 => "ucs2",
        }
    }

    /// The coding named `name` (`gsm7`, `ascii`, `latin1`, `ucs2`).
    pub fn from_name(name: &str) -> Option<Coding> {
        [Coding::Gsm7, Coding::Ascii, Coding::Latin1, Coding::Ucs2].into_iter().find(|c| c.name() == name)
    }

    /// Units (septets, octets, UTF-16 units) in one whole message, and in one part with an 8-bit
    /// and a 16-bit concatenation reference.
    fn limits(self) -> (usize, usize, usize) {
        match self {
            Coding::Gsm7 | Coding::Ascii => (160, 153, 152),
            Coding::Latin1 => (140, 134, 133),
            Coding::Ucs2 => (70, 67, 66),
        }
    }
}

/// Why a text cannot be written in a coding, or split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A character the coding has no code for.
    #[error("`{}` (U+{:04X}) cannot be written in {}", .ch.escape_debug(), u32::from(*.ch), .coding.name())]
    Unrepresentable {
        /// The character.
        ch: char,
        /// The coding asked for.
        coding: Coding,
    },
    /// More parts than a concatenation header can number.
    #[error("the message needs {0} parts; at most 255 can be concatenated")]
    TooLong(usize),
}

const ESC: u8 = 0x1B;

/// GSM 03.38 default alphabet, by code (0x1B is the escape to the extension table).
const GSM_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: (code after `ESC`, character).
const GSM_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// The septets of `ch` in GSM 03.38: one, or `ESC` and one.
fn gsm_septets(ch: char) -> Option<(u8, Option<u8>)> {
    if ch != '\u{1B}'
        && let Some(i) = GSM_BASIC.iter().position(|c| *c == ch)
    {
        return Some((i as u8, None));
    }
    GSM_EXTENSION.iter().find(|(_, c)| *c == ch).map(|(code, _)| (ESC, Some(*code)))
}

/// What `ch` costs in `coding`'s units, if it can be written at all.
fn cost(ch: char, coding: Coding) -> Option<usize> {
    match coding {
        Coding::Gsm7 => gsm_septets(ch).map(|(_, ext)| if ext.is_some() { 2 } else { 1 }),
        Coding::Ascii => ch.is_ascii().then_some(1),
        Coding::Latin1 => (u32::from(ch) <= 0xFF).then_some(1),
        Coding::Ucs2 => Some(ch.len_utf16()),
    }
}

/// `text` as an SMS can carry it: line breaks (LF, CR, FF) kept, a tab sent as a space, and every
/// other control character (NUL, the other C0 controls, DEL, C1) sent as `?`, with the number
/// replaced. Handsets and SMSCs read a NUL as the end of the text and render controls as
/// nothing or garbage; `?` exists in every coding, so a stray control character never forces
/// UCS-2 (halving what a part holds) or a refusal. The message model carries the text as it is;
/// this is the SMPP wire's own rule.
pub fn for_sms(text: &str) -> (std::borrow::Cow<'_, str>, usize) {
    let odd = |c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\u{0C}');
    if !text.chars().any(odd) {
        return (std::borrow::Cow::Borrowed(text), 0);
    }
    let mut replaced = 0;
    let out = text
        .chars()
        .map(|c| match c {
            '\t' => ' ',
            c if odd(c) => {
                replaced += 1;
                '?'
            }
            c => c,
        })
        .collect();
    (std::borrow::Cow::Owned(out), replaced)
}

/// The coding a message needs: GSM 03.38 if every character has a code there, else UCS-2.
pub fn choose(text: &str) -> Coding {
    if text.chars().all(|c| gsm_septets(c).is_some()) { Coding::Gsm7 } else { Coding::Ucs2 }
}

/// `text` in `coding`, or the first character it cannot carry.
pub fn encode(text: &str, coding: Coding) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::with_capacity(text.len() * if coding == Coding::Ucs2 { 2 } else { 1 });
    for ch in text.chars() {
        let bad = || TextError::Unrepresentable { ch, coding };
        match coding {
            Coding::Gsm7 => {
                let (a, b) = gsm_septets(ch).ok_or_else(bad)?;
                out.push(a);
                out.extend(b);
            }
            Coding::Ascii if ch.is_ascii() => out.push(ch as u8),
            Coding::Latin1 if u32::from(ch) <= 0xFF => out.push(u32::from(ch) as u8),
            Coding::Ucs2 => {
                let mut units = [0u16; 2];
                for u in ch.encode_utf16(&mut units) {
                    out.extend_from_slice(&u.to_be_bytes());
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// Octets in `coding` as text. What cannot be read (an octet above 0x7F in a 7-bit coding, a
/// lone surrogate, an odd trailing octet) becomes U+FFFD, and the count of those is returned
/// too, so a caller can warn. An escape before a code the extension table lacks reads as that
/// code's basic character, as 3GPP TS 23.038 asks.
pub fn decode(octets: &[u8], coding: Coding) -> (String, usize) {
    let mut bad = 0;
    let text = match coding {
        Coding::Gsm7 => {
            let mut s = String::with_capacity(octets.len());
            let mut it = octets.iter().copied();
            while let Some(o) = it.next() {
                let code = if o == ESC {
                    match it.next() {
                        Some(next) => match GSM_EXTENSION.iter().find(|(c, _)| *c == next) {
                            Some((_, ch)) => {
                                s.push(*ch);
                                continue;
                            }
                            None => next,
                        },
                        // A trailing escape carries nothing.
                        None => break,
                    }
                } else {
                    o
                };
                match GSM_BASIC.get(usize::from(code)) {
                    Some(ch) if code != ESC => s.push(*ch),
                    _ => {
                        bad += 1;
                        s.push('\u{FFFD}');
                    }
                }
            }
            s
        }
        Coding::Ascii => octets
            .iter()
            .map(|o| {
                if o.is_ascii() {
                    char::from(*o)
                } else {
                    bad += 1;
                    '\u{FFFD}'
                }
            })
            .collect(),
        Coding::Latin1 => octets.iter().map(|o| char::from(*o)).collect(),
        Coding::Ucs2 => {
            if octets.len() % 2 == 1 {
                bad += 1;
            }
            let units = octets.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
            let mut s: String = char::decode_utf16(units)
                .map(|r| {
                    r.unwrap_or_else(|_| {
                        bad += 1;
                        '\u{FFFD}'
                    })
                })
                .collect();
            if octets.len() % 2 == 1 {
                s.push('\u{FFFD}');
            }
            s
        }
    };
    (text, bad)
}

/// How a long message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Parts with a user data header, concatenation IE 0x00 (8-bit reference).
    Udh8,
    /// Parts with a user data header, concatenation IE 0x08 (16-bit reference).
    Udh16,
    /// Parts numbered with the `sar_*` TLVs; the SMSC writes the header.
    Sar,
    /// One `submit_sm` with the whole text in `message_payload`.
    Payload,
}

/// One `submit_sm`'s worth of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `short_message` (or, for [`Split::Payload`], `message_payload`): the header, if any,
    /// then the text's octets.
    pub octets: Vec<u8>,
    /// `esm_class` must carry UDHI (0x40): `octets` start with a user data header.
    pub udhi: bool,
    /// The SAR TLVs for this part.
    pub sar: Option<Concat>,
    /// `octets` go in `message_payload`, not `short_message`.
    pub payload: bool,
}

/// Where a part sits in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    /// The message's reference, shared by its parts.
    pub reference: u16,
    /// How many parts.
    pub total: u8,
    /// This part's number, from 1.
    pub seq: u8,
}

/// `text` in `coding` as the `submit_sm`s that carry it: one if it fits a single SMS (or
/// `split` is [`Split::Payload`]), else parts numbered under `reference` (its low 8 bits for
/// [`Split::Udh8`]). No part boundary falls inside a character.
pub fn split(text: &str, coding: Coding, split: Split, reference: u16) -> Result<Vec<Part>, TextError> {
    let (whole, per8, per16) = coding.limits();
    let mut total_cost = 0;
    for ch in text.chars() {
        total_cost += cost(ch, coding).ok_or(TextError::Unrepresentable { ch, coding })?;
    }
    if total_cost <= whole || split == Split::Payload {
        return Ok(vec![Part {
            octets: encode(text, coding)?,
            udhi: false,
            sar: None,
            payload: split == Split::Payload && total_cost > whole,
        }]);
    }
    let per = if split == Split::Udh16 { per16 } else { per8 };
    // Cut between characters: each part as full as a whole character allows.
    let mut chunks: Vec<&str> = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, ch) in text.char_indices() {
        let c = cost(ch, coding).unwrap_or(1);
        if used + c > per {
            chunks.push(&text[start..i]);
            (start, used) = (i, 0);
        }
        used += c;
    }
    chunks.push(&text[start..]);
    let total = u8::try_from(chunks.len()).map_err(|_| TextError::TooLong(chunks.len()))?;
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let concat = Concat { reference, total, seq: i as u8 + 1 };
            let body = encode(chunk, coding)?;
            Ok(match split {
                Split::Udh8 | Split::Udh16 => {
                    let mut octets = udh(concat, split == Split::Udh16);
                    octets.extend_from_slice(&body);
                    Part { octets, udhi: true, sar: None, payload: false }
                }
                Split::Sar => Part { octets: body, udhi: false, sar: Some(concat), payload: false },
                Split::Payload => unreachable!("sent whole above"),
            })
        })
        .collect()
}

/// A user data header holding one concatenation IE.
fn udh(c: Concat, wide: bool) -> Vec<u8> {
    if wide {
        let [hi, lo] = c.reference.to_be_bytes();
        vec![6, 0x08, 4, hi, lo, c.total, c.seq]
    } else {
        vec![5, 0x00, 3, c.reference as u8, c.total, c.seq]
    }
}

/// A user data header read from the front of `short_message` (UDHI set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// The concatenation IE (0x00 or 0x08), wherever it sits among the others.
    pub concat: Option<Concat>,
    /// The other IEs, as (identifier, data), kept for whoever wants them.
    pub others: Vec<(u8, &'a [u8])>,
    /// The text's octets after the header.
    pub body: &'a [u8],
}

/// Why a user data header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header says it is longer than the message.
    #[error("the user data header says {said} octets, but only {have} follow")]
    Short {
        /// The header's length octet.
        said: usize,
        /// Octets after it.
        have: usize,
    },
    /// An IE runs past the header's end.
    #[error("information element 0x{iei:02X} runs past the end of the user data header")]
    Overrun {
        /// Its identifier.
        iei: u8,
    },
}

/// Read the user data header at the front of `octets`.
pub fn read_header(octets: &[u8]) -> Result<Header<'_>, HeaderError> {
    let Some((&len, rest)) = octets.split_first() else {
        return Err(HeaderError::Short { said: 1, have: 0 });
    };
    let len = usize::from(len);
    if rest.len() < len {
        return Err(HeaderError::Short { said: len, have: rest.len() });
    }
    let (mut ies, body) = rest.split_at(len);
    let (mut concat, mut others) = (None, Vec::new());
    while let [iei, ie_len, tail @ ..] = ies {
        let n = usize::from(*ie_len);
        if tail.len() < n {
            return Err(HeaderError::Overrun { iei: *iei });
        }
        let (data, next) = tail.split_at(n);
        match (*iei, data) {
            (0x00, [r, total, seq]) => {
                concat = Some(Concat { reference: u16::from(*r), total: *total, seq: *seq })
            }
            (0x08, [hi, lo, total, seq]) => {
                concat = Some(Concat { reference: u16::from_be_bytes([*hi, *lo]), total: *total, seq: *seq })
            }
            _ => others.push((*iei, data)),
        }
        ies = next;
    }
    Ok(Header { concat, others, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm_vectors_both_ways() {
        assert_eq!(encode("Hello", Coding::Gsm7).unwrap(), b"Hello");
        assert_eq!(encode("@£$¥", Coding::Gsm7).unwrap(), [0x00, 0x01, 0x02, 0x03]);
        assert_eq!(encode("€{}", Coding::Gsm7).unwrap(), [0x1B, 0x65, 0x1B, 0x28, 0x1B, 0x29]);
        assert_eq!(encode("ΔΩ ñ à", Coding::Gsm7).unwrap(), [0x10, 0x15, 0x20, 0x7D, 0x20, 0x7F]);
        assert_eq!(decode(&[0x1B, 0x65, 0x00, 0x1B, 0x3C], Coding::Gsm7), ("€@[".into(), 0));
        // Every basic and extension character goes there and back.
        let all: String = GSM_BASIC
            .iter()
            .filter(|c| **c != '\u{1B}')
            .chain(GSM_EXTENSION.iter().map(|(_, c)| c))
            .collect();
        let octets = encode(&all, Coding::Gsm7).unwrap();
        assert_eq!(octets.len(), 127 + 2 * 10);
        assert_eq!(decode(&octets, Coding::Gsm7), (all, 0));
        let e = encode("ç", Coding::Gsm7).unwrap_err();
        assert_eq!(e.to_string(), "`ç` (U+00E7) cannot be written in gsm7");
        let e = encode("\u{1b}", Coding::Gsm7).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`\\u{1b}` (U+001B) cannot be written in gsm7",
            "a control is named, not written"
        );
    }

    #[test]
    fn an_sms_carries_controls_as_question_marks_and_keeps_its_coding() {
        assert_eq!(for_sms("plain"), (std::borrow::Cow::Borrowed("plain"), 0));
        let (text, n) = for_sms("nul\0bel\u{7}esc\u{1b}del\u{7f}c1\u{85}\ttab\nline\r\u{c}");
        assert_eq!((text.as_ref(), n), ("nul?bel?esc?del?c1? tab\nline\r\u{c}", 5));
        assert_eq!(choose(&text), Coding::Gsm7, "a stray control does not force UCS-2");
        assert_eq!(for_sms("\u{1F600}\0").0, "\u{1F600}?");
    }

    #[test]
    fn gsm_decoding_tolerates_what_sloppy_peers_send() {
        // Unknown escape: the basic character; trailing escape: nothing; high octet: U+FFFD.
        assert_eq!(decode(&[0x1B, 0x41, 0x42, 0x1B], Coding::Gsm7), ("AB".into(), 0));
        assert_eq!(decode(&[0x41, 0x80], Coding::Gsm7), ("A\u{FFFD}".into(), 1));
    }

    #[test]
    fn ucs2_is_utf16_big_endian_with_surrogate_pairs() {
        assert_eq!(encode("a😀", Coding::Ucs2).unwrap(), [0x00, 0x61, 0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(decode(&[0x00, 0x61, 0xD8, 0x3D, 0xDE, 0x00], Coding::Ucs2), ("a😀".into(), 0));
        assert_eq!(
            decode(&[0xD8, 0x3D, 0x00, 0x61, 0x00], Coding::Ucs2),
            ("\u{FFFD}a\u{FFFD}".into(), 2),
            "a lone surrogate and an odd octet"
        );
    }

    #[test]
    fn latin1_and_ascii() {
        assert_eq!(encode("café", Coding::Latin1).unwrap(), b"caf\xe9");
        assert_eq!(decode(b"caf\xe9", Coding::Latin1), ("café".into(), 0));
        assert!(encode("€", Coding::Latin1).is_err(), "€ is not in ISO-8859-1");
        assert_eq!(encode("hi", Coding::Ascii).unwrap(), b"hi");
        assert_eq!(decode(b"h\xe9", Coding::Ascii), ("h\u{FFFD}".into(), 1));
    }

    #[test]
    fn the_coding_is_gsm_when_it_can_be_else_ucs2() {
        assert_eq!(choose("Hello {world} €5"), Coding::Gsm7);
        assert_eq!(choose("héllo"), Coding::Gsm7, "é is in the GSM alphabet");
        assert_eq!(choose("ça"), Coding::Ucs2, "ç is not (only Ç)");
        assert_eq!(choose("hi 😀"), Coding::Ucs2);
        for c in [Coding::Gsm7, Coding::Ascii, Coding::Latin1, Coding::Ucs2] {
            assert_eq!(Coding::from_data_coding(c.data_coding()), Some(c));
            assert_eq!(Coding::from_name(c.name()), Some(c));
        }
        assert_eq!(Coding::from_data_coding(0x04), None, "binary is not text");
    }

    fn texts(parts: &[Part], coding: Coding) -> Vec<String> {
        parts
            .iter()
            .map(|p| decode(if p.udhi { read_header(&p.octets).unwrap().body } else { &p.octets }, coding).0)
            .collect()
    }

    #[test]
    fn a_message_that_fits_goes_whole() {
        let t = "a".repeat(160);
        let parts = split(&t, Coding::Gsm7, Split::Udh8, 7).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0], Part { octets: t.into_bytes(), udhi: false, sar: None, payload: false });
        let parts = split(&"😀".repeat(35), Coding::Ucs2, Split::Udh8, 7).unwrap();
        assert_eq!((parts.len(), parts[0].octets.len()), (1, 140), "35 emoji are 70 UTF-16 units");
    }

    #[test]
    fn parts_follow_the_spec_sizes() {
        let t = "a".repeat(161);
        let parts = split(&t, Coding::Gsm7, Split::Udh8, 0x1234).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&parts[0].octets[..6], [5, 0x00, 3, 0x34, 2, 1], "8-bit reference, 2 parts, part 1");
        assert_eq!((parts[0].octets.len() - 6, parts[1].octets.len() - 6), (153, 8));
        assert!(parts.iter().all(|p| p.udhi && p.sar.is_none()));
        let parts = split(&t, Coding::Gsm7, Split::Udh16, 0x1234).unwrap();
        assert_eq!(&parts[1].octets[..7], [6, 0x08, 4, 0x12, 0x34, 2, 2]);
        assert_eq!(parts[0].octets.len() - 7, 152);
        let parts = split(&"é".repeat(71), Coding::Ucs2, Split::Udh8, 1).unwrap();
        assert_eq!(parts[0].octets.len() - 6, 134, "67 UTF-16 units");
        let parts = split(&"x".repeat(141), Coding::Latin1, Split::Sar, 9).unwrap();
        assert_eq!((parts[0].octets.len(), parts[0].udhi), (134, false));
        assert_eq!(parts[1].sar, Some(Concat { reference: 9, total: 2, seq: 2 }));
        let parts = split(&"x".repeat(1000), Coding::Gsm7, Split::Payload, 9).unwrap();
        assert_eq!((parts.len(), parts[0].payload, parts[0].octets.len()), (1, true, 1000));
    }

    #[test]
    fn no_part_ends_inside_an_escape_or_a_surrogate_pair() {
        // 152 septets, then a two-septet € that does not fit the one septet left: it opens part 2.
        let t = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let parts = split(&t, Coding::Gsm7, Split::Udh8, 1).unwrap();
        assert_eq!(texts(&parts, Coding::Gsm7), ["a".repeat(152), format!("€{}", "b".repeat(10))]);
        assert_ne!(parts[0].octets.last(), Some(&ESC));
        // 66 units, then an emoji (2 units) that does not fit the one unit left.
        let t = format!("{}😀zzzzz", "a".repeat(66));
        let parts = split(&t, Coding::Ucs2, Split::Udh8, 1).unwrap();
        assert_eq!(texts(&parts, Coding::Ucs2), ["a".repeat(66), "😀zzzzz".to_owned()]);
    }

    #[test]
    fn four_hundred_characters_with_emoji_split_and_join_exactly() {
        let t: String =
            (0..400).map(|i| if i % 9 == 0 { '😀' } else { char::from(b'a' + (i % 26) as u8) }).collect();
        let coding = choose(&t);
        assert_eq!(coding, Coding::Ucs2);
        for method in [Split::Udh8, Split::Udh16, Split::Sar] {
            let parts = split(&t, coding, method, 42).unwrap();
            assert!(parts.len() >= 7, "{method:?}: {}", parts.len());
            assert_eq!(texts(&parts, coding).concat(), t, "{method:?}");
        }
    }

    #[test]
    fn a_header_is_read_among_other_elements() {
        // A national language shift IE (0x25) first, then a 16-bit concatenation IE.
        let octets = [9, 0x25, 1, 0x01, 0x08, 4, 0xAB, 0xCD, 3, 2, b'h', b'i'];
        let h = read_header(&octets).unwrap();
        assert_eq!(h.concat, Some(Concat { reference: 0xABCD, total: 3, seq: 2 }));
        assert_eq!(h.others, [(0x25, &[0x01][..])]);
        assert_eq!(h.body, b"hi");
        assert_eq!(read_header(&[9, 0x00, 3]), Err(HeaderError::Short { said: 9, have: 2 }));
        assert_eq!(read_header(&[3, 0x00, 3, 1]), Err(HeaderError::Overrun { iei: 0x00 }));
        assert!(split(&"a".repeat(153 * 256), Coding::Gsm7, Split::Udh8, 1).is_err(), "256 parts");
    }
}
