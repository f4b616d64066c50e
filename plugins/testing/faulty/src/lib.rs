//! Test-only: misbehaves on request, so the host's fault tests can show that a trap, an endless
//! loop or unbounded allocation costs only the message that caused it.

use std::hint::black_box;

use vumi_sdk::{Application, Message, Result, kv};

struct Faulty;

impl Application for Faulty {
    fn new_session(msg: &Message) -> Result<()> {
        msg.reply("faulty: ready")?;
        Ok(())
    }

    fn consume_user_message(msg: &Message) -> Result<()> {
        match msg.content().unwrap_or_default() {
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
            "send-then-trap" => {
                msg.reply("this must never be published")?;
                panic!("asked to trap after sending");
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
