//! The checks a config passes once, at load, one file per part of the config: every one names
//! the key at fault and says what would be right. Nothing is checked again later.
//!
//! - `host.rs`: `[host]` (retries, queues, bus, state), `[admin]`, `[plugins]`;
//! - `roles.rs`: `host.roles`, and the part of a config one host runs;
//! - `transports.rs`: `[transports.*]`, one check per kind, and the shared HTTP listener;
//! - `components.rs`: routers, channels and callbacks, middleware and chains, apps, and who
//!   receives each connector's inbound messages.

mod components;
mod host;
mod roles;
mod transports;

use std::path::Path;

use super::*;

/// A value and the range it must be in, by key: `(key, value, lowest, highest)`.
pub(super) type Range<'a> = (&'a str, u64, u64, u64);

/// The first of `ranges` out of range, as its key and the problem; every "must be between"
/// in the config's errors comes from here.
pub(super) fn out_of_range<'a>(ranges: &[Range<'a>]) -> Option<(&'a str, String)> {
    ranges
        .iter()
        .find(|(_, v, lo, hi)| v < lo || v > hi)
        .map(|(k, v, lo, hi)| (*k, format!("must be between {lo} and {hi}, got {v}")))
}

/// A retry policy's waits and attempts in range, or the key (under `prefix`) at fault and why.
pub(super) fn check_retry(prefix: &str, r: &super::RetryPolicy) -> Option<(String, String)> {
    let ranges: [Range; 3] = [
        ("initial_ms", r.initial_ms, 1, 3_600_000),
        ("max_ms", r.max_ms, r.initial_ms, 3_600_000),
        ("max_attempts", u64::from(r.max_attempts), 1, 1000),
    ];
    out_of_range(&ranges).map(|(k, problem)| (format!("{prefix}.{k}"), problem))
}

/// A plugin's CPU deadline and memory cap in range, or the key at fault and why.
pub(super) fn check_limits(deadline_ms: u64, memory_limit_mb: u32) -> Result<(), (&'static str, String)> {
    match out_of_range(&[
        ("deadline_ms", deadline_ms, 1, 60_000),
        ("memory_limit_mb", u64::from(memory_limit_mb), 1, u64::from(MAX_MEMORY_LIMIT_MB)),
    ]) {
        Some(bad) => Err(bad),
        None => Ok(()),
    }
}

/// The largest memory cap an app may ask for: the engine reserves this much address space per
/// instance slot.
pub const MAX_MEMORY_LIMIT_MB: u32 = 4096;

impl Config {
    /// Every check, in the order an operator reads the file: the host, roles, transports,
    /// then what runs on them.
    pub(super) fn validate(&mut self, path: &Path) -> Result<(), ConfigError> {
        self.validate_host(path)?;
        self.check_roles(path)?;
        self.validate_state(path)?;
        self.validate_transports(path)?;
        let router_apps = self.validate_routers(path)?;
        self.validate_channels(path, &router_apps)?;
        self.validate_middleware(path, &router_apps)?;
        self.validate_inbound_owners(path)?;
        self.validate_apps(path, &router_apps)
    }
}
