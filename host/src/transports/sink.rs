//! The sink transport: acks every outbound message and delivers nothing.
//!
//! It stands in for a channel that is not there yet (developing an app, load-testing the send
//! API) while keeping the message flow honest: every message is taken off the bus and gets an
//! event, exactly as a real transport would give it.

use tokio_util::sync::CancellationToken;

use super::{Transport, TransportContext, TransportError};
use crate::bus::Consumer;
use crate::message::{Event, Message};

/// A transport that acks everything.
pub struct SinkTransport {
    ctx: TransportContext,
}

impl SinkTransport {
    /// A sink on `ctx`'s connector.
    pub fn new(ctx: TransportContext) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl Transport for SinkTransport {
    fn prefetch(&self) -> u16 {
        256
    }

    /// Ack outbound messages until `shutdown`.
    async fn run(
        self: Box<Self>,
        mut outbound: Box<dyn Consumer>,
        shutdown: CancellationToken,
    ) -> Result<(), TransportError> {
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                d = outbound.next() => match d { Some(d) => d, None => break },
            };
            if let Message::User(msg) = &delivery.message {
                tracing::debug!(connector = %self.ctx.connector, message_id = msg.message_id, "sink: message taken");
                self.ctx.report_outcome(Event::ack(&msg.message_id, &msg.message_id), msg).await;
            }
            delivery.ack();
        }
        Ok(())
    }
}
