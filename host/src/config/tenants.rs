//! `[tenants.*]`: organisations hosted side by side, each with its own apps, routers, middleware
//! and channels, the transports it is granted, its limits and its tokens; and [`Secret`], how
//! every token in the config is held (hashed).
//!
//! A tenant's section is written in the tenant's own names (`[tenants.acme.apps.echo]`); at load
//! its components move into the host-wide maps under qualified names (`acme:echo`,
//! [`crate::names::qualify`]), with every connector they name resolved: a transport granted to
//! the tenant keeps its name, one of the tenant's router app connectors is qualified too. So the
//! rest of the host runs one flat config, and a tenant can name nothing it was not given.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AllowedHost, AppConfig, ChainConfig, ChannelConfig, MiddlewareConfig, RouterConfig};
use crate::names::{ComponentName, ConnectorName};

/// A bearer token as the host keeps it: its SHA-256, never the token itself, so that a config
/// dump, a persisted tenant file or a debug log cannot leak it. In TOML it is written either
/// as the token (a development convenience: it is hashed as it is read) or as
/// `sha256:<64 hex digits>` (`vumi token hash <token>` prints that form).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    /// The secret for `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Parse either form; a plain token must be at least 8 characters.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(hex) = text.strip_prefix("sha256:") {
            let bytes = decode_hex(hex.trim()).ok_or_else(|| {
                format!("`sha256:` must be followed by 64 hex digits, got {} characters", hex.len())
            })?;
            return Ok(Self(bytes));
        }
        if text.trim().len() < 8 {
            return Err("a token must be at least 8 characters".into());
        }
        Ok(Self::of(text))
    }

    /// Whether `presented` is this token. Compared without an early exit, so timing does not
    /// reveal how much matched (of the hash, which is all there is to reveal).
    pub fn matches(&self, presented: &str) -> bool {
        self.is(&Self::of(presented))
    }

    /// Whether `other` is the same secret, compared without an early exit (hash a presented
    /// token once with [`Secret::of`], then compare it with many).
    pub fn is(&self, other: &Secret) -> bool {
        other.0.iter().zip(&self.0).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// `sha256:<hex>`, the form to store.
    pub fn stored_form(&self) -> String {
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to tell two apart in a log, too little to matter.
        write!(f, "Secret(sha256:{:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Secret::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The transports (host-wide `[transports.*]`) this tenant's components may take messages
    /// from and send through. Nothing else: deny by default. A transport is granted to one
    /// tenant at most, so no tenant sees another's users.
    #[serde(default)]
    pub transports: Vec<ConnectorName>,
    /// The hosts its plugins may call through the `http` import (deny by default). See
    /// [`AllowedHost`].
    #[serde(default)]
    pub http_allow: Vec<AllowedHost>,
    /// Tokens for the admin API, each seeing and changing this tenant's resources only.
    #[serde(default)]
    pub admin_tokens: Vec<Secret>,
    /// What the tenant's components may consume.
    #[serde(default)]
    pub limits: TenantLimits,
    /// Apps, in the tenant's names.
    #[serde(default)]
    pub apps: BTreeMap<ComponentName, AppConfig>,
    /// Routers, in the tenant's names.
    #[serde(default)]
    pub routers: BTreeMap<ComponentName, RouterConfig>,
    /// Middleware, in the tenant's names.
    #[serde(default)]
    pub middleware: BTreeMap<ComponentName, MiddlewareConfig>,
    /// Chains on the tenant's own router app connectors (a transport's chains are the operator's:
    /// they see every message of that transport).
    #[serde(default)]
    pub chains: BTreeMap<ConnectorName, ChainConfig>,
    /// Send-API channels, in the tenant's names (`/api/v1/channels/<tenant>:<name>/messages`).
    #[serde(default)]
    pub channels: BTreeMap<ComponentName, ChannelConfig>,
}

/// Per-tenant limits. Each has a default, so a tenant without `[tenants.<t>.limits]` is still
/// bounded; an app asking for more than its tenant's limit is refused at load.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// The most memory one instance of one of its plugins may have, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_limit_mb: u32,
    /// The most CPU time one message may take in one of its plugins, in milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Instances its plugins may run at once: the sum of its apps' `concurrency`, plus one
    /// per router and middleware.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Messages per second its apps take from their queues (a token bucket with a burst of
    /// one second's worth). Over it, messages wait on their queue: none is lost.
    #[serde(default = "default_rate")]
    pub inbound_per_sec: u32,
    /// Messages per second its apps may send. Over it, a send is not published: the app gets a
    /// nack naming this limit.
    #[serde(default = "default_rate")]
    pub outbound_per_sec: u32,
    /// The largest value one `kv` key may hold, in bytes.
    #[serde(default = "default_kv_value")]
    pub kv_max_value_bytes: u32,
    /// CPU time its plugins may run per second of wall time, in milliseconds, across all their
    /// instances (1,000: one core's worth). Over it, its running calls pause until the budget
    /// refills, so a tenant whose plugins spin cannot take the cores from the others; the paused
    /// time does not count against a call's CPU deadline (its wall-clock bound still holds).
    #[serde(default = "default_cpu")]
    pub cpu_ms_per_sec: u32,
    /// Fair sharing by default: while another tenant's quick calls are being served, a call of
    /// this tenant that has run more than 5 ms of CPU goes on at no more than this many
    /// milliseconds per second (across its calls), so a spinning tenant cannot slow the
    /// tenants with ordinary traffic. With nobody else busy it runs at full speed (up to
    /// `cpu_ms_per_sec`); two tenants both busy with long calls share the CPU evenly.
    #[serde(default = "default_background_cpu")]
    pub background_cpu_ms_per_sec: u32,
    /// Keys its plugins may hold in `kv`, all together (expired keys stop counting).
    #[serde(default = "default_kv_keys")]
    pub kv_max_keys: u64,
    /// Bytes of values its plugins may hold in `kv`, all together.
    #[serde(default = "default_kv_bytes")]
    pub kv_max_bytes: u64,
    /// Calls to the `http` import one message may make.
    #[serde(default = "default_http_per_message")]
    pub http_calls_per_message: u32,
    /// Calls to the `http` import per second, across its plugins (a token bucket). Over it, a
    /// call fails at once with `limit`, which the plugin can turn into `retry-later`.
    #[serde(default = "default_http_per_sec")]
    pub http_calls_per_sec: u32,
    /// The longest one call may take, body included, in milliseconds. A handler's wall-clock
    /// bound grows by this for each call it may make.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_ms: u64,
    /// The largest response body one call may return, in bytes.
    #[serde(default = "default_http_response")]
    pub http_max_response_bytes: u32,
}

fn default_memory_mb() -> u32 {
    64
}
fn default_deadline_ms() -> u64 {
    500
}
fn default_max_instances() -> u32 {
    64
}
fn default_rate() -> u32 {
    1_000
}
fn default_cpu() -> u32 {
    1_000
}
fn default_background_cpu() -> u32 {
    100
}
fn default_kv_value() -> u32 {
    64 << 10
}
fn default_kv_keys() -> u64 {
    100_000
}
fn default_kv_bytes() -> u64 {
    64 << 20
}
fn default_http_per_message() -> u32 {
    4
}
fn default_http_per_sec() -> u32 {
    50
}
fn default_http_timeout() -> u64 {
    5_000
}
fn default_http_response() -> u32 {
    1 << 20
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            memory_limit_mb: default_memory_mb(),
            deadline_ms: default_deadline_ms(),
            max_instances: default_max_instances(),
            inbound_per_sec: default_rate(),
            outbound_per_sec: default_rate(),
            kv_max_value_bytes: default_kv_value(),
            cpu_ms_per_sec: default_cpu(),
            background_cpu_ms_per_sec: default_background_cpu(),
            kv_max_keys: default_kv_keys(),
            kv_max_bytes: default_kv_bytes(),
            http_calls_per_message: default_http_per_message(),
            http_calls_per_sec: default_http_per_sec(),
            http_timeout_ms: default_http_timeout(),
            http_max_response_bytes: default_http_response(),
        }
    }
}

