//! What runs on the transports: routers, channels (and their callbacks), middleware and
//! chains, apps; and the rule that each connector's inbound messages go to one of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;

impl Config {
    /// Check the routers; the app connectors they create.
    pub(super) fn validate_routers(
        &self,
        path: &Path,
    ) -> Result<std::collections::BTreeSet<ConnectorName>, ConfigError> {
        let invalid =
            |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        let mut app_connectors = std::collections::BTreeSet::new();
        for (name, r) in &self.routers {
            let key = |k: &str| format!("routers.{name}.{k}");
            if self.apps.contains_key(name) || self.channels.contains_key(name) {
                return Err(invalid(
                    key("plugin"),
                    format!("`{name}` also names an app or a channel; component names must be unique"),
                ));
            }
            let file = self.resolve(&r.plugin);
            if !file.is_file() {
                return Err(invalid(
                    key("plugin"),
                    format!("no plugin file at `{}` (build it with `vumi plugin build`)", file.display()),
                ));
            }
            for (k, list) in [("transports", &r.transports), ("apps", &r.apps)] {
                if list.is_empty() {
                    return Err(invalid(
                        key(k),
                        "a router needs at least one transport and one app connector".into(),
                    ));
                }
            }
            for t in &r.transports {
                if !self.transports.contains_key(t) {
                    return Err(invalid(
                        key("transports"),
                        format!("no transport named `{t}` in this config"),
                    ));
                }
            }
            for a in &r.apps {
                if self.transports.contains_key(a) {
                    return Err(invalid(
                        key("apps"),
                        format!("`{a}` is a transport; name a new connector for the apps behind this router"),
                    ));
                }
                if !app_connectors.insert(a.clone()) {
                    return Err(invalid(
                        key("apps"),
                        format!("connector `{a}` is already an app connector of another router"),
                    ));
                }
            }
            check_limits(r.deadline_ms, r.memory_limit_mb).map_err(|(k, p)| invalid(key(k), p))?;
        }
        Ok(app_connectors)
    }

    /// Check the middleware and the chains that use them, on the connectors that exist.
    pub(super) fn validate_middleware(
        &self,
        path: &Path,
        router_apps: &std::collections::BTreeSet<ConnectorName>,
    ) -> Result<(), ConfigError> {
        let invalid =
            |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        for (name, m) in &self.middleware {
            let key = |k: &str| format!("middleware.{name}.{k}");
            if self.apps.contains_key(name)
                || self.channels.contains_key(name)
                || self.routers.contains_key(name)
            {
                return Err(invalid(
                    key("kind"),
                    format!("`{name}` also names an app, channel or router; component names must be unique"),
                ));
            }
            match m {
                MiddlewareConfig::Plugin(p) => {
                    let file = self.resolve(&p.plugin);
                    if !file.is_file() {
                        return Err(invalid(
                            key("plugin"),
                            format!(
                                "no plugin file at `{}` (build it with `vumi plugin build`)",
                                file.display()
                            ),
                        ));
                    }
                    check_limits(p.deadline_ms, p.memory_limit_mb).map_err(|(k, p)| invalid(key(k), p))?;
                }
                MiddlewareConfig::Log(l) => {
                    if l.level.parse::<tracing::Level>().is_err() {
                        return Err(invalid(
                            key("level"),
                            format!("must be trace, debug, info, warn or error, got `{}`", l.level),
                        ));
                    }
                }
            }
        }
        for (connector, chain) in &self.chains {
            if !self.transports.contains_key(connector) && !router_apps.contains(connector) {
                let known: Vec<_> =
                    self.transports.keys().chain(router_apps.iter()).map(|k| format!("`{k}`")).collect();
                return Err(invalid(
                    format!("chains.{connector}"),
                    format!(
                        "no transport or router app connector named `{connector}` in this config (known: {})",
                        known.join(", ")
                    ),
                ));
            }
            for (direction, steps) in
                [("inbound", &chain.inbound), ("outbound", &chain.outbound), ("event", &chain.event)]
            {
                let key = format!("chains.{connector}.{direction}");
                let mut seen = std::collections::BTreeSet::new();
                for step in steps {
                    match self.middleware.get(step) {
                        None => {
                            let known: Vec<_> = self.middleware.keys().map(|k| format!("`{k}`")).collect();
                            let known =
                                if known.is_empty() { "none defined".to_owned() } else { known.join(", ") };
                            return Err(invalid(
                                key,
                                format!("no middleware named `{step}` under [middleware] (known: {known})"),
                            ));
                        }
                        Some(MiddlewareConfig::Plugin(_)) if direction == "event" => {
                            return Err(invalid(
                                key,
                                format!(
                                    "`{step}` is a plugin; plugin middleware sees user messages only, so an event chain takes native middleware (`kind = \"log\"`)"
                                ),
                            ));
                        }
                        Some(_) => {}
                    }
                    if !seen.insert(step) {
                        return Err(invalid(key, format!("`{step}` is listed twice")));
                    }
                }
            }
        }
        Ok(())
    }

