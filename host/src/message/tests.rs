//! Tests built from the reference's examples and rules (`../shared/reference/vumi.md`, section 1).

use serde_json::{Value, json};

use super::*;

/// A user message as a 2014 Vumi worker published it: ASCII-escaped, Python's separators,
/// microsecond timestamp, and a field this version does not know.
const LEGACY_INBOUND: &str = r#"{"transport_name": "smpp_transport", "in_reply_to": null, "group": null, "from_addr": "27761234567", "timestamp": "2013-04-21 10:11:12.123456", "to_addr": "1234", "content": "This is an incoming SMS! caf\u00e9", "routing_metadata": {}, "message_version": "20110921", "transport_type": "sms", "helper_metadata": {"tag": {"tag": ["pool", "1234"]}}, "transport_metadata": {"smsc": "x"}, "session_event": null, "message_id": "8d17b2d4a0cd43e4ab2e3c5c1c1e2f20", "message_type": "user_message", "provider": "vodacom", "from_addr_type": "msisdn", "__cache__": {"x": 1}, "new_field": [1, 2]}"#;

fn parse_user(s: &str) -> UserMessage {
    UserMessage::from_json(s.as_bytes()).expect("valid user message")
}

fn as_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

#[test]
fn a_legacy_user_message_parses_field_by_field() {
    let m = parse_user(LEGACY_INBOUND);
    assert_eq!(m.message_id, "8d17b2d4a0cd43e4ab2e3c5c1c1e2f20");
    assert_eq!(m.timestamp.to_string(), "2013-04-21 10:11:12.123456");
    assert_eq!(m.content.as_deref(), Some("This is an incoming SMS! café"));
    assert_eq!(m.from_addr.as_deref(), Some("27761234567"));
    assert_eq!(m.to_addr.as_deref(), Some("1234"));
    assert_eq!(m.transport_name.as_deref(), Some("smpp_transport"));
    assert_eq!(m.transport_type.as_deref(), Some("sms"));
    assert_eq!(m.provider.as_deref(), Some("vodacom"));
    assert_eq!(m.from_addr_type.as_deref(), Some("msisdn"));
    assert_eq!(m.to_addr_type, None, "a missing *_addr_type defaults to null");
    assert_eq!(m.session_event, None);
    assert_eq!(m.helper_metadata["tag"]["tag"], json!(["pool", "1234"]), "nested metadata");
    assert_eq!(m.extra.len(), 2);
    assert_eq!(m.endpoint(), "default");
}

#[test]
fn round_trip_keeps_every_field_and_unknown_ones() {
    let original = as_value(LEGACY_INBOUND.as_bytes());
    let m = parse_user(LEGACY_INBOUND);
    let written = as_value(&m.to_json());
    let mut expected = original.as_object().expect("object").clone();
    // Absent optional keys are written as null; everything else is identical.
    expected.insert("to_addr_type".into(), Value::Null);
    assert_eq!(Value::Object(expected), written);
    assert_eq!(written["__cache__"], json!({"x": 1}));
    assert_eq!(parse_user(std::str::from_utf8(&m.to_json()).expect("utf-8")), m, "parse(write(m)) == m");
}

#[test]
fn timestamps_without_microseconds_and_null_content_are_accepted() {
    let s = r#"{"message_version": "20110921", "message_type": "user_message", "message_id": "abc",
        "timestamp": "2013-04-21 10:11:12", "to_addr": "1234", "from_addr": null, "content": null,
        "transport_name": "ussd", "transport_type": "ussd", "session_event": "new"}"#;
    let m = parse_user(s);
    assert_eq!(m.timestamp.to_string(), "2013-04-21 10:11:12.000000");
    assert_eq!(m.content, None);
    assert_eq!(m.from_addr, None);
    assert_eq!(m.session_event, Some(SessionEvent::New));
    assert!(m.helper_metadata.is_empty() && m.routing_metadata.is_empty() && m.transport_metadata.is_empty());
    assert_eq!(m.group, None, "a missing group defaults to null");
}

