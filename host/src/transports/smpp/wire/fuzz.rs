//! Property tests ("fuzzing", with proptest, bounded so that every `cargo test` runs them) of the
//! framing and decode. [`Codec`]'s promise is that no input takes the link down: every input
//! either yields frames or waits for more octets; it never panics, never errors, never holds a
//! whole maximum frame (`max_len`) of octets it has not consumed, and after any garbage frame
//! with a sane `command_length` the next well-formed PDU still decodes.
//!
//! - The corpus is `corpus/*.bin`, one frame a file: PDUs the transport sends and reads, as
//!   [`encode`] writes them, and a few made by hand (`bad_*.bin`, and a `bind_transceiver_resp`
//!   with a TLV). All of them come from [`seeds`]; after changing it, write them again with
//!   `cargo test --release -p vumi-host --lib regenerate_corpus -- --ignored` and commit them.
//!   Any other `.bin` dropped there (a capture from a real SMSC, say) is fuzzed as well.
//! - Cases per property: `VUMI_FUZZ_CASES` (default 2000: well under a second for them all in a
//!   release build, which is what CI runs). A longer run: `VUMI_FUZZ_CASES=100000 cargo test --release -p vumi-host --lib wire::fuzz`.
//! - A failure is shrunk and its seed appended to `corpus/proptest-regressions.txt`: commit that
//!   file, and every later run replays it before its random cases.

use std::sync::OnceLock;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::FileFailurePersistence;

use super::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/transports/smpp/wire/corpus");
const REGRESSIONS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/src/transports/smpp/wire/corpus/proptest-regressions.txt");

