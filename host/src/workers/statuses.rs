//! A transport's Vumi status events (`<connector>.status`: a link bound or lost, a receipt that
//! matched nothing), read back into the transport's status for the admin API.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::bus::Consumer;
use crate::message::Message;
use crate::status::TransportStatus;

/// Read `statuses` into `status` until `stop`.
pub async fn record(
    mut statuses: Box<dyn Consumer>,
    status: Arc<Mutex<TransportStatus>>,
    stop: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            () = stop.cancelled() => return,
            d = statuses.next() => match d { Some(d) => d, None => return },
        };
        if let Message::Status(s) = &delivery.message {
            let json = serde_json::from_slice(&delivery.message.to_json()).unwrap_or_default();
            status.lock().unwrap_or_else(|p| p.into_inner()).status_events.record(&s.status_type, json);
        }
        delivery.ack();
    }
}