impl fmt::Display for TenantLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} MiB, {} ms, {} instances, {}/s in, {}/s out, kv values {} B, kv {} keys / {} B, {} CPU ms/s ({} behind others' quick calls), http {}/message {}/s {} ms {} B",
            self.memory_limit_mb,
            self.deadline_ms,
            self.max_instances,
            self.inbound_per_sec,
            self.outbound_per_sec,
            self.kv_max_value_bytes,
            self.kv_max_keys,
            self.kv_max_bytes,
            self.cpu_ms_per_sec,
            self.background_cpu_ms_per_sec,
            self.http_calls_per_message,
            self.http_calls_per_sec,
            self.http_timeout_ms,
            self.http_max_response_bytes
        )
    }
}

use std::path::Path;

use super::{Config, ConfigError};
use crate::names::TenantName;

/// The sections a tenant may own components in, with the host-wide key each moves to.
const OWNED: [&str; 5] = ["apps", "routers", "middleware", "chains", "channels"];

impl Config {
    /// The tenants directory, resolved, if the config names one.
    pub fn tenants_dir(&self) -> Option<std::path::PathBuf> {
        self.host.tenants_dir.as_ref().map(|d| self.resolve(d))
    }

    /// Add the tenants of `[host] tenants_dir` (one `<tenant>.toml` each) to `tenants`. A tenant
    /// in both places, a file whose name is not a tenant name, or one that does not parse is an
    /// error naming the file.
    pub(super) fn read_tenants_dir(&mut self, path: &Path) -> Result<(), ConfigError> {
        let Some(dir) = self.tenants_dir() else { return Ok(()) };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // Not there yet: the admin API makes it on the first change.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(ConfigError::Read { path: dir, source }),
        };
        let mut files: Vec<std::path::PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for file in files {
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let name: TenantName =
                stem.parse().map_err(|e: crate::names::NameError| ConfigError::Invalid {
                    path: file.clone(),
                    key: "(file name)".into(),
                    problem: format!("{e}: a tenant file is named `<tenant>.toml`"),
                })?;
            let text = std::fs::read_to_string(&file)
                .map_err(|source| ConfigError::Read { path: file.clone(), source })?;
            let tenant: TenantConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: file.clone(),
                message: e.to_string().trim_end().to_owned(),
            })?;
            if self.tenants.contains_key(&name) {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    key: format!("tenants.{name}"),
                    problem: format!(
                        "tenant `{name}` is also defined in `{}`; define it in one place",
                        file.display()
                    ),
                });
            }
            self.tenants.insert(name, tenant);
        }
        Ok(())
    }

    /// Move every tenant's components into the host-wide maps under qualified names, resolving
    /// the connectors they name; refuse anything a tenant names that it was not given.
    pub(super) fn flatten_tenants(&mut self, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        // Plain names only outside tenants: `acme:echo` is how tenant acme's `echo` runs.
        let top: Vec<(&str, Vec<String>)> = vec![
            ("apps", self.apps.keys().map(ToString::to_string).collect()),
            ("routers", self.routers.keys().map(ToString::to_string).collect()),
            ("middleware", self.middleware.keys().map(ToString::to_string).collect()),
            ("chains", self.chains.keys().map(ToString::to_string).collect()),
            ("channels", self.channels.keys().map(ToString::to_string).collect()),
            ("transports", self.transports.keys().map(ToString::to_string).collect()),
        ];
        for (section, names) in top {
            if let Some(n) = names.iter().find(|n| n.contains(crate::names::TENANT_SEPARATOR)) {
                return Err(invalid(
                    section.to_owned(),
                    format!(
                        "`{n}`: `:` separates a tenant from a name; write it as [tenants.{}.{section}.{}]",
                        crate::names::tenant_of(n).unwrap_or(""),
                        crate::names::local(n)
                    ),
                ));
            }
        }
        let mut granted: BTreeMap<ConnectorName, TenantName> = BTreeMap::new();
        let tenants = self.tenants.clone();
        for (t, tc) in &tenants {
            let key = |k: &str| format!("tenants.{t}.{k}");
            for tr in &tc.transports {
                if !self.transports.contains_key(tr) {
                    let known: Vec<_> = self.transports.keys().map(|k| format!("`{k}`")).collect();
                    return Err(invalid(
                        key("transports"),
                        format!("no transport named `{tr}` under [transports] (known: {})", known.join(", ")),
                    ));
                }
                if let Some(other) = granted.insert(tr.clone(), t.clone()) {
                    return Err(invalid(
                        key("transports"),
                        format!(
                            "transport `{tr}` is already granted to tenant `{other}`; a transport serves one tenant, so no tenant sees another's users"
                        ),
                    ));
                }
            }
            let l = &tc.limits;
            let ranges: [super::validate::Range; 13] = [
                ("cpu_ms_per_sec", u64::from(l.cpu_ms_per_sec), 1, 1_000_000),
                ("background_cpu_ms_per_sec", u64::from(l.background_cpu_ms_per_sec), 1, 1_000_000),
                ("memory_limit_mb", u64::from(l.memory_limit_mb), 1, u64::from(super::MAX_MEMORY_LIMIT_MB)),
                ("deadline_ms", l.deadline_ms, 1, 60_000),
                ("max_instances", u64::from(l.max_instances), 1, 100_000),
                ("inbound_per_sec", u64::from(l.inbound_per_sec), 1, 10_000_000),
                ("outbound_per_sec", u64::from(l.outbound_per_sec), 1, 10_000_000),
                ("kv_max_keys", l.kv_max_keys, 1, 1_000_000_000),
                ("kv_max_bytes", l.kv_max_bytes, 1, 1 << 40),
                ("http_calls_per_message", u64::from(l.http_calls_per_message), 0, 1_000),
                ("http_calls_per_sec", u64::from(l.http_calls_per_sec), 1, 1_000_000),
                ("http_timeout_ms", l.http_timeout_ms, 1, 120_000),
                ("http_max_response_bytes", u64::from(l.http_max_response_bytes), 1, 64 << 20),
            ];
            if let Some((k, problem)) = super::validate::out_of_range(&ranges) {
                return Err(invalid(key(&format!("limits.{k}")), problem));
            }
            if !(1..=1 << 20).contains(&l.kv_max_value_bytes) {
                return Err(invalid(
                    key("limits.kv_max_value_bytes"),
                    format!("must be 1 to 1048576 (1 MiB), got {}", l.kv_max_value_bytes),
                ));
            }
        }
        // The operator's own components may not take a tenant's transport either.
        for (name, a) in &self.apps {
            if let Some(owner) = granted.get(&a.connector) {
                return Err(invalid(
                    format!("apps.{name}.connector"),
                    format!("transport `{}` is granted to tenant `{owner}`", a.connector),
                ));
            }
        }
        for (name, r) in &self.routers {
            if let Some((tr, owner)) = r.transports.iter().find_map(|tr| granted.get(tr).map(|o| (tr, o))) {
                return Err(invalid(
                    format!("routers.{name}.transports"),
                    format!("transport `{tr}` is granted to tenant `{owner}`"),
                ));
            }
        }
        for (name, c) in &self.channels {
            if let Some(owner) = granted.get(&c.connector) {
                return Err(invalid(
                    format!("channels.{name}.connector"),
                    format!("transport `{}` is granted to tenant `{owner}`", c.connector),
                ));
            }
        }
        for (t, tc) in self.tenants.iter_mut() {
            let key = |k: String| format!("tenants.{t}.{k}");
            let own: std::collections::BTreeSet<ConnectorName> =
                tc.routers.values().flat_map(|r| r.apps.iter().cloned()).collect();
            // A connector as the tenant named it, resolved: granted transports keep their name,
            // the tenant's router app connectors are qualified.
            let resolve = |c: &ConnectorName,
                           k: String,
                           transports_only: bool|
             -> Result<ConnectorName, ConfigError> {
                if !transports_only && own.contains(c) {
                    return Ok(ConnectorName::qualified(t, c));
                }
                if tc.transports.contains(c) {
                    return Ok(c.clone());
                }
                let granted: Vec<_> = tc.transports.iter().map(|g| format!("`{g}`")).collect();
                let granted = if granted.is_empty() { "none".to_owned() } else { granted.join(", ") };
                Err(invalid(
                    key(k),
                    if transports_only || !self.transports.contains_key(c) {
                        format!(
                            "`{c}` is not a transport granted to tenant `{t}` (granted: {granted}){}",
                            if transports_only { "" } else { " nor one of its routers' app connectors" }
                        )
                    } else {
                        format!(
                            "transport `{c}` is not granted to tenant `{t}` (granted: {granted}): the operator grants it in `tenants.{t}.transports`"
                        )
                    },
                ))
            };
            let l = &tc.limits;
            let mut instances = 0u64;
            for (name, mut a) in std::mem::take(&mut tc.apps) {
                a.connector = resolve(&a.connector, format!("apps.{name}.connector"), false)?;
                over_limit(a.memory_limit_mb, a.deadline_ms, l)
                    .map_err(|(k, p)| invalid(key(format!("apps.{name}.{k}")), p))?;
                instances += u64::from(a.concurrency);
                self.apps.insert(ComponentName::qualified(t, &name), a);
            }
            for (name, mut r) in std::mem::take(&mut tc.routers) {
                for tr in r.transports.iter_mut() {
                    *tr = resolve(tr, format!("routers.{name}.transports"), true)?;
                }
                for a in r.apps.iter_mut() {
                    *a = ConnectorName::qualified(t, a);
                }
                over_limit(r.memory_limit_mb, r.deadline_ms, l)
                    .map_err(|(k, p)| invalid(key(format!("routers.{name}.{k}")), p))?;
                instances += 1;
                self.routers.insert(ComponentName::qualified(t, &name), r);
            }
            for (name, m) in std::mem::take(&mut tc.middleware) {
                if let MiddlewareConfig::Plugin(p) = &m {
                    over_limit(p.memory_limit_mb, p.deadline_ms, l)
                        .map_err(|(k, p)| invalid(key(format!("middleware.{name}.{k}")), p))?;
                    instances += 1;
                }
                self.middleware.insert(ComponentName::qualified(t, &name), m);
            }
            if instances > u64::from(l.max_instances) {
                return Err(invalid(
                    key("limits.max_instances".into()),
                    format!(
                        "tenant `{t}`'s plugins may run {instances} instances at once (its apps' `concurrency`, plus one per router and middleware plugin), over its limit of {}",
                        l.max_instances
                    ),
                ));
            }
            for (connector, mut chain) in std::mem::take(&mut tc.chains) {
                if !own.contains(&connector) {
                    return Err(invalid(
                        key(format!("chains.{connector}")),
                        format!(
                            "a tenant's chains go on its own routers' app connectors; `{connector}` is not one (a transport's chains are the operator's: [chains.<transport>])"
                        ),
                    ));
                }
                for step in
                    chain.inbound.iter_mut().chain(chain.outbound.iter_mut()).chain(chain.event.iter_mut())
                {
                    *step = ComponentName::qualified(t, step);
                }
                self.chains.insert(ConnectorName::qualified(t, &connector), chain);
            }
            for (name, mut c) in std::mem::take(&mut tc.channels) {
                c.connector = resolve(&c.connector, format!("channels.{name}.connector"), false)?;
                self.channels.insert(ComponentName::qualified(t, &name), c);
            }
        }
        Ok(())
    }

    /// The tenant that owns component or connector `name` (`None`: the operator's).
    pub fn tenant(&self, name: &str) -> Option<(&TenantName, &TenantConfig)> {
        let t = crate::names::tenant_of(name)?;
        self.tenants.iter().find(|(n, _)| n.as_str() == t)
    }
}

