//! Telnet, Vumi's development transport: each TCP connection is one user's session.
//!
//! Connecting publishes a `new` session message (no content); each line is a `resume` message
//! with the line as content; `/quit` or a disconnect ends the session with `close`. Outbound
//! messages are written to the connection whose peer address is their `to_addr`; one with session
//! event `close` closes that connection after it is written. Each write is acked (`sent_message_id`
//! is the message id); an outbound for a peer that is not connected is nacked `Unknown address.`.
//! Acks and nacks go through [`TransportContext::report_outcome`]: they wait for room in a full
//! event queue rather than being dropped.
//!
//! **Text on the wire.** Inbound lines pass into the message as they are (NUL and other
//! controls included; only the NUL of a telnet "CR NUL" is framing, and dropped). Outbound text
//! is written so a terminal shows it and cannot be driven by it: each line break in the content
//! (`\r\n`, `\r` or `\n`) becomes a `\r\n`, a tab stays a tab, every other C0 control and
//! DEL is written as its Unicode Control Picture (NUL as `␀`, ESC as `␛`), and C1 controls
//! as `\u{FFFD}`. Everything else, emoji included, is written as UTF-8.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Transport, TransportContext, TransportError};
use crate::bus::{Consumer, Delivery, RoutingKey};
use crate::config::TelnetConfig;
use crate::message::{Event, Message, SessionEvent, UserMessage};

enum Out {
    Line(String),
    Close,
}

type Clients = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Out>>>>;

/// A telnet server on an already bound listener (so the caller reports bind errors, and tests
/// can bind port 0).
pub struct TelnetTransport {
    ctx: TransportContext,
    listener: TcpListener,
    to_addr: String,
    max_line_bytes: usize,
}

impl TelnetTransport {
    /// Serve `ctx`'s connector on `listener` with `config`'s settings.
    pub fn new(ctx: TransportContext, listener: TcpListener, config: &TelnetConfig) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            ctx,
            listener,
            to_addr: config.to_addr.clone().unwrap_or_else(|| local.to_string()),
            max_line_bytes: config.max_line_bytes,
        })
    }
}

#[async_trait::async_trait]
impl Transport for TelnetTransport {
    /// Accept connections and deliver outbound messages until `shutdown`.
    async fn run(
        self: Box<Self>,
        mut outbound: Box<dyn Consumer>,
        shutdown: CancellationToken,
    ) -> Result<(), TransportError> {
        let ctx = self.ctx.clone();
        let clients: Clients = Arc::default();
        let conn = Arc::new(Conn {
            ctx: ctx.clone(),
            to_addr: self.to_addr,
            max_line_bytes: self.max_line_bytes,
            clients: clients.clone(),
        });
        tracing::info!(connector = %ctx.connector, addr = %self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "telnet transport listening");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tokio::spawn(conn.clone().serve(stream, peer, shutdown.clone()));
                    }
                    // Per-connection errors (e.g. the peer reset before accept): keep serving.
                    Err(e) => tracing::warn!(connector = %ctx.connector, error = %e, "telnet accept failed"),
                },
                d = outbound.next() => match d {
                    Some(d) => deliver(&ctx, &clients, d).await,
                    None => break,
                },
            }
        }
        Ok(())
    }
}

async fn deliver(ctx: &TransportContext, clients: &Clients, delivery: Delivery) {
    let Message::User(msg) = &delivery.message else {
        tracing::warn!(connector = %ctx.connector, "telnet transport got a non user message on its outbound queue; dropped");
        delivery.ack();
        return;
    };
    let sender =
        msg.to_addr.as_ref().and_then(|a| clients.lock().unwrap_or_else(|p| p.into_inner()).get(a).cloned());
    let event = match sender {
        Some(tx) => {
            let mut ok = true;
            if let Some(text) = &msg.content {
                ok &= tx.send(Out::Line(for_terminal(text))).is_ok();
            }
            if msg.session_event == Some(SessionEvent::Close) {
                ok &= tx.send(Out::Close).is_ok();
            }
            // An ack also records the message as sent, so a copy of it (a redelivery, an
            // app's retry) is dropped from now on.
            if ok {
                Event::ack(&msg.message_id, &msg.message_id)
            } else {
                Event::nack(&msg.message_id, "Unknown address.")
            }
        }
        None => Event::nack(&msg.message_id, "Unknown address."),
    };
    ctx.report_outcome(event, msg).await;
    delivery.ack();
}

