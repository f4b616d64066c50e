//! From config tables to what the plugin runtime takes: instance policies, limits, namespaces,
//! config as JSON.

use std::time::Duration;

use crate::config::{Config, InstancesConfig, MiddlewareConfig};
use crate::names::ComponentName;
use crate::plugins::{InstancePolicy, Limits, Settings};
use crate::state::{Namespace, Namespaced};

use super::RunningHost;

/// The largest memory cap any plugin in `config` asks for.
pub(super) fn largest_memory_limit(config: &Config) -> u32 {
    config
        .apps
        .values()
        .map(|a| a.memory_limit_mb)
        .chain(config.routers.values().map(|r| r.memory_limit_mb))
        .chain(config.middleware.values().filter_map(|m| match m {
            MiddlewareConfig::Plugin(p) => Some(p.memory_limit_mb),
            MiddlewareConfig::Log(_) => None,
        }))
        .max()
        .unwrap_or(64)
}

/// How many instances the engine's pool must hold for `config`: every app's lanes, one per
/// router and middleware plugin, doubled for reloads (old and new versions live side by side
/// while a swap finishes) and idle pooled instances; never under 1,000. The pool is sized once,
/// at start: a reload that needs more than this fails its instantiations (each reported).
pub(super) fn pool_instances(config: &Config) -> u32 {
    u32::try_from(lanes(config) * 2 + 64).unwrap_or(u32::MAX).max(1000)
}

/// How many calls may be in guests at once for `config`: every app lane, a few calls at a time
/// per router and middleware (they run in publishers' tasks), never under 1,000. Unlike
/// instances, every pooled stack costs two memory mappings for the host's life, and Linux
/// allows a process 65,530 by default (`vm.max_map_count`): so no doubling here.
pub(super) fn pool_stacks(config: &Config) -> u32 {
    u32::try_from(lanes(config) + rules(config) * 8 + 64).unwrap_or(u32::MAX).max(1000)
}

fn rules(config: &Config) -> u64 {
    (config.routers.len()
        + config.middleware.values().filter(|m| matches!(m, MiddlewareConfig::Plugin(_))).count()) as u64
}

fn lanes(config: &Config) -> u64 {
    config.apps.values().map(|a| u64::from(a.concurrency)).sum::<u64>() + rules(config)
}

/// Whether the kernel lets this process map what `config`'s plugins need: each pooled stack
/// takes two mappings, each live instance about three (its memory and image). A host of
/// thousands of tenants meets Linux's default of 65,530 (`vm.max_map_count`) before it meets
/// any memory limit; say so at start rather than fail an instantiation later.
pub(super) fn check_map_count(config: &Config) {
    let Some(limit) =
        std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return;
    };
    let need = u64::from(pool_stacks(config)) * 2 + lanes(config) * 3 + 4_096;
    if need > limit {
        tracing::warn!(
            need,
            limit,
            "this config's plugins may need about {need} memory mappings, over the kernel's vm.max_map_count of {limit}: instantiations will fail with `Cannot allocate memory` once it is reached; raise it (`sysctl -w vm.max_map_count=262144`, as Elasticsearch asks)"
        );
    }
}

/// The account plugin `name`'s kv writes are counted in: its tenant's (`None` for the
/// operator's plugins, bounded by value size only).
pub(super) fn kv_quota(config: &crate::config::Config, name: &str) -> Option<crate::state::Quota> {
    config
        .tenant(name)
        .map(|(t, tc)| crate::state::Quota::tenant(t.as_str(), tc.limits.kv_max_keys, tc.limits.kv_max_bytes))
}

/// The largest kv value plugin `name` may store: its tenant's limit, else 1 MiB.
fn kv_max_value(config: &crate::config::Config, name: &str) -> usize {
    config.tenant(name).map_or(1 << 20, |(_, t)| t.limits.kv_max_value_bytes as usize)
}

