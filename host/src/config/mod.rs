//! The host's configuration: one TOML file, parsed into types and validated once at load.
//!
//! Every error names the file, the key and the problem; nothing is checked again later. Unknown
//! keys are errors (`deny_unknown_fields`), so a typo never silently falls back to a default.

mod components;
mod egress;
mod host;
mod http;
mod tenants;
#[cfg(test)]
mod tests;
mod transports;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::names::{ComponentName, ConnectorName, TenantName};

pub use components::*;
pub use egress::*;
pub use host::*;
pub use http::*;
pub use tenants::*;
pub use transports::*;
pub use validate::MAX_MEMORY_LIMIT_MB;

/// Why a config file was refused. The `Display` text is what an operator reads: file, key, problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse into the expected shape (syntax, unknown key, wrong type).
    #[error("invalid config file `{path}`: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's report, with line, column and key.
        message: String,
    },
    /// It parses, but a value is unusable.
    #[error("invalid config file `{path}`: `{key}`: {problem}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The dotted key, e.g. `apps.survey.plugin`.
        key: String,
        /// What is wrong and, where possible, how to fix it.
        problem: String,
    },
}

/// Where each owner's files live: the only places a deploy or an upload writes, and the only
/// place a tenant's own change may point an app at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDirs {
    /// The config file's directory (relative paths are resolved against it).
    pub base: PathBuf,
    /// `[host] data_dir`, resolved.
    pub data: PathBuf,
    /// `[host] tenants_dir`, resolved.
    pub tenants: Option<PathBuf>,
}

impl OwnDirs {
    /// The directory of `tenant` (`None`: the operator): `<tenants_dir>/<tenant>` if the
    /// config keeps a tenants directory, else `<data_dir>/tenants/<tenant>`; the operator's is
    /// `<data_dir>/operator`.
    pub fn own(&self, tenant: Option<&str>) -> PathBuf {
        match (tenant, &self.tenants) {
            (Some(t), Some(dir)) => dir.join(t),
            (Some(t), None) => self.data.join("tenants").join(t),
            (None, _) => self.data.join("operator"),
        }
    }

    /// Where an owner's deployed versions are stored.
    pub fn deployed(&self, tenant: Option<&str>) -> PathBuf {
        self.own(tenant).join("deployed")
    }

    /// `p` as the config resolves a path written in it.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.base.join(p) }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host-wide settings: back ends and engine limits.
    #[serde(default)]
    pub host: HostConfig,
    /// Transports by name; the name is also the transport's connector unless it says otherwise.
    #[serde(default)]
    pub transports: BTreeMap<ConnectorName, TransportConfig>,
    /// Campaign applications (WASM plugins) by name.
    #[serde(default)]
    pub apps: BTreeMap<ComponentName, AppConfig>,
    /// Dispatchers by name: a router plugin between transport connectors and app connectors.
    #[serde(default)]
    pub routers: BTreeMap<ComponentName, RouterConfig>,
    /// Where failed messages are kept for inspection.
    #[serde(default)]
    pub failures: FailuresConfig,
    /// The HTTP listener shared by every HTTP transport and the send API.
    #[serde(default)]
    pub http: HttpConfig,
    /// Send-API channels by name (`/api/v1/channels/<name>/messages`).
    #[serde(default)]
    pub channels: BTreeMap<ComponentName, ChannelConfig>,
    /// How `mo_url` and `event_url` callbacks are delivered.
    #[serde(default)]
    pub callbacks: CallbacksConfig,
    /// Middleware by name: plugins (`world middleware`) and native steps.
    #[serde(default)]
    pub middleware: BTreeMap<ComponentName, MiddlewareConfig>,
    /// Which middleware runs, in order, on a connector's messages in each direction.
    #[serde(default)]
    pub chains: BTreeMap<ConnectorName, ChainConfig>,
    /// How plugins are compiled, cached and reloaded.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The operators' API (`vumi plugins ...` talks to it). Absent: no admin listener.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// Tenants by name: each one's components, granted transports, limits and tokens. After
    /// load their components are in the maps above, under qualified names (`acme:echo`).
    #[serde(default)]
    pub tenants: BTreeMap<TenantName, TenantConfig>,
    /// The directory relative paths were resolved against (the config file's). Not a TOML key.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl Config {
    /// Read, parse and validate `path`. Relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    /// Parse and validate `text` as if read from `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.read_tenants_dir(path)?;
        let checked = config.flatten_tenants(path).and_then(|()| config.validate(path));
        checked.map_err(|e| match e {
            ConfigError::Invalid { path, key, problem } => {
                ConfigError::Invalid { path, key: tenants::tenant_key(&key), problem }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// The data directory (`[host] data_dir`), resolved.
    pub fn data_dir(&self) -> PathBuf {
        self.resolve(self.host.data_dir.as_deref().unwrap_or(Path::new("data")))
    }

    /// Each owner's own directory, as this config places them.
    pub fn own_dirs(&self) -> OwnDirs {
        OwnDirs { base: self.base_dir.clone(), data: self.data_dir(), tenants: self.tenants_dir() }
    }

    /// Where compiled components are cached, if anywhere.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if !self.plugins.cache {
            return None;
        }
        if let Some(d) = &self.plugins.cache_dir {
            return Some(self.resolve(d));
        }
        let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from);
        let home =
            std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache"));
        xdg.or(home).map(|d| d.join("vumi").join("components"))
    }

    /// `p` resolved against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.base_dir.join(p) }
    }

    /// Whether the shared HTTP listener is needed.
    pub fn serves_http(&self) -> bool {
        !self.channels.is_empty() || self.transports.values().any(TransportConfig::is_http)
    }
}