/// `text` as a terminal should get it (see the module doc): line breaks as CRLF, controls as
/// their visible pictures.
fn for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            '\t' => out.push('\t'),
            c @ '\0'..='\u{1F}' => out.push(char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{FFFD}')),
            '\u{7F}' => out.push('\u{2421}'),
            '\u{80}'..='\u{9F}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

struct Conn {
    ctx: TransportContext,
    to_addr: String,
    max_line_bytes: usize,
    clients: Clients,
}

enum Line {
    Text(String),
    TooLong(usize),
    NotUtf8,
    Eof,
}

impl Conn {
    fn inbound(&self, peer: &str, content: Option<String>, session: SessionEvent) -> Message {
        Message::from(UserMessage::inbound(
            self.ctx.connector.as_str(),
            "telnet",
            peer.to_owned(),
            self.to_addr.clone(),
            content,
            Some(session),
        ))
    }

    /// Publish, waiting as long as the queue is full: this connection reads no further line
    /// meanwhile, so a fast typist (or a script) is held back by TCP instead of being dropped.
    async fn publish(&self, m: Message) {
        let key = RoutingKey::inbound(&self.ctx.connector);
        loop {
            match self.ctx.publish.publish(&key, m.clone()).await {
                Ok(()) => return,
                Err(e @ crate::bus::BusError::Full { .. }) => {
                    tracing::debug!(connector = %self.ctx.connector, error = %e, "inbound queue full; this connection waits");
                }
                Err(e) => {
                    tracing::warn!(connector = %self.ctx.connector, error = %e, "cannot publish telnet inbound message");
                    return;
                }
            }
        }
    }

    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
        let peer = peer.to_string();
        let (read, mut write) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).insert(peer.clone(), tx.clone());
        tracing::debug!(connector = %self.ctx.connector, peer, "telnet session opened");

        let closing = CancellationToken::new();
        let writer_closing = closing.clone();
        let writer = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                match out {
                    Out::Line(text) => {
                        let mut bytes = text.into_bytes();
                        bytes.extend_from_slice(b"\r\n");
                        if write.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    Out::Close => break,
                }
            }
            let _ = write.shutdown().await;
            writer_closing.cancel();
        });

        self.publish(self.inbound(&peer, None, SessionEvent::New)).await;
        let mut reader = BufReader::new(read);
        loop {
            let line = tokio::select! {
                () = closing.cancelled() => break,
                () = shutdown.cancelled() => break,
                l = read_line(&mut reader, self.max_line_bytes) => l,
            };
            match line {
                Line::Eof => break,
                Line::Text(t) if t == "/quit" => break,
                Line::Text(t) => self.publish(self.inbound(&peer, Some(t), SessionEvent::Resume)).await,
                Line::TooLong(n) => {
                    tracing::warn!(connector = %self.ctx.connector, peer, bytes = n, limit = self.max_line_bytes, "telnet line too long; ignored");
                    let _ = tx.send(Out::Line(format!(
                        "error: line of {n} bytes ignored; lines may be at most {} bytes",
                        self.max_line_bytes
                    )));
                }
                Line::NotUtf8 => {
                    tracing::warn!(connector = %self.ctx.connector, peer, "telnet line is not valid UTF-8; ignored");
                    let _ = tx.send(Out::Line("error: line ignored: it is not valid UTF-8 text".to_owned()));
                }
            }
        }
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer);
        let _ = tx.send(Out::Close);
        drop(tx);
        let _ = writer.await;
        self.publish(self.inbound(&peer, None, SessionEvent::Close)).await;
        tracing::debug!(connector = %self.ctx.connector, peer, "telnet session closed");
    }
}