/// What app `name` may call over HTTP: its tenant's allow-list and limits, or for the
/// operator's app `[host] http_allow` with the default limits.
fn http_grant(
    config: &crate::config::Config,
    name: &str,
    rates: Option<std::sync::Arc<crate::tenants::Rates>>,
) -> crate::egress::HttpGrant {
    match config.tenant(name) {
        Some((t, tc)) => crate::egress::HttpGrant::new(
            tc.http_allow.clone(),
            format!("tenants.{t}.http_allow"),
            &tc.limits,
            rates,
        ),
        None => crate::egress::HttpGrant::new(
            config.host.http_allow.clone(),
            "host.http_allow".into(),
            &crate::config::TenantLimits::default(),
            None,
        ),
    }
}

impl RunningHost {
    pub(super) fn app_settings(
        &self,
        config: &crate::config::Config,
        name: &ComponentName,
        app: &crate::config::AppConfig,
    ) -> Settings {
        let policy = policy_of(
            app.instances,
            app.max_messages_per_instance,
            Duration::from_secs(app.max_instance_age_secs),
        );
        let mut endpoints: Vec<String> = app.endpoints.iter().map(|e| e.to_string()).collect();
        if !endpoints.iter().any(|e| e == "default") {
            endpoints.push("default".to_owned());
        }
        Settings {
            name: name.to_string(),
            policy,
            limits: Limits {
                deadline: Duration::from_millis(app.deadline_ms),
                max_memory_bytes: (app.memory_limit_mb as usize) << 20,
                max_sends: app.max_sends_per_message,
                kv_max_value_bytes: kv_max_value(config, name),
                tenant: self.tenants.load().rates_of(name),
                http: Some(std::sync::Arc::new(http_grant(config, name, self.tenants.load().rates_of(name)))),
            },
            kv: Namespaced::new(self.state.clone(), Namespace::plugin("app", name.as_str()))
                .counted(kv_quota(config, name)),
            config: toml_to_json(&app.config),
            endpoints,
        }
    }
}

/// What a router's or a middleware's table says about running its plugin.
pub(super) struct RuleTable<'a> {
    pub(super) instances: InstancesConfig,
    pub(super) deadline_ms: u64,
    pub(super) memory_limit_mb: u32,
    pub(super) config: &'a toml::Table,
}

/// Settings for a plugin that sends nothing itself (a router or a middleware): it decides where
/// a message goes or what it becomes.
pub(super) fn rule_settings(
    name: &ComponentName,
    rule: RuleTable<'_>,
    kv: Namespaced,
    config_of_host: &crate::config::Config,
    tenant: Option<std::sync::Arc<crate::tenants::Rates>>,
) -> Settings {
    let RuleTable { instances, deadline_ms, memory_limit_mb, config } = rule;
    Settings {
        name: name.to_string(),
        policy: policy_of(instances, 10_000, Duration::from_secs(300)),
        limits: Limits {
            deadline: Duration::from_millis(deadline_ms),
            max_memory_bytes: (memory_limit_mb as usize) << 20,
            max_sends: 0,
            kv_max_value_bytes: kv_max_value(config_of_host, name),
            tenant,
            http: None,
        },
        kv,
        config: toml_to_json(config),
        endpoints: Vec::new(),
    }
}

pub(super) fn policy_of(instances: InstancesConfig, max_messages: u32, max_age: Duration) -> InstancePolicy {
    match instances {
        InstancesConfig::Fresh => InstancePolicy::Fresh,
        InstancesConfig::Pooled => InstancePolicy::Pooled { max_messages, max_age },
    }
}

/// TOML tables become the JSON an app reads through the `config` import. TOML datetimes become
/// their text form.
pub fn toml_to_json(t: &toml::Table) -> serde_json::Map<String, serde_json::Value> {
    fn conv(v: &toml::Value) -> serde_json::Value {
        match v {
            toml::Value::String(s) => serde_json::Value::String(s.clone()),
            toml::Value::Integer(i) => serde_json::Value::from(*i),
            toml::Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
            toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
            toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(conv).collect()),
            toml::Value::Table(t) => serde_json::Value::Object(toml_to_json(t)),
        }
    }
    t.iter().map(|(k, v)| (k.clone(), conv(v))).collect()
}
