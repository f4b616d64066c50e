//! Round trips through rusmpp, and frames that must not take the link down.

use super::*;

fn roundtrip(pdu: &Pdu) -> Pdu {
    let mut buf = BytesMut::from(&encode(pdu).expect("encodes")[..]);
    let mut codec = Codec::new(4096);
    match codec.decode(&mut buf).expect("io") {
        Some(Frame::Pdu(p)) => {
            assert!(buf.is_empty(), "the whole frame was taken");
            p
        }
        other => panic!("expected a PDU, got {other:?}"),
    }
}

fn sm() -> Sm {
    Sm {
        service_type: String::new(),
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: "27820000001".into(),
        dest_addr_ton: 0,
        dest_addr_npi: 1,
        destination_addr: "1234".into(),
        esm_class: 0x40,
        protocol_id: 0,
        priority_flag: 0,
        registered_delivery: 1,
        data_coding: 8,
        short_message: vec![5, 0, 3, 7, 2, 1, 0xD8, 0x3D, 0xDE, 0x00],
        tlvs: vec![
            Tlv::new(tag::SAR_MSG_REF_NUM, vec![0, 7]),
            Tlv::c_string(tag::RECEIPTED_MESSAGE_ID, "abc"),
            Tlv::new(0x1401, vec![1, 2, 3]),
        ],
    }
}

#[test]
fn every_pdu_we_use_survives_a_round_trip() {
    let bind = Bind {
        system_id: "smppclient1".into(),
        password: "password".into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    let pdus = [
        Pdu::request(1, Body::Bind(BindKind::Transceiver, bind.clone())),
        Pdu::request(2, Body::Bind(BindKind::Transmitter, bind.clone())),
        Pdu::request(3, Body::Bind(BindKind::Receiver, bind)),
        Pdu::response(1, status::OK, Body::BindResp(BindKind::Transceiver, "fake".into())),
        Pdu::request(4, Body::SubmitSm(Box::new(sm()))),
        Pdu::response(4, status::OK, Body::SubmitSmResp("0A1B".into())),
        Pdu::request(5, Body::DeliverSm(Box::new(sm()))),
        Pdu::response(5, status::OK, Body::DeliverSmResp),
        Pdu::request(6, Body::EnquireLink),
        Pdu::response(6, status::OK, Body::EnquireLinkResp),
        Pdu::request(7, Body::Unbind),
        Pdu::response(7, status::OK, Body::UnbindResp),
        Pdu::response(8, status::RTHROTTLED, Body::SubmitSmResp(String::new())),
        Pdu::response(9, status::RINVCMDID, Body::GenericNack),
    ];
    for pdu in pdus {
        assert_eq!(roundtrip(&pdu), pdu, "{pdu}");
    }
}

#[test]
fn a_bind_says_interface_version_3_4_on_the_wire() {
    let bind =
        Bind { system_id: "a".into(), password: "b".into(), interface_version: 0x34, ..Bind::default() };
    let octets = encode(&Pdu::request(1, Body::Bind(BindKind::Transceiver, bind))).unwrap();
    // header 16, "a\0" "b\0" "\0", then interface_version
    assert_eq!(octets[16 + 5], 0x34);
    assert_eq!(&octets[4..8], &[0, 0, 0, 9], "bind_transceiver");
}

#[test]
fn an_error_response_is_sent_header_only() {
    let octets = encode(&Pdu::response(3, status::RTHROTTLED, Body::SubmitSmResp(String::new()))).unwrap();
    assert_eq!(octets, [0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 3]);
}

fn frames(codec: &mut Codec, buf: &mut BytesMut) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(f) = codec.decode(buf).expect("io") {
        out.push(f);
    }
    out
}

#[test]
fn a_body_that_does_not_decode_is_answered_and_the_next_pdu_still_reads() {
    // A submit_sm whose source_addr has no NUL before the frame ends.
    let mut bad = vec![0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 42, 0, 1, 1];
    bad.extend_from_slice(b"2782000000000000000000000000");
    let len = bad.len() as u32;
    bad[..4].copy_from_slice(&len.to_be_bytes());
    let mut buf = BytesMut::from(&bad[..]);
    buf.extend_from_slice(&encode(&Pdu::request(43, Body::EnquireLink)).unwrap());
    let got = frames(&mut Codec::new(4096), &mut buf);
    assert_eq!(got.len(), 2);
    let Frame::Bad(b) = &got[0] else { panic!("{got:?}") };
    assert_eq!(b.sequence, 42);
    let reply = b.reply.as_ref().expect("a request is answered");
    assert_eq!(reply.body, Body::SubmitSmResp(String::new()));
    assert_ne!(reply.status, status::OK);
    assert!(!b.reason.is_empty());
    assert_eq!(got[1], Frame::Pdu(Pdu::request(43, Body::EnquireLink)));
}