#[test]
fn raw_utf8_is_read_too() {
    let s = LEGACY_INBOUND.replace("caf\\u00e9", "café");
    assert_eq!(parse_user(&s).content.as_deref(), Some("This is an incoming SMS! café"));
}

#[test]
fn timestamp_shaped_strings_in_metadata_stay_strings() {
    let s = LEGACY_INBOUND.replace(r#""smsc": "x""#, r#""smsc": "2013-04-21 10:11:12.123456""#);
    let m = parse_user(&s);
    assert_eq!(m.transport_metadata["smsc"], json!("2013-04-21 10:11:12.123456"));
    assert_eq!(as_value(&m.to_json())["transport_metadata"]["smsc"], json!("2013-04-21 10:11:12.123456"));
}

#[test]
fn reply_follows_vumis_rules() {
    let mut m = parse_user(LEGACY_INBOUND);
    m.group = Some("room".into());
    m.session_event = Some(SessionEvent::Resume);
    m.set_endpoint("sms_out");
    let r = m.reply(Some("Thanks!".into()), false);
    assert_eq!(r.to_addr, m.from_addr);
    assert_eq!(r.from_addr, m.to_addr);
    assert_eq!(r.to_addr_type, m.from_addr_type);
    assert_eq!(r.in_reply_to.as_deref(), Some(m.message_id.as_str()));
    assert_eq!(r.session_event, None, "continue the session");
    assert_eq!(r.content.as_deref(), Some("Thanks!"));
    assert_eq!(r.group, m.group);
    assert_eq!(r.provider, m.provider);
    assert_eq!(r.transport_name, m.transport_name);
    assert_eq!(r.transport_type, m.transport_type);
    assert_eq!(r.transport_metadata, m.transport_metadata);
    assert_eq!(r.helper_metadata, m.helper_metadata, "helper_metadata is copied, for legacy reasons");
    assert_eq!(r.endpoint(), "sms_out", "a reply leaves by the endpoint the message arrived on");
    assert_ne!(r.message_id, m.message_id);
    assert_eq!(r.message_id.len(), 32);
    assert!(r.message_id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert!(r.extra.is_empty(), "unknown fields described the inbound message");
    assert_eq!(m.reply(None, true).session_event, Some(SessionEvent::Close));
}

#[test]
fn group_reply_addresses_the_group() {
    let mut m = parse_user(LEGACY_INBOUND);
    assert_eq!(m.reply_to_group(Some("hi".into()), false).to_addr, m.from_addr, "no group: a plain reply");
    m.group = Some("#room".into());
    let r = m.reply_to_group(Some("hi all".into()), false);
    assert_eq!(r.to_addr, None);
    assert_eq!(r.group.as_deref(), Some("#room"));
}

#[test]
fn send_to_is_a_fresh_message() {
    let m = UserMessage::send_to("+27831234567", Some("Hello".into()), "sms");
    assert_eq!(m.to_addr.as_deref(), Some("+27831234567"));
    assert_eq!((m.from_addr.as_ref(), m.in_reply_to.as_ref(), m.session_event), (None, None, None));
    assert_eq!((m.transport_name.as_ref(), m.transport_type.as_ref()), (None, None));
    assert_eq!(m.endpoint(), "sms");
}

#[test]
fn each_event_type_round_trips() {
    for e in [
        Event::ack("m1", "smsc-9"),
        Event::nack("m1", "Unknown address."),
        Event::delivery_report("m1", DeliveryStatus::Delivered),
    ] {
        let back = Event::from_json(&e.to_json()).expect("valid");
        assert_eq!(back, e);
    }
    assert_eq!(Event::delivery_report("m", DeliveryStatus::Failed).label(), "delivery_report.failed");
    assert_eq!(Event::ack("m", "x").label(), "ack");
}

#[test]
fn a_legacy_event_without_helper_metadata_parses() {
    let s = r#"{"message_version": "20110921", "message_type": "event", "event_id": "e1", "event_type": "ack",
        "user_message_id": "m1", "sent_message_id": "smsc-1", "nack_reason": null, "delivery_status": null,
        "timestamp": "2013-04-21 10:11:12.000001", "transport_name": "smpp", "transport_metadata": {}}"#;
    let e = Event::from_json(s.as_bytes()).expect("valid");
    assert_eq!(e.kind, EventKind::Ack { sent_message_id: "smsc-1".into() });
    assert!(e.helper_metadata.is_empty());
    assert!(e.extra.is_empty(), "the other types' null fields are not unknown extras");
}

#[test]
fn event_fields_are_required_by_type() {
    let base = json!({"message_version": "20110921", "message_type": "event", "event_id": "e", "user_message_id": "m",
        "timestamp": "2013-04-21 10:11:12"});
    let with = |extra: Value| {
        let mut v = base.clone();
        v.as_object_mut().expect("obj").extend(extra.as_object().expect("obj").clone());
        Message::from_json(v.to_string().as_bytes()).expect_err("invalid").to_string()
    };
    assert_eq!(with(json!({"event_type": "ack"})), "missing field `sent_message_id`");
    assert_eq!(
        with(json!({"event_type": "ack", "sent_message_id": null})),
        "field `sent_message_id`: expected a string, got null"
    );
    assert_eq!(with(json!({"event_type": "nack"})), "missing field `nack_reason`");
    assert!(
        with(json!({"event_type": "delivery_report", "delivery_status": "lost"}))
            .starts_with("field `delivery_status`: must be")
    );
    assert!(with(json!({"event_type": "read"})).starts_with("field `event_type`: must be"));
    let mut no_id = base.clone();
    no_id.as_object_mut().expect("obj").remove("user_message_id");
    no_id["event_type"] = json!("ack");
    no_id["sent_message_id"] = json!("x");
    assert_eq!(
        Message::from_json(no_id.to_string().as_bytes()).expect_err("invalid").to_string(),
        "missing field `user_message_id`"
    );
}

#[test]
fn status_messages_default_reasons_and_details() {
    let s = r#"{"message_version": "20110921", "message_type": "status_event", "component": "smpp", "status": "down",
        "type": "connection_lost", "message": "Lost the SMSC", "timestamp": "2013-04-21 10:11:12"}"#;
    let Message::Status(st) = Message::from_json(s.as_bytes()).expect("valid") else { panic!("a status") };
    assert_eq!(st.status, StatusLevel::Down);
    assert_eq!(st.status_type, "connection_lost");
    assert!(st.reasons.is_empty() && st.details.is_empty());
    let back = as_value(&Message::Status(st).to_json());
    assert_eq!(back["reasons"], json!([]));
    assert_eq!(back["type"], json!("connection_lost"));
}

