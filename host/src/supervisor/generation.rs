//! A generation: every app-side component built from one config (app workers, dispatchers,
//! channels, events-by-origin splitters) and the plugin slots it runs. A config reload stops one and starts the
//! next on the same queues; a plugin whose table did not change keeps its slot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bus::{Consumer, RoutingKey};
use crate::config::{Config, MiddlewareConfig};
use crate::names::{ComponentName, ConnectorName};
use crate::plugins::{AnySlot, AppSlot, Face, MiddlewareSlot, Plugin, PluginSlot, RouterSlot, Settings};
use crate::state::{KvStore, Namespace, Namespaced};
use crate::workers::callbacks::Callbacks;
use crate::workers::dispatcher::Dispatcher;
use crate::workers::events::{EventsByOrigin, Origins};
use crate::workers::flow::Dispatchers;
use crate::workers::http_api::{Channel, ChannelParts, SendApi};
use crate::workers::middleware::{Chains, Step};
use crate::workers::{AppWorker, AppWorkerParts};

use super::settings::{RuleTable, kv_quota, rule_settings};
use super::{RunningHost, StartError};

/// Everything built from one config on the app side of the bus.
pub(super) struct Generation {
    pub(super) stop: CancellationToken,
    pub(super) tasks: JoinSet<()>,
    pub(super) routes: axum::Router,
    /// Its dispatchers by input queue, for routing at publish time.
    pub(super) dispatch: Dispatchers,
    /// The plugins it runs, kept for the next config where theirs is unchanged.
    pub(super) slots: Slots,
}

/// Every plugin of a config, in a slot of its world.
#[derive(Default, Clone)]
pub(super) struct Slots {
    pub(super) apps: BTreeMap<ComponentName, Arc<AppSlot>>,
    pub(super) routers: BTreeMap<ComponentName, Arc<RouterSlot>>,
    pub(super) middleware: BTreeMap<ComponentName, Arc<MiddlewareSlot>>,
}

impl Slots {
    /// For the admin API, by name.
    pub(super) fn all(&self) -> BTreeMap<String, Arc<dyn AnySlot>> {
        let apps = self.apps.iter().map(|(k, s)| (k.to_string(), s.clone() as Arc<dyn AnySlot>));
        let routers = self.routers.iter().map(|(k, s)| (k.to_string(), s.clone() as Arc<dyn AnySlot>));
        let middleware = self.middleware.iter().map(|(k, s)| (k.to_string(), s.clone() as Arc<dyn AnySlot>));
        apps.chain(routers).chain(middleware).collect()
    }
}

impl RunningHost {
    /// Slots for every plugin in `new`: kept from the running generation where the plugin's
    /// config is unchanged, loaded otherwise.
    pub(super) async fn load_plugins(
        &self,
        old: Option<&Config>,
        new: &Config,
        summary: &mut Vec<String>,
    ) -> Result<Slots, StartError> {
        let running = self.generation.as_ref().map(|g| g.slots.clone()).unwrap_or_default();
        let mut slots = Slots::default();
        for (name, app) in &new.apps {
            let same = old.is_some_and(|o| o.apps.get(name) == Some(app) && same_tenant(o, new, name));
            let kept = running.apps.get(name).filter(|_| same).cloned();
            let settings = self.app_settings(new, name, app);
            let slot = self.slot(kept, "apps", name, new.resolve(&app.plugin), settings, summary).await?;
            slots.apps.insert(name.clone(), slot);
        }
        for (name, rc) in &new.routers {
            let same = old.is_some_and(|o| o.routers.get(name) == Some(rc) && same_tenant(o, new, name));
            let kept = running.routers.get(name).filter(|_| same).cloned();
            let kv = Namespaced::new(self.state.clone(), Namespace::plugin("router", name.as_str()))
                .counted(kv_quota(new, name));
            let rule = RuleTable {
                instances: rc.instances,
                deadline_ms: rc.deadline_ms,
                memory_limit_mb: rc.memory_limit_mb,
                config: &rc.config,
            };
            let settings = rule_settings(name, rule, kv, new, self.tenants.load().rates_of(name));
            let slot = self.slot(kept, "routers", name, new.resolve(&rc.plugin), settings, summary).await?;
            slots.routers.insert(name.clone(), slot);
        }
        for (name, m) in &new.middleware {
            let MiddlewareConfig::Plugin(p) = m else { continue };
            let same = old.is_some_and(|o| o.middleware.get(name) == Some(m) && same_tenant(o, new, name));
            let kept = running.middleware.get(name).filter(|_| same).cloned();
            let kv = Namespaced::new(self.state.clone(), Namespace::plugin("middleware", name.as_str()))
                .counted(kv_quota(new, name));
            let rule = RuleTable {
                instances: p.instances,
                deadline_ms: p.deadline_ms,
                memory_limit_mb: p.memory_limit_mb,
                config: &p.config,
            };
            let settings = rule_settings(name, rule, kv, new, self.tenants.load().rates_of(name));
            let slot = self.slot(kept, "middleware", name, new.resolve(&p.plugin), settings, summary).await?;
            slots.middleware.insert(name.clone(), slot);
        }
        if let Some(o) = old {
            let now = slots.all();
            let removed: Vec<String> = o
                .apps
                .keys()
                .chain(o.routers.keys())
                .chain(
                    o.middleware
                        .iter()
                        .filter(|(_, m)| matches!(m, MiddlewareConfig::Plugin(_)))
                        .map(|(n, _)| n),
                )
                .filter(|n| !now.contains_key(n.as_str()))
                .map(|n| format!("{n} removed"))
                .collect();
            summary.extend(removed);
        }
        Ok(slots)
    }