fn config() -> ProptestConfig {
    let cases = std::env::var("VUMI_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The corpus.

/// A frame from its header fields and body, `command_length` counted.
fn frame(command_id: u32, command_status: u32, sequence: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&((HEADER_LEN + body.len()) as u32).to_be_bytes());
    for word in [command_id, command_status, sequence] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

fn sm(
    source_addr: &str,
    destination_addr: &str,
    esm_class: u8,
    data_coding: u8,
    short_message: &[u8],
    tlvs: Vec<Tlv>,
) -> Box<Sm> {
    Box::new(Sm {
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: source_addr.into(),
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: destination_addr.into(),
        esm_class,
        data_coding,
        short_message: short_message.to_vec(),
        tlvs,
        ..Sm::default()
    })
}

/// The corpus, by file name: what [`regenerate_corpus`] writes.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let enc = |p: Pdu| encode(&p).expect("a seed encodes");
    let bind = Bind {
        system_id: "smppclient1".into(),
        password: "password".into(),
        system_type: "VMA".into(),
        interface_version: 0x34,
        addr_ton: 1,
        addr_npi: 1,
        address_range: "^2782".into(),
    };
    let mut ucs2 = vec![0x05, 0x00, 0x03, 0x2A, 0x02, 0x01];
    ucs2.extend("Sawubona 👋 — ngiyabonga".encode_utf16().flat_map(u16::to_be_bytes));
    let receipt = |stat: &str, err: &str| {
        format!(
            "id:0A1B2C3D sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:{stat} err:{err} text:hello"
        )
    };
    let sar = vec![
        Tlv::new(tag::SAR_MSG_REF_NUM, vec![0x01, 0x2C]),
        Tlv::new(tag::SAR_TOTAL_SEGMENTS, vec![2]),
        Tlv::new(tag::SAR_SEGMENT_SEQNUM, vec![1]),
    ];
    let payload = "a long message carried in message_payload rather than short_message. ".repeat(6);
    let receipt_tlvs = vec![
        Tlv::c_string(tag::RECEIPTED_MESSAGE_ID, "0A1B2C3D"),
        Tlv::new(tag::MESSAGE_STATE, vec![2]),
        Tlv::new(tag::NETWORK_ERROR_CODE, vec![3, 0, 0]),
    ];
    let mut ussd = sm(
        "27820000001",
        "*120#",
        0,
        0x0F,
        b"*120*1#",
        vec![Tlv::new(tag::USSD_SERVICE_OP, vec![0x01]), Tlv::new(tag::ITS_SESSION_INFO, vec![0x12, 0x34])],
    );
    ussd.service_type = "USSD".into();

    // Made by hand: a bind_transceiver_resp with sc_interface_version (0x0210), which encode
    // never writes.
    let mut resp_tlv = b"SMSC\0".to_vec();
    resp_tlv.extend_from_slice(&[0x02, 0x10, 0x00, 0x01, 0x34]);
    // A submit_sm whose last TLV claims 10 octets and has 3 before the frame ends.
    let mut truncated =
        enc(Pdu::request(11, Body::SubmitSm(sm("27820000001", "27830000002", 0, 0, b"hi", sar.clone()))));
    truncated.extend_from_slice(&[0x04, 0x24, 0x00, 0x0A, b'a', b'b', b'c']);
    let len = truncated.len() as u32;
    truncated[..4].copy_from_slice(&len.to_be_bytes());
    // A submit_sm whose source_addr has no NUL before the frame ends.
    let no_nul = frame(id::SUBMIT_SM, 0, 42, b"\0\x01\x012782000000000000000000000000");
    // An enquire_link whose command_length says 8: its 16 octets are taken as the header.
    let mut short = frame(id::ENQUIRE_LINK, 0, 15, b"");
    short[3] = 8;
    vec![
        ("bind_transceiver.bin", enc(Pdu::request(1, Body::Bind(BindKind::Transceiver, bind.clone())))),
        ("bind_transmitter.bin", enc(Pdu::request(1, Body::Bind(BindKind::Transmitter, bind.clone())))),
        ("bind_receiver.bin", enc(Pdu::request(1, Body::Bind(BindKind::Receiver, bind)))),
        (
            "bind_transceiver_resp.bin",
            enc(Pdu::response(1, status::OK, Body::BindResp(BindKind::Transceiver, "SMSC".into()))),
        ),
        ("bind_transceiver_resp_tlv.bin", frame(id::BIND_TRANSCEIVER | id::RESP, status::OK, 1, &resp_tlv)),
        (
            "bind_receiver_resp_error.bin",
            enc(Pdu::response(1, status::RBINDFAIL, Body::BindResp(BindKind::Receiver, String::new()))),
        ),
        (
            "submit_sm_udh_ucs2.bin",
            enc(Pdu::request(2, Body::SubmitSm(sm("27820000001", "27830000002", 0x40, 0x08, &ucs2, vec![])))),
        ),
        (
            "submit_sm_sar.bin",
            enc(Pdu::request(3, Body::SubmitSm(sm("vumi", "27830000002", 0, 0, b"part one of two, ", sar)))),
        ),
        (
            "submit_sm_payload.bin",
            enc(Pdu::request(
                4,
                Body::SubmitSm(sm(
                    "27820000001",
                    "27830000002",
                    0,
                    0,
                    b"",
                    vec![Tlv::new(tag::MESSAGE_PAYLOAD, payload)],
                )),
            )),
        ),
        ("submit_sm_resp.bin", enc(Pdu::response(4, status::OK, Body::SubmitSmResp("0A1B2C3D".into())))),
        (
            "deliver_sm_mo.bin",
            enc(Pdu::request(
                5,
                Body::DeliverSm(sm("27830000002", "1234", 0, 0, b"hello from a phone", vec![])),
            )),
        ),
        (
            "deliver_sm_receipt_tlv.bin",
            enc(Pdu::request(
                6,
                Body::DeliverSm(sm(
                    "27830000002",
                    "1234",
                    0x04,
                    0,
                    receipt("DELIVRD", "000").as_bytes(),
                    receipt_tlvs,
                )),
            )),
        ),
        (
            "deliver_sm_receipt_text.bin",
            enc(Pdu::request(
                7,
                Body::DeliverSm(sm(
                    "27830000002",
                    "1234",
                    0x04,
                    0,
                    receipt("UNDELIV", "001").as_bytes(),
                    vec![],
                )),
            )),
        ),
        ("deliver_sm_ussd.bin", enc(Pdu::request(8, Body::DeliverSm(ussd)))),
        ("deliver_sm_resp.bin", enc(Pdu::response(8, status::OK, Body::DeliverSmResp))),
        ("enquire_link.bin", enc(Pdu::request(9, Body::EnquireLink))),
        ("enquire_link_resp.bin", enc(Pdu::response(9, status::OK, Body::EnquireLinkResp))),
        ("unbind.bin", enc(Pdu::request(10, Body::Unbind))),
        ("unbind_resp.bin", enc(Pdu::response(10, status::OK, Body::UnbindResp))),
        ("generic_nack.bin", enc(Pdu::response(12, status::RINVCMDID, Body::GenericNack))),
        (
            "header_only_error_resp.bin",
            enc(Pdu::response(13, status::RTHROTTLED, Body::SubmitSmResp(String::new()))),
        ),
        ("unknown_command.bin", enc(Pdu::request(14, Body::Other(0x0000_7777)))),
        ("bad_tlv_truncated.bin", truncated),
        ("bad_cstring_no_nul.bin", no_nul),
        ("bad_command_length_8.bin", short),
        // A submit_sm with no body at all (once read as an unknown command).
        ("bad_submit_sm_no_body.bin", frame(id::SUBMIT_SM, 0, 16, b"")),
    ]
}

/// Writes [`seeds`] into `corpus/` (run with `--ignored` after changing them).
#[test]
#[ignore]
fn regenerate_corpus() {
    std::fs::create_dir_all(CORPUS).unwrap();
    for (name, octets) in seeds() {
        std::fs::write(format!("{CORPUS}/{name}"), octets).unwrap();
    }
}

/// Every `.bin` in `corpus/`, by name.
fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS_FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CORPUS_FILES.get_or_init(|| {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(CORPUS)
            .expect("the corpus directory")
            .map(|e| e.expect("a corpus entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).expect("a corpus file"),
                )
            })
            .collect();
        files.sort();
        files
    })
}

