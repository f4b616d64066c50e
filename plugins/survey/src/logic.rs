//! The survey dialogue as pure functions: no imports, so it is tested natively.

use serde::{Deserialize, Serialize};

/// One multiple-choice question.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Question {
    /// The question.
    pub prompt: String,
    /// The answers to choose from, shown numbered from 1.
    pub options: Vec<String>,
}

/// The app's config table (`[apps.<name>.config]`); every key optional.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// Shown above the first question.
    pub title: Option<String>,
    /// The questions; a built-in set if absent or empty.
    pub questions: Option<Vec<Question>>,
    /// How long an abandoned dialogue is remembered.
    pub session_ttl_seconds: Option<u32>,
    /// Also send the user a message when they finish (e.g. an SMS after a USSD survey).
    pub confirmation: Option<Confirmation>,
}

/// The message sent on finishing, through an endpoint of the app's (`[apps.<name>] endpoints`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Confirmation {
    /// The endpoint to send through; the router maps it to a transport (e.g. `sms`).
    pub endpoint: String,
    /// The text; `{answers}` is replaced by the answers, comma-separated.
    pub text: String,
}

/// A user's progress: which question is next and the answers so far (option indexes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Index of the question being asked.
    pub question: usize,
    /// Chosen option index per answered question.
    pub answers: Vec<usize>,
}

/// What an answer leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not a valid answer: ask again with this text.
    Invalid {
        /// The re-ask.
        text: String,
    },
    /// Valid; ask the next question.
    Next {
        /// The next question.
        text: String,
        /// Progress to save.
        progress: Progress,
    },
    /// Valid, and the last: end with this summary.
    Done {
        /// Every question with its answer.
        summary: String,
        /// The confirmation to send, if configured: (endpoint, text).
        confirmation: Option<(String, String)>,
    },
}

/// A configured survey: the app's config table, read through [`Config`].
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "Config")]
pub struct Survey {
    title: Option<String>,
    questions: Vec<Question>,
    /// Seconds an unfinished dialogue is kept.
    pub session_ttl_seconds: u32,
    confirmation: Option<Confirmation>,
}

fn default_questions() -> Vec<Question> {
    let q = |prompt: &str, options: &[&str]| Question {
        prompt: prompt.to_owned(),
        options: options.iter().map(|s| (*s).to_owned()).collect(),
    };
    vec![
        q("How did you hear about us?", &["Radio", "A friend", "SMS", "Other"]),
        q("How old are you?", &["Under 18", "18-35", "36-60", "Over 60"]),
        q("Would you recommend this service?", &["Yes", "No", "Not sure"]),
    ]
}

impl From<Config> for Survey {
    fn from(c: Config) -> Self {
        Self::from_config(c)
    }
}

impl Survey {
    /// From the app's config; questions without options are dropped (they could never be answered).
    pub fn from_config(c: Config) -> Self {
        let mut questions: Vec<Question> =
            c.questions.unwrap_or_default().into_iter().filter(|q| !q.options.is_empty()).collect();
        if questions.is_empty() {
            questions = default_questions();
        }
        Self {
            title: c.title,
            questions,
            session_ttl_seconds: c.session_ttl_seconds.unwrap_or(600).max(1),
            confirmation: c.confirmation,
        }
    }

    fn render(&self, index: usize) -> String {
        let q = &self.questions[index];
        let mut text = q.prompt.clone();
        for (i, o) in q.options.iter().enumerate() {
            text.push_str(&format!("\n{}. {o}", i + 1));
        }
        text
    }

    /// The opening text and the initial progress.
    pub fn start(&self) -> (String, Progress) {
        let mut text = String::new();
        if let Some(t) = &self.title {
            text.push_str(t);
            text.push('\n');
        }
        text.push_str(&self.render(0));
        (text, Progress { question: 0, answers: Vec::new() })
    }