    /// `kept`, or a new slot with `path` loaded as a plugin of world `F`.
    pub(super) async fn slot<F: Face>(
        &self,
        kept: Option<Arc<PluginSlot<F>>>,
        section: &str,
        name: &ComponentName,
        path: std::path::PathBuf,
        settings: Settings,
        summary: &mut Vec<String>,
    ) -> Result<Arc<PluginSlot<F>>, StartError> {
        if let Some(s) = kept {
            return Ok(s);
        }
        let configured = path;
        let path = self.deployments.path_for(name.as_str(), &configured);
        let plugin = Plugin::<F>::load(&self.engine, &path, settings)
            .await
            .map_err(|source| StartError::Plugin { key: format!("{section}.{name}.plugin"), source })?;
        tracing::info!(plugin = %name, section, file = %path.display(), hash = %&plugin.version().hash[..12], "plugin loaded");
        summary.push(format!("{name} loaded"));
        Ok(Arc::new(PluginSlot::configured_as(plugin, configured)))
    }

    /// Every app-side component of `config`, on the plugins in `slots`.
    pub(super) async fn start_generation(
        &mut self,
        config: &Config,
        slots: Slots,
    ) -> Result<Generation, StartError> {
        let bus = self.bus.clone();
        let (state, failures) = (self.state.clone(), self.failures.clone());
        let retry = config.host.retry.clone();
        let stop = self.shutdown.child_token();
        let mut tasks = JoinSet::new();

        // Connectors shared by several app-side components get an EventsByOrigin (see workers::events).
        let mut sharers: BTreeMap<&ConnectorName, usize> = BTreeMap::new();
        for c in
            config.apps.values().map(|a| &a.connector).chain(config.channels.values().map(|c| &c.connector))
        {
            *sharers.entry(c).or_default() += 1;
        }
        let mut routers: BTreeMap<ConnectorName, EventsByOrigin> = sharers
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(c, _)| {
                let kv =
                    Arc::new(Namespaced::new(state.clone(), Namespace::origins("connector", c.as_str())));
                let origins =
                    Arc::new(Origins::new(kv, Duration::from_secs(config.host.event_origin_ttl_secs)));
                (
                    c.clone(),
                    EventsByOrigin::new(c.clone(), bus.clone(), origins, failures.clone(), retry.clone()),
                )
            })
            .collect();

        for (name, app) in &config.apps {
            let Some(slot) = slots.apps.get(name) else { continue };
            let mut worker = AppWorker::new(AppWorkerParts {
                handler: slot.clone(),
                bus: bus.clone(),
                publish: self.flow.clone(),
                connector: app.connector.clone(),
                failures: failures.clone(),
                concurrency: usize::from(app.concurrency),
                retry: retry.clone(),
                sequencer: match app.ordering {
                    crate::config::Ordering::User => self.sequencer.clone(),
                    crate::config::Ordering::None => None,
                },
                rates: self.tenants.load().rates_of(name),
            });
            if let Some(router) = routers.get_mut(&app.connector) {
                worker = worker.with_routed_events(router.subscribe(name), router.origins());
            }
            let (stop, app_name) = (stop.clone(), name.to_string());
            tasks.spawn(async move {
                if let Err(e) = worker.run(stop).await {
                    tracing::error!(app = app_name, error = %e, "app worker stopped");
                }
            });
        }

