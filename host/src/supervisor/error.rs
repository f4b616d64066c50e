//! Why a host could not start or take a config: each error names the config key at fault.

use std::net::SocketAddr;

use crate::plugins::LoadError;

/// Why the host could not start. Each names the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A transport could not listen.
    #[error("`transports.{name}.bind`: cannot listen on {addr}: {source}")]
    Bind {
        /// The transport.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The shared HTTP listener could not listen.
    #[error("`http.bind`: cannot listen on {addr}: {source}")]
    HttpBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An app's plugin could not be loaded.
    #[error("`{key}`: {source}")]
    Plugin {
        /// The config key naming the plugin, e.g. `apps.survey.plugin`.
        key: String,
        /// Why.
        source: LoadError,
    },
    /// A queue could not be consumed.
    #[error("cannot consume `{key}`: {source}")]
    Bus {
        /// The routing key.
        key: String,
        /// The bus error.
        source: crate::bus::BusError,
    },
    /// The engine could not be made.
    #[error(transparent)]
    Engine(LoadError),
    /// The bus named in `[host.bus]` could not be reached.
    #[error("`host.bus`: {0}")]
    Connect(crate::bus::BusError),
    /// The state store named in `[host.state]` could not be reached.
    #[error("`host.state`: {0}")]
    State(crate::state::StateError),
    /// The data directory (`[host] data_dir`) cannot be read.
    #[error("`host.data_dir`: `{path}`: {reason}")]
    DataDir {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The admin listener could not listen.
    #[error("`admin.bind`: cannot listen on {addr}: {source}")]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Plugin files cannot be watched.
    #[error(transparent)]
    Watch(#[from] crate::plugins::WatchError),
    /// A reloaded config asks for what only a restart can change.
    #[error("`{key}`: {problem}")]
    NeedsRestart {
        /// The key.
        key: String,
        /// Why.
        problem: String,
    },
    /// The failures file could not be opened.
    #[error("`failures.path`: cannot open `{path}`: {source}")]
    FailuresFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}
