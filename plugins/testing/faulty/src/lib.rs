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
//! and replies `<tag>` (handling times that differ, for ordering tests). Anything else is
//! answered `ok: <content>`.

use std::hint::black_box;

use vumi_sdk::app::Application;
use vumi_sdk::{Error, Message, Result, kv};

struct Faulty;

/// How many times `retry` is refused before it is answered, without a number.
const DEFAULT_RETRIES: i64 = 2;

/// `retry [N]`: refuse with retry-later N times per user, then answer.
fn retry(msg: &Message, arg: Option<&str>) -> Result<()> {
    let n = match arg {
        None => DEFAULT_RETRIES,
        Some(a) => a.parse::<i64>().map_err(|_| Error::reject(format!("retry: `{a}` is not a number of retries")))?,
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