        let mut dispatch = Dispatchers::new();
        for (name, rc) in &config.routers {
            let Some(slot) = slots.routers.get(name) else { continue };
            let origins_kv =
                Arc::new(Namespaced::new(state.clone(), Namespace::origins("router", name.as_str())));
            let origins =
                Arc::new(Origins::new(origins_kv, Duration::from_secs(config.host.event_origin_ttl_secs)));
            let dispatcher =
                Arc::new(Dispatcher::new(slot.clone(), rc.transports.clone(), rc.apps.clone(), origins));
            for input in dispatcher.inputs() {
                dispatch.insert(input, dispatcher.clone());
            }
            let (flow, stop, rname, retry) =
                (self.flow.clone(), stop.clone(), name.to_string(), retry.clone());
            tasks.spawn(async move {
                if let Err(e) = flow.serve(dispatcher, retry, stop).await {
                    tracing::error!(router = rname, error = %e, "dispatcher stopped");
                }
            });
        }

        let mut routes = axum::Router::new();
        let mut channels = Vec::new();
        for (name, ch) in &config.channels {
            let kv: Arc<dyn KvStore> =
                Arc::new(Namespaced::new(state.clone(), Namespace::Channel(name.as_str())));
            let callbacks = Callbacks::start(
                &config.callbacks,
                config.callbacks.retry.as_ref().unwrap_or(&config.host.retry),
                name,
                &ch.connector,
                failures.clone(),
                stop.clone(),
            );
            let router = routers.get_mut(&ch.connector);
            let channel = Arc::new(Channel::new(ChannelParts {
                name: name.to_string(),
                config: ch.clone(),
                transport_type: config.transports.get(&ch.connector).map(|t| t.transport_type().to_owned()),
                kv,
                // The send API is intake: a graceful stop refuses it first.
                publish: self.intake.clone(),
                origins: router.as_ref().map(|r| r.origins()),
                callbacks,
                retry: config.host.retry.clone(),
                failures: failures.clone(),
            }));
            let consume = |key: RoutingKey| {
                let bus = bus.clone();
                async move {
                    bus.consume(&key, 64)
                        .await
                        .map_err(|source| StartError::Bus { key: key.to_string(), source })
                }
            };
            let events: Box<dyn Consumer> = match router {
                Some(r) => Box::new(r.subscribe(name)),
                None => consume(RoutingKey::event(&ch.connector)).await?,
            };
            let inbound = match ch.mo_url {
                Some(_) => Some(consume(RoutingKey::inbound(&ch.connector)).await?),
                None => None,
            };
            tasks.spawn(channel.clone().run(inbound, events, stop.clone()));
            channels.push(channel);
        }
        if !channels.is_empty() {
            routes = routes.merge(SendApi::new(channels, config.http.max_body_bytes).router());
        }
        for (connector, router) in routers {
            let stop = stop.clone();
            tasks.spawn(async move {
                if let Err(e) = router.run(stop).await {
                    tracing::error!(connector = %connector, error = %e, "events-by-origin splitter stopped");
                }
            });
        }
        Ok(Generation { stop, tasks, routes, dispatch, slots })
    }
}

/// The middleware chains of `config`, on the plugins in `slots`.
pub(super) fn chains(config: &Config, slots: &Slots) -> Chains {
    let mut steps = BTreeMap::new();
    for (name, m) in &config.middleware {
        let step = match m {
            MiddlewareConfig::Log(l) => {
                Step::Log { name: name.to_string(), level: l.level.parse().unwrap_or(tracing::Level::INFO) }
            }
            MiddlewareConfig::Plugin(_) => match slots.middleware.get(name) {
                Some(s) => Step::Plugin(s.clone()),
                None => continue,
            },
        };
        steps.insert(name.clone(), step);
    }
    let mut chains = Chains::new();
    for (connector, chain) in &config.chains {
        let keys = [
            (RoutingKey::inbound(connector), &chain.inbound),
            (RoutingKey::outbound(connector), &chain.outbound),
            (RoutingKey::event(connector), &chain.event),
        ];
        for (key, names) in keys {
            // Validated at load: every name is defined.
            let chain: Vec<Step> = names.iter().filter_map(|n| steps.get(n).cloned()).collect();
            if !chain.is_empty() {
                tracing::info!(queue = %key, steps = ?chain, "middleware chain");
                chains.insert(key, chain);
            }
        }
    }
    chains
}

/// Whether `name`'s tenant has the same limits in both configs (a kept slot keeps its limits).
fn same_tenant(old: &Config, new: &Config, name: &str) -> bool {
    let grants = |c: &Config| c.tenant(name).map(|(_, t)| (t.limits.clone(), t.http_allow.clone()));
    grants(old) == grants(new)
        && (crate::names::tenant_of(name).is_some() || old.host.http_allow == new.host.http_allow)
}
