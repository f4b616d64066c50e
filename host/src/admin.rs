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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::bus::Publish;
use crate::plugins::{AnySlot, Registry};
use crate::telemetry::metrics::{CONTENT_TYPE, metrics};
use crate::tenants::{Principal, Tenants};
use crate::web::{ApiError, bearer, ok_json, read_body};
use crate::workers::{FailureFilter, FailureLog};

/// A request the admin API passes to the supervisor, which owns what it changes.
#[derive(Debug)]
pub enum Control {
    /// Reload the config file; answer with a summary of what changed, or why it was rejected.
    ReloadConfig(oneshot::Sender<Result<String, String>>),
}

/// A transport as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct TransportStatus {
    /// The transport's name (its connector).
    pub name: String,
    /// Its Vumi transport type (`telnet`, `ussd`, `sms`, ...).
    pub kind: String,
    /// Where it listens, for a socket transport.
    pub listening: Option<String>,
    /// `running`, `stopped`, or `failed: <reason>`.
    pub state: String,
    /// Since when it has been in this state (Vumi's timestamp form).
    pub since: String,
}

/// What the supervisor reports about the host as a whole; it writes, the admin API reads.
#[derive(Debug, Default)]
pub struct HostStatus {
    transports: RwLock<BTreeMap<String, Arc<Mutex<TransportStatus>>>>,
    config: Mutex<ConfigStatus>,
}

/// The config file's reload history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    /// The file.
    pub path: String,
    /// When the running config was loaded.
    pub loaded_at: String,
    /// Config reloads applied since start.
    pub reloads: u64,
    /// The latest rejected reload: when and why.
    pub rejected: Option<crate::plugins::Rejection>,
}