    /// Apply the user's `input` to `progress`.
    pub fn answer(&self, progress: &Progress, input: &str) -> Outcome {
        // Progress saved under an older config may point past the questions: start over.
        let index = progress.question.min(self.questions.len() - 1);
        let q = &self.questions[index];
        let choice = input.trim().parse::<usize>().ok().filter(|n| (1..=q.options.len()).contains(n));
        let Some(choice) = choice else {
            return Outcome::Invalid {
                text: format!(
                    "Please reply with a number from 1 to {}.\n{}",
                    q.options.len(),
                    self.render(index)
                ),
            };
        };
        let mut answers = progress.answers.clone();
        answers.truncate(index);
        answers.push(choice - 1);
        if index + 1 < self.questions.len() {
            return Outcome::Next {
                text: self.render(index + 1),
                progress: Progress { question: index + 1, answers },
            };
        }
        let mut summary = String::from("Thank you! Your answers:");
        let mut chosen = Vec::new();
        for (q, a) in self.questions.iter().zip(&answers) {
            let answer = q.options.get(*a).map(String::as_str).unwrap_or("?");
            summary.push_str(&format!("\n{} {answer}", q.prompt));
            chosen.push(answer);
        }
        let confirmation = self
            .confirmation
            .as_ref()
            .map(|c| (c.endpoint.clone(), c.text.replace("{answers}", &chosen.join(", "))));
        Outcome::Done { summary, confirmation }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Survey {
        Survey::from_config(Config {
            title: Some("Test".into()),
            questions: Some(vec![
                Question { prompt: "Colour?".into(), options: vec!["Red".into(), "Blue".into()] },
                Question {
                    prompt: "Season?".into(),
                    options: vec!["Summer".into(), "Winter".into(), "Spring".into()],
                },
            ]),
            session_ttl_seconds: None,
            confirmation: None,
        })
    }

    #[test]
    fn start_shows_title_and_numbered_options() {
        let (text, p) = two().start();
        assert_eq!(text, "Test\nColour?\n1. Red\n2. Blue");
        assert_eq!(p, Progress { question: 0, answers: vec![] });
    }

    #[test]
    fn valid_answers_advance_and_the_last_summarises() {
        let s = two();
        let (_, p) = s.start();
        let Outcome::Next { text, progress } = s.answer(&p, " 2 ") else { panic!("advance") };
        assert_eq!(text, "Season?\n1. Summer\n2. Winter\n3. Spring");
        assert_eq!(progress, Progress { question: 1, answers: vec![1] });
        let Outcome::Done { summary, confirmation } = s.answer(&progress, "3") else { panic!("done") };
        assert_eq!(summary, "Thank you! Your answers:\nColour? Blue\nSeason? Spring");
        assert_eq!(confirmation, None, "no confirmation unless configured");
    }

    #[test]
    fn a_configured_confirmation_carries_the_answers() {
        let mut s = two();
        s.confirmation =
            Some(Confirmation { endpoint: "sms".into(), text: "Thanks! You chose: {answers}".into() });
        let p = Progress { question: 1, answers: vec![0] };
        let Outcome::Done { confirmation, .. } = s.answer(&p, "2") else { panic!("done") };
        assert_eq!(confirmation, Some(("sms".into(), "Thanks! You chose: Red, Winter".into())));
    }

    #[test]
    fn invalid_answers_re_ask_with_the_valid_range() {
        let s = two();
        let (_, p) = s.start();
        for bad in ["", "0", "3", "red", "1.5", "-1", "99999999999999999999999"] {
            let Outcome::Invalid { text } = s.answer(&p, bad) else { panic!("{bad:?} must be invalid") };
            assert_eq!(text, "Please reply with a number from 1 to 2.\nColour?\n1. Red\n2. Blue");
        }
    }

    #[test]
    fn the_config_table_deserializes_into_a_survey() {
        let s: Survey = serde_json::from_str(
            r#"{"session_ttl_seconds": 5, "questions": [{"prompt": "Q?", "options": ["A"]}]}"#,
        )
        .expect("parses");
        assert_eq!(s.session_ttl_seconds, 5);
        assert_eq!(s.start().0, "Q?\n1. A");
        let err = serde_json::from_str::<Survey>(r#"{"questions": 3}"#).unwrap_err().to_string();
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn defaults_when_unconfigured_and_stale_progress_is_safe() {
        let s = Survey::from_config(Config::default());
        assert!(s.start().0.starts_with("How did you hear about us?"));
        assert_eq!(s.session_ttl_seconds, 600);
        let stale = Progress { question: 7, answers: vec![0, 0, 0, 0, 0, 0, 0] };
        assert!(matches!(s.answer(&stale, "1"), Outcome::Done { .. }));
    }
}
