//! Answers every message with `<version> <text>`; see Cargo.toml for how versions are made.

mod version;

use version::version;
use vumi_sdk::{Application, Message, Result};

struct Versioned;

impl Application for Versioned {
    fn new_session(msg: &Message) -> Result<()> {
        Self::consume_user_message(msg)
    }

    fn consume_user_message(msg: &Message) -> Result<()> {
        msg.reply(format!("{} {}", version(), msg.content().unwrap_or_default()))?;
        Ok(())
    }
}

vumi_sdk::export_app!(Versioned);
