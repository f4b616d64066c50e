//! What the running host reports about itself: each transport's state (and what a transport
//! has to say, such as an SMPP link's unmatched receipts), the config's reload history, and
//! why a plugin's last reload was refused. The supervisor and the transports write it; the admin
//! API reads it. Below both, so neither has to know the other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

/// Why the latest reload attempt did not swap, as operators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rejection {
    /// When (Vumi's timestamp form).
    pub at: String,
    /// What was wrong.
    pub reason: String,
}

/// A transport as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct TransportStatus {
    /// The transport's name (its connector).
    pub name: String,
    /// Its Vumi transport type (`telnet`, `ussd`, `sms`, ...).
    pub kind: String,
    /// Where it listens, for a socket transport.
    pub listening: Option<String>,
    /// `running`, `stopped`, or `failed: <reason>`.
    pub state: String,
    /// Since when it has been in this state (Vumi's timestamp form).
    pub since: String,
    /// The Vumi status events it published (`<connector>.status`): how many of each type, and
    /// the latest few, such as an SMPP link's unmatched receipts.
    #[serde(skip_serializing_if = "StatusEvents::is_empty")]
    pub status_events: StatusEvents,
}

/// A transport's Vumi status events, as operators see them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusEvents {
    /// How many of each `type` since start.
    pub counts: BTreeMap<String, u64>,
    /// The latest, newest last, as Vumi JSON.
    pub recent: std::collections::VecDeque<serde_json::Value>,
}

impl StatusEvents {
    /// The latest kept.
    pub const KEEP: usize = 20;

    /// Count `status_type`, and keep `event` among the latest.
    pub fn record(&mut self, status_type: &str, event: serde_json::Value) {
        *self.counts.entry(status_type.to_owned()).or_default() += 1;
        if self.recent.len() >= Self::KEEP {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
    }

    /// Whether none was published.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// What the supervisor reports about the host as a whole; it writes, the admin API reads.
#[derive(Debug, Default)]
pub struct HostStatus {
    transports: RwLock<BTreeMap<String, Arc<Mutex<TransportStatus>>>>,
    config: Mutex<ConfigStatus>,
}

/// The config file's reload history.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigStatus {
    /// The file.
    pub path: String,
    /// When the running config was loaded.
    pub loaded_at: String,
    /// Config reloads applied since start.
    pub reloads: u64,
    /// The latest rejected reload: when and why.
    pub rejected: Option<Rejection>,
}

impl HostStatus {
    /// Replace the set of transports (start, config reload).
    pub fn set_transports(&self, t: BTreeMap<String, Arc<Mutex<TransportStatus>>>) {
        *self.transports.write().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// The transports, by name.
    pub fn transports(&self) -> Vec<TransportStatus> {
        let t = self.transports.read().unwrap_or_else(|p| p.into_inner());
        t.values().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect()
    }

    /// Update the config's status.
    pub fn with_config(&self, f: impl FnOnce(&mut ConfigStatus)) {
        f(&mut self.config.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The config's status.
    pub fn config(&self) -> ConfigStatus {
        self.config.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