#[test]
fn validation_errors_name_the_field() {
    let user = as_value(LEGACY_INBOUND.as_bytes());
    let broken = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut v = user.clone();
        f(v.as_object_mut().expect("object"));
        Message::from_json(v.to_string().as_bytes()).expect_err("invalid").to_string()
    };
    assert_eq!(
        broken(&|m| {
            m.insert("message_version".into(), json!("2"));
        }),
        "field `message_version`: must be \"20110921\", got \"2\""
    );
    assert_eq!(
        broken(&|m| {
            m.remove("message_version");
        }),
        "missing field `message_version`"
    );
    assert_eq!(
        broken(&|m| {
            m.remove("message_type");
        }),
        "missing field `message_type`"
    );
    assert!(
        broken(&|m| {
            m.insert("message_type".into(), json!("gossip"));
        })
        .starts_with("field `message_type`: must be")
    );
    assert_eq!(
        broken(&|m| {
            m.remove("to_addr");
        }),
        "missing field `to_addr`",
        "to_addr is a required key"
    );
    assert_eq!(
        broken(&|m| {
            m.remove("transport_type");
        }),
        "missing field `transport_type`"
    );
    assert_eq!(
        broken(&|m| {
            m.remove("timestamp");
        }),
        "missing field `timestamp`"
    );
    assert_eq!(
        broken(&|m| {
            m.insert("session_event".into(), json!("pause"));
        }),
        "field `session_event`: must be null, \"new\", \"resume\" or \"close\", got \"pause\""
    );
    assert_eq!(
        broken(&|m| {
            m.insert("content".into(), json!(5));
        }),
        "field `content`: expected a string or null, got a number"
    );
    assert_eq!(
        broken(&|m| {
            m.insert("helper_metadata".into(), json!([1]));
        }),
        "field `helper_metadata`: expected an object, got an array"
    );
    assert!(
        broken(&|m| {
            m.insert("timestamp".into(), json!("2013-04-21T10:11:12Z"));
        })
        .starts_with("field `timestamp`: ")
    );
    assert_eq!(
        broken(&|m| {
            m.insert("message_id".into(), json!(""));
        }),
        "field `message_id`: must not be empty"
    );
}

