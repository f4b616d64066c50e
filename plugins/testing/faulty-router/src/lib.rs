//! Test-only router that misbehaves on request: inbound content `trap` panics, `loop` spins
//! forever, `grow` allocates without bound; anything else goes to connector `app`, and replies
//! back by their transport. The dispatcher must lose only the bad message.

use vumi_router_sdk::{Message, Result, Router, Target};

struct Faulty;

impl Router for Faulty {
    fn route_inbound(msg: &Message, _from: &str) -> Result<Vec<Target>> {
        match msg.content() {
            Some("trap") => panic!("faulty router: asked to trap"),
            Some("loop") => {
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

    fn route_outbound(msg: &Message, _from: &str) -> Result<Vec<Target>> {
        Ok(msg.transport_name().map(Target::to).into_iter().collect())
    }
}

vumi_router_sdk::export_router!(Faulty);