impl HostStatus {
    /// Replace the set of transports (start, config reload).
    pub fn set_transports(&self, t: BTreeMap<String, Arc<Mutex<TransportStatus>>>) {
        *self.transports.write().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// The transports, by name.
    pub fn transports(&self) -> Vec<TransportStatus> {
        let t = self.transports.read().unwrap_or_else(|p| p.into_inner());
        t.values().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect()
    }

    /// Update the config's status.
    pub fn with_config(&self, f: impl FnOnce(&mut ConfigStatus)) {
        f(&mut self.config.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The config's status.
    pub fn config(&self) -> ConfigStatus {
        self.config.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
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

async fn require_token(
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
fn operator_only(who: &Principal, what: &str) -> Result<(), ApiError> {
    match who {
        Principal::Operator => Ok(()),
        Principal::Tenant(t) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{what} is the operator's; tenant `{t}`'s token cannot"),
        )),
    }
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

/// A plugin as `GET /plugins` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PluginView {
    /// Its name in config (qualified by its tenant: `acme:echo`).
    pub name: String,
    /// The tenant that owns it (`None`: the operator).
    #[serde(default)]
    pub tenant: Option<String>,
    /// The WIT world it was built for.
    pub world: String,
    /// The file it runs from: the configured one, or a deployed version in its owner's
    /// directory.
    pub path: String,
    /// The file the config names.
    #[serde(default)]
    pub configured: String,
    /// SHA-256 of the running version.
    pub hash: String,
    /// The running version's size in bytes.
    pub size: usize,
    /// When the running version was loaded.
    pub loaded_at: String,
    /// How long loading it took, in milliseconds.
    pub load_ms: f64,
    /// Whether the compiled-component cache served it (`hit`, `compiled`, `rebuilt: <why>`).
    pub cache: String,
    /// Calls that returned ok, across versions.
    pub handled: u64,
    /// Calls that failed, across versions.
    pub failures: u64,
    /// The latest failure's reason.
    pub last_error: Option<String>,
    /// Versions swapped in since start.
    pub reloads: u64,
    /// The latest reload attempt, if it was rejected (the old version kept serving).
    pub rejected: Option<crate::plugins::Rejection>,
    /// The file was removed; the loaded version keeps serving.
    pub file_missing: bool,
}

fn view(slot: &dyn AnySlot) -> PluginView {
    let info = slot.info();
    let v = &info.version;
    PluginView {
        name: info.name.clone(),
        tenant: crate::names::tenant_of(&info.name).map(str::to_owned),
        world: info.world.to_string(),
        path: info.path.display().to_string(),
        configured: info.configured.display().to_string(),
        hash: v.hash.clone(),
        size: v.size,
        loaded_at: v.loaded_at.clone(),
        load_ms: v.load_time.as_secs_f64() * 1000.0,
        cache: match &v.cache {
            crate::plugins::CacheOutcome::Hit => "hit".into(),
            crate::plugins::CacheOutcome::Compiled => "compiled".into(),
            crate::plugins::CacheOutcome::Rebuilt(why) => format!("rebuilt: {why}"),
            crate::plugins::CacheOutcome::Shared => "shared".into(),
        },
        handled: info.handled,
        failures: info.failed,
        last_error: info.last_error.clone(),
        reloads: info.reloads,
        rejected: info.rejected.clone(),
        file_missing: info.file_missing,
    }
}

async fn list_plugins(State(s): State<AdminState>, Extension(who): Extension<Principal>) -> Response {
    let plugins: Vec<PluginView> = s
        .registry
        .all()
        .iter()
        .filter(|(name, _)| who.sees(name))
        .map(|(_, slot)| view(slot.as_ref()))
        .collect();
    ok_json(StatusCode::OK, "plugins", serde_json::json!({ "plugins": plugins }))
}

/// The plugin `name`, if `who` may see it. A tenant names its own plugins as it wrote them
/// (`echo`) or qualified (`acme:echo`); another tenant's is answered exactly as a plugin that does
/// not exist, so a token learns nothing of what it may not see.
fn slot(s: &AdminState, who: &Principal, name: &str) -> Result<Arc<dyn AnySlot>, ApiError> {
    let name = match who.tenant() {
        Some(t) if crate::names::tenant_of(name).is_none() => crate::names::qualify(t, name),
        _ => name.to_owned(),
    };
    s.registry.get(&name).filter(|_| who.sees(&name)).ok_or_else(|| {
        let known: Vec<String> = s.registry.all().into_keys().filter(|n| who.sees(n)).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no plugin named `{name}` (running: {})", known.join(", ")),
        )
    })
}

async fn one_plugin(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let slot = slot(&s, &who, &name)?;
    Ok(ok_json(StatusCode::OK, "plugin", serde_json::to_value(view(slot.as_ref())).unwrap_or_default()))
}

fn reloaded(
    slot: &dyn AnySlot,
    r: Result<crate::plugins::ReloadOutcome, crate::plugins::LoadError>,
) -> Result<Response, ApiError> {
    match r {
        Ok(crate::plugins::ReloadOutcome::Swapped { from, to }) => Ok(ok_json(
            StatusCode::OK,
            "new version serving",
            serde_json::json!({ "outcome": "swapped", "from": from, "to": to, "plugin": view(slot) }),
        )),
        Ok(crate::plugins::ReloadOutcome::Unchanged) => Ok(ok_json(
            StatusCode::OK,
            "this version is already serving",
            serde_json::json!({ "outcome": "unchanged", "plugin": view(slot) }),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("rejected; the running version keeps serving: {e}"),
        )),
    }
}

async fn deploy(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let slot = slot(&s, &who, &name)?;
    let bytes = read_body(body, s.max_upload_bytes).await?;
    if bytes.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the body must be the plugin's .wasm component"));
    }
    // Stored in the owner's own directory, content-addressed: the file the plugin ran from
    // (which other tenants' apps may load too) is never written.
    let name = slot.info().name;
    let tenant = crate::names::tenant_of(&name);
    let (root, dir) = (s.dirs.own(tenant), s.dirs.deployed(tenant));
    let outcome = slot.deploy(bytes.to_vec(), &root, &dir).await;
    if let Ok(crate::plugins::ReloadOutcome::Swapped { .. }) = &outcome
        && let Err(e) = s.deployments.record(&name, &slot.configured(), &slot.path())
    {
        tracing::error!(plugin = name, error = %e, "the new version serves, but a restart will not run it: cannot record the deployment");
    }
    reloaded(slot.as_ref(), outcome)
}

async fn reload_plugin(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let slot = slot(&s, &who, &name)?;
    reloaded(slot.as_ref(), slot.reload().await)
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

async fn tenants(State(s): State<AdminState>, Extension(who): Extension<Principal>) -> Response {
    let listed: Vec<_> = s
        .tenants
        .load()
        .list()
        .into_iter()
        .filter(|(t, _, _)| who.tenant().is_none_or(|mine| mine == t))
        .collect();
    // What each holds in kv (`null` if the store does not answer now).
    let mut kv = BTreeMap::new();
    for (t, limits, _) in &listed {
        let quota = crate::state::Quota::tenant(t.as_str(), limits.kv_max_keys, limits.kv_max_bytes);
        kv.insert(t.clone(), s.state.usage(&quota).await.ok());
    }
    let tenants: Vec<serde_json::Value> = listed
        .into_iter()
        .map(|(t, limits, granted)| {
            let plugins: Vec<String> = s.registry.all().into_keys().filter(|n| crate::names::tenant_of(n) == Some(t.as_str())).collect();
            let m = metrics();
            serde_json::json!({
                "name": t,
                "transports": granted,
                "plugins": plugins,
                "usage": {
                    "messages_in": m.tenant_messages(t.as_str(), "inbound").get(),
                    "messages_out": m.tenant_messages(t.as_str(), "outbound").get(),
                    "waited_for_inbound_rate": m.tenant_limited(t.as_str(), "inbound_per_sec").get(),
                    "nacked_over_outbound_rate": m.tenant_limited(t.as_str(), "outbound_per_sec").get(),
                    "http_calls": m.http_calls_of(t.as_str()),
                    "kv": kv.get(&t).copied().flatten(),
                    "failures": s.failures.matching(&FailureFilter { tenant: Some(t.to_string()), ..FailureFilter::default() }).len(),
                },
                "limits": {
                    "memory_limit_mb": limits.memory_limit_mb,
                    "deadline_ms": limits.deadline_ms,
                    "max_instances": limits.max_instances,
                    "inbound_per_sec": limits.inbound_per_sec,
                    "outbound_per_sec": limits.outbound_per_sec,
                    "kv_max_value_bytes": limits.kv_max_value_bytes,
                    "cpu_ms_per_sec": limits.cpu_ms_per_sec,
                    "kv_max_keys": limits.kv_max_keys,
                    "kv_max_bytes": limits.kv_max_bytes,
                    "http_calls_per_message": limits.http_calls_per_message,
                    "http_calls_per_sec": limits.http_calls_per_sec,
                    "http_timeout_ms": limits.http_timeout_ms,
                    "http_max_response_bytes": limits.http_max_response_bytes,
                },
            })
        })
        .collect();
    ok_json(StatusCode::OK, "tenants", serde_json::json!({ "tenants": tenants }))
}

/// Whether `who` may change tenant `t` (`operator`: only the operator may).
fn may_change(who: &Principal, t: &str, operator: bool) -> Result<(), ApiError> {
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

/// Change tenant `t`'s file with `change` (given its TOML, `None` if it has no file yet), then
/// reload; undo it if the reload is rejected.
async fn edit_tenant(
    s: &AdminState,
    t: &str,
    change: impl FnOnce(Option<toml::Table>) -> Result<Option<toml::Table>, ApiError>,
) -> Result<Response, ApiError> {
    let Some(dir) = &s.dirs.tenants else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this host keeps no tenants directory (`[host] tenants_dir`): change tenants in its config file",
        ));
    };
    let name: crate::names::TenantName = t
        .parse()
        .map_err(|e: crate::names::NameError| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let _one_at_a_time = s.edits.lock().await;
    let file = dir.join(format!("{name}.toml"));
    let before = std::fs::read_to_string(&file).ok();
    let known = s.tenants.load().list().iter().any(|(n, _, _)| n == &name);
    if before.is_none() && known {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("tenant `{name}` is defined in the config file; change it there"),
        ));
    }
    let table = match &before {
        Some(text) => Some(text.parse::<toml::Table>().map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("`{}` does not parse: {e}", file.display()),
            )
        })?),
        None => None,
    };
    let io = |e: std::io::Error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write `{}`: {e}", file.display()))
    };
    match change(table)? {
        Some(t) => {
            std::fs::create_dir_all(dir).map_err(io)?;
            let tmp = dir.join(format!(".{name}.toml.tmp"));
            std::fs::write(&tmp, toml::to_string(&t).unwrap_or_default()).map_err(io)?;
            std::fs::rename(&tmp, &file).map_err(io)?;
        }
        None => std::fs::remove_file(&file).map_err(io)?,
    }
    let (tx, rx) = oneshot::channel();
    let gone = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the host is shutting down");
    s.control.send(Control::ReloadConfig(tx)).await.map_err(|_| gone())?;
    match rx.await.map_err(|_| gone())? {
        Ok(summary) => Ok(ok_json(
            StatusCode::OK,
            &format!("tenant `{name}` changed: {summary}"),
            serde_json::json!({ "tenant": name, "file": file.display().to_string() }),
        )),
        Err(why) => {
            let undone = match &before {
                Some(text) => std::fs::write(&file, text),
                None => std::fs::remove_file(&file),
            };
            if let Err(e) = undone {
                tracing::error!(file = %file.display(), error = %e, "cannot undo a rejected tenant change");
            }
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("rejected, nothing changed: {why}")))
        }
    }
}

