//! The dispatcher: a router plugin between transport connectors and application connectors
//! (Vumi's dispatcher worker).
//!
//! Its inputs are `<transport>.inbound` and `<transport>.event` for each of its transports and
//! `<app>.outbound` for each of its app connectors. For each message on one of them it makes one
//! decision, [`Dispatcher::targets`]: it asks the router where the message goes and, for an
//! outbound message, records which app connector sent it (with a TTL), so the router can send
//! its events home. It publishes nothing itself: the message path ([`super::flow::Flow`])
//! enqueues the targets, whether the message was published in this process (routed at publish)
//! or taken from the dispatcher's queue.
//!
//! A router that errs, traps, runs out of time or memory, or names a connector it was not given
//! costs only that message: it goes to the failure path with the reason, and routing goes on. A
//! back end that fails (the state store holding the origins) is a reason to try again later.

use std::sync::Arc;

use super::events::Origins;
use crate::bus::{QueueKind, RoutingKey};
use crate::message::Message;
use crate::names::ConnectorName;
use crate::plugins::{HandlerFailure, RouterSlot, Target};

/// Why a message was not routed.
#[derive(Debug)]
pub enum Failure {
    /// A back end failed, or the router said `retry-later`: try again later.
    Requeue(String),
    /// The router's decision cannot be carried out, or the router failed: the failure path.
    Fail {
        /// The failure's label (`unknown_connector`, or the plugin failure's kind).
        kind: &'static str,
        /// Why.
        reason: String,
    },
}

impl From<HandlerFailure> for Failure {
    fn from(f: HandlerFailure) -> Self {
        if f.is_retryable() {
            Failure::Requeue(f.to_string())
        } else {
            Failure::Fail { kind: f.kind(), reason: f.to_string() }
        }
    }
}

/// A router plugin wired between connectors.
pub struct Dispatcher {
    router: Arc<RouterSlot>,
    transports: Vec<ConnectorName>,
    apps: Vec<ConnectorName>,
    origins: Arc<Origins>,
    /// `apps` then `transports`: where an inbound message may go.
    both: Vec<ConnectorName>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").field("router", &self.router.name()).finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher running `router` between `transports` and `apps`, keeping outbound
    /// messages' origins in `origins`.
    pub fn new(
        router: Arc<RouterSlot>,
        transports: Vec<ConnectorName>,
        apps: Vec<ConnectorName>,
        origins: Arc<Origins>,
    ) -> Self {
        let both = apps.iter().chain(&transports).cloned().collect();
        Self { router, transports, apps, origins, both }
    }

    /// The router's name.
    pub fn name(&self) -> &str {
        self.router.name()
    }

    /// The queues it routes from: its transports' `inbound` and `event`, its apps' `outbound`.
    pub fn inputs(&self) -> Vec<RoutingKey> {
        let from_transports =
            self.transports.iter().flat_map(|t| [RoutingKey::inbound(t), RoutingKey::event(t)]);
        from_transports.chain(self.apps.iter().map(RoutingKey::outbound)).collect()
    }

    /// Where `message`, published on `key` (one of [`Dispatcher::inputs`]), goes: each target's
    /// queue and the message as it should arrive there (its endpoint and transport set). Empty
    /// if the router dropped it (logged). Status messages and misfiled messages are not routed.
    pub async fn targets(
        &self,
        key: &RoutingKey,
        message: &Message,
    ) -> Result<Vec<(RoutingKey, Message)>, Failure> {
        let from = &key.connector;
        let router = self.router.current();
        let (targets, allowed) = match (key.kind, message) {
            // Inbound may also go straight out by another transport (transport-to-transport).
            (QueueKind::Inbound, Message::User(m)) => {
                (router.route_inbound(m.clone(), from.as_str()).await?, &self.both)
            }
            (QueueKind::Outbound, Message::User(m)) => {
                (router.route_outbound(m.clone(), from.as_str()).await?, &self.transports)
            }
            (QueueKind::Event, Message::Event(e)) => {
                let origin = self
                    .origins
                    .lookup(&e.user_message_id)
                    .await
                    .map_err(|e| Failure::Requeue(e.to_string()))?;
                (router.route_event(e.clone(), from.as_str(), origin.as_deref()).await?, &self.apps)
            }
            _ => return Ok(Vec::new()),
        };
        let resolved = resolve(&targets, allowed)
            .map_err(|reason| Failure::Fail { kind: "unknown_connector", reason })?;
        if resolved.is_empty() {
            tracing::info!(router = %self.router.name(), from = %from, id = message.id(), queue = %key, "router dropped a message (no targets)");
        }
        let mut out = Vec::with_capacity(resolved.len());
        for (connector, endpoint) in resolved {
            let mut routed = message.clone();
            let to_transport = self.transports.contains(connector);
            let target = match key.kind {
                QueueKind::Inbound if !to_transport => RoutingKey::inbound(connector),
                QueueKind::Inbound | QueueKind::Outbound => {
                    if let Message::User(m) = &mut routed {
                        Arc::make_mut(m).transport_name = Some(connector.to_string());
                    }
                    // Remember who sent it before it can be acked, so its events find home
                    // (for a message forwarded between transports, nobody: its events stop here).
                    if key.kind == QueueKind::Outbound {
                        self.origins
                            .record(message.id(), from.as_str())
                            .await
                            .map_err(|e| Failure::Requeue(e.to_string()))?;
                    }
                    RoutingKey::outbound(connector)
                }
                _ => RoutingKey::event(connector),
            };
            if let (Some(ep), Message::User(m)) = (endpoint, &mut routed) {
                Arc::make_mut(m).set_endpoint(ep);
            }
            out.push((target, routed));
        }
        Ok(out)
    }
}

/// Each target's connector among `allowed`, with its endpoint; an unknown one is an error
/// naming it and what was allowed.
fn resolve<'a>(
    targets: &'a [Target],
    allowed: &'a [ConnectorName],
) -> Result<Vec<(&'a ConnectorName, Option<&'a str>)>, String> {
    targets
        .iter()
        .map(|t| match allowed.iter().find(|c| c.as_str() == t.connector) {
            Some(c) => Ok((c, t.endpoint.as_deref())),
            None => Err(format!(
                "the router chose connector `{}`, which it was not given (allowed here: {})",
                t.connector,
                allowed.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            )),
        })
        .collect()
}
