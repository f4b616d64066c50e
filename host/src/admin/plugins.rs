//! Plugins: list, show, deploy (stored content-addressed in the owner's directory, never over a shared file) and reload.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::plugins::AnySlot;
use crate::tenants::Principal;
use crate::web::{ApiError, ok_json, read_body};

use super::*;

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
    pub rejected: Option<crate::status::Rejection>,
    /// The file was removed; the loaded version keeps serving.
    pub file_missing: bool,
}

pub(super) fn view(slot: &dyn AnySlot) -> PluginView {
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

pub(super) async fn list_plugins(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
) -> Response {
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
pub(super) fn slot(s: &AdminState, who: &Principal, name: &str) -> Result<Arc<dyn AnySlot>, ApiError> {
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

pub(super) async fn one_plugin(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let slot = slot(&s, &who, &name)?;
    Ok(ok_json(StatusCode::OK, "plugin", serde_json::to_value(view(slot.as_ref())).unwrap_or_default()))
}

pub(super) fn reloaded(
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

pub(super) async fn deploy(
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

pub(super) async fn reload_plugin(
    State(s): State<AdminState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let slot = slot(&s, &who, &name)?;
    reloaded(slot.as_ref(), slot.reload().await)
}
