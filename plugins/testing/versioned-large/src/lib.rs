//! `versioned` with a 4 MiB table: answers `<version> <text> <a byte of the table>`.

#[path = "../../versioned/src/version.rs"]
mod version;

use version::version;
use vumi_sdk::app::Application;
use vumi_sdk::{Message, Result};

static TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/table.bin"));

struct Versioned;

impl Application for Versioned {
    fn new_session(msg: &Message, config: &()) -> Result<()> {
        Self::consume_user_message(msg, config)
    }

    fn consume_user_message(msg: &Message, _config: &()) -> Result<()> {
        let text = msg.content().unwrap_or_default();
        let byte = TABLE[text.len() * 4099 % TABLE.len()];
        msg.reply(format!("{} {text} {byte}", version()))?;
        Ok(())
    }
}

vumi_sdk::export_app!(Versioned);
