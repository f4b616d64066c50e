//! Calling web services from an application: a registration service, a health-information API.
//!
//! Only the hosts the operator lists may be called (`http_allow`); each call has a timeout and a
//! response-size cap, and a message may make only a few (`http_calls_per_message`). Redirects
//! are not followed. A call happens when it is made, even if the handler then fails, so call
//! services that are safe to call again: a message may be handled more than once.
//!
//! ```ignore
//! let r = vumi_sdk::http::post_json("https://api.example.org/register", &json!({"msisdn": from}))?;
//! if r.status != 201 { return Err(format!("registration said {}", r.status).into()); }
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wit::vumi::plugin::http as raw;

/// A response, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (a 404 or a 500 is a response, not an [`Error`]).
    pub status: u16,
    /// Headers, in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (a reject if it is not UTF-8).
    pub fn text(&self) -> crate::Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| crate::Error::Reject(format!("the response body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> crate::Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// Why no response came back: WIT's `http-error`, mirrored so a plugin can `match` on it.
///
/// `?` in a handler turns [`Error::Limit`], [`Error::Timeout`] and [`Error::Failed`] into
/// [`crate::Error::RetryLater`] (the host hands the message back after a backoff) and
/// [`Error::NotAllowed`], [`Error::Invalid`] and [`Error::TooLarge`] into
/// [`crate::Error::Reject`] (trying again would meet the same answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The host, or the address it resolves to, is not allowed.
    NotAllowed(String),
    /// The request is malformed.
    Invalid(String),
    /// Over the calls allowed per message or per second.
    Limit(String),
    /// No whole response within the timeout.
    Timeout(String),
    /// The response was over the size cap.
    TooLarge(String),
    /// The connection failed.
    Failed(String),
}

impl Error {
    /// Whether trying again later may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Limit(_) | Self::Timeout(_) | Self::Failed(_))
    }
}

impl From<raw::HttpError> for Error {
    fn from(e: raw::HttpError) -> Self {
        match e {
            raw::HttpError::NotAllowed(m) => Self::NotAllowed(m),
            raw::HttpError::Invalid(m) => Self::Invalid(m),
            raw::HttpError::Limit(m) => Self::Limit(m),
            raw::HttpError::Timeout(m) => Self::Timeout(m),
            raw::HttpError::TooLarge(m) => Self::TooLarge(m),
            raw::HttpError::Failed(m) => Self::Failed(m),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, why) = match self {
            Self::NotAllowed(w) => ("not allowed", w),
            Self::Invalid(w) => ("invalid request", w),
            Self::Limit(w) => ("over a limit", w),
            Self::Timeout(w) => ("timed out", w),
            Self::TooLarge(w) => ("response too large", w),
            Self::Failed(w) => ("failed", w),
        };
        write!(f, "http {kind}: {why}")
    }
}

impl std::error::Error for Error {}

/// A request to build up and [`send`](Request::send).
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

impl Request {
    /// A request with `method` (`GET`, `POST`, ...) to the absolute `url`.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Set a JSON body (and its content type).
    pub fn json<T: Serialize>(self, value: &T) -> crate::Result<Self> {
        let body = serde_json::to_vec(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// A shorter timeout than the operator's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Make the call and wait for the whole response.
    pub fn send(self) -> Result<Response, Error> {
        let timeout_ms = self.timeout.map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX));
        let r = raw::fetch(&raw::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms,
        })?;
        Ok(Response { status: r.status, headers: r.headers, body: r.body })
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    Request::new("GET", url).send()
}

/// `POST url` with `value` as a JSON body.
pub fn post_json<T: Serialize>(url: &str, value: &T) -> crate::Result<Response> {
    Ok(Request::new("POST", url).json(value)?.send()?)
}