/// The corpus files that decode, alone, to one PDU: the well-formed ones.
fn good_seeds() -> &'static [(Vec<u8>, Pdu)] {
    static GOOD: OnceLock<Vec<(Vec<u8>, Pdu)>> = OnceLock::new();
    GOOD.get_or_init(|| {
        corpus()
            .iter()
            .filter_map(|(_, octets)| match &run(4096, octets, &[]).ok()?.frames[..] {
                [Frame::Pdu(p)] => Some((octets.clone(), p.clone())),
                _ => None,
            })
            .collect()
    })
}

#[test]
fn the_corpus_holds_every_seed() {
    let on_disk: Vec<&str> = corpus().iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in seeds() {
        assert!(
            on_disk.contains(&name),
            "corpus/{name} is missing: run `cargo test --release -p vumi-host --lib regenerate_corpus -- --ignored`"
        );
    }
    assert!(good_seeds().len() >= 20, "most seeds are well formed");
}

// ---------------------------------------------------------------------------------------------
// Feeding a codec, and what must hold of every frame.

/// What one codec made of an input.
#[derive(Debug)]
struct Run {
    frames: Vec<Frame>,
    /// Octets left in the buffer, waiting for more.
    rest: Vec<u8>,
    /// Octets of an over-long frame still to skip.
    skipping: usize,
}

