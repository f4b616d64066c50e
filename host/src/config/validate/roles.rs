//! `host.roles`: which part of a config one host runs, so several hosts share one file.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

impl Config {
    /// Every role names a component of this config (or a kind), and the apps and channels that
    /// share a connector run together: their events are split by origin in one process.
    pub(super) fn check_roles(&self, path: &Path) -> Result<(), ConfigError> {
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
