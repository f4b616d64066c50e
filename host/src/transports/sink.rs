//! The sink transport: acks every outbound message and delivers nothing.
//!
//! It stands in for a channel that is not there yet (developing an app, load-testing the send
//! API) while keeping the message flow honest: every message is taken off the bus and gets an
//! event, exactly as a real transport would give it.

use tokio_util::sync::CancellationToken;

use super::{TransportContext, TransportError};
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

    /// Ack outbound messages until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), TransportError> {
        let mut outbound = self.ctx.consume_outbound(256).await?;
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => break,
                d = outbound.next() => match d { Some(d) => d, None => break },
            };
            if let Message::User(msg) = &delivery.message {
                tracing::debug!(connector = %self.ctx.connector, message_id = msg.message_id, "sink: message taken");
                self.ctx.publish_event(Event::ack(&msg.message_id, &msg.message_id), msg).await;
            }
            delivery.ack();
        }
        Ok(())
    }
}
