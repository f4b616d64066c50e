//! The failure path: list what failed, scoped to the token's tenant, and replay it once.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::tenants::Principal;
use crate::web::{ApiError, ok_json, read_body};
use crate::workers::FailureFilter;

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct FailuresQuery {
    pub(super) limit: Option<usize>,
    pub(super) tenant: Option<String>,
    pub(super) since: Option<String>,
    pub(super) reason: Option<String>,
}

/// `filter` as `who` may use it: a tenant's token is held to its own tenant.
pub(super) fn scoped(who: &Principal, mut filter: FailureFilter) -> Result<FailureFilter, ApiError> {
    filter.check().map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    if let Some(mine) = who.tenant() {
        match &filter.tenant {
            Some(t) if t != mine.as_str() => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("tenant `{mine}`'s token sees only its own failures, not tenant `{t}`'s"),
                ));
            }
            _ => filter.tenant = Some(mine.to_string()),
        }
    }
    Ok(filter)
}

pub(super) async fn failures(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<FailuresQuery>,
) -> Result<Response, ApiError> {
    let filter =
        scoped(&who, FailureFilter { tenant: q.tenant, since: q.since, reason: q.reason, ids: Vec::new() })?;
    let all = s.failures.matching(&filter);
    let limit = q.limit.unwrap_or(100);
    let recent: Vec<_> = all[all.len().saturating_sub(limit)..].to_vec();
    let mut result = serde_json::json!({ "matching": all.len(), "failures": recent });
    if who == Principal::Operator {
        result["total"] = s.failures.total().into();
    }
    Ok(ok_json(StatusCode::OK, "recent failures, newest last", result))
}

pub(super) async fn replay(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, 1 << 20).await?;
    let filter: FailureFilter = if bytes.iter().all(u8::is_ascii_whitespace) {
        FailureFilter::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body must be a JSON filter (`tenant`, `since`, `reason`, `ids`): {e}"),
            )
        })?
    };
    let filter = scoped(&who, filter)?;
    let done = s.failures.replay(&filter, s.publish.as_ref()).await;
    let outcomes: Vec<serde_json::Value> = done
        .iter()
        .map(|r| serde_json::json!({ "id": r.id, "queue": r.queue, "message_id": r.message.get("message_id"), "outcome": r.replay.as_ref().map(|p| p.outcome.clone()) }))
        .collect();
    Ok(ok_json(
        StatusCode::OK,
        &format!("{} failures replayed", outcomes.len()),
        serde_json::json!({ "replayed": outcomes }),
    ))
}
