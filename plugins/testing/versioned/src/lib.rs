//! Answers every message with `<version> <text>`; see Cargo.toml for how versions are made.

mod version;

use version::version;
use vumi_sdk::app::Application;
use vumi_sdk::{Message, Result};

struct Versioned;

impl Application for Versioned {
    fn new_session(msg: &Message, config: &()) -> Result<()> {
        Self::consume_user_message(msg, config)
    }

    fn consume_user_message(msg: &Message, _config: &()) -> Result<()> {
        msg.reply(format!("{} {}", version(), msg.content().unwrap_or_default()))?;
        Ok(())
    }
}

vumi_sdk::export_app!(Versioned);