/// Feeds `input` to one codec in `chunks` (sizes, cycled; empty: all at once), taking every
/// frame after each chunk, and checks the promise after each.
fn run(max_len: usize, input: &[u8], chunks: &[usize]) -> Result<Run, TestCaseError> {
    let mut codec = Codec::new(max_len);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut sizes = chunks.iter().copied().filter(|&n| n > 0).cycle();
    let mut fed = 0;
    while fed < input.len() {
        let n = if chunks.is_empty() { input.len() } else { sizes.next().unwrap_or(input.len()) }
            .min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Err(e) => return Err(TestCaseError::fail(format!("decode returned an error: {e}"))),
                Ok(None) => break,
                Ok(Some(f)) => {
                    prop_assert!(
                        before - buf.len() >= HEADER_LEN.min(before),
                        "a frame took {} octets",
                        before - buf.len()
                    );
                    check(&f)?;
                    frames.push(f);
                    prop_assert!(frames.len() * HEADER_LEN <= fed, "more frames than headers");
                }
            }
        }
        // Waiting: less than a whole maximum frame held, and nothing while skipping.
        prop_assert!(
            buf.len() < codec.max_len,
            "waiting with {} octets held (max_len {})",
            buf.len(),
            codec.max_len
        );
        prop_assert!(
            codec.skipping == 0 || buf.is_empty(),
            "skipping {} with {} octets held",
            codec.skipping,
            buf.len()
        );
    }
    Ok(Run { frames, rest: buf.to_vec(), skipping: codec.skipping })
}

/// The commands [`Body`] has a variant for.
const MODELLED: [u32; 15] = [
    id::GENERIC_NACK,
    id::BIND_RECEIVER,
    id::BIND_RECEIVER | id::RESP,
    id::BIND_TRANSMITTER,
    id::BIND_TRANSMITTER | id::RESP,
    id::BIND_TRANSCEIVER,
    id::BIND_TRANSCEIVER | id::RESP,
    id::SUBMIT_SM,
    id::SUBMIT_SM | id::RESP,
    id::DELIVER_SM,
    id::DELIVER_SM | id::RESP,
    id::ENQUIRE_LINK,
    id::ENQUIRE_LINK | id::RESP,
    id::UNBIND,
    id::UNBIND | id::RESP,
];