async fn put_tenant(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path(t): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    may_change(&who, &t, true)?;
    let text = String::from_utf8(read_body(body, 1 << 20).await?.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the body must be UTF-8 TOML"))?;
    let mut table: toml::Table = text.parse().map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("the body must be the tenant's TOML: {e}"))
    })?;
    hash_tokens(&mut table, "admin_tokens")?;
    if let Some(channels) = table.get_mut("channels").and_then(toml::Value::as_table_mut) {
        for (_, ch) in channels.iter_mut() {
            let Some(ch) = ch.as_table_mut() else { continue };
            hash_tokens(ch, "token")?;
        }
    }
    edit_tenant(&s, &t, |_| Ok(Some(table))).await
}

async fn delete_tenant(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path(t): Path<String>,
) -> Result<Response, ApiError> {
    may_change(&who, &t, true)?;
    edit_tenant(&s, &t, |before| match before {
        Some(_) => Ok(None),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("tenant `{t}` has no file to remove"))),
    })
    .await
}

async fn put_part(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path((t, section, name)): Path<(String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    may_change(&who, &t, false)?;
    let bytes = read_body(body, s.max_upload_bytes).await?;
    if section == "files" {
        return put_file(&s, &t, &name, bytes.to_vec()).await;
    }
    let section = part_section(&section)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the body must be UTF-8 TOML"))?;
    let mut part: toml::Table = text.parse().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be the {section} entry's TOML table: {e}"),
        )
    })?;
    hash_tokens(&mut part, "token")?;
    if who != Principal::Operator && section == "apps" {
        own_plugin(&s, &t, &part)?;
    }
    edit_tenant(&s, &t, |before| {
        let mut table = before.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no tenant named `{t}` (the operator adds it: PUT /tenants/{t})"),
            )
        })?;
        let entry = table.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(entries) = entry {
            entries.insert(name.clone(), toml::Value::Table(part));
        }
        Ok(Some(table))
    })
    .await
}