/// Read one line of at most `max` bytes (without its CR/LF). A longer line is consumed up to its
/// newline and reported, so the connection stays usable and memory stays bounded.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, max: usize) -> Line {
    let mut line = Vec::new();
    let mut total = 0usize;
    let mut last = None;
    loop {
        let buf = match r.fill_buf().await {
            Ok(b) => b,
            Err(_) => return Line::Eof,
        };
        if buf.is_empty() {
            // EOF: a final unterminated line still counts.
            if total == 0 {
                return Line::Eof;
            }
            break;
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        total += chunk.len();
        if let Some(&b) = chunk.last() {
            last = Some(b);
        }
        // One byte of slack for the CR of a CRLF, which is not part of the line.
        if total <= max + 1 {
            line.extend_from_slice(chunk);
        }
        let used = found.unwrap_or(buf.len());
        r.consume(used);
        if found.is_some() {
            break;
        }
    }
    // Count the line as the user typed it: without the CR of its CRLF.
    let length = total - usize::from(last == Some(b'\r'));
    if length > max {
        return Line::TooLong(length);
    }
    // A telnet client sends a bare carriage return as CR NUL: the NUL is framing, not text.
    if line.windows(2).any(|w| w == b"\r\0") {
        let mut prev = None;
        line.retain(|&b| {
            let framing = b == 0 && prev == Some(b'\r');
            prev = Some(b);
            !framing
        });
    }
    while line.last() == Some(&b'\r') {
        line.pop();
    }
    match String::from_utf8(line) {
        Ok(s) => Line::Text(s),
        Err(_) => Line::NotUtf8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut r = BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        loop {
            match read_line(&mut r, max).await {
                Line::Eof => return out,
                Line::Text(t) => out.push(t),
                Line::TooLong(n) => out.push(format!("<too long: {n}>")),
                Line::NotUtf8 => out.push("<not utf-8>".into()),
            }
        }
    }

    #[tokio::test]
    async fn lines_are_split_and_stripped() {
        assert_eq!(lines(b"one\r\ntwo\nthree", 100).await, ["one", "two", "three"]);
    }

    #[tokio::test]
    async fn an_overlong_line_is_reported_and_the_next_line_still_read() {
        let mut input = vec![b'x'; 1000];
        input.extend_from_slice(b"\nafter\n");
        assert_eq!(lines(&input, 64).await, ["<too long: 1000>", "after"]);
        let mut crlf = vec![b'y'; 65];
        crlf.extend_from_slice(b"\r\n");
        assert_eq!(lines(&crlf, 64).await, ["<too long: 65>"], "the CR of CRLF does not count");
        assert_eq!(lines(b"exactly8\r\n", 8).await, ["exactly8"]);
    }

    #[tokio::test]
    async fn text_comes_in_as_typed_but_for_the_nul_of_a_telnet_cr_nul() {
        assert_eq!(lines(b"nul\0in the middle\n", 100).await, ["nul\0in the middle"]);
        assert_eq!(
            lines(b"bel\x07 esc\x1b[2J \xf0\x9f\x98\x80\n", 100).await,
            ["bel\u{7} esc\u{1b}[2J \u{1F600}"]
        );
        assert_eq!(lines(b"a\r\0b\r\n", 100).await, ["a\rb"]);
    }

    #[test]
    fn text_goes_out_as_a_terminal_shows_it_and_cannot_drive_it() {
        assert_eq!(for_terminal("plain \u{1F600} caf\u{e9}"), "plain \u{1F600} caf\u{e9}");
        assert_eq!(for_terminal("one\ntwo\r\nthree\rfour"), "one\r\ntwo\r\nthree\r\nfour");
        assert_eq!(for_terminal("a\0b\x07c\x1b[2Jd\te\x7f"), "a\u{2400}b\u{2407}c\u{241B}[2Jd\te\u{2421}");
        assert_eq!(for_terminal("c1\u{85}\u{9b}"), "c1\u{FFFD}\u{FFFD}");
    }

    #[tokio::test]
    async fn invalid_utf8_is_reported_and_the_next_line_still_read() {
        assert_eq!(lines(b"\xff\xfe\nok\n", 64).await, ["<not utf-8>", "ok"]);
    }
}
