//! The operators' API, on its own listener (`[admin]`): what runs, how it is doing, and the two
//! things an operator does while traffic flows — deploy a new plugin version and reload.
//!
//! Every route but `/health` wants `Authorization: Bearer <token>`: the operator's
//! (`[admin] token`), which sees everything, or a tenant's (`tenants.<t>.admin_tokens`), which
//! sees only that tenant's plugins, transports and failures: another tenant's are answered as if
//! they did not exist (`404`), and host-wide routes (`/reload`, `/metrics`) with `403` and why.
//! Responses use the same envelope as the send API (`status`, `code`, `description`, `result`).
//!
//! | route | does |
//! |---|---|
//! | `GET /health` | `200` while the host serves (no token: for load balancers) |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text) |
//! | `GET /plugins` | every plugin: world, content hash, loaded at, handled, failures, last error, last rejected reload |
//! | `GET /plugins/{name}` | one plugin |
//! | `PUT /plugins/{name}` | body: a `.wasm` component. Validated, stored content-addressed in its owner's directory (never over the file it ran from, which others may load), swapped in and recorded so a restart runs it; `422` with the reason if it is not a sound component of the plugin's world |
//! | `POST /plugins/{name}/reload` | reload the plugin from its file |
//! | `POST /reload` | reload the config file (as `SIGHUP` does); `422` if it is invalid, and the running config stays |
//! | `GET /transports` | transports and their status |
//! | `GET /tenants` | tenants (a tenant's token: itself), their limits and granted transports |
//! | `PUT /tenants/{t}`, `DELETE /tenants/{t}` | the operator writes or removes tenant `t`'s file in `[host] tenants_dir` (body: its TOML) |
//! | `PUT /tenants/{t}/apps/{name}`, `DELETE ...` | add, change or remove one of `t`'s apps (body: the app's TOML table); `t`'s token or the operator's |
//! | `PUT /tenants/{t}/channels/{name}`, `DELETE ...` | the same for a send-API channel |
//! | `POST /tenants/{t}/tokens` | a new admin token for `t`, answered once (only its hash is kept) |
//! | `DELETE /tenants/{t}/tokens/{sha256:hex}` | revoke one |
//! | `PUT /tenants/{t}/files/{file}.wasm` | upload a plugin file into `<tenants_dir>/<t>/` as `<file>.<sha256>.wasm` (checked to be a component first; never over another file), where `t`'s own apps' plugins must be |
//!
//! Every tenant change is validated and applied exactly as a config reload (the same path), and
//! kept in the tenant's file, so a restart keeps it; a change the reload rejects is undone and
//! answered `422` with the reason.
//! | `GET /failures?limit=N&tenant=T&since=S&reason=R` | the most recent failures, newest last, each with its id, tenant, `failure_code`, reason, queue, the message and its replay (if any) |
//! | `POST /failures/replay` | body `{"tenant"?, "since"?, "reason"?, "ids"?}`: put each matching failure not replayed before back on its queue, once; answers each outcome |

mod auth;
mod failures;
mod plugins;
mod tenants;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

use crate::bus::Publish;
use crate::plugins::Registry;
use crate::status::{HostStatus, TransportStatus};
use crate::telemetry::metrics::{CONTENT_TYPE, metrics};
use crate::tenants::{Principal, Tenants};
use crate::web::{ApiError, ok_json};
use crate::workers::FailureLog;

use auth::*;
use failures::*;
pub use plugins::PluginView;
use plugins::*;
use tenants::*;

/// A request the admin API passes to the supervisor, which owns what it changes.
#[derive(Debug)]
pub enum Control {
    /// Reload the config file; answer with a summary of what changed, or why it was rejected.
    ReloadConfig(oneshot::Sender<Result<String, String>>),
}

