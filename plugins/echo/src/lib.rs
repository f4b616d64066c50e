//! Echo: answers every message with its own text. The smallest useful app, and the benchmark's
//! subject.

use vumi_sdk::app::Application;
use vumi_sdk::{Message, Result};

struct Echo;

impl Application for Echo {
    fn new_session(msg: &Message, _config: &()) -> Result<()> {
        match msg.content() {
            Some(text) => msg.reply(text)?,
            None => msg.reply("echo: ready")?,
        };
        Ok(())
    }

    fn consume_user_message(msg: &Message, _config: &()) -> Result<()> {
        msg.reply(msg.content().unwrap_or_default())?;
        Ok(())
    }
}

vumi_sdk::export_app!(Echo);