/// An operator-facing key for a flattened component: `apps.acme:echo.plugin` is written
/// `tenants.acme.apps.echo.plugin` in the file.
pub(super) fn tenant_key(key: &str) -> String {
    for section in OWNED {
        if let Some(rest) = key.strip_prefix(section).and_then(|r| r.strip_prefix('.'))
            && let Some((t, local)) = rest.split_once(crate::names::TENANT_SEPARATOR)
        {
            return format!("tenants.{t}.{section}.{local}");
        }
    }
    key.to_owned()
}

fn over_limit(memory_mb: u32, deadline_ms: u64, l: &TenantLimits) -> Result<(), (&'static str, String)> {
    if memory_mb > l.memory_limit_mb {
        return Err((
            "memory_limit_mb",
            format!(
                "{memory_mb} is over the tenant's limit of {} (`limits.memory_limit_mb`)",
                l.memory_limit_mb
            ),
        ));
    }
    if deadline_ms > l.deadline_ms {
        return Err((
            "deadline_ms",
            format!("{deadline_ms} is over the tenant's limit of {} (`limits.deadline_ms`)", l.deadline_ms),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_the_hash_of_its_token_in_either_form() {
        let plain = Secret::parse("acme-admin-token").expect("plain");
        let stored = Secret::parse(&plain.stored_form()).expect("stored");
        assert_eq!(plain, stored);
        assert!(
            stored.matches("acme-admin-token") && !stored.matches("acme-admin-tokeN") && !stored.matches("")
        );
        // The known digest, so the README's example hash stays right.
        assert_eq!(
            plain.stored_form(),
            "sha256:8aeb934816ad3780c8f6c6a2bf98e6df6115b81de9e11de4b3a78a58bb196d90"
        );
        assert!(!format!("{plain:?}").contains("acme"), "Debug never shows the token");
        for bad in ["short", "sha256:abc", &format!("sha256:{}", "g".repeat(64))] {
            assert!(Secret::parse(bad).is_err(), "{bad}");
        }
    }
}
