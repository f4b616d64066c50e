//! The checks a config passes once, at load: every one names the key at fault and says what
//! would be right. Nothing is checked again later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
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
fn check_limits(deadline_ms: u64, memory_limit_mb: u32) -> Result<(), (&'static str, String)> {
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
    /// Check the routers; the app connectors they create.
    fn validate_routers(
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
    fn validate_middleware(
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

    fn validate_channels(
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

    pub(super) fn validate(&mut self, path: &Path) -> Result<(), ConfigError> {
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
        self.check_roles(path)?;
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
        let mut binds: BTreeMap<SocketAddr, &ConnectorName> = BTreeMap::new();
        let mut paths: BTreeMap<&str, &ConnectorName> = BTreeMap::new();
        for (name, t) in &self.transports {
            match t {
                TransportConfig::UssdAt(u) => {
                    if !u.path.starts_with('/') || u.path.contains(['{', '}', '*']) {
                        return Err(invalid(
                            format!("transports.{name}.path"),
                            format!("must be a plain path starting with `/`, got `{}`", u.path),
                        ));
                    }
                    if let Some(other) = paths.insert(u.path.as_str(), name) {
                        return Err(invalid(
                            format!("transports.{name}.path"),
                            format!("`{}` is already served by transport `{other}`", u.path),
                        ));
                    }
                    if let Some((k, problem)) =
                        out_of_range(&[("response_deadline_ms", u.response_deadline_ms, 1, 120_000)])
                    {
                        return Err(invalid(format!("transports.{name}.{k}"), problem));
                    }
                    if u.session_timeout_secs == 0 {
                        return Err(invalid(
                            format!("transports.{name}.session_timeout_secs"),
                            "must be at least 1".into(),
                        ));
                    }
                }
                TransportConfig::SmsHttp(sc) => {
                    check_url(&sc.outbound_url)
                        .map_err(|p| invalid(format!("transports.{name}.outbound_url"), p))?;
                    let ranges: [Range; 2] = [
                        ("request_timeout_ms", sc.request_timeout_ms, 1, 120_000),
                        ("concurrency", u64::from(sc.concurrency), 1, 4096),
                    ];
                    if let Some((k, problem)) = out_of_range(&ranges) {
                        return Err(invalid(format!("transports.{name}.{k}"), problem));
                    }
                    let prefix = format!("transports.{name}.retry");
                    if let Some((k, problem)) = sc.retry.as_ref().and_then(|r| check_retry(&prefix, r)) {
                        return Err(invalid(k, problem));
                    }
                }
                TransportConfig::Sink(_) => {}
                TransportConfig::Smpp(sc) => {
                    let key = |k: &str| format!("transports.{name}.{k}");
                    let ranges: [Range; 10] = [
                        ("binds", u64::from(sc.binds), 1, 64),
                        ("window", u64::from(sc.window), 1, 10_000),
                        ("tps", u64::from(sc.tps), 0, 1_000_000),
                        ("throttle_delay_ms", sc.throttle_delay_ms, 1, 600_000),
                        ("response_timeout_ms", sc.response_timeout_ms, 1, 600_000),
                        ("enquire_link_ms", sc.enquire_link_ms, 100, 3_600_000),
                        ("reconnect_min_ms", sc.reconnect_min_ms, 1, 600_000),
                        ("reconnect_max_ms", sc.reconnect_max_ms, sc.reconnect_min_ms, 3_600_000),
                        ("max_pdu_bytes", sc.max_pdu_bytes as u64, 1024, 1 << 24),
                        ("max_resends", u64::from(sc.max_resends), 0, 100),
                    ];
                    if let Some((k, problem)) = out_of_range(&ranges) {
                        return Err(invalid(key(k), problem));
                    }
                    if sc.address.parse::<SocketAddr>().is_err()
                        && !sc
                            .address
                            .rsplit_once(':')
                            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                    {
                        return Err(invalid(
                            key("address"),
                            format!("must be `host:port`, got `{}`", sc.address),
                        ));
                    }
                    for (k, v, max) in [
                        ("system_id", &sc.system_id, 15),
                        ("password", &sc.password, 8),
                        ("system_type", &sc.system_type, 12),
                    ] {
                        if v.len() > max || !v.is_ascii() {
                            return Err(invalid(
                                key(k),
                                format!("must be at most {max} ASCII characters (SMPP 3.4), got `{v}`"),
                            ));
                        }
                    }
                    if sc.coding != "auto"
                        && !["gsm7", "ascii", "latin1", "ucs2"].contains(&sc.coding.as_str())
                    {
                        return Err(invalid(
                            key("coding"),
                            format!(
                                "must be `auto`, `gsm7`, `ascii`, `latin1` or `ucs2`, got `{}`",
                                sc.coding
                            ),
                        ));
                    }
                    if !["udh8", "udh16", "sar", "payload"].contains(&sc.split.as_str()) {
                        return Err(invalid(
                            key("split"),
                            format!("must be `udh8`, `udh16`, `sar` or `payload`, got `{}`", sc.split),
                        ));
                    }
                    if !["as_is", "lowercase", "strip_zeros", "hex_decimal"].contains(&sc.id_form.as_str()) {
                        return Err(invalid(
                            key("id_form"),
                            format!(
                                "must be `as_is`, `lowercase`, `strip_zeros` or `hex_decimal`, got `{}`",
                                sc.id_form
                            ),
                        ));
                    }
                }
                TransportConfig::Telnet(tc) => {
                    // Port 0 asks the OS for a free port: never a clash.
                    if let Some(other) = binds.insert(tc.bind, name).filter(|_| tc.bind.port() != 0) {
                        return Err(invalid(
                            format!("transports.{name}.bind"),
                            format!("{} is already used by transport `{other}`", tc.bind),
                        ));
                    }
                    if let Some((k, problem)) =
                        out_of_range(&[("max_line_bytes", tc.max_line_bytes as u64, 16, 1 << 20)])
                    {
                        return Err(invalid(format!("transports.{name}.{k}"), problem));
                    }
                }
            }
        }
        if self.serves_http() {
            if let Some(other) = binds.get(&self.http.bind).filter(|_| self.http.bind.port() != 0) {
                return Err(invalid(
                    "http.bind".into(),
                    format!("{} is already used by transport `{other}`", self.http.bind),
                ));
            }
            if self.http.max_body_bytes < 1024 {
                return Err(invalid(
                    "http.max_body_bytes".into(),
                    format!("must be at least 1024, got {}", self.http.max_body_bytes),
                ));
            }
        }
        let router_apps = self.validate_routers(path)?;
        self.validate_channels(path, &router_apps)?;
        self.validate_middleware(path, &router_apps)?;
        // A connector's inbound messages go to one component: two would each get a random half.
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

impl Config {
    /// Every role names a component of this config (or a kind), and the apps and channels that
    /// share a connector run together: their events are split by origin in one process.
    fn check_roles(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: "host.roles".into(),
            problem,
        };
        for role in &self.host.roles {
            let known = match role.as_str() {
                "@transports" | "@apps" | "@routers" | "@channels" => true,
                name => {
                    self.transports.keys().any(|k| k.as_str() == name)
                        || self.apps.keys().any(|k| k.as_str() == name)
                        || self.routers.keys().any(|k| k.as_str() == name)
                        || self.channels.keys().any(|k| k.as_str() == name)
                }
            };
            if !known {
                return Err(invalid(format!(
                    "`{role}` names no transport, app, router or channel of this config (or a kind: @transports, @apps, @routers, @channels)"
                )));
            }
        }
        let mut by_connector: BTreeMap<&ConnectorName, Vec<(&str, bool)>> = BTreeMap::new();
        for (name, a) in &self.apps {
            by_connector
                .entry(&a.connector)
                .or_default()
                .push((name.as_str(), self.runs("@apps", name.as_str())));
        }
        for (name, c) in &self.channels {
            by_connector
                .entry(&c.connector)
                .or_default()
                .push((name.as_str(), self.runs("@channels", name.as_str())));
        }
        for (connector, sharers) in by_connector {
            let here: Vec<&str> = sharers.iter().filter(|s| s.1).map(|s| s.0).collect();
            let elsewhere: Vec<&str> = sharers.iter().filter(|s| !s.1).map(|s| s.0).collect();
            if !here.is_empty() && !elsewhere.is_empty() {
                return Err(invalid(format!(
                    "{} and {} share connector `{connector}`, whose events are split between them in one host: give them the same host",
                    here.join(", "),
                    elsewhere.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// This config with `host.roles` replaced (`vumi run --role`), checked as the file's are.
    pub fn with_roles(mut self, roles: Vec<String>, path: &Path) -> Result<Config, ConfigError> {
        self.host.roles = roles;
        self.check_roles(path)?;
        Ok(self)
    }

    /// Whether this host runs component `name` of kind `kind` (`@apps`, ...).
    pub fn runs(&self, kind: &str, name: &str) -> bool {
        self.host.roles.is_empty() || self.host.roles.iter().any(|r| r == kind || r == name)
    }

    /// The part of this config this host runs (`host.roles`); everything when no roles are set.
    pub fn for_roles(&self) -> Config {
        let mut c = self.clone();
        c.transports.retain(|k, _| self.runs("@transports", k.as_str()));
        c.apps.retain(|k, _| self.runs("@apps", k.as_str()));
        c.routers.retain(|k, _| self.runs("@routers", k.as_str()));
        c.channels.retain(|k, _| self.runs("@channels", k.as_str()));
        c
    }
}