/// What the admin API reads and whom it asks.
#[derive(Clone)]
pub struct AdminState {
    /// Whose each token is (replaced on every config reload).
    pub tenants: Arc<ArcSwap<Tenants>>,
    /// Live plugins.
    pub registry: Arc<Registry>,
    /// The failure path.
    pub failures: Arc<FailureLog>,
    /// Where replayed failures are published (the message path).
    pub publish: Arc<dyn Publish>,
    /// Transports and config.
    pub status: Arc<HostStatus>,
    /// The supervisor's ear.
    pub control: mpsc::Sender<Control>,
    /// The largest upload accepted.
    pub max_upload_bytes: usize,
    /// Each owner's own directory: where deploys and uploads are stored, and where tenant
    /// changes are kept (`dirs.tenants`; `None`: not at run time).
    pub dirs: crate::config::OwnDirs,
    /// Which component runs which deployed version, kept across restarts.
    pub deployments: Arc<crate::plugins::versions::Deployments>,
    /// The engine, to check an upload is a component before it is stored.
    pub engine: crate::plugins::Engine,
    /// One tenant change at a time.
    pub edits: Arc<tokio::sync::Mutex<()>>,
    /// The state store, asked by `/health` whether it answers.
    pub state: Arc<dyn crate::state::KvStore>,
    /// The bus, asked by `/health` whether it is connected.
    pub bus: Arc<dyn crate::bus::Bus>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

/// The admin API's routes.
pub fn router(state: AdminState) -> axum::Router {
    let guarded = axum::Router::new()
        .route("/metrics", get(metrics_text))
        .route("/plugins", get(list_plugins))
        .route("/plugins/{name}", get(one_plugin).put(deploy))
        .route("/plugins/{name}/reload", post(reload_plugin))
        .route("/reload", post(reload_config))
        .route("/transports", get(transports))
        .route("/tenants", get(tenants))
        .route("/tenants/{tenant}", axum::routing::put(put_tenant).delete(delete_tenant))
        .route("/tenants/{tenant}/{section}/{name}", axum::routing::put(put_part).delete(delete_part))
        .route("/tenants/{tenant}/tokens", post(new_token))
        .route("/failures", get(failures))
        .route("/failures/replay", post(replay))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    axum::Router::new()
        .route("/health", get(health))
        .merge(guarded)
        .fallback(crate::web::not_found)
        .with_state(state)
}

async fn health(State(s): State<AdminState>) -> Response {
    let plugins = s.registry.all().len();
    let transports = s.status.transports();
    let failed: Vec<&str> =
        transports.iter().filter(|t| t.state.starts_with("failed")).map(|t| t.name.as_str()).collect();
    let state = s.state.ping().await;
    let bus = s.bus.health();
    let result = serde_json::json!({
        "plugins": plugins,
        "transports": transports.len(),
        "failed_transports": failed,
        "state": match &state { Ok(()) => "ok".to_owned(), Err(e) => e.to_string() },
        "bus": match &bus { Ok(()) => "ok".to_owned(), Err(e) => e.clone() },
    });
    if state.is_err() {
        ok_json(StatusCode::SERVICE_UNAVAILABLE, "the state store is unavailable", result)
    } else if bus.is_err() {
        ok_json(StatusCode::SERVICE_UNAVAILABLE, "the message bus is unavailable", result)
    } else if failed.is_empty() {
        ok_json(StatusCode::OK, "serving", result)
    } else {
        ok_json(StatusCode::SERVICE_UNAVAILABLE, "a transport has failed", result)
    }
}

async fn metrics_text(Extension(who): Extension<Principal>) -> Result<Response, ApiError> {
    operator_only(&who, "`/metrics` (every tenant's figures)")?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics().render()).into_response())
}

async fn reload_config(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    operator_only(&who, "reloading the host's config")?;
    let (tx, rx) = oneshot::channel();
    let gone = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the host is shutting down");
    s.control.send(Control::ReloadConfig(tx)).await.map_err(|_| gone())?;
    match rx.await.map_err(|_| gone())? {
        Ok(summary) => {
            Ok(ok_json(StatusCode::OK, &summary, serde_json::to_value(s.status.config()).unwrap_or_default()))
        }
        Err(why) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("config rejected; the running one stays: {why}"),
        )),
    }
}

async fn transports(State(s): State<AdminState>, Extension(who): Extension<Principal>) -> Response {
    let tenants = s.tenants.load();
    let visible: Vec<TransportStatus> =
        s.status.transports().into_iter().filter(|t| tenants.transport_visible(&who, &t.name)).collect();
    let mut result = serde_json::json!({ "transports": visible });
    if who == Principal::Operator {
        result["config"] = serde_json::to_value(s.status.config()).unwrap_or_default();
    }
    ok_json(StatusCode::OK, "transports", result)
}
