//! Legacy Vumi's exchange and queues, declared exactly as it declares them, and the host-only delay-tier queues of the retry path.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};

use lapin::types::{AMQPValue, LongString, ShortString};

use super::*;

pub(super) async fn declare_exchange(channel: &Channel) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
}

/// The header that counts the delay tiers a message has been through.
pub const RETRIES_HEADER: &str = "x-vumi-retries";

/// Declare `queue` exactly as legacy Vumi does, and bind it by its name.
pub(super) async fn declare_queue(channel: &Channel, queue: &str) -> Result<(), lapin::Error> {
    declare_with(channel, queue, FieldTable::default()).await
}

/// The arguments of `input`'s delay tier of `delay`: expire after it, back to `input`.
pub(super) fn tier_arguments(input: &str, delay: Duration) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-message-ttl"), AMQPValue::LongLongInt(delay.as_millis() as i64));
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        AMQPValue::LongString(LongString::from(EXCHANGE)),
    );
    args.insert(
        ShortString::from("x-dead-letter-routing-key"),
        AMQPValue::LongString(LongString::from(input)),
    );
    args
}

/// The tiers a delivery has been through, from its header (absent: none).
pub(super) fn retries_of(properties: &BasicProperties) -> u32 {
    let Some(headers) = properties.headers() else { return 0 };
    match headers.inner().get(RETRIES_HEADER) {
        Some(AMQPValue::LongUInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => (*n).max(0) as u32,
        Some(AMQPValue::LongLongInt(n)) => (*n).clamp(0, i64::from(u32::MAX)) as u32,
        Some(AMQPValue::ShortShortUInt(n)) => u32::from(*n),
        Some(AMQPValue::ShortUInt(n)) => u32::from(*n),
        _ => 0,
    }
}

/// Declare `queue` durable with `arguments`, and bind it by its name.
pub(super) async fn declare_with(
    channel: &Channel,
    queue: &str,
    arguments: FieldTable,
) -> Result<(), lapin::Error> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions { durable: true, exclusive: false, auto_delete: false, ..Default::default() },
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            EXCHANGE.into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}