async fn delete_part(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path((t, section, name)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    may_change(&who, &t, false)?;
    if section == "tokens" {
        return edit_tenant(&s, &t, |before| {
            let mut table = before
                .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no tenant named `{t}`")))?;
            let tokens = table.get_mut("admin_tokens").and_then(toml::Value::as_array_mut);
            let Some(tokens) = tokens.filter(|list| list.iter().any(|v| v.as_str() == Some(name.as_str())))
            else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("tenant `{t}` has no token `{name}` (tokens are named by their `sha256:` form)"),
                ));
            };
            tokens.retain(|v| v.as_str() != Some(name.as_str()));
            Ok(Some(table))
        })
        .await;
    }
    let section = part_section(&section)?;
    edit_tenant(&s, &t, |before| {
        let mut table =
            before.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no tenant named `{t}`")))?;
        let removed =
            table.get_mut(section).and_then(toml::Value::as_table_mut).and_then(|e| e.remove(&name));
        if removed.is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("tenant `{t}` has no {section} entry `{name}`"),
            ));
        }
        Ok(Some(table))
    })
    .await
}

async fn new_token(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path(t): Path<String>,
) -> Result<Response, ApiError> {
    may_change(&who, &t, false)?;
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let stored = crate::config::Secret::of(&token).stored_form();
    let kept = stored.clone();
    // The reload's own answer is replaced by the token's, which is shown only here.
    edit_tenant(&s, &t, |before| {
        let mut table =
            before.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no tenant named `{t}`")))?;
        let tokens = table.entry("admin_tokens").or_insert_with(|| toml::Value::Array(Vec::new()));
        if let toml::Value::Array(list) = tokens {
            list.push(toml::Value::String(kept));
        }
        Ok(Some(table))
    })
    .await?;
    Ok(ok_json(
        StatusCode::CREATED,
        "a new admin token: it is shown this once (the host keeps only its hash)",
        serde_json::json!({ "tenant": t, "token": token, "id": stored }),
    ))
}

