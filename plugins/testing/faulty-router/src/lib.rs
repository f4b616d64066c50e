//! Test-only router that misbehaves on request: inbound content `trap` panics, `loop` spins
//! forever, `grow` allocates without bound; anything else goes to connector `app`, and replies
//! back by their transport. The dispatcher must lose only the bad message.
//!
//! With `write_origin_key = true` in its config, every `route_outbound` also writes its own kv
//! key `origin:<message_id>` = `clobbered`: the host must keep the origins it records for
//! `route_event` apart from a router's keys, so this must not change where events go.

use serde::Deserialize;
use vumi_sdk::router::{Router, Target};
use vumi_sdk::{Message, Result, kv};

/// The router's config; every key optional, unknown keys ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Settings {
    /// Write `origin:<message_id>` on every outbound message.
    write_origin_key: bool,
}

struct Faulty;

impl Router<Settings> for Faulty {
    fn route_inbound(msg: &Message, _from: &str, _s: &Settings) -> Result<Vec<Target>> {
        match msg.content() {
            Some("trap") => panic!("faulty router: asked to trap"),
            Some("loop") =>
            {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            Some("grow") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => Ok(vec![Target::to("app")]),
        }
    }

    fn route_outbound(msg: &Message, _from: &str, s: &Settings) -> Result<Vec<Target>> {
        if s.write_origin_key {
            kv::set(&format!("origin:{}", msg.message_id()), "clobbered", None)?;
        }
        Ok(msg.transport_name().map(Target::to).into_iter().collect())
    }
}

vumi_sdk::export_router!(Faulty, config = Settings);
