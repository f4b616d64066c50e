//! Transports: native Rust servers and clients that turn channel traffic into Vumi messages on
//! the bus and deliver outbound messages back to users. One module per transport.

pub mod telnet;

use std::sync::Arc;

use crate::bus::{Bus, BusError};
use crate::names::ConnectorName;

/// Why a transport stopped.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The bus refused to deliver outbound messages to it.
    #[error("transport `{connector}`: bus error: {source}")]
    Bus {
        /// The transport's connector.
        connector: ConnectorName,
        /// The bus error.
        source: BusError,
    },
    /// Its listener failed.
    #[error("transport `{connector}`: {source}")]
    Io {
        /// The transport's connector.
        connector: ConnectorName,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What every transport is given: the bus, and the connector whose queues it serves
/// (`<connector>.inbound` and `.event` it publishes, `.outbound` it consumes).
#[derive(Clone)]
pub struct TransportContext {
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// Its connector; also the `transport_name` of the messages it makes.
    pub connector: ConnectorName,
}
