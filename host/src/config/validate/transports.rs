//! `[transports.*]`, one check per kind, and the shared HTTP listener they and the channels
//! serve on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use super::*;

impl Config {
    /// Every transport, then the shared HTTP listener.
    pub(super) fn validate_transports(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |key: String, problem: String| ConfigError::Invalid { path: path.to_owned(), key, problem };
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
        Ok(())
    }
}
