//! The fake SMSC over real sockets: binds, submits, receipts, MO, misbehaviour.

use super::*;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::Framed;

use crate::transports::smpp::text::{self, Coding, Concat, Split};
use crate::transports::smpp::wire::{
    self, Bind, BindKind, Body, Codec, Frame, Pdu, Sm, Tlv, id, status, tag,
};

struct Fake {
    smpp: SocketAddr,
    http: String,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

async fn start(settings: Settings) -> Fake {
    let smpp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (smpp_addr, http_addr) = (smpp.local_addr().unwrap(), http.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        serve(smpp, http, settings, async {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    Fake { smpp: smpp_addr, http: format!("http://{http_addr}"), client: reqwest::Client::new(), _stop: tx }
}

impl Fake {
    async fn get(&self, path: &str) -> Value {
        let r = self.client.get(format!("{}{path}", self.http)).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.client.post(format!("{}{path}", self.http)).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn esme(&self, kind: BindKind) -> Esme {
        let mut esme = Esme::connect(self.smpp).await;
        let resp = esme.bind(kind, "smppclient1", "password").await;
        assert_eq!(resp.status, status::OK, "{resp}");
        esme
    }
}

struct Esme {
    framed: Framed<TcpStream, Codec>,
    seq: u32,
}

impl Esme {
    async fn connect(addr: SocketAddr) -> Self {
        Esme { framed: Framed::new(TcpStream::connect(addr).await.unwrap(), Codec::new(MAX_PDU)), seq: 0 }
    }

    async fn send(&mut self, body: Body) -> u32 {
        self.seq += 1;
        self.framed.send(&Pdu::request(self.seq, body)).await.unwrap();
        self.seq
    }

    async fn answer(&mut self, sequence: u32, code: u32, body: Body) {
        self.framed.send(&Pdu::response(sequence, code, body)).await.unwrap();
    }

    async fn frame(&mut self) -> Option<io::Result<Frame>> {
        tokio::time::timeout(Duration::from_secs(5), self.framed.next())
            .await
            .expect("nothing from the fake in 5 s")
    }

    async fn pdu(&mut self) -> Pdu {
        match self.frame().await {
            Some(Ok(Frame::Pdu(p))) => p,
            other => panic!("expected a PDU, got {other:?}"),
        }
    }

    /// The fake closed the connection (EOF or reset).
    async fn closed(&mut self) {
        match self.frame().await {
            None | Some(Err(_)) => {}
            Some(Ok(f)) => panic!("expected the connection closed, got {f:?}"),
        }
    }

    async fn bind(&mut self, kind: BindKind, system_id: &str, password: &str) -> Pdu {
        let b = Bind {
            system_id: system_id.into(),
            password: password.into(),
            interface_version: 0x34,
            ..Bind::default()
        };
        self.send(Body::Bind(kind, b)).await;
        self.pdu().await
    }

    async fn submit(&mut self, sm: Sm) -> Pdu {
        let seq = self.send(Body::SubmitSm(Box::new(sm))).await;
        let resp = self.pdu().await;
        assert_eq!(resp.sequence, seq);
        resp
    }
}

fn sm(short_message: &[u8]) -> Sm {
    Sm {
        source_addr: "27820000001".into(),
        destination_addr: "1234".into(),
        short_message: short_message.to_vec(),
        ..Sm::default()
    }
}

fn udh_sm(part: &text::Part, coding: Coding) -> Sm {
    Sm { esm_class: if part.udhi { 0x40 } else { 0 }, data_coding: coding.data_coding(), ..sm(&part.octets) }
}

#[tokio::test]
async fn binds_are_checked() {
    let fake = start(Settings::default()).await;
    let mut esme = fake.esme(BindKind::Transceiver).await;
    let again = esme.bind(BindKind::Transceiver, "smppclient1", "password").await;
    assert_eq!(again.status, status::RALYBND);
    esme.send(Body::Other(id::QUERY_SM)).await;
    let nack = esme.pdu().await;
    assert_eq!((nack.body, nack.status), (Body::GenericNack, status::RINVCMDID));
    esme.send(Body::EnquireLink).await;
    assert_eq!(esme.pdu().await.body, Body::EnquireLinkResp);

    let mut other = Esme::connect(fake.smpp).await;
    assert_eq!(other.bind(BindKind::Transmitter, "smppclient1", "wrong").await.status, status::RINVPASWD);
    assert_eq!(other.bind(BindKind::Transmitter, "nobody", "password").await.status, status::RINVSYSID);
    let early = other.submit(sm(b"hi")).await;
    assert_eq!(early.status, status::RINVBNDSTS, "a submit before bind");
    other.send(Body::EnquireLink).await;
    assert_eq!(other.pdu().await.status, status::OK, "enquire_link in any state");
    let resp = other.bind(BindKind::Receiver, "smppclient1", "password").await;
    assert_eq!(
        (resp.status, resp.body),
        (status::OK, Body::BindResp(BindKind::Receiver, SMSC_SYSTEM_ID.into()))
    );
    assert_eq!(other.submit(sm(b"hi")).await.status, status::RINVBNDSTS, "a receiver may not submit");

    let stats = fake.get("/stats").await;
    assert_eq!((stats["binds"].as_i64(), stats["binds_total"].as_u64()), (Some(2), Some(2)));
    esme.send(Body::Unbind).await;
    assert_eq!(esme.pdu().await.body, Body::UnbindResp);
    esme.closed().await;
}

#[tokio::test]
async fn a_submit_is_answered_with_a_hex_id() {
    let fake = start(Settings::default()).await;
    let mut esme = fake.esme(BindKind::Transmitter).await;
    let mut ids = Vec::new();
    for _ in 0..11 {
        let resp = esme.submit(sm(b"hello")).await;
        assert_eq!(resp.status, status::OK);
        let Body::SubmitSmResp(id) = resp.body else { panic!("{resp}") };
        ids.push(id);
    }
    assert_eq!(ids.first().map(String::as_str), Some("1"));
    assert_eq!(ids.last().map(String::as_str), Some("b"), "11 in hex");
    let mt = fake.get("/mt").await;
    assert_eq!(mt.as_array().map(Vec::len), Some(11));
    assert_eq!(mt[0]["text"], "hello");
    assert_eq!(mt[0]["method"], "single");
    assert_eq!(mt[0]["coding"], "gsm7");
    assert_eq!(mt[0]["message_ids"], json!(["1"]));
    assert_eq!(fake.get("/mt?since=10").await.as_array().map(Vec::len), Some(1));
    let _ = fake.client.delete(format!("{}/mt", fake.http)).send().await.unwrap();
    assert_eq!(fake.get("/mt").await, json!([]));
}

#[tokio::test]
async fn a_two_part_udh_message_is_listed_once_with_its_text() {
    let fake = start(Settings::default()).await;
    let mut esme = fake.esme(BindKind::Transceiver).await;
    let t: String = (0..200).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let parts = text::split(&t, Coding::Gsm7, Split::Udh8, 7).unwrap();
    assert_eq!(parts.len(), 2);
    for p in &parts {
        assert_eq!(esme.submit(udh_sm(p, Coding::Gsm7)).await.status, status::OK);
    }
    let mt = fake.get("/mt").await;
    assert_eq!(mt.as_array().map(Vec::len), Some(1), "{mt}");
    let e = &mt[0];
    assert_eq!(e["text"], t.as_str());
    assert_eq!((e["parts"].as_u64(), e["method"].as_str()), (Some(2), Some("udh8")));
    assert_eq!(e["message_ids"], json!(["1", "2"]));
    assert_eq!((e["warnings"].clone(), e["incomplete"].clone()), (json!([]), json!(false)));
}

#[tokio::test]
async fn broken_parts_are_reassembled_with_warnings() {
    let fake = start(Settings::default()).await;
    let mut esme = fake.esme(BindKind::Transmitter).await;
    // "ab😀cd" cut inside the surrogate pair; part 2 first, and twice.
    let p1 = [5, 0x00, 3, 9, 2, 1, 0x00, 0x61, 0x00, 0x62, 0xD8, 0x3D];
    let p2 = [5, 0x00, 3, 9, 2, 2, 0xDE, 0x00, 0x00, 0x63, 0x00, 0x64];
    for p in [&p2[..], &p2, &p1] {
        let resp = esme.submit(Sm { esm_class: 0x40, data_coding: 8, ..sm(p) }).await;
        assert_eq!(resp.status, status::OK);
    }
    // SAR, with parts in different codings.
    let sar = |seq: u8, dc: u8, body: &[u8]| Sm {
        data_coding: dc,
        tlvs: vec![
            Tlv::new(tag::SAR_MSG_REF_NUM, vec![0x12, 0x34]),
            Tlv::new(tag::SAR_TOTAL_SEGMENTS, vec![2]),
            Tlv::new(tag::SAR_SEGMENT_SEQNUM, vec![seq]),
        ],
        ..sm(body)
    };
    esme.submit(sar(1, 0, b"abc")).await;
    esme.submit(sar(2, 3, b"d\xe9")).await;
    let mt = fake.get("/mt").await;
    let e = &mt[0];
    assert_eq!(e["text"], "ab😀cd");
    let warnings: Vec<&str> = e["warnings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for w in ["part 1 ends inside a surrogate pair", "parts arrived out of order", "part 2 received twice"] {
        assert!(warnings.contains(&w), "{w:?} in {warnings:?}");
    }
    assert_eq!(e["message_ids"].as_array().map(Vec::len), Some(2));
    assert_eq!((mt[1]["text"].as_str(), mt[1]["method"].as_str()), (Some("abcdé"), Some("sar")));
    assert_eq!(mt[1]["warnings"], json!(["mixed coding"]));
}

#[tokio::test]
async fn throttle_rate_one_throttles_every_submit_until_changed() {
    let fake = start(Settings { throttle_rate: 1.0, ..Settings::default() }).await;
    let mut esme = fake.esme(BindKind::Transmitter).await;
    for _ in 0..3 {
        let resp = esme.submit(sm(b"x")).await;
        assert_eq!((resp.status, resp.body), (status::RTHROTTLED, Body::SubmitSmResp(String::new())));
    }
    assert_eq!(fake.get("/mt").await, json!([]), "nothing refused is listed");
    let (code, body) = fake.post("/settings", json!({ "throttle_rate": 2.0 })).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = fake.post("/settings", json!({ "id_format": "octal" })).await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("hex-zeros"), "{body}");
    let (code, body) =
        fake.post("/settings", json!({ "throttle_rate": 0.0, "id_format": "hex-zeros" })).await;
    assert_eq!((code, body["throttle_rate"].as_f64()), (200, Some(0.0)), "{body}");
    let resp = esme.submit(sm(b"x")).await;
    assert_eq!((resp.status, resp.body), (status::OK, Body::SubmitSmResp("0000000001".into())));
    let stats = fake.get("/stats").await;
    assert_eq!((stats["submits"].as_u64(), stats["throttled"].as_u64()), (Some(4), Some(3)));
}

#[tokio::test]
async fn drop_after_closes_the_connection_each_time() {
    let fake = start(Settings { drop_after: 3, ..Settings::default() }).await;
    for _ in 0..2 {
        let mut esme = fake.esme(BindKind::Transceiver).await;
        assert_eq!(esme.submit(sm(b"1")).await.status, status::OK);
        assert_eq!(esme.submit(sm(b"2")).await.status, status::OK);
        esme.send(Body::SubmitSm(Box::new(sm(b"3")))).await;
        esme.closed().await;
    }
    let stats = fake.get("/stats").await;
    assert_eq!((stats["drops"].as_u64(), stats["binds_total"].as_u64()), (Some(2), Some(2)));
    assert_eq!(
        fake.get("/mt").await.as_array().map(Vec::len),
        Some(4),
        "the unanswered submits are not listed"
    );
}

#[tokio::test]
async fn mo_with_nothing_bound_is_refused() {
    let fake = start(Settings::default()).await;
    let (code, body) =
        fake.post("/mo", json!({ "from": "27820000001", "to": "1234", "content": "hi" })).await;
    assert_eq!((code, body), (409, json!({ "error": "no receiver bound" })));
    let _tx = fake.esme(BindKind::Transmitter).await;
    let (code, _) = fake.post("/mo", json!({ "from": "27820000001", "to": "1234", "content": "hi" })).await;
    assert_eq!(code, 409, "a transmitter cannot receive");
    let (code, body) =
        fake.post("/mo", json!({ "from": "1", "to": "2", "content": "hi", "coding": "ebcdic" })).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) =
        fake.post("/mo", json!({ "from": "1", "to": "2", "content": "😀", "coding": "gsm7" })).await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test]
async fn a_long_ucs2_mo_with_an_emoji_arrives_as_udh_parts() {
    let fake = start(Settings::default()).await;
    let mut esme = fake.esme(BindKind::Receiver).await;
    let content: String =
        (0..150).map(|i| if i == 66 { '😀' } else { char::from(b'a' + (i % 26) as u8) }).collect();
    let inject = fake.post("/mo", json!({ "from": "27820000001", "to": "1234", "content": content }));
    let receive = async {
        let mut parts: BTreeMap<u8, String> = BTreeMap::new();
        loop {
            let pdu = esme.pdu().await;
            let Body::DeliverSm(d) = &pdu.body else { panic!("{pdu}") };
            assert_eq!((d.esm_class, d.data_coding), (0x40, 8));
            let h = text::read_header(&d.short_message).unwrap();
            let c = h.concat.unwrap();
            let (s, bad) = text::decode(h.body, Coding::Ucs2);
            assert_eq!(bad, 0, "no part cuts the emoji");
            parts.insert(c.seq, s);
            esme.answer(pdu.sequence, status::OK, Body::DeliverSmResp).await;
            if parts.len() == usize::from(c.total) {
                return parts.into_values().collect::<String>();
            }
        }
    };
    let ((code, body), text) = tokio::join!(inject, receive);
    assert_eq!(text, content);
    assert_eq!((code, body), (200, json!({ "parts": 3 })));
    let stats = fake.get("/stats").await;
    assert_eq!(stats["deliver_sm_resp"], json!({ "ESME_ROK": 3 }));
}

#[tokio::test]
async fn a_receipt_follows_the_response_and_a_temporary_error_is_retried() {
    let settings = Settings {
        receipt_id_format: ReceiptIdFormat::Decimal,
        id_format: IdFormat::HexZeros,
        ..Settings::default()
    };
    let fake = start(settings).await;
    let mut esme = fake.esme(BindKind::Transceiver).await;
    for _ in 0..11 {
        esme.submit(sm(b"no receipt")).await;
    }
    let resp = esme.submit(Sm { registered_delivery: 1, ..sm(b"hello receipt") }).await;
    assert_eq!(resp.body, Body::SubmitSmResp("000000000C".into()));
    let first = esme.pdu().await;
    let Body::DeliverSm(d) = &first.body else { panic!("{first}") };
    assert_eq!(
        (d.esm_class, d.source_addr.as_str(), d.destination_addr.as_str()),
        (0x04, "1234", "27820000001")
    );
    assert_eq!(d.tlv_str(tag::RECEIPTED_MESSAGE_ID).as_deref(), Some("12"), "decimal, as Nexmo does");
    assert_eq!(d.tlv_int(tag::MESSAGE_STATE), Some(2));
    let receipt =
        crate::transports::smpp::receipt::parse_text(&text::decode(&d.short_message, Coding::Gsm7).0)
            .unwrap();
    assert_eq!((receipt.id.as_deref(), receipt.stat.as_deref()), (Some("12"), Some("DELIVRD")));
    // "Try later": the same receipt comes again after 200 ms.
    esme.answer(first.sequence, status::RX_T_APPN, Body::DeliverSmResp).await;
    let again = esme.pdu().await;
    assert_ne!(again.sequence, first.sequence);
    assert_eq!(again.body, first.body);
    esme.answer(again.sequence, status::OK, Body::DeliverSmResp).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = fake.get("/stats").await;
    assert_eq!(stats["deliver_sm_resp"], json!({ "ESME_ROK": 1, "ESME_RX_T_APPN": 1 }));
    let responses = fake.get("/responses").await;
    assert_eq!(responses[0]["status_name"], "ESME_RX_T_APPN");
}

#[tokio::test]
async fn raw_octets_reach_the_esme_and_its_answer_is_recorded() {
    let fake = start(Settings::default()).await;
    let (code, _) = fake.post("/raw", json!({ "hex": "00000010" })).await;
    assert_eq!(code, 409);
    let mut esme = fake.esme(BindKind::Transceiver).await;
    let (code, body) = fake.post("/raw", json!({ "hex": "zz" })).await;
    assert_eq!(code, 400, "{body}");
    // A deliver_sm whose body stops after service_type.
    let (code, body) = fake.post("/raw", json!({ "hex": "00000011 00000005 00000000 00000042 00" })).await;
    assert_eq!((code, body["sent_to"].as_u64()), (200, Some(1)));
    let Some(Ok(Frame::Bad(bad))) = esme.frame().await else { panic!("expected a bad frame") };
    let reply = bad.reply.unwrap();
    esme.framed.send(&reply).await.unwrap();
    esme.send(Body::EnquireLink).await;
    assert_eq!(esme.pdu().await.body, Body::EnquireLinkResp, "the link is up");
    let responses = fake.get("/responses").await;
    assert_eq!(responses[0]["sequence"], 0x42);
    assert_eq!(responses[0]["command"], wire::command_name(reply.body.command_id()));
    let (code, body) = fake.post("/drop", json!({})).await;
    assert_eq!((code, body["dropped"].as_u64()), (200, Some(1)));
    esme.closed().await;
}

#[test]
fn a_set_missing_parts_is_listed_incomplete_after_ten_seconds() {
    let mut mt = MtStore::new();
    let t0 = Instant::now();
    let part = |seq: u8, body: &[u8]| PartIn {
        from: "a".into(),
        to: "b".into(),
        method: Method::Udh8,
        concat: Some(Concat { reference: 1, total: 3, seq }),
        data_coding: 0,
        registered_delivery: 1,
        body: body.to_vec(),
        message_id: format!("id{seq}"),
        bind: 4,
        ussd: None,
        warnings: Vec::new(),
    };
    mt.add(part(1, b"one "), t0);
    mt.add(part(3, b"three"), t0 + Duration::from_secs(2));
    mt.sweep(t0 + Duration::from_secs(9));
    assert!(mt.list.is_empty(), "still waiting");
    mt.sweep(t0 + Duration::from_secs(10));
    let e = serde_json::to_value(&mt.list[0]).unwrap();
    assert_eq!(
        (e["incomplete"].as_bool(), e["parts"].as_u64(), e["total_parts"].as_u64()),
        (Some(true), Some(2), Some(3))
    );
    assert_eq!((e["text"].as_str(), e["bind"].as_u64()), (Some("one three"), Some(4)));
    assert_eq!(e["message_ids"], json!(["id1", "id3"]));
    assert!(mt.pending.is_empty());
}

#[tokio::test]
async fn ussd_tlvs_go_both_ways() {
    let fake = start(Settings::default()).await;
    let mut esme = fake.esme(BindKind::Transceiver).await;
    let inject = fake.post("/mo", json!({ "from": "27820000001", "to": "*120#", "content": "1", "ussd": { "op": 1, "session": 0x0102 } }));
    let receive = async {
        let pdu = esme.pdu().await;
        let Body::DeliverSm(d) = &pdu.body else { panic!("{pdu}") };
        assert_eq!(
            (d.tlv(tag::USSD_SERVICE_OP), d.tlv(tag::ITS_SESSION_INFO)),
            (Some(&[1u8][..]), Some(&[1u8, 2][..]))
        );
        assert_eq!((d.destination_addr.as_str(), d.short_message.as_slice()), ("*120#", &b"1"[..]));
        esme.answer(pdu.sequence, status::OK, Body::DeliverSmResp).await;
    };
    let ((code, _), ()) = tokio::join!(inject, receive);
    assert_eq!(code, 200);
    let tlvs = vec![Tlv::new(tag::USSD_SERVICE_OP, vec![17]), Tlv::new(tag::ITS_SESSION_INFO, vec![1, 2])];
    esme.submit(Sm { tlvs, ..sm(b"Menu") }).await;
    assert_eq!(fake.get("/mt").await[0]["ussd"], json!({ "op": 17, "session": 0x0102 }));
}

#[tokio::test]
async fn delayed_responses_keep_their_order_while_submits_pipeline() {
    let fake = start(Settings { delay_ms: 400, ..Settings::default() }).await;
    let mut esme = fake.esme(BindKind::Transmitter).await;
    let started = Instant::now();
    let a = esme.send(Body::SubmitSm(Box::new(sm(b"a")))).await;
    let b = esme.send(Body::SubmitSm(Box::new(sm(b"b")))).await;
    assert_eq!(esme.pdu().await.sequence, a);
    assert_eq!(esme.pdu().await.sequence, b);
    let took = started.elapsed();
    // One after the other would take 800 ms.
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(780),
        "{took:?}: both waited, side by side"
    );
}

/// Not a test of correctness: how many pipelined submits a second one connection gets
/// answered (run with `--ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let fake = start(Settings::default()).await;
    let esme = fake.esme(BindKind::Transmitter).await;
    let (read, mut write) = esme.framed.into_inner().into_split();
    let mut stream = tokio_util::codec::FramedRead::new(read, Codec::new(MAX_PDU));
    let n = 100_000u32;
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut buf = tokio_util::bytes::BytesMut::new();
        for seq in 1..=n {
            wire::encode_into(&Pdu::request(seq, Body::SubmitSm(Box::new(sm(b"hello benchmark")))), &mut buf)
                .unwrap();
            if buf.len() > 64 * 1024 {
                write.write_all(&buf).await.unwrap();
                buf.clear();
            }
        }
        write.write_all(&buf).await.unwrap();
        write
    });
    let mut got = 0;
    while got < n {
        match stream.next().await {
            Some(Ok(Frame::Pdu(p))) if p.status == status::OK => got += 1,
            other => panic!("{other:?}"),
        }
    }
    writer.await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!("{n} submits answered in {secs:.2} s: {:.0}/s", f64::from(n) / secs);
}
