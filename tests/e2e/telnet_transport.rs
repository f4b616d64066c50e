//! The telnet transport's Vumi semantics, in process over a real socket: session events in,
//! acks for writes, nacks for unknown addresses, and `close` closing the connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;
use vumi_host::bus::{Bus, Consumer, EmbeddedBus, RoutingKey};
use vumi_host::config::TelnetConfig;
use vumi_host::message::{EventKind, Message, SessionEvent, UserMessage};
use vumi_host::transports::telnet::TelnetTransport;
use vumi_host::transports::{Transport, TransportContext};

const WAIT: Duration = Duration::from_secs(10);

async fn next(c: &mut Box<dyn Consumer>) -> Message {
    let d = tokio::time::timeout(WAIT, c.next()).await.expect("a message in time").expect("bus open");
    let m = d.message.clone();
    d.ack();
    m
}

fn user(m: Message) -> UserMessage {
    match m {
        Message::User(u) => Arc::unwrap_or_clone(u),
        other => panic!("expected a user message, got {other:?}"),
    }
}

#[test]
fn telnet_publishes_sessions_and_acks_or_nacks_each_outbound() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let bus = Arc::new(EmbeddedBus::new());
        let connector: vumi_host::names::ConnectorName = "tn".parse().expect("name");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = TelnetConfig { bind: addr, to_addr: Some("*120#".into()), max_line_bytes: 4096 };
        let stop = CancellationToken::new();
        let sent = std::sync::Arc::new(vumi_host::transports::Sent::new(&connector, 1000));
        let ctx = TransportContext::new(bus.clone(), connector.clone(), sent, stop.clone());
        let transport = Box::new(TelnetTransport::new(ctx, listener, &config).expect("transport"));
        let outbound = bus.consume(&RoutingKey::outbound(&connector), 64).await.expect("consume");
        let server = tokio::spawn(transport.run(outbound, stop.clone()));
        let mut inbound = bus.consume(&RoutingKey::inbound(&connector), 10).await.expect("consume");
        let mut events = bus.consume(&RoutingKey::event(&connector), 10).await.expect("consume");

        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let me = stream.local_addr().expect("local").to_string();
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();

        let new = user(next(&mut inbound).await);
        assert_eq!(new.session_event, Some(SessionEvent::New));
        assert_eq!(new.content, None);
        assert_eq!(new.from_addr.as_deref(), Some(me.as_str()), "from_addr is the peer's host:port");
        assert_eq!(new.to_addr.as_deref(), Some("*120#"), "to_addr comes from config");
        assert_eq!(
            (new.transport_name.as_deref(), new.transport_type.as_deref()),
            (Some("tn"), Some("telnet"))
        );

        w.write_all(b"hello there\r\n").await.expect("write");
        let line = user(next(&mut inbound).await);
        assert_eq!(
            (line.session_event, line.content.as_deref()),
            (Some(SessionEvent::Resume), Some("hello there"))
        );

        // A reply is written to the connection and acked with its own id as sent_message_id.
        let reply = line.reply(Some("hi!".into()), false);
        bus.publish(&RoutingKey::outbound(&connector), reply.clone().into()).await.expect("publish");
        let got = tokio::time::timeout(WAIT, lines.next_line()).await.expect("in time").expect("read");
        assert_eq!(got.as_deref(), Some("hi!"));
        let Message::Event(ack) = next(&mut events).await else { panic!("an event") };
        assert_eq!(ack.user_message_id, reply.message_id);
        assert_eq!(ack.kind, EventKind::Ack { sent_message_id: reply.message_id.clone() });

        // To nobody connected: a nack saying so.
        let stray = UserMessage::send_to("10.0.0.1:1", Some("anyone?".into()), "default");
        bus.publish(&RoutingKey::outbound(&connector), stray.clone().into()).await.expect("publish");
        let Message::Event(nack) = next(&mut events).await else { panic!("an event") };
        assert_eq!(nack.user_message_id, stray.message_id);
        assert_eq!(nack.kind, EventKind::Nack { nack_reason: "Unknown address.".into() });

        // A reply that ends the session is written, then the connection closes, and the
        // transport publishes `close`.
        let bye = line.reply(Some("bye".into()), true);
        bus.publish(&RoutingKey::outbound(&connector), bye.into()).await.expect("publish");
        assert_eq!(
            tokio::time::timeout(WAIT, lines.next_line()).await.expect("in time").expect("read").as_deref(),
            Some("bye")
        );
        assert_eq!(
            tokio::time::timeout(WAIT, lines.next_line()).await.expect("closed in time").expect("read"),
            None
        );
        let close = user(next(&mut inbound).await);
        assert_eq!(close.session_event, Some(SessionEvent::Close));
        assert_eq!(close.from_addr.as_deref(), Some(me.as_str()));

        stop.cancel();
        server.await.expect("join").expect("transport ran cleanly");
    });
}

