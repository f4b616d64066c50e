//! `[host]`, `[admin]` and `[plugins]`.

use std::path::Path;

use super::*;

impl Config {
    /// `[admin]`, `[plugins]`, `[host.retry]`, `[host.queues]` and `[host.bus]`.
    pub(super) fn validate_host(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        if let Some(admin) = &self.admin {
            if admin.max_upload_bytes < 1024 {
                return Err(invalid(
                    "admin.max_upload_bytes".into(),
                    format!("must be at least 1024, got {}", admin.max_upload_bytes),
                ));
            }
            if self.serves_http() && admin.bind == self.http.bind && admin.bind.port() != 0 {
                return Err(invalid(
                    "admin.bind".into(),
                    format!("{} is already `http.bind`: the admin API needs its own listener", admin.bind),
                ));
            }
        }
        if let Some((k, problem)) =
            out_of_range(&[("plugins.watch_debounce_ms", self.plugins.watch_debounce_ms, 1, 10_000)])
        {
            return Err(invalid(k.into(), problem));
        }
        let retry = &self.host.retry;
        if let Some((k, problem)) = check_retry("host.retry", retry) {
            return Err(invalid(k, problem));
        }
        if retry.tiers_ms.len() > 16 {
            return Err(invalid(
                "host.retry.tiers_ms".into(),
                format!("at most 16 delay tiers, got {}", retry.tiers_ms.len()),
            ));
        }
        for (i, ms) in retry.tiers_ms.iter().enumerate() {
            // RabbitMQ takes a queue TTL up to 2^32 - 1 ms; a day is far past any use.
            if !(1..=86_400_000).contains(ms) {
                return Err(invalid(
                    format!("host.retry.tiers_ms[{i}]"),
                    format!("must be 1 to 86400000 milliseconds (a day), got {ms}"),
                ));
            }
            if i > 0 && *ms <= retry.tiers_ms[i - 1] {
                return Err(invalid(
                    format!("host.retry.tiers_ms[{i}]"),
                    format!("the tiers go shortest first: {ms} is not longer than {}", retry.tiers_ms[i - 1]),
                ));
            }
        }
        let q = &self.host.queues;
        let queues: [Range; 3] = [
            ("host.queues.capacity", q.capacity as u64, 1, 100_000_000),
            ("host.queues.publish_wait_ms", q.publish_wait_ms, 0, 600_000),
            ("host.drain_timeout_ms", self.host.drain_timeout_ms, 0, 3_600_000),
        ];
        if let Some((k, problem)) = out_of_range(&queues) {
            return Err(invalid(k.into(), problem));
        }
        if let super::BusConfig::Amqp(a) = &self.host.bus {
            if a.host.trim().is_empty() {
                return Err(invalid("host.bus.host".into(), "must name the RabbitMQ host".into()));
            }
            let amqp: [Range; 6] = [
                ("host.bus.port", u64::from(a.port), 1, 65_535),
                ("host.bus.confirm_window", a.confirm_window as u64, 1, 65_535),
                ("host.bus.max_prefetch", u64::from(a.max_prefetch), 1, 65_535),
                ("host.bus.publish_wait_ms", a.publish_wait_ms, 0, 600_000),
                ("host.bus.reconnect_initial_ms", a.reconnect_initial_ms, 1, 600_000),
                ("host.bus.reconnect_max_ms", a.reconnect_max_ms, a.reconnect_initial_ms, 600_000),
            ];
            if let Some((k, problem)) = out_of_range(&amqp) {
                return Err(invalid(k.into(), problem));
            }
        }
        Ok(())
    }

    /// `[host.state]`.
    pub(super) fn validate_state(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        if let super::StateConfig::Redis(r) = &self.host.state {
            let scheme = r.url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("redis" | "rediss" | "unix" | "redis+unix")) {
                return Err(invalid(
                    "host.state.url".into(),
                    format!("must be a `redis://host:port` URL, got `{}`", r.url),
                ));
            }
            let redis: [Range; 4] = [
                ("host.state.response_timeout_ms", r.response_timeout_ms, 1, 600_000),
                ("host.state.connection_timeout_ms", r.connection_timeout_ms, 1, 600_000),
                ("host.state.reconnect_attempts", r.reconnect_attempts as u64, 0, 1_000),
                ("host.state.reconnect_max_delay_ms", r.reconnect_max_delay_ms, 1, 600_000),
            ];
            if let Some((k, problem)) = out_of_range(&redis) {
                return Err(invalid(k.into(), problem));
            }
        }
        Ok(())
    }
}
