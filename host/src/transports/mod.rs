//! Transports: native Rust servers and clients that turn channel traffic into Vumi messages on
//! the bus and deliver outbound messages back to users. One module per transport.

pub mod sink;
pub mod sms_http;
pub mod telnet;
pub mod ussd_at;

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

impl TransportContext {
    /// Start consuming this transport's outbound queue.
    pub async fn consume_outbound(&self, prefetch: u16) -> Result<Box<dyn crate::bus::Consumer>, TransportError> {
        self.bus
            .consume(&crate::bus::RoutingKey::outbound(&self.connector), prefetch)
            .await
            .map_err(|source| TransportError::Bus { connector: self.connector.clone(), source })
    }

    /// Publish `event` about one of this transport's outbound messages on `<connector>.event`,
    /// carrying the message's routing metadata back (so routers can follow it home). A bus
    /// failure is logged: the event is lost, the message it is about was already handled.
    pub async fn publish_event(&self, mut event: crate::message::Event, about: &crate::message::UserMessage) {
        event.transport_name = Some(self.connector.to_string());
        event.routing_metadata = about.routing_metadata.clone();
        let key = crate::bus::RoutingKey::event(&self.connector);
        if let Err(e) = self.bus.publish(&key, crate::message::Message::Event(event)).await {
            tracing::warn!(connector = %self.connector, error = %e, "cannot publish an event");
        }
    }
}