#[test]
fn an_unknown_command_is_a_pdu_the_session_answers_invcmdid() {
    let mut buf = BytesMut::from(&[0u8, 0, 0, 16, 0, 0, 0x77, 0x77, 0, 0, 0, 0, 0, 0, 0, 9][..]);
    let got = frames(&mut Codec::new(4096), &mut buf);
    match &got[..] {
        [Frame::Pdu(p)] => assert_eq!(p.body, Body::Other(0x7777)),
        [Frame::Bad(b)] => assert_eq!(b.reply, Some(Pdu::response(9, status::RINVCMDID, Body::GenericNack))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lengths_out_of_range_are_nacked_and_skipped_without_buffering() {
    let mut codec = Codec::new(64);
    // Over the maximum: 100 octets claimed, arriving in two pieces.
    let mut buf = BytesMut::from(&[0u8, 0, 0, 100, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 5][..]);
    buf.extend_from_slice(&[0xAA; 30]);
    let got = frames(&mut codec, &mut buf);
    let [Frame::Bad(b)] = &got[..] else { panic!("{got:?}") };
    assert_eq!(b.reply, Some(Pdu::response(5, status::RINVCMDLEN, Body::GenericNack)));
    assert!(buf.is_empty());
    buf.extend_from_slice(&[0xAA; 54]);
    buf.extend_from_slice(&encode(&Pdu::request(6, Body::EnquireLink)).unwrap());
    assert_eq!(frames(&mut codec, &mut buf), vec![Frame::Pdu(Pdu::request(6, Body::EnquireLink))]);
    // Under a header: its 16 octets are the header.
    let mut buf = BytesMut::from(&[0u8, 0, 0, 8, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 7][..]);
    buf.extend_from_slice(&encode(&Pdu::request(8, Body::EnquireLink)).unwrap());
    let got = frames(&mut codec, &mut buf);
    assert!(
        matches!(&got[0], Frame::Bad(b) if b.reply == Some(Pdu::response(7, status::RINVCMDLEN, Body::GenericNack)))
    );
    assert_eq!(got[1], Frame::Pdu(Pdu::request(8, Body::EnquireLink)));
}

#[test]
fn a_field_too_long_to_encode_is_an_error_before_anything_is_written() {
    let mut s = sm();
    s.source_addr = "x".repeat(30);
    let e = encode(&Pdu::request(1, Body::SubmitSm(Box::new(s)))).unwrap_err();
    assert_eq!(e.field, "source_addr");
    let mut s = sm();
    s.short_message = vec![0; 300];
    assert_eq!(encode(&Pdu::request(1, Body::SubmitSm(Box::new(s)))).unwrap_err().field, "short_message");
}

#[test]
fn statuses_have_the_specs_names() {
    assert_eq!(status_name(status::RTHROTTLED), "ESME_RTHROTTLED");
    assert_eq!(status_name(status::RX_T_APPN), "ESME_RX_T_APPN");
    assert_eq!(status_name(0x0400), "0x00000400");
}

/// A deliver_sm as a sloppy SMSC writes it: `tlvs` appended raw after the mandatory fields.
fn deliver_sm_with_raw_tlvs(tlvs: &[u8]) -> BytesMut {
    let mut sm = sm();
    sm.tlvs.clear();
    let mut octets = encode(&Pdu::request(77, Body::DeliverSm(Box::new(sm)))).unwrap();
    octets.extend_from_slice(tlvs);
    let len = octets.len() as u32;
    octets[..4].copy_from_slice(&len.to_be_bytes());
    BytesMut::from(&octets[..])
}

#[test]
fn tlvs_are_read_by_their_length_even_when_a_known_one_is_malformed() {
    // receipted_message_id without its NUL, a one-octet sar_msg_ref_num, then message_state.
    let mut buf = deliver_sm_with_raw_tlvs(&[
        0x00, 0x1E, 0x00, 0x03, b'a', b'b', b'c', 0x02, 0x0C, 0x00, 0x01, 0x07, 0x04, 0x27, 0x00, 0x01, 0x02,
    ]);
    let got = frames(&mut Codec::new(4096), &mut buf);
    let [Frame::Pdu(Pdu { body: Body::DeliverSm(sm), sequence: 77, .. })] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(sm.tlv_str(tag::RECEIPTED_MESSAGE_ID).as_deref(), Some("abc"));
    assert_eq!(sm.tlv_int(tag::SAR_MSG_REF_NUM), Some(7));
    assert_eq!(sm.tlv_int(tag::MESSAGE_STATE), Some(2), "the TLV after the malformed ones still reads");
    assert_eq!(sm.short_message, super::tests::sm().short_message, "the mandatory fields are intact");
}

#[test]
fn a_tlv_running_past_the_frame_is_answered_invoptparstream() {
    let mut buf = deliver_sm_with_raw_tlvs(&[0x04, 0x27, 0x00, 0x09, 0x02]);
    let got = frames(&mut Codec::new(4096), &mut buf);
    let [Frame::Bad(b)] = &got[..] else { panic!("{got:?}") };
    assert_eq!(
        b.reply,
        Some(Pdu::response(77, status::RINVOPTPARSTREAM, Body::DeliverSmResp)),
        "{}",
        b.reason
    );
}
