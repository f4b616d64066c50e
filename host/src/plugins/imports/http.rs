//! `vumi:plugin/http`: a plugin's outbound calls, through [`crate::egress`], counted per message
//! and logged.

use std::time::{Duration, Instant};

use crate::egress::{self, EgressError};
use crate::plugins::bindings::http::{Host, HttpError, Request, Response};

use super::HostState;

type R<T> = wasmtime::Result<T>;

fn to_wit(e: EgressError) -> HttpError {
    match e {
        EgressError::NotAllowed(m) => HttpError::NotAllowed(m),
        EgressError::Invalid(m) => HttpError::Invalid(m),
        EgressError::Limit(m) => HttpError::Limit(m),
        EgressError::Timeout(m) => HttpError::Timeout(m),
        EgressError::TooLarge(m) => HttpError::TooLarge(m),
        EgressError::Failed(m) => HttpError::Failed(m),
    }
}

/// The URL as logged: without credentials, query or fragment, where API keys tend to travel.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.chars().take(200).collect(),
    }
}

impl Host for HostState {
    async fn fetch(&mut self, request: Request) -> R<Result<Response, HttpError>> {
        let plugin = self.ctx.plugin.clone();
        let owner = crate::names::tenant_of(&plugin).unwrap_or("operator").to_owned();
        let Some(grant) = self.ctx.http.clone() else {
            return Ok(Err(HttpError::NotAllowed(format!(
                "plugin `{plugin}` may make no HTTP calls (this world has no grant)"
            ))));
        };
        if self.call.http_calls >= grant.per_message {
            crate::telemetry::metrics::metrics().http_call(&owner, "limit");
            return Ok(Err(HttpError::Limit(format!(
                "this message already made {} HTTP calls, the most one may (`limits.http_calls_per_message`)",
                self.call.http_calls
            ))));
        }
        self.call.http_calls += 1;
        let (method, url) = (request.method.clone(), shown(&request.url));
        let started = Instant::now();
        let req = egress::Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout: request.timeout_ms.map(|ms| Duration::from_millis(u64::from(ms))),
        };
        let result = egress::fetch(&grant, req).await;
        let ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(r) => {
                tracing::info!(
                    plugin,
                    method,
                    url,
                    status = r.status,
                    bytes = r.body.len(),
                    ms,
                    "plugin HTTP call"
                );
                crate::telemetry::metrics::metrics().http_call(&owner, "ok");
            }
            Err(e) => {
                tracing::warn!(plugin, method, url, outcome = e.kind(), error = %e, ms, "plugin HTTP call failed");
                crate::telemetry::metrics::metrics().http_call(&owner, e.kind());
            }
        }
        Ok(result.map(|r| Response { status: r.status, headers: r.headers, body: r.body }).map_err(to_wit))
    }
}