#[test]
fn non_messages_are_refused_clearly() {
    assert!(Message::from_json(b"{not json").expect_err("bad").to_string().starts_with("invalid JSON: "));
    assert_eq!(
        Message::from_json(b"[1]").expect_err("bad").to_string(),
        "a message must be a JSON object, got an array"
    );
    let ev = Event::ack("m", "s").to_json();
    assert_eq!(
        UserMessage::from_json(&ev).expect_err("wrong type").to_string(),
        "field `message_type`: expected `user_message`, got `event`"
    );
}

#[test]
fn new_ids_are_32_lowercase_hex() {
    let id = new_id();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_ne!(new_id(), id);
}

#[test]
fn a_known_field_wins_over_a_duplicate_in_extra_and_is_written_once() {
    let mut m = UserMessage::inbound("sms", "sms", "1", "2", Some("real".into()), None);
    m.extra.insert("content".into(), json!("stray"));
    m.extra.insert("new_field".into(), json!([1, 2]));
    let text = String::from_utf8(m.to_json()).unwrap();
    assert_eq!(text.matches("\"content\"").count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["content"].as_str(), &v["new_field"]), (Some("real"), &json!([1, 2])));
    // Known fields first, in Vumi's order, then the extra ones.
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(&keys[..4], ["message_version", "message_type", "timestamp", "message_id"]);
    assert_eq!(keys.last(), Some(&"new_field"));
}

#[test]
fn any_unicode_text_passes_through_the_codec_unchanged() {
    // As Python's json.dumps writes them: NUL and the other controls escaped, an emoji as its
    // surrogate pair.
    let escaped = [
        (r"nul\u0000in", "nul\0in"),
        (r"bel\u0007 esc\u001b[2J", "bel\u{7} esc\u{1b}[2J"),
        (r"\ud83d\ude00 grin", "\u{1F600} grin"),
        (r"a\nb\tc", "a\nb\tc"),
    ];
    for (json, text) in escaped {
        let m = parse_user(&LEGACY_INBOUND.replace(r"This is an incoming SMS! caf\u00e9", json));
        assert_eq!(m.content.as_deref(), Some(text), "{json}");
        let again = UserMessage::from_json(&m.to_json()).expect("round trip");
        assert_eq!(again.content.as_deref(), Some(text), "{json} round trip");
    }
}

#[test]
fn a_lone_surrogate_from_python_becomes_a_replacement_character_not_a_lost_message() {
    for (json, text) in [
        (r"cut \ud83d", "cut \u{FFFD}"),
        (r"\ude00 tail", "\u{FFFD} tail"),
        (r"pair \ud83d\ude00 and lone \ud83d", "pair \u{1F600} and lone \u{FFFD}"),
        // An escaped backslash before `u` is text, not an escape.
        (r"not one \\ud800 \ud800", "not one \\ud800 \u{FFFD}"),
    ] {
        let m = parse_user(&LEGACY_INBOUND.replace(r"This is an incoming SMS! caf\u00e9", json));
        assert_eq!(m.content.as_deref(), Some(text), "{json}");
        assert_eq!(m.message_id, "8d17b2d4a0cd43e4ab2e3c5c1c1e2f20", "the rest of the message arrives");
    }
    assert!(UserMessage::from_json(br#"{"content": "\ud800", "#).is_err(), "still JSON or nothing");
}