/// What must hold of any frame: a bad one names its fault, every request among them is
/// answered with an error the peer can read; a PDU is one we could send back as it is.
fn check(f: &Frame) -> Result<(), TestCaseError> {
    match f {
        Frame::Bad(b) => {
            prop_assert!(!b.reason.is_empty());
            if b.command_id & id::RESP == 0 {
                prop_assert!(b.reply.is_some(), "a request is answered: {b:?}");
            }
            if let Some(reply) = &b.reply {
                prop_assert!(
                    reply.is_response() && reply.status != status::OK && reply.sequence == b.sequence,
                    "{b:?}"
                );
                prop_assert!(
                    reply.body == Body::GenericNack || reply.body.command_id() == b.command_id | id::RESP,
                    "{b:?}"
                );
                let octets = encode(reply)
                    .map_err(|e| TestCaseError::fail(format!("the reply does not encode: {e}")))?;
                let mut buf = BytesMut::from(&octets[..]);
                prop_assert_eq!(
                    Codec::new(4096).decode(&mut buf).ok().flatten(),
                    Some(Frame::Pdu(reply.clone()))
                );
            }
        }
        Frame::Pdu(p) => {
            // A command that has its own body comes out as that body (or as a bad frame owed its
            // own `_resp`), never as `Other`, which the link answers "unknown command".
            if let Body::Other(c) = p.body {
                prop_assert!(!MODELLED.contains(&c), "{} came out as Other", command_name(c));
            }
            // A PDU that decoded, encoded again, decodes to itself: when it encodes at all (a
            // received short_message of 255 octets does not), and is not an error response
            // (those are sent header-only, whatever body they came with).
            let error_response = p.is_response() && p.status != status::OK;
            if let (Ok(octets), false) = (encode(p), error_response) {
                let mut buf = BytesMut::from(&octets[..]);
                let again = Codec::new(octets.len()).decode(&mut buf).ok().flatten();
                prop_assert_eq!(again, Some(f.clone()), "re-encoded as {:02X?}", octets);
                prop_assert!(buf.is_empty());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// One edit of the octets.
#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index, usize),
    Truncate(Index),
    /// A copy of up to this many octets from there, inserted after them.
    Repeat(Index, usize),
}

impl Edit {
    fn apply(&self, v: &mut Vec<u8>) {
        match *self {
            Edit::Flip(i, bit) if !v.is_empty() => {
                let i = i.index(v.len());
                v[i] ^= 1 << bit;
            }
            Edit::Set(i, b) if !v.is_empty() => {
                let i = i.index(v.len());
                v[i] = b;
            }
            Edit::Insert(i, b) => v.insert(i.index(v.len() + 1), b),
            Edit::Delete(i, n) if !v.is_empty() => {
                let i = i.index(v.len());
                v.drain(i..(i + n).min(v.len()));
            }
            Edit::Truncate(i) => v.truncate(i.index(v.len() + 1)),
            Edit::Repeat(i, n) if !v.is_empty() => {
                let i = i.index(v.len());
                let copy = v[i..(i + n).min(v.len())].to_vec();
                let at = i + copy.len();
                v.splice(at..at, copy);
            }
            _ => {}
        }
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (any::<Index>(), 1usize..=8).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), 1usize..=32).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

/// A new `command_length`.
#[derive(Debug, Clone)]
enum Length {
    Is(u32),
    Plus(i32),
}

fn length() -> impl Strategy<Value = Length> {
    prop_oneof![
        (0u32..16).prop_map(Length::Is),
        (16u32..=600).prop_map(Length::Is),
        (-8i32..=8).prop_map(Length::Plus),
        any::<u32>().prop_map(Length::Is),
        Just(Length::Is(u32::MAX)),
    ]
}

/// Some corpus files end to end, some of their `command_length`s rewritten, then edited, then
/// maybe some junk after.
#[derive(Debug, Clone)]
struct Mutant {
    seeds: Vec<Index>,
    lengths: Vec<(Index, Length)>,
    edits: Vec<Edit>,
    tail: Vec<u8>,
}

impl Mutant {
    fn pristine(&self) -> bool {
        self.lengths.is_empty() && self.edits.is_empty() && self.tail.is_empty()
    }

    fn seeds(&self) -> impl Iterator<Item = &'static [u8]> + '_ {
        self.seeds.iter().map(|i| &i.get(corpus()).1[..])
    }

    fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for seed in self.seeds() {
            starts.push(out.len());
            out.extend_from_slice(seed);
        }
        for (which, length) in &self.lengths {
            let at = *which.get(&starts);
            let Some(word) = out.get_mut(at..at + 4) else { continue };
            let old = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            let new = match *length {
                Length::Is(n) => n,
                Length::Plus(d) => old.wrapping_add_signed(d),
            };
            word.copy_from_slice(&new.to_be_bytes());
        }
        for e in &self.edits {
            e.apply(&mut out);
        }
        out.extend_from_slice(&self.tail);
        out
    }
}

fn mutant() -> impl Strategy<Value = Mutant> {
    let tail = prop_oneof![3 => Just(Vec::new()), 1 => vec(any::<u8>(), 1..=40)];
    (vec(any::<Index>(), 1..=4), vec((any::<Index>(), length()), 0..=2), vec(edit(), 0..=6), tail)
        .prop_map(|(seeds, lengths, edits, tail)| Mutant { seeds, lengths, edits, tail })
}

fn max_len() -> impl Strategy<Value = usize> {
    prop_oneof![Just(4096usize), 16usize..=600]
}

fn chunks() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..=48, 1..=8)
}

/// Every `command_id` SMPP 3.4 defines, and some it does not.
fn command_id() -> impl Strategy<Value = u32> {
    let known: Vec<u32> = (0..=0x0103u32)
        .chain((0..=0x0103u32).map(|c| c | id::RESP))
        .filter(|&c| command_name(c) != "unknown")
        .collect();
    prop_oneof![3 => select(known), 1 => any::<u32>()]
}

