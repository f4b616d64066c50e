//! Test-only: misbehaves on request, so the host's fault tests can show that a trap, an endless
//! loop or unbounded allocation costs only the message that caused it.
//!
//! Commands (the whole content): `trap` panics, `loop` spins forever, `hog` allocates without
//! bound, `error` rejects with `asked to fail`, `sleep` sleeps an hour in WASI (only the wall-clock
//! bound stops it), `send-then-trap` replies then panics (the reply
//! must never be published), `kv` replies with the incremented counter `count`, `retry [N]`
//! (N defaults to 2) asks the host to retry later the first N times it is handed to a user, then
//! replies `retried after N` (the tries are counted in kv key `retry:<from_addr>`, removed on
//! success, so the command can be repeated), `nap <ms> <tag>` sleeps `ms` milliseconds in WASI
//! and replies `<tag>` (handling times that differ, for ordering tests).
//!
//! The hostile ones (the multi-tenant suite): `recurse` recurses without end, `big-reply` builds
//! a 100 MB reply, `read-file <path>` and `connect <addr>` try the filesystem and a socket
//! (replying with what they got, which must never happen, or rejecting with the error),
//! `kv-big <bytes>` stores a value of that size, and `storm` sends 10,000 messages, rejecting
//! with the host's refusal if any was refused. `http <url>` GETs the URL and replies
//! `http <status> <body>` (the body cut to 200 bytes), `http-times <n> <url>` GETs it `n` times
//! and replies `made <n>`, and `kv-flood <n>` stores `n` keys of 100 bytes; each rejects with
//! the host's refusal, naming the call that met it. Anything else is answered `ok: <content>`.

use std::hint::black_box;

use vumi_sdk::app::Application;
use vumi_sdk::{Error, Message, Result, kv};

struct Faulty;

/// `recurse`: each frame keeps a buffer alive, so the stack runs out rather than being optimised away.
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    // Never true at run time; it keeps the compiler from calling this an endless recursion.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1).wrapping_add(frame[(depth % 64) as usize])
}

/// How many times `retry` is refused before it is answered, without a number.
const DEFAULT_RETRIES: i64 = 2;

/// `retry [N]`: refuse with retry-later N times per user, then answer.
fn retry(msg: &Message, arg: Option<&str>) -> Result<()> {
    let n = match arg {
        None => DEFAULT_RETRIES,
        Some(a) => {
            a.parse::<i64>().map_err(|_| Error::reject(format!("retry: `{a}` is not a number of retries")))?
        }
    };
    let key = format!("retry:{}", msg.from_addr().unwrap_or("unknown"));
    let tries = kv::incr(&key, 1)?;
    if tries <= n {
        return Err(Error::retry_later(format!("asked to retry ({tries} of {n})")));
    }
    msg.reply(format!("retried after {n}"))?;
    kv::delete(&key)?;
    Ok(())
}

impl Application for Faulty {
    fn new_session(msg: &Message, _config: &()) -> Result<()> {
        msg.reply("faulty: ready")?;
        Ok(())
    }

    fn consume_user_message(msg: &Message, _config: &()) -> Result<()> {
        let content = msg.content().unwrap_or_default();
        let mut words = content.split_whitespace();
        if words.next() == Some("retry") {
            let arg = words.next();
            if words.next().is_none() {
                return retry(msg, arg);
            }
        }
        match content {
            "trap" => panic!("asked to trap"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    for i in (0..block.len()).step_by(4096) {
                        block[i] = 1;
                    }
                    hoard.push(black_box(block));
                }
            }
            "error" => Err("asked to fail".into()),
            "sleep" => {
                // Waits in WASI (a monotonic-clock poll): no guest code runs, so no CPU deadline
                // fires; only the host's wall-clock bound ends the call.
                std::thread::sleep(std::time::Duration::from_secs(3600));
                msg.reply("slept")?;
                Ok(())
            }
            "send-then-trap" => {
                msg.reply("this must never be published")?;
                panic!("asked to trap after sending");
            }
            nap if nap.starts_with("nap ") => {
                let mut words = nap.split_whitespace().skip(1);
                let ms: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                let tag = words.next().unwrap_or_default().to_owned();
                std::thread::sleep(std::time::Duration::from_millis(ms));
                msg.reply(tag)?;
                Ok(())
            }
            "recurse" => {
                msg.reply(recurse(0).to_string())?;
                Ok(())
            }
            "big-reply" => {
                msg.reply("x".repeat(100 << 20))?;
                Ok(())
            }
            "storm" => {
                let to = msg.from_addr().unwrap_or("storm");
                let mut refused = None;
                for i in 0..10_000 {
                    if let Err(e) = vumi_sdk::app::send_to(to, &format!("storm {i}"), None) {
                        refused.get_or_insert(e);
                    }
                }
                match refused {
                    Some(e) => Err(Error::reject(format!("storm: {e}"))),
                    None => Ok(()),
                }
            }
            other if other.starts_with("read-file ") => {
                match std::fs::read_to_string(&other["read-file ".len()..]) {
                    Ok(text) => {
                        msg.reply(format!("read {} bytes", text.len()))?;
                        Ok(())
                    }
                    Err(e) => Err(Error::reject(format!("read-file: {e}"))),
                }
            }
            other if other.starts_with("connect ") => {
                match std::net::TcpStream::connect(&other["connect ".len()..]) {
                    Ok(_) => {
                        msg.reply("connected")?;
                        Ok(())
                    }
                    Err(e) => Err(Error::reject(format!("connect: {e}"))),
                }
            }
            other if other.starts_with("kv-big ") => {
                let n: usize = other["kv-big ".len()..].trim().parse().unwrap_or(0);
                match kv::set("big", vec![7u8; n], None) {
                    Ok(()) => {
                        msg.reply(format!("stored {n}"))?;
                        Ok(())
                    }
                    Err(e) => Err(Error::reject(format!("kv-big: {e}"))),
                }
            }
            other if other.starts_with("http ") => match vumi_sdk::http::get(other["http ".len()..].trim()) {
                Ok(r) => {
                    let body = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).into_owned();
                    msg.reply(format!("http {} {body}", r.status))?;
                    Ok(())
                }
                Err(e) => Err(Error::reject(format!("http: {e}"))),
            },
            other if other.starts_with("http-times ") => {
                let mut words = other["http-times ".len()..].split_whitespace();
                let n: u32 = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
                let url = words.next().unwrap_or_default();
                for i in 1..=n {
                    if let Err(e) = vumi_sdk::http::get(url) {
                        return Err(Error::reject(format!("http call {i}: {e}")));
                    }
                }
                msg.reply(format!("made {n}"))?;
                Ok(())
            }
            other if other.starts_with("kv-flood ") => {
                let n: u64 = other["kv-flood ".len()..].trim().parse().unwrap_or(0);
                for i in 0..n {
                    if let Err(e) = kv::set(&format!("flood:{i}"), [b'x'; 100], None) {
                        return Err(Error::reject(format!("kv-flood: key {i}: {e}")));
                    }
                }
                msg.reply(format!("stored {n} keys"))?;
                Ok(())
            }
            "kv" => {
                let n = kv::incr("count", 1)?;
                msg.reply(n.to_string())?;
                Ok(())
            }
            other => {
                msg.reply(format!("ok: {other}"))?;
                Ok(())
            }
        }
    }
}

vumi_sdk::export_app!(Faulty);
