//! The host's configuration: one TOML file, parsed into types and validated once at load.
//!
//! Every error names the file, the key and the problem; nothing is checked again later. Unknown
//! keys are errors (`deny_unknown_fields`), so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::names::{AppName, ConnectorName, EndpointName};

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

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
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
    pub apps: BTreeMap<AppName, AppConfig>,
    /// Where failed messages are kept for inspection.
    #[serde(default)]
    pub failures: FailuresConfig,
    /// The directory relative paths were resolved against (the config file's). Not a TOML key.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// Host-wide settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The message bus.
    #[serde(default)]
    pub bus: BusConfig,
    /// The state store.
    #[serde(default)]
    pub state: StateConfig,
}

/// Which bus to use. Only the embedded one exists so far.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BusConfig {
    /// In-process queues: nothing to install.
    #[default]
    Embedded,
}

/// Which state store to use. Only the in-memory one exists so far.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StateConfig {
    /// A map in this process, lost on restart.
    #[default]
    Memory,
}

/// One transport.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransportConfig {
    /// Telnet: each TCP connection is a session (for development and demos).
    Telnet(TelnetConfig),
}

/// Telnet transport settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelnetConfig {
    /// Address to listen on, e.g. `127.0.0.1:9010`.
    pub bind: SocketAddr,
    /// The `to_addr` of inbound messages; defaults to the listening address.
    #[serde(default)]
    pub to_addr: Option<String>,
    /// Longest line accepted, in bytes; a longer line is refused with a message to the user.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    4096
}

/// How an app's instances are used (see the design's "Instances").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstancesConfig {
    /// A fresh sandbox per message.
    Fresh,
    /// Reuse instances (up to `max_messages_per_instance` / `max_instance_age_secs`).
    #[default]
    Pooled,
}

/// One campaign application.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The `.wasm` component, relative to the config file.
    pub plugin: PathBuf,
    /// The connector the app consumes (`<connector>.inbound`, `.event`) and sends on (`.outbound`).
    pub connector: ConnectorName,
    /// Instance policy.
    #[serde(default)]
    pub instances: InstancesConfig,
    /// Pooled instances are retired after this many messages.
    #[serde(default = "default_max_messages")]
    pub max_messages_per_instance: u32,
    /// Pooled instances are retired after this many seconds.
    #[serde(default = "default_max_age")]
    pub max_instance_age_secs: u64,
    /// CPU time one message may take, in milliseconds.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Memory an instance may use, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_limit_mb: u32,
    /// Messages one handler call may send.
    #[serde(default = "default_max_sends")]
    pub max_sends_per_message: u32,
    /// Messages handled at once (messages from one user are still handled in order).
    #[serde(default = "default_concurrency")]
    pub concurrency: u16,
    /// Endpoints the app may `send-to`; `default` is always allowed.
    #[serde(default)]
    pub endpoints: Vec<EndpointName>,
    /// The app's own settings, handed to it through the `config` import.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_max_messages() -> u32 {
    10_000
}
fn default_max_age() -> u64 {
    300
}
fn default_deadline_ms() -> u64 {
    500
}
fn default_memory_mb() -> u32 {
    64
}
fn default_max_sends() -> u32 {
    16
}
fn default_concurrency() -> u16 {
    4
}

/// The failure path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailuresConfig {
    /// Append every failure as a JSON line to this file (relative to the config file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// How many recent failures to keep in memory for the admin API.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

impl Default for FailuresConfig {
    fn default() -> Self {
        Self { path: None, keep: default_keep() }
    }
}

fn default_keep() -> usize {
    1000
}

/// The largest memory cap an app may ask for: the engine reserves this much address space per
/// instance slot.
pub const MAX_MEMORY_LIMIT_MB: u32 = 4096;

