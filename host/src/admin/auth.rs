//! Who a token belongs to (the operator, or one tenant) and what it may do: host-wide routes are the operator's, a tenant changes only itself.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::tenants::Principal;
use crate::web::{ApiError, bearer};

use super::*;

pub(super) async fn require_token(
    State(s): State<AdminState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    let who = s.tenants.load().principal(bearer(req.headers())?);
    let Some(who) = who else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this token is not accepted here"));
    };
    let mut req = req;
    req.extensions_mut().insert(who);
    Ok(next.run(req).await)
}

/// Host-wide routes are the operator's alone.
pub(super) fn operator_only(who: &Principal, what: &str) -> Result<(), ApiError> {
    match who {
        Principal::Operator => Ok(()),
        Principal::Tenant(t) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{what} is the operator's; tenant `{t}`'s token cannot"),
        )),
    }
}

/// Whether `who` may change tenant `t` (`operator`: only the operator may).
pub(super) fn may_change(who: &Principal, t: &str, operator: bool) -> Result<(), ApiError> {
    match who {
        Principal::Operator => Ok(()),
        Principal::Tenant(mine) if !operator && mine.as_str() == t => Ok(()),
        Principal::Tenant(mine) if mine.as_str() == t => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "a tenant's grants and limits are the operator's; tenant `{t}`'s token cannot change them"
            ),
        )),
        Principal::Tenant(_) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no tenant named `{t}`"))),
    }
}