/// Tokens in a tenant's TOML as they are kept: `sha256:` forms only, so the file never holds a
/// token (`admin_tokens` entries, and a channel's `token`).
fn hash_tokens(table: &mut toml::Table, key: &str) -> Result<(), ApiError> {
    let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, format!("`{key}`: {e}"));
    match table.get_mut(key) {
        Some(toml::Value::Array(list)) => {
            for v in list.iter_mut() {
                let text = v.as_str().ok_or_else(|| bad("must be strings".into()))?;
                *v = toml::Value::String(crate::config::Secret::parse(text).map_err(bad)?.stored_form());
            }
        }
        Some(toml::Value::String(text)) => {
            let stored = crate::config::Secret::parse(text).map_err(bad)?.stored_form();
            table.insert(key.to_owned(), toml::Value::String(stored));
        }
        _ => {}
    }
    Ok(())
}

fn part_section(section: &str) -> Result<&'static str, ApiError> {
    match section {
        "apps" => Ok("apps"),
        "channels" => Ok("channels"),
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("`{other}`: a tenant's parts changed here are `apps`, `channels`, `tokens` and `files`"),
        )),
    }
}

/// A tenant's own app must run a plugin from the tenant's own directory (`<tenants_dir>/<t>/`,
/// its uploads and deployed versions), so no tenant can run another's code under its name, nor
/// read the operator's files: the path is resolved as the config resolves it, every `..` and
/// symbolic link followed, and must land inside that directory.
fn own_plugin(s: &AdminState, t: &str, app: &toml::Table) -> Result<(), ApiError> {
    let own = s.dirs.own(Some(t));
    let plugin = app.get("plugin").and_then(toml::Value::as_str).unwrap_or_default();
    let refused = |why: String| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "a tenant's app runs a plugin from its own directory `{}` (upload it with PUT /tenants/{t}/files/<file>.wasm, and name the path it answers): {why}",
                own.display()
            ),
        )
    };
    if plugin.is_empty() {
        return Err(refused("`plugin` is missing".into()));
    }
    crate::plugins::versions::inside(&own, &s.dirs.resolve(std::path::Path::new(plugin)))
        .map(|_| ())
        .map_err(|e| refused(e.to_string()))
}

/// Store an uploaded plugin file in tenant `t`'s directory, content-addressed
/// (`<stem>.<sha256>.wasm`): an upload never changes a file that is already there, so no app
/// loading one (the tenant's own, or anyone's) sees it change; an app is pointed at the new
/// file by changing the app. The bytes must be a component of one of the plugin worlds.
async fn put_file(s: &AdminState, t: &str, name: &str, bytes: Vec<u8>) -> Result<Response, ApiError> {
    let Some(_) = &s.dirs.tenants else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this host keeps no tenants directory (`[host] tenants_dir`)",
        ));
    };
    let tenant: crate::names::TenantName = t
        .parse()
        .map_err(|e: crate::names::NameError| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let stem = name.strip_suffix(".wasm").filter(|stem| {
        !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let Some(stem) = stem else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`{name}`: a plugin file is named `<letters, digits, - or _>.wasm`"),
        ));
    };
    let root = s.dirs.own(Some(tenant.as_str()));
    let at = crate::plugins::versions::stored_path(&root, stem, &bytes);
    let world = crate::plugins::world_of(&s.engine, &at, bytes.clone()).await.map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("rejected, nothing stored: {e}"))
    })?;
    let stem = stem.to_owned();
    let stored = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&root)?;
        crate::plugins::versions::store(&root, &root, &stem, &bytes).map_err(std::io::Error::other)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("store task failed: {e}")))?;
    let path = stored.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot store `{}`: {e}", at.display()))
    })?;
    Ok(ok_json(
        StatusCode::OK,
        "stored; name it as an app's `plugin`",
        serde_json::json!({ "path": path.display().to_string(), "world": world.to_string() }),
    ))
}