/// An ASCII string without NUL, as C-octet strings hold.
fn ascii(max: usize) -> impl Strategy<Value = String> {
    vec(1u8..=0x7F, 0..=max).prop_map(|v| String::from_utf8(v).expect("ASCII"))
}

/// Every tag the decoder turns into a typed value (the rest come through as octets).
const TYPED: [u16; 64] = [
    0x0005, 0x0006, 0x0007, 0x0008, 0x000D, 0x000E, 0x000F, 0x0010, 0x0017, 0x0019, 0x001D, 0x001E, 0x0030,
    0x0201, 0x0202, 0x0203, 0x0204, 0x0205, 0x020A, 0x020B, 0x020C, 0x020D, 0x020E, 0x020F, 0x0210, 0x0302,
    0x0303, 0x0304, 0x0381, 0x0420, 0x0421, 0x0422, 0x0423, 0x0424, 0x0425, 0x0426, 0x0427, 0x0428, 0x0501,
    0x0600, 0x0601, 0x0602, 0x0603, 0x0604, 0x0605, 0x0606, 0x0607, 0x0608, 0x0609, 0x060A, 0x060B, 0x060D,
    0x060E, 0x060F, 0x0610, 0x0611, 0x0612, 0x0613, 0x1201, 0x1203, 0x1204, 0x130C, 0x1380, 0x1383,
];

/// Typed tags read as a fixed number of octets, whatever the TLV's length says, and given back
/// as they came for every value of that width.
const FIXED: [(u16, usize); 45] = [
    (0x0005, 1),
    (0x0006, 1),
    (0x0007, 1),
    (0x0008, 2),
    (0x000D, 1),
    (0x000E, 1),
    (0x000F, 1),
    (0x0010, 2),
    (0x0017, 4),
    (0x0019, 1),
    (0x0201, 1),
    (0x0204, 2),
    (0x0205, 1),
    (0x020A, 2),
    (0x020B, 2),
    (0x020C, 2),
    (0x020D, 1),
    (0x020E, 1),
    (0x020F, 1),
    (0x0210, 1),
    (0x0304, 1),
    (0x0420, 1),
    (0x0421, 1),
    (0x0422, 1),
    (0x0423, 3),
    (0x0425, 1),
    (0x0426, 1),
    (0x0427, 1),
    (0x0428, 1),
    (0x0501, 1),
    (0x0600, 1),
    (0x0601, 3),
    (0x0603, 1),
    (0x0604, 1),
    (0x0605, 3),
    (0x0607, 4),
    (0x0608, 1),
    (0x060F, 6),
    (0x0610, 6),
    (0x0611, 1),
    (0x1201, 1),
    (0x1203, 2),
    (0x130C, 1),
    (0x1380, 1),
    (0x1383, 2),
];

/// Typed tags read as a C-octet string up to its NUL: how many characters it may have (and the
/// network ids at least 6, or they need more octets after them than the frame may have).
const C_STRINGS: [(u16, usize, usize); 4] =
    [(0x001D, 0, 99), (0x001E, 0, 64), (0x060D, 6, 64), (0x060E, 6, 64)];

/// Typed tags read as whatever octets the TLV's length covers.
const OPAQUE: [u16; 5] = [0x0424, 0x0602, 0x0606, 0x060A, 0x060B];