#[test]
fn a_copy_of_a_message_already_sent_is_dropped_not_written_twice() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let bus = Arc::new(EmbeddedBus::new());
        let connector: vumi_host::names::ConnectorName = "tn-copies".parse().expect("name");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = TelnetConfig { bind: addr, to_addr: None, max_line_bytes: 4096 };
        let sent = Arc::new(vumi_host::transports::Sent::new(&connector, 1000));
        let stop = CancellationToken::new();
        let ctx = TransportContext::new(bus.clone(), connector.clone(), sent.clone(), stop.clone());
        let transport = Box::new(TelnetTransport::new(ctx, listener, &config).expect("transport"));
        // As the supervisor hands it over: copies of what was sent are taken out first.
        let outbound =
            sent.dedupe(bus.consume(&RoutingKey::outbound(&connector), 64).await.expect("consume"));
        let server = tokio::spawn(transport.run(outbound, stop.clone()));
        let mut inbound = bus.consume(&RoutingKey::inbound(&connector), 10).await.expect("consume");
        let mut events = bus.consume(&RoutingKey::event(&connector), 10).await.expect("consume");

        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let me = stream.local_addr().expect("local").to_string();
        let (r, _w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        user(next(&mut inbound).await);

        // The same message twice (a redelivery, or an app's retry with its derived id), then a marker.
        let once = UserMessage::send_to(me.clone(), Some("once".into()), "default");
        let marker = UserMessage::send_to(me.clone(), Some("marker".into()), "default");
        for m in [&once, &once, &marker] {
            bus.publish(&RoutingKey::outbound(&connector), m.clone().into()).await.expect("publish");
        }
        for want in ["once", "marker"] {
            let got = tokio::time::timeout(WAIT, lines.next_line()).await.expect("in time").expect("read");
            assert_eq!(
                got.as_deref(),
                Some(want),
                "the copy is not written: the next line after `once` is the marker"
            );
        }
        for want in [&once, &marker] {
            let Message::Event(e) = next(&mut events).await else { panic!("an event") };
            assert_eq!(e.user_message_id, want.message_id, "one ack for the message, none for its copy");
        }
        stop.cancel();
        let _ = server.await;
    });
}

#[test]
fn acks_wait_for_room_in_a_full_event_queue_and_none_is_dropped() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        // Room for one message per queue, and a publisher waits 50 ms for room before the
        // bus says the queue is full.
        let bus = Arc::new(EmbeddedBus::bounded(1, Duration::from_millis(50)));
        let connector: vumi_host::names::ConnectorName = "tn-full".parse().expect("name");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = TelnetConfig { bind: addr, to_addr: None, max_line_bytes: 4096 };
        let sent = Arc::new(vumi_host::transports::Sent::new(&connector, 1000));
        let stop = CancellationToken::new();
        let ctx = TransportContext::new(bus.clone(), connector.clone(), sent, stop.clone());
        let transport = Box::new(TelnetTransport::new(ctx, listener, &config).expect("transport"));
        let outbound = bus.consume(&RoutingKey::outbound(&connector), 1).await.expect("consume");
        let server = tokio::spawn(transport.run(outbound, stop.clone()));
        let mut inbound = bus.consume(&RoutingKey::inbound(&connector), 1).await.expect("consume");

        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let me = stream.local_addr().expect("local").to_string();
        let (r, _w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        user(next(&mut inbound).await);

        // Nobody reads the event queue yet: the first ack fills it, the second waits.
        let sends: Vec<UserMessage> =
            (1..=3).map(|i| UserMessage::send_to(me.clone(), Some(format!("m{i}")), "default")).collect();
        let publisher = {
            let (bus, connector, sends) = (bus.clone(), connector.clone(), sends.clone());
            tokio::spawn(async move {
                for m in sends {
                    let key = RoutingKey::outbound(&connector);
                    while bus.publish(&key, m.clone().into()).await.is_err() {}
                }
            })
        };
        for want in ["m1", "m2"] {
            let got = tokio::time::timeout(WAIT, lines.next_line()).await.expect("in time").expect("read");
            assert_eq!(got.as_deref(), Some(want));
        }
        // Now the events are read: every ack arrives, in order, none dropped while it waited.
        let mut events = bus.consume(&RoutingKey::event(&connector), 1).await.expect("consume");
        for m in &sends {
            let Message::Event(e) = next(&mut events).await else { panic!("an event") };
            assert_eq!(e.user_message_id, m.message_id, "the ack of {:?}", m.content);
            assert!(matches!(e.kind, EventKind::Ack { .. }), "{e:?}");
        }
        let got = tokio::time::timeout(WAIT, lines.next_line()).await.expect("in time").expect("read");
        assert_eq!(got.as_deref(), Some("m3"), "the transport went on once its event had room");
        publisher.await.expect("publisher");
        stop.cancel();
        let _ = server.await;
    });
}

#[test]
fn text_reaches_the_app_as_typed_and_the_terminal_as_it_can_show_it() {
    // The echo app answers with the text it got; the host refuses no character of it.
    let host =
        crate::common::Host::start(&crate::common::telnet_app_config(&crate::common::plugin("echo"), ""));
    let mut t = host.connect();
    assert_eq!(t.line(), "echo: ready");
    t.send_raw("nul\0in \u{1F600} esc\u{1b}[2J bel\u{7} tab\there\r\n".as_bytes());
    assert_eq!(t.line(), "nul\u{2400}in \u{1F600} esc\u{241B}[2J bel\u{2407} tab\there");
    t.send("still answering");
    assert_eq!(t.line(), "still answering");
}