    /// Each channel's connector and URLs, and `[callbacks]`.
    pub(super) fn validate_channels(
        &self,
        path: &Path,
        router_apps: &std::collections::BTreeSet<ConnectorName>,
    ) -> Result<(), ConfigError> {
        let invalid =
            |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        for (name, ch) in &self.channels {
            let key = |k: &str| format!("channels.{name}.{k}");
            if !self.transports.contains_key(&ch.connector) && !router_apps.contains(&ch.connector) {
                return Err(invalid(
                    key("connector"),
                    format!("no transport or router app connector named `{}` in this config", ch.connector),
                ));
            }
            for (k, url) in [("mo_url", &ch.mo_url), ("event_url", &ch.event_url)] {
                if let Some(u) = url {
                    check_url(u).map_err(|p| invalid(key(k), p))?;
                }
            }
            if ch.message_ttl_secs == 0 {
                return Err(invalid(key("message_ttl_secs"), "must be at least 1".into()));
            }
        }
        let cb = &self.callbacks;
        let ranges: [Range; 3] = [
            ("queue_capacity", cb.queue_capacity as u64, 1, 10_000_000),
            ("timeout_ms", cb.timeout_ms, 1, 120_000),
            ("concurrency", u64::from(cb.concurrency), 1, 4096),
        ];
        if let Some((k, problem)) = out_of_range(&ranges) {
            return Err(invalid(format!("callbacks.{k}"), problem));
        }
        if let Some((k, problem)) = cb.retry.as_ref().and_then(|r| check_retry("callbacks.retry", r)) {
            return Err(invalid(k, problem));
        }
        if self.host.event_origin_ttl_secs == 0 {
            return Err(invalid("host.event_origin_ttl_secs".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// A connector's inbound messages go to one component: two would each get a random half.
    pub(super) fn validate_inbound_owners(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        let mut inbound_owner: BTreeMap<&ConnectorName, String> = BTreeMap::new();
        let owners = self
            .apps
            .iter()
            .map(|(n, a)| (&a.connector, format!("apps.{n}")))
            .chain(
                self.channels
                    .iter()
                    .filter(|(_, c)| c.mo_url.is_some())
                    .map(|(n, c)| (&c.connector, format!("channels.{n}"))),
            )
            .chain(
                self.routers
                    .iter()
                    .flat_map(|(n, r)| r.transports.iter().map(move |t| (t, format!("routers.{n}")))),
            );
        for (connector, owner) in owners {
            if let Some(first) = inbound_owner.insert(connector, owner.clone()) {
                return Err(invalid(
                    format!("{owner}.connector"),
                    format!(
                        "`{first}` already receives connector `{connector}`'s inbound messages; each connector's inbound goes to one app or one channel with `mo_url` (give them separate transports)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Each app: its plugin file, its connector, its limits.
    pub(super) fn validate_apps(
        &self,
        path: &Path,
        router_apps: &BTreeSet<ConnectorName>,
    ) -> Result<(), ConfigError> {
        let invalid =
            |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
        for (name, app) in &self.apps {
            let key = |k: &str| format!("apps.{name}.{k}");
            if self.channels.contains_key(name) {
                return Err(invalid(
                    key("connector"),
                    format!("`{name}` names both an app and a channel; component names must be unique"),
                ));
            }
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
            if matches!(self.host.bus, BusConfig::Embedded)
                && !self.transports.contains_key(&app.connector)
                && !router_apps.contains(&app.connector)
            {
                let known: Vec<_> =
                    self.transports.keys().chain(router_apps.iter()).map(|k| format!("`{k}`")).collect();
                return Err(invalid(
                    key("connector"),
                    format!(
                        "no transport or router app connector named `{}` in this config (the embedded bus only reaches connectors in this process; known: {})",
                        app.connector,
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                ));
            }
            let ranges: [Range; 6] = [
                ("deadline_ms", app.deadline_ms, 1, 60_000),
                ("memory_limit_mb", u64::from(app.memory_limit_mb), 1, u64::from(MAX_MEMORY_LIMIT_MB)),
                ("max_sends_per_message", u64::from(app.max_sends_per_message), 0, 10_000),
                ("concurrency", u64::from(app.concurrency), 1, 1024),
                (
                    "max_messages_per_instance",
                    u64::from(app.max_messages_per_instance),
                    1,
                    u64::from(u32::MAX),
                ),
                ("max_instance_age_secs", app.max_instance_age_secs, 1, 86_400 * 365),
            ];
            if let Some((k, problem)) = out_of_range(&ranges) {
                return Err(invalid(key(k), problem));
            }
        }
        Ok(())
    }
}