#[derive(Debug, Deserialize)]
struct FailuresQuery {
    limit: Option<usize>,
    tenant: Option<String>,
    since: Option<String>,
    reason: Option<String>,
}

/// `filter` as `who` may use it: a tenant's token is held to its own tenant.
fn scoped(who: &Principal, mut filter: FailureFilter) -> Result<FailureFilter, ApiError> {
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

async fn failures(
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

async fn replay(
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    fn state() -> (AdminState, mpsc::Receiver<Control>) {
        let (control, rx) = mpsc::channel(1);
        let failures = Arc::new(FailureLog::new(10, None).expect("log"));
        let config = crate::config::Config::from_toml(
            "[admin]\ntoken = \"secret-token\"\n",
            std::path::Path::new("t.toml"),
        )
        .expect("config");
        let bus = Arc::new(crate::bus::EmbeddedBus::new());
        let state = AdminState {
            tenants: Arc::new(ArcSwap::from_pointee(Tenants::from_config(&config))),
            registry: Arc::new(Registry::new()),
            failures,
            publish: bus.clone(),
            dirs: config.own_dirs(),
            deployments: Arc::new(crate::plugins::versions::Deployments::open(None).expect("in memory")),
            engine: crate::plugins::Engine::new(&crate::plugins::EngineSettings {
                max_instances: 4,
                max_stacks: 4,
                ..Default::default()
            })
            .expect("engine"),
            edits: Arc::default(),
            status: Arc::new(HostStatus::default()),
            control,
            max_upload_bytes: 1024,
            state: Arc::new(crate::state::MemoryStore::new()),
            bus,
        };
        (state, rx)
    }

    async fn call(
        state: &AdminState,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Body,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = router(state.clone()).oneshot(req.body(body).expect("request")).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn health_is_open_and_everything_else_wants_the_token() {
        let (s, _rx) = state();
        let (status, body) = call(&s, "GET", "/health", None, Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["result"]["plugins"], 0);
        for uri in ["/plugins", "/transports", "/failures", "/metrics"] {
            assert_eq!(call(&s, "GET", uri, None, Body::empty()).await.0, StatusCode::UNAUTHORIZED, "{uri}");
            assert_eq!(
                call(&s, "GET", uri, Some("wrong"), Body::empty()).await.0,
                StatusCode::FORBIDDEN,
                "{uri}"
            );
        }
        let (status, body) = call(&s, "GET", "/plugins", Some("secret-token"), Body::empty()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["result"]["plugins"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn an_unknown_plugin_or_route_is_a_404_in_the_error_envelope() {
        let (s, _rx) = state();
        let (status, body) = call(&s, "GET", "/plugins/nope", Some("secret-token"), Body::empty()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["description"].as_str().unwrap_or_default().contains("nope"), "{body}");
        let (status, _) = call(&s, "PUT", "/plugins/nope", Some("secret-token"), Body::from("x")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            call(&s, "GET", "/nowhere", Some("secret-token"), Body::empty()).await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn a_config_reload_is_asked_of_the_supervisor_and_its_answer_returned() {
        let (s, mut rx) = state();
        let supervisor = tokio::spawn(async move {
            let Some(Control::ReloadConfig(reply)) = rx.recv().await else { panic!("a reload request") };
            let _ = reply.send(Err("`apps.x`: bad".into()));
        });
        let (status, body) = call(&s, "POST", "/reload", Some("secret-token"), Body::empty()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["description"].as_str().unwrap_or_default().contains("`apps.x`: bad"), "{body}");
        supervisor.await.expect("supervisor");
    }
}
