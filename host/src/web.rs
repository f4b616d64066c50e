//! HTTP plumbing shared by the HTTP transports and the send API: the error envelope, bounded
//! body reading, form and JSON parsing, bearer tokens. The supervisor serves every HTTP route on
//! one listener (`[http]`).
//!
//! Errors use Junebug's response envelope (`status`, `code`, `description`, `result`), with each
//! bad field named in `result.errors`, so clients can show users exactly what to fix.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One bad field of a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    /// The field (form key or JSON property); `body` for the request as a whole.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An HTTP error with Junebug's envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// A sentence for humans.
    pub description: String,
    /// The fields at fault, if any.
    pub errors: Vec<FieldError>,
    /// Seconds for `Retry-After`, on answers that mean "try again later".
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with no field list.
    pub fn new(status: StatusCode, description: impl Into<String>) -> Self {
        Self { status, description: description.into(), errors: Vec::new(), retry_after: None }
    }

    /// `400` naming each bad field.
    pub fn bad_fields(errors: Vec<FieldError>) -> Self {
        let mut names: Vec<String> = Vec::new();
        for e in &errors {
            let name = format!("`{}`", e.field);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Self {
            status: StatusCode::BAD_REQUEST,
            description: format!("invalid request: check {}", names.join(", ")),
            errors,
            retry_after: None,
        }
    }

    /// `400` for one field.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self::bad_fields(vec![FieldError { field: field.to_owned(), message: message.into() }])
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "status": self.status.as_u16(),
            "code": self.status.canonical_reason().unwrap_or("Error"),
            "description": self.description,
            "result": { "errors": self.errors },
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// Read at most `limit` bytes of `body`; a larger body is `413` (and is not read further).
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    })
}

/// An `application/x-www-form-urlencoded` body as a map (the last of repeated keys wins).
/// Percent-encoded bytes must decode to UTF-8: a field that does not is named in the error,
/// rather than silently turned into replacement characters.
pub fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, ApiError> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(ApiError::bad_field("body", "is not valid UTF-8"));
    };
    let decode = |s: &str| {
        let plus_as_space = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus_as_space).decode_utf8().map(|c| c.into_owned())
    };
    let mut form = HashMap::new();
    let mut errors = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Ok(key) = decode(k) else {
            errors.push(FieldError {
                field: "body".into(),
                message: format!("form key `{k}` does not decode to UTF-8"),
            });
            continue;
        };
        match decode(v) {
            Ok(value) => {
                form.insert(key, value);
            }
            Err(_) => errors.push(FieldError { field: key, message: "does not decode to UTF-8".into() }),
        }
    }
    if errors.is_empty() { Ok(form) } else { Err(ApiError::bad_fields(errors)) }
}

/// A JSON object body.
pub fn parse_json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    if std::str::from_utf8(body).is_err() {
        return Err(ApiError::bad_field("body", "is not valid UTF-8"));
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_field("body", "must be a JSON object")),
        Err(e) => Err(ApiError::bad_field("body", format!("is not valid JSON: {e}"))),
    }
}

/// A required, non-empty text field of a form.
pub fn required<'a>(form: &'a HashMap<String, String>, field: &str, errors: &mut Vec<FieldError>) -> &'a str {
    match form.get(field).map(String::as_str) {
        Some(v) if !v.trim().is_empty() => v,
        Some(_) => {
            errors.push(FieldError { field: field.to_owned(), message: "must not be empty".into() });
            ""
        }
        None => {
            errors.push(FieldError { field: field.to_owned(), message: "is required".into() });
            ""
        }
    }
}

/// `503` for a back end (state store, bus) that failed: logged with its error, the client told
/// to try again. Nothing was accepted, so nothing is lost.
pub fn unavailable(what: &str, error: &dyn std::fmt::Display) -> ApiError {
    // Under overload this happens per request: one line per window, with the count.
    static REFUSED: crate::telemetry::throttle::Throttle =
        crate::telemetry::throttle::Throttle::new(std::time::Duration::from_secs(10));
    crate::telemetry::metrics::metrics().refused(what);
    if let Some(more) = REFUSED.hit() {
        tracing::warn!(%error, more, "{what} unavailable; request refused with 503 ({more} more refusals in the last {} s)", REFUSED.window_secs());
    }
    // Said in the description too: a full queue and a store that is down both pass.
    let mut e =
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("{what} unavailable ({error}); try again"));
    e.retry_after = Some(1);
    e
}

/// The `404` for routes nobody serves, in the same envelope.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The token of `Authorization: Bearer <token>`: missing is `401` (with the
/// `WWW-Authenticate` challenge in the description).
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing `Authorization: Bearer <token>` header",
        ));
    };
    value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "the `Authorization` header must be `Bearer <token>`")
    })
}

/// Check `Authorization: Bearer <token>` with `accepts` (a hashed secret's comparison): missing
/// is `401`, not accepted is `403`.
pub fn check_bearer(headers: &HeaderMap, accepts: impl FnOnce(&str) -> bool) -> Result<(), ApiError> {
    if accepts(bearer(headers)?) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "this token is not accepted here"))
    }
}

/// Whether `body` is a JSON request (by its `Content-Type`); otherwise it is treated as a form.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

/// A `2xx` JSON response in the same envelope as errors.
pub fn ok_json(status: StatusCode, description: &str, result: serde_json::Value) -> Response {
    let body = serde_json::json!({
        "status": status.as_u16(),
        "code": status.canonical_reason().unwrap_or("OK"),
        "description": description,
        "result": result,
    });
    (status, axum::Json(body)).into_response()
}

/// An error with its causes ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn bearer_tokens_are_401_when_missing_and_403_when_wrong() {
        assert_eq!(check_bearer(&headers(None), |t| t == "t").unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            check_bearer(&headers(Some("Basic eA==")), |t| t == "t").unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            check_bearer(&headers(Some("Bearer nope")), |t| t == "t").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(check_bearer(&headers(Some("Bearer t")), |t| t == "t").is_ok());
    }

    #[test]
    fn form_and_json_errors_name_the_body() {
        assert_eq!(parse_form(b"a=%FF").unwrap_err().errors[0].field, "a");
        assert_eq!(parse_form(b"text=1*2+x&b=%C3%A9").unwrap()["text"], "1*2 x");
        assert_eq!(parse_form(b"b=%C3%A9").unwrap()["b"], "\u{e9}");
        assert_eq!(parse_form(&[b'a', b'=', 0xff]).unwrap_err().errors[0].field, "body");
        assert_eq!(parse_json_object(b"[1]").unwrap_err().errors[0].message, "must be a JSON object");
        assert!(
            parse_json_object(b"{\"a\": ").unwrap_err().errors[0].message.starts_with("is not valid JSON")
        );
        assert_eq!(parse_json_object(&[0xff]).unwrap_err().errors[0].message, "is not valid UTF-8");
    }
}