/// A TLV that survives a round trip. Skipped, because they do not:
/// - a typed tag whose value is not the width its type reads ([`FIXED`]): the decoder reads the
///   type's width and the TLVs after it shift (so would a peer's, as [`Sm::tlvs`] says raw);
/// - a [`C_STRINGS`] tag without its NUL, or with a NUL inside: read up to the first NUL, and
///   a network id (0x060D, 0x060E) shorter than 6 characters when no octets follow it;
/// - `ms_msg_wait_facilities` (0x0030) and `callback_num_pres_ind` (0x0302): bits the spec
///   reserves are dropped;
/// - `source_subaddress`, `dest_subaddress` (0x0202, 0x0203), `callback_num_atag` (0x0303),
///   `callback_num` (0x0381), `broadcast_end_time` (0x0609), `dest_addr_np_information` and
///   `_country` (0x0612, 0x0613), `ms_validity` (0x1204): structured, with bounds checked.
fn tlv() -> impl Strategy<Value = Tlv> {
    let other =
        (any::<u16>().prop_filter("an untyped tag", |t| !TYPED.contains(t)), vec(any::<u8>(), 0..=100));
    prop_oneof![
        3 => other.prop_map(|(t, v)| Tlv::new(t, v)),
        2 => (select(FIXED.to_vec()), vec(any::<u8>(), 6)).prop_map(|((t, width), v)| Tlv::new(t, &v[..width])),
        1 => (select(C_STRINGS.to_vec()), ascii(99), "[0-9A-Za-z]{6}")
            .prop_map(|((t, min, max), s, pad)| Tlv::c_string(t, &format!("{pad}{s}")[6 - min..6 - min + (min + s.len()).min(max)])),
        1 => (select(OPAQUE.to_vec()), vec(any::<u8>(), 0..=100)).prop_map(|(t, v)| Tlv::new(t, v)),
        1 => select(TYPED.to_vec()).prop_map(|t| Tlv::new(t, Vec::new())),
    ]
}

fn random_sm() -> impl Strategy<Value = Sm> {
    (
        ascii(5),
        any::<[u8; 2]>(),
        ascii(20),
        any::<[u8; 2]>(),
        ascii(20),
        any::<[u8; 5]>(),
        vec(any::<u8>(), 0..=254),
        vec(tlv(), 0..=4),
    )
        .prop_map(
            |(
                service_type,
                [source_addr_ton, source_addr_npi],
                source_addr,
                [dest_addr_ton, dest_addr_npi],
                destination_addr,
                flags,
                short_message,
                tlvs,
            )| {
                let [esm_class, protocol_id, priority_flag, registered_delivery, data_coding] = flags;
                Sm {
                    service_type,
                    source_addr_ton,
                    source_addr_npi,
                    source_addr,
                    dest_addr_ton,
                    dest_addr_npi,
                    destination_addr,
                    esm_class,
                    protocol_id,
                    priority_flag,
                    registered_delivery,
                    data_coding,
                    short_message,
                    tlvs,
                }
            },
        )
}

/// A `submit_sm` or `deliver_sm` request.
fn sm_pdu() -> impl Strategy<Value = Pdu> {
    (random_sm(), any::<bool>(), any::<u32>()).prop_map(|(sm, deliver, sequence)| {
        let body = if deliver { Body::DeliverSm(Box::new(sm)) } else { Body::SubmitSm(Box::new(sm)) };
        Pdu::request(sequence, body)
    })
}

/// A well-formed PDU: a corpus seed, or a random `submit_sm`/`deliver_sm`.
fn good_pdu() -> impl Strategy<Value = (Vec<u8>, Pdu)> {
    prop_oneof![
        any::<Index>().prop_map(|i| i.get(good_seeds()).clone()),
        sm_pdu().prop_map(|p| (encode(&p).expect("a random Sm encodes"), p)),
    ]
}

