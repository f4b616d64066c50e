//! A USSD-style multiple-choice survey. A new session asks question 1; each valid answer (an
//! option number) is saved in `kv` and the next question asked; an invalid answer re-asks the
//! question; the last answer gets a summary and ends the session. Hanging up forgets the
//! half-finished survey. With `confirmation` configured, finishing also sends the user a message
//! through another endpoint (the seed's scenario: a USSD survey confirmed by SMS).
//!
//! The dialogue itself is pure logic ([`logic`]), unit-tested natively; this file only wires it
//! to messages and state.

pub mod logic;

use std::time::Duration;

use logic::{Outcome, Progress, Survey};
use vumi_sdk::app::{Application, send_to};
use vumi_sdk::{Message, Result, kv, log};

struct SurveyApp;

fn key(msg: &Message) -> String {
    format!("progress:{}", msg.from_addr().unwrap_or("unknown"))
}

fn ask_first(msg: &Message, survey: &Survey) -> Result<()> {
    let (text, progress) = survey.start();
    // Reply first, then save: if saving fails the handler fails and the reply is not published.
    msg.reply(text)?;
    kv::set_json(&key(msg), &progress, Some(Duration::from_secs(u64::from(survey.session_ttl_seconds))))
}

impl Application<Survey> for SurveyApp {
    fn new_session(msg: &Message, survey: &Survey) -> Result<()> {
        ask_first(msg, survey)
    }

    fn consume_user_message(msg: &Message, survey: &Survey) -> Result<()> {
        let Some(progress) = kv::get_json::<Progress>(&key(msg))? else {
            // No dialogue in progress (an SMS, or the session expired): start one.
            return ask_first(msg, survey);
        };
        match survey.answer(&progress, msg.content().unwrap_or_default()) {
            Outcome::Invalid { text } => {
                msg.reply(text)?;
            }
            Outcome::Next { text, progress } => {
                msg.reply(text)?;
                kv::set_json(
                    &key(msg),
                    &progress,
                    Some(Duration::from_secs(u64::from(survey.session_ttl_seconds))),
                )?;
            }
            Outcome::Done { summary, confirmation } => {
                msg.reply_and_close(summary)?;
                if let (Some((endpoint, text)), Some(user)) = (confirmation, msg.from_addr()) {
                    send_to(user, &text, Some(&endpoint))?;
                }
                kv::delete(&key(msg))?;
                kv::incr("completed", 1)?;
            }
        }
        Ok(())
    }

    fn close_session(msg: &Message, _survey: &Survey) -> Result<()> {
        if kv::delete(&key(msg))? {
            log::info(&format!("{} left the survey before finishing", msg.from_addr().unwrap_or("unknown")));
        }
        Ok(())
    }
}

// The config table is parsed into a `Survey` once per instance (see `logic::Survey`'s
// `Deserialize`, which goes through `logic::Config`).
vumi_sdk::export_app!(SurveyApp, config = Survey);