impl Config {
    /// Read, parse and validate `path`. Relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    /// Parse and validate `text` as if read from `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.validate(path)?;
        Ok(config)
    }

    /// `p` resolved against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.base_dir.join(p) }
    }

    fn validate(&mut self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        let mut binds: BTreeMap<SocketAddr, &ConnectorName> = BTreeMap::new();
        for (name, t) in &self.transports {
            match t {
                TransportConfig::Telnet(tc) => {
                    if let Some(other) = binds.insert(tc.bind, name) {
                        return Err(invalid(
                            format!("transports.{name}.bind"),
                            format!("{} is already used by transport `{other}`", tc.bind),
                        ));
                    }
                    if tc.max_line_bytes < 16 || tc.max_line_bytes > 1 << 20 {
                        return Err(invalid(
                            format!("transports.{name}.max_line_bytes"),
                            format!("must be between 16 and 1048576, got {}", tc.max_line_bytes),
                        ));
                    }
                }
            }
        }
        for (name, app) in &self.apps {
            let key = |k: &str| format!("apps.{name}.{k}");
            let file = self.resolve(&app.plugin);
            if !file.is_file() {
                return Err(invalid(
                    key("plugin"),
                    format!(
                        "no plugin file at `{}` (resolved against the config file's directory; build the example plugins with `vumi plugin build`)",
                        file.display()
                    ),
                ));
            }
            // With the embedded bus an app can only reach transports in this process.
            if matches!(self.host.bus, BusConfig::Embedded) && !self.transports.contains_key(&app.connector) {
                let known: Vec<_> = self.transports.keys().map(|k| format!("`{k}`")).collect();
                return Err(invalid(
                    key("connector"),
                    format!(
                        "no transport named `{}` in this config (the embedded bus only reaches transports in this process; transports: {})",
                        app.connector,
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                ));
            }
            let ranges: [(&str, u64, u64, u64); 6] = [
                ("deadline_ms", app.deadline_ms, 1, 60_000),
                ("memory_limit_mb", u64::from(app.memory_limit_mb), 1, u64::from(MAX_MEMORY_LIMIT_MB)),
                ("max_sends_per_message", u64::from(app.max_sends_per_message), 0, 10_000),
                ("concurrency", u64::from(app.concurrency), 1, 1024),
                ("max_messages_per_instance", u64::from(app.max_messages_per_instance), 1, u64::from(u32::MAX)),
                ("max_instance_age_secs", app.max_instance_age_secs, 1, 86_400 * 365),
            ];
            for (k, v, lo, hi) in ranges {
                if v < lo || v > hi {
                    return Err(invalid(key(k), format!("must be between {lo} and {hi}, got {v}")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_plugin(dir: &Path) -> PathBuf {
        let p = dir.join("app.wasm");
        std::fs::write(&p, b"\0asm").expect("write");
        p
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("vumi-config-test-{}", crate::message::new_id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        with_plugin(&dir);
        Config::from_toml(text, &dir.join("vumi.toml"))
    }

    const GOOD: &str = r#"
[transports.telnet]
kind = "telnet"
bind = "127.0.0.1:9010"

[apps.survey]
plugin = "app.wasm"
connector = "telnet"
instances = "fresh"
[apps.survey.config]
title = "Survey"
"#;

    #[test]
    fn a_good_config_loads_with_defaults() {
        let c = load(GOOD).expect("valid");
        let app = &c.apps[&"survey".parse::<AppName>().expect("name")];
        assert_eq!(app.instances, InstancesConfig::Fresh);
        assert_eq!(app.deadline_ms, 500);
        assert_eq!(app.config["title"].as_str(), Some("Survey"));
        assert!(c.resolve(&app.plugin).is_file());
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = load(&GOOD.replace("instances = \"fresh\"", "instanses = \"fresh\"")).expect_err("typo").to_string();
        assert!(err.contains("vumi.toml"), "{err}");
        assert!(err.contains("unknown field `instanses`"), "{err}");
        assert!(err.contains("line 9"), "{err}");
    }

    #[test]
    fn missing_plugin_names_file_key_and_fix() {
        let err = load(&GOOD.replace("app.wasm", "nope.wasm")).expect_err("missing").to_string();
        assert!(err.contains("`apps.survey.plugin`"), "{err}");
        assert!(err.contains("nope.wasm"), "{err}");
        assert!(err.contains("vumi plugin build"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = load(&GOOD.replace("instances = \"fresh\"", "deadline_ms = 0")).expect_err("zero").to_string();
        assert!(err.contains("`apps.survey.deadline_ms`: must be between 1 and 60000, got 0"), "{err}");
        let err = load(&GOOD.replace("127.0.0.1:9010", "nowhere")).expect_err("bad addr").to_string();
        assert!(err.contains("invalid socket address"), "{err}");
        let err = load(&GOOD.replace("connector = \"telnet\"", "connector = \"sms\"")).expect_err("conn").to_string();
        assert!(err.contains("`apps.survey.connector`: no transport named `sms`"), "{err}");
        let err = load(&GOOD.replace("[apps.survey]", "[apps.\"bad name\"]")).expect_err("name").to_string();
        assert!(err.contains("bad name"), "{err}");
        let err = load(&GOOD.replace("kind = \"telnet\"", "kind = \"smoke-signals\"")).expect_err("kind").to_string();
        assert!(err.contains("smoke-signals"), "{err}");
    }
}