/// A frame body that is anything: random octets, or a seed's body edited.
fn garbage_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..=300),
        (any::<Index>(), vec(edit(), 1..=4)).prop_map(|(i, edits)| {
            let mut body = i.get(corpus()).1.get(HEADER_LEN..).unwrap_or_default().to_vec();
            for e in &edits {
                e.apply(&mut body);
            }
            body
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The properties.

proptest! {
    #![proptest_config(config())]

    /// (a) Whatever arrives, in whatever pieces: no panic, no error, nothing held beyond a
    /// frame, and the same frames as when it all arrives at once.
    #[test]
    fn mutated_seeds_never_take_the_link_down(m in mutant(), max_len in max_len(), chunks in chunks()) {
        let input = m.build();
        let whole = run(max_len, &input, &[])?;
        let chunked = run(max_len, &input, &chunks)?;
        prop_assert_eq!(&whole.frames, &chunked.frames);
        prop_assert_eq!(&whole.rest, &chunked.rest);
        prop_assert_eq!(whole.skipping, chunked.skipping);
        prop_assert!(whole.rest.len() <= input.len());
        if m.pristine() && max_len == 4096 {
            // Seeds end to end are each seed's frames in turn, as long as none leaves octets
            // waiting or to skip (the truncated ones would swallow the next).
            let mut expected = Vec::new();
            let mut clean = true;
            for seed in m.seeds() {
                let one = run(max_len, seed, &[])?;
                clean &= one.rest.is_empty() && one.skipping == 0;
                expected.extend(one.frames);
            }
            if clean {
                prop_assert_eq!(&whole.frames, &expected);
                prop_assert!(whole.rest.is_empty());
            }
        }
    }

    /// (b) A frame of garbage with a `command_length` in range is one frame, answered if a
    /// request, and the well-formed PDU after it comes out intact.
    #[test]
    fn a_garbage_frame_does_not_hide_the_next_pdu(
        command_id in command_id(),
        command_status in any::<u32>(),
        sequence in any::<u32>(),
        body in garbage_body(),
        (good, pdu) in good_pdu(),
        slack in 0usize..=64,
        chunks in chunks(),
    ) {
        let mut input = frame(command_id, command_status, sequence, &body);
        let max_len = input.len().max(good.len()) + slack;
        input.extend_from_slice(&good);
        let got = run(max_len, &input, &chunks)?;
        prop_assert_eq!(got.frames.len(), 2, "{:?}", got.frames);
        prop_assert_eq!(&got.frames[1], &Frame::Pdu(pdu));
        prop_assert!(got.rest.is_empty() && got.skipping == 0);
        if let Frame::Bad(b) = &got.frames[0] {
            prop_assert_eq!((b.command_id, b.status, b.sequence), (command_id, command_status, sequence));
        }
    }

    /// (d) Any `submit_sm` or `deliver_sm` we could send (TLVs as [`tlv`] says) comes back
    /// whole through the codec, in whatever pieces it arrives.
    #[test]
    fn random_sms_round_trip(pdu in sm_pdu(), chunks in chunks()) {
        let octets = encode(&pdu).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = run(4096, &octets, &chunks)?;
        prop_assert_eq!(got.frames, vec![Frame::Pdu(pdu)]);
        prop_assert!(got.rest.is_empty());
    }
}

/// (c) Every corpus file that decodes to a PDU encodes back to one that decodes the same.
#[test]
fn every_well_formed_seed_round_trips() {
    let mut pdus = 0;
    for (name, octets) in corpus() {
        let got = run(4096, octets, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            got.rest.is_empty() && got.skipping == 0 || name.starts_with("bad_"),
            "{name} left {:?}",
            got.rest
        );
        for f in &got.frames {
            if let Frame::Pdu(p) = f {
                let again = encode(p).unwrap_or_else(|e| panic!("{name}: {e}"));
                let back = run(4096, &again, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(back.frames, vec![f.clone()], "{name}");
                pdus += 1;
            }
        }
    }
    assert!(pdus >= 20, "{pdus} seeds decode");
}

/// The hand-made bad seeds are bad in the way their names say, and answered.
#[test]
fn the_bad_seeds_are_answered() {
    for (name, octets) in corpus().iter().filter(|(n, _)| n.starts_with("bad_")) {
        let got = run(4096, octets, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let [Frame::Bad(b)] = &got.frames[..] else { panic!("{name}: {:?}", got.frames) };
        assert!(b.reply.is_some(), "{name}: {b:?}");
    }
}
