//! Tenants at run time: list with usage, add, change and remove tenants and their apps, channels, tokens and plugin files, each change applied through the config reload path and undone if rejected.

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use tokio::sync::oneshot;

use crate::telemetry::metrics::metrics;
use crate::tenants::Principal;
use crate::web::{ApiError, ok_json, read_body};
use crate::workers::FailureFilter;

use super::*;

pub(super) async fn tenants(State(s): State<AdminState>, Extension(who): Extension<Principal>) -> Response {
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
                    "background_cpu_ms_per_sec": limits.background_cpu_ms_per_sec,
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

/// Change tenant `t`'s file with `change` (given its TOML, `None` if it has no file yet), then
/// reload; undo it if the reload is rejected.
pub(super) async fn edit_tenant(
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

pub(super) async fn put_tenant(
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

pub(super) async fn delete_tenant(
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

pub(super) async fn put_part(
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

pub(super) async fn delete_part(
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

pub(super) async fn new_token(
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
pub(super) fn hash_tokens(table: &mut toml::Table, key: &str) -> Result<(), ApiError> {
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

pub(super) fn part_section(section: &str) -> Result<&'static str, ApiError> {
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
pub(super) fn own_plugin(s: &AdminState, t: &str, app: &toml::Table) -> Result<(), ApiError> {
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
pub(super) async fn put_file(
    s: &AdminState,
    t: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Result<Response, ApiError> {
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
