//! What a handler returns when it did not handle a message: WIT's `handler-error`.

use crate::wit::vumi::plugin::types as raw;

/// Why a handler did not handle a message. Either way nothing the handler sent is published
/// (sends are transactional); the two differ in what the host does with the message.
///
/// `?` converts the errors a handler meets into the right kind: a [`crate::kv::Error`] whose
/// store is [unavailable](crate::kv::Error::Unavailable) becomes [`Error::RetryLater`] (the store
/// may be back soon), and so does a [`crate::http::Error`] that
/// [may pass later](crate::http::Error::is_retryable) (a timeout, `limit`, a failed
/// connection); every other one becomes [`Error::Reject`], and so do [`crate::SendError`],
/// `serde_json::Error`, `&str` and `String`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The message cannot be handled, now or later (input the plugin does not accept, a bad
    /// setting, a bug): it goes to the host's failure path with this reason, for an operator.
    Reject(String),
    /// The message could be handled later (something it needs is down). The host hands the
    /// same message back in place after a jittered backoff (`[host.retry]`: by default from
    /// 100 ms doubling up to 10 s, each wait its step plus up to half again, 8 tries), holding
    /// that user's later messages behind it. Still asking, it is set aside on the retry path's
    /// delay tiers (`tiers_ms`, by default 1 s, 10 s, 60 s, 600 s; on RabbitMQ, queues
    /// `<queue>.retry.<delay>`) and tried again in place after each, while the user's later
    /// messages go on. Past the last tier it goes to the
    /// failure path with this reason, as a temporary failure an operator can replay.
    RetryLater(String),
}

impl Error {
    /// Refuse the message for good, with `reason` for the operator.
    pub fn reject(reason: impl Into<String>) -> Self {
        Self::Reject(reason.into())
    }

    /// Ask the host to hand the message back later, with `reason` for the log.
    pub fn retry_later(reason: impl Into<String>) -> Self {
        Self::RetryLater(reason.into())
    }

    /// The reason, whichever the kind.
    pub fn reason(&self) -> &str {
        match self {
            Self::Reject(r) | Self::RetryLater(r) => r,
        }
    }

    /// Whether the host will try the message again.
    pub fn is_retry_later(&self) -> bool {
        matches!(self, Self::RetryLater(_))
    }

    pub(crate) fn into_raw(self) -> raw::HandlerError {
        match self {
            Self::Reject(r) => raw::HandlerError::Reject(r),
            Self::RetryLater(r) => raw::HandlerError::RetryLater(r),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Error {}

impl From<&str> for Error {
    fn from(reason: &str) -> Self {
        Self::Reject(reason.to_owned())
    }
}

impl From<String> for Error {
    fn from(reason: String) -> Self {
        Self::Reject(reason)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Reject(format!("JSON: {e}"))
    }
}

impl From<crate::SendError> for Error {
    fn from(e: crate::SendError) -> Self {
        Self::Reject(e.to_string())
    }
}

impl From<crate::kv::Error> for Error {
    fn from(e: crate::kv::Error) -> Self {
        match e {
            crate::kv::Error::Unavailable(_) => Self::RetryLater(e.to_string()),
            _ => Self::Reject(e.to_string()),
        }
    }
}

impl From<crate::http::Error> for Error {
    fn from(e: crate::http::Error) -> Self {
        if e.is_retryable() { Self::RetryLater(e.to_string()) } else { Self::Reject(e.to_string()) }
    }
}

/// `Result` with the SDK's [`Error`]: what every handler returns.
pub type Result<T> = std::result::Result<T, Error>;

/// A handler's result as the export returns it.
pub(crate) fn raw_result<T>(r: Result<T>) -> std::result::Result<T, raw::HandlerError> {
    r.map_err(Error::into_raw)
}
