//! The host's Prometheus metrics: their names and labels in one place, one process-wide registry.
//!
//! Hot paths hold a metric handle (a cheap `Arc` clone) obtained once, never a label lookup per
//! message.

use std::sync::LazyLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the host exports.
pub struct Metrics {
    registry: Registry,
    messages: Family<Labels, Counter>,
    handler_seconds: Family<Labels, Histogram>,
    failures: Family<Labels, Counter>,
    reloads: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    retry_wait: Family<Labels, Counter<f64>>,
    queue_depth: Family<Labels, Gauge>,
    queue_capacity: Family<Labels, Gauge>,
    refused: Family<Labels, Counter>,
    queued_seconds: Family<Labels, Histogram>,
    bus_reconnects: Family<Labels, Counter>,
    bus_unknown_confirms: Counter,
    bus_undecodable: Counter,
    deferred: Family<Labels, Counter>,
    smpp: Family<Labels, Counter>,
    tenant_messages: Family<Labels, Counter>,
    tenant_limited: Family<Labels, Counter>,
    tenant_failures: Family<Labels, Counter>,
    http_calls: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 10 µs (a pooled router call) to ~2.6 s (a slow handler near its deadline).
    Histogram::new(exponential_buckets(10e-6, 4.0, 10))
}

fn queued_histogram() -> Histogram {
    // 10 µs (taken at once) to ~80 s (a backlog draining).
    Histogram::new(exponential_buckets(10e-6, 4.0, 12))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("vumi");
    let messages = Family::<Labels, Counter>::default();
    registry.register(
        "messages",
        "Messages published on the bus, by connector and queue (inbound: from users, outbound: to users, event: acks, nacks and delivery reports)",
        messages.clone(),
    );
    let handler_seconds =
        Family::<Labels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
    registry.register(
        "handler_seconds",
        "Time one plugin call took (instantiation included), by plugin",
        handler_seconds.clone(),
    );
    let failures = Family::<Labels, Counter>::default();
    registry.register(
        "failures",
        "Messages sent to the failure path, by component and reason (trap, deadline, memory, handler_error, instantiate, publish ...)",
        failures.clone(),
    );
    let reloads = Family::<Labels, Counter>::default();
    registry.register(
        "reloads",
        "Plugin reloads, by plugin and outcome (swapped, rejected, unchanged) and config reloads (plugin=\"config\")",
        reloads.clone(),
    );
    let retries = Family::<Labels, Counter>::default();
    registry.register(
        "retries",
        "Messages tried again after a wait, by component and reason (retry_later: the plugin asked; unavailable: a back end was down)",
        retries.clone(),
    );
    let retry_wait = Family::<Labels, Counter<f64>>::default();
    registry.register(
        "retry_wait_seconds",
        "Time spent waiting before retries (the backoff), by component",
        retry_wait.clone(),
    );
    let queue_depth = Family::<Labels, Gauge>::default();
    registry.register(
        "queue_depth",
        "Messages waiting in each queue of the embedded bus, not yet taken by a consumer",
        queue_depth.clone(),
    );
    let queue_capacity = Family::<Labels, Gauge>::default();
    registry.register(
        "queue_capacity",
        "How many messages each queue of the embedded bus holds before publishers wait",
        queue_capacity.clone(),
    );
    let refused = Family::<Labels, Counter>::default();
    registry.register(
        "refused",
        "Requests refused at intake with 503, by what was unavailable (message bus: a full queue or a stopping host; session store, ...)",
        refused.clone(),
    );
    let queued_seconds =
        Family::<Labels, Histogram>::new_with_constructor(queued_histogram as fn() -> Histogram);
    registry.register(
        "queued_seconds",
        "Time a message waited in a queue of the embedded bus before a consumer took it, by queue",
        queued_seconds.clone(),
    );
    let bus_reconnects = Family::<Labels, Counter>::default();
    registry.register(
        "bus_reconnects",
        "Reconnections to RabbitMQ after a lost connection, by link (publish, consume)",
        bus_reconnects.clone(),
    );
    let bus_unknown_confirms = Counter::default();
    registry.register(
        "bus_unknown_confirms",
        "Publishes to RabbitMQ whose confirm never came (connection lost, or a broker nack): their inputs are tried again",
        bus_unknown_confirms.clone(),
    );
    let bus_undecodable = Counter::default();
    registry.register(
        "bus_undecodable",
        "Bodies taken from RabbitMQ that were not Vumi messages, set aside on <connector>.failures",
        bus_undecodable.clone(),
    );
    let deferred = Family::<Labels, Counter>::default();
    registry.register(
        "retry_path",
        "Messages set aside on the retry path (a back end stayed down, or the plugin kept asking to retry, through the tries in place), by component and delay tier",
        deferred.clone(),
    );
    let smpp = Family::<Labels, Counter>::default();
    registry.register(
        "smpp_events",
        "SMPP link events by transport and kind: bound, bind_failed, link_lost, bad_frame (a PDU that did not decode, answered and the link kept), resent (a submit_sm sent again after a timeout or a lost link: a possible duplicate), late_response (the answer to a send given up on, whose id is kept for its receipt), throttled, timeout, unmatched_receipt, deliver_refused, control_replaced (a control character in a text sent as `?`)",
        smpp.clone(),
    );
    let tenant_messages = Family::<Labels, Counter>::default();
    registry.register(
        "tenant_messages",
        "Messages a tenant's apps took from their queues (direction=inbound: user messages and events) and sent (direction=outbound), by tenant",
        tenant_messages.clone(),
    );
    let tenant_limited = Family::<Labels, Counter>::default();
    registry.register(
        "tenant_limited",
        "Times a tenant met one of its limits, by tenant and limit (inbound_per_sec: a message waited for the rate; outbound_per_sec: a send was nacked)",
        tenant_limited.clone(),
    );
    let tenant_failures = Family::<Labels, Counter>::default();
    registry.register(
        "tenant_failures",
        "Messages of a tenant's components sent to the failure path, by tenant and reason",
        tenant_failures.clone(),
    );
    let http_calls = Family::<Labels, Counter>::default();
    registry.register(
        "http_calls",
        "Plugins' outbound HTTP calls, by tenant (`operator` for the operator's plugins) and outcome: ok (a response, any status), not_allowed, invalid, limit, timeout, too_large, failed",
        http_calls.clone(),
    );
    Metrics {
        http_calls,
        tenant_messages,
        tenant_limited,
        tenant_failures,
        smpp,
        deferred,
        bus_reconnects,
        bus_unknown_confirms,
        bus_undecodable,
        registry,
        messages,
        handler_seconds,
        failures,
        reloads,
        retries,
        retry_wait,
        queue_depth,
        queue_capacity,
        refused,
        queued_seconds,
    }
});

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// The counter of messages published on `queue` (`inbound`, `outbound`, `event`, `status`)
    /// of `connector`.
    pub fn messages(&self, connector: &str, queue: &str) -> Counter {
        self.messages
            .get_or_create(&vec![("connector", connector.to_owned()), ("queue", queue.to_owned())])
            .clone()
    }

    /// The latency histogram of plugin `plugin`.
    pub fn handler_seconds(&self, plugin: &str) -> Histogram {
        self.handler_seconds.get_or_create(&vec![("plugin", plugin.to_owned())]).clone()
    }

    /// Count one message set aside on the retry path's tier `tier` by `component`.
    pub fn deferred(&self, component: &str, tier: &str) {
        self.deferred
            .get_or_create(&vec![("component", component.to_owned()), ("tier", tier.to_owned())])
            .inc();
    }

    /// Count one message sent to the failure path.
    pub fn failure(&self, component: &str, kind: &str) {
        self.failures
            .get_or_create(&vec![("component", component.to_owned()), ("kind", kind.to_owned())])
            .inc();
    }

    /// The failures counter of `component` and `kind`, for a hot path to hold.
    pub fn failure_counter(&self, component: &str, kind: &str) -> Counter {
        self.failures
            .get_or_create(&vec![("component", component.to_owned()), ("kind", kind.to_owned())])
            .clone()
    }

    /// The counter of messages tenant `tenant`'s apps took or sent (`direction`), for a worker
    /// to hold.
    pub fn tenant_messages(&self, tenant: &str, direction: &str) -> Counter {
        self.tenant_messages
            .get_or_create(&vec![("tenant", tenant.to_owned()), ("direction", direction.to_owned())])
            .clone()
    }

    /// The counter of times tenant `tenant` met `limit`, for a worker to hold.
    pub fn tenant_limited(&self, tenant: &str, limit: &str) -> Counter {
        self.tenant_limited
            .get_or_create(&vec![("tenant", tenant.to_owned()), ("limit", limit.to_owned())])
            .clone()
    }

    /// Count one failure of one of tenant `tenant`'s components.
    pub fn tenant_failure(&self, tenant: &str, kind: &str) {
        self.tenant_failures
            .get_or_create(&vec![("tenant", tenant.to_owned()), ("kind", kind.to_owned())])
            .inc();
    }

    /// Count one plugin HTTP call of `tenant` (or `operator`) ending in `outcome`.
    pub fn http_call(&self, tenant: &str, outcome: &str) {
        self.http_calls
            .get_or_create(&vec![("tenant", tenant.to_owned()), ("outcome", outcome.to_owned())])
            .inc();
    }

    /// Tenant `tenant`'s HTTP calls so far, by outcome.
    pub fn http_calls_of(&self, tenant: &str) -> std::collections::BTreeMap<String, u64> {
        ["ok", "not_allowed", "invalid", "limit", "timeout", "too_large", "failed"]
            .into_iter()
            .map(|o| {
                (
                    o.to_owned(),
                    self.http_calls
                        .get_or_create(&vec![("tenant", tenant.to_owned()), ("outcome", o.to_owned())])
                        .get(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The SMPP counter of `transport` and `kind` (see the metric's help), for a link to hold.
    pub fn smpp(&self, transport: &str, kind: &str) -> Counter {
        self.smpp.get_or_create(&vec![("transport", transport.to_owned()), ("kind", kind.to_owned())]).clone()
    }

    /// Count one reload attempt of `plugin` that ended in `outcome`.
    pub fn reload(&self, plugin: &str, outcome: &str) {
        self.reloads
            .get_or_create(&vec![("plugin", plugin.to_owned()), ("outcome", outcome.to_owned())])
            .inc();
    }

    /// Count one retry of a message by `component` after waiting `waited`, because of `reason`.
    pub fn retry(&self, component: &str, reason: &str, waited: std::time::Duration) {
        self.retries
            .get_or_create(&vec![("component", component.to_owned()), ("reason", reason.to_owned())])
            .inc();
        self.retry_wait
            .get_or_create(&vec![("component", component.to_owned())])
            .inc_by(waited.as_secs_f64());
    }

    /// Count one request refused at intake because `what` was unavailable.
    pub fn refused(&self, what: &str) {
        self.refused.get_or_create(&vec![("what", what.to_owned())]).inc();
    }

    /// The depth gauge and the time-queued histogram of `queue` (a routing key), with its
    /// capacity set.
    pub fn queue(&self, queue: &str, capacity: usize) -> (Gauge, Histogram) {
        let labels = vec![("queue", queue.to_owned())];
        self.queue_capacity.get_or_create(&labels).set(i64::try_from(capacity).unwrap_or(i64::MAX));
        (self.queue_depth.get_or_create(&labels).clone(), self.queued_seconds.get_or_create(&labels).clone())
    }

    /// Reconnections of the RabbitMQ `link` (`publish`, `consume`).
    pub fn bus_reconnects(&self, link: &str) -> Counter {
        self.bus_reconnects.get_or_create(&vec![("link", link.to_owned())]).clone()
    }

    /// Publishes whose confirm never came.
    pub fn bus_unknown_confirms(&self) -> Counter {
        self.bus_unknown_confirms.clone()
    }

    /// Undecodable bodies set aside.
    pub fn bus_undecodable(&self) -> Counter {
        self.bus_undecodable.clone()
    }

    /// Everything, in the OpenMetrics text format (which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
