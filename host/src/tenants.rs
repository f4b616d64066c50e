//! Tenants at run time: who a token belongs to, what that principal may see, and each tenant's
//! message rates.
//!
//! The config ([`crate::config::TenantConfig`]) says what a tenant owns and may use; at load its
//! components became qualified names (`acme:echo`), so "is this tenant's" is one question asked
//! of a name ([`Principal::sees`]). This module holds what the config cannot: the rate buckets,
//! which must outlive a config reload that did not change them, and the token lookup.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::{Config, Secret, TenantLimits};
use crate::names::{TenantName, tenant_of};

/// Who presented a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator (`[admin] token`): sees and changes everything.
    Operator,
    /// A tenant (`tenants.<t>.admin_tokens`): sees and changes its own resources only.
    Tenant(TenantName),
}

impl Principal {
    /// Whether this principal may see component, connector or record owner `name` (a
    /// qualified name is its tenant's; a plain name is the operator's).
    pub fn sees(&self, name: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant(t) => tenant_of(name) == Some(t.as_str()),
        }
    }

    /// The tenant, if it is one.
    pub fn tenant(&self) -> Option<&TenantName> {
        match self {
            Principal::Operator => None,
            Principal::Tenant(t) => Some(t),
        }
    }
}

/// One tenant's message rates (token buckets with a burst of one second's worth).
pub struct Rates {
    limits: TenantLimits,
    inbound: DefaultDirectRateLimiter,
    outbound: DefaultDirectRateLimiter,
    /// One cell per millisecond of guest CPU time (an epoch tick).
    cpu: Arc<DefaultDirectRateLimiter>,
    /// One cell per millisecond of a long call's CPU time while others' quick calls run.
    background: Arc<DefaultDirectRateLimiter>,
    /// One cell per `http` call.
    http: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rates").field("limits", &self.limits).finish_non_exhaustive()
    }
}

fn bucket(per_sec: u32) -> DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN)))
}

impl Rates {
    /// Buckets for `limits`, owned by no tenant list (a test harness's).
    pub fn for_limits(limits: &TenantLimits) -> Self {
        Self::new(limits)
    }

    fn new(limits: &TenantLimits) -> Self {
        Self {
            limits: limits.clone(),
            inbound: bucket(limits.inbound_per_sec),
            outbound: bucket(limits.outbound_per_sec),
            cpu: Arc::new(bucket(limits.cpu_ms_per_sec)),
            background: Arc::new(bucket(limits.background_cpu_ms_per_sec)),
            http: bucket(limits.http_calls_per_sec),
        }
    }

    /// Whether the tenant may take one more message now (taking it if so).
    pub fn inbound_ready(&self) -> bool {
        self.inbound.check().is_ok()
    }

    /// Wait until the tenant may take one more message from a queue.
    pub async fn inbound(&self) {
        self.inbound.until_ready().await;
    }

    /// Whether the tenant may send one more message now (no waiting: a send over the rate is
    /// nacked, so the app hears of it).
    pub fn outbound(&self) -> bool {
        self.outbound.check().is_ok()
    }

    /// Whether the tenant may make one more `http` call now (taking it if so). No waiting: the
    /// plugin hears `limit` and may ask to be retried later.
    pub fn http_ready(&self) -> bool {
        self.http.check().is_ok()
    }

    /// One more millisecond of the tenant's guest CPU time: `None` if its budget allows it now,
    /// else what to wait on before it runs on (the caller parks the guest on it).
    pub fn cpu_tick(&self) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        if self.cpu.check().is_ok() {
            return None;
        }
        let cpu = self.cpu.clone();
        Some(Box::pin(async move { cpu.until_ready().await }))
    }

    /// One more millisecond of a long call's CPU time while other tenants' quick calls are
    /// being served (`background_cpu_ms_per_sec`): as [`Rates::cpu_tick`].
    pub fn background_tick(&self) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        if self.background.check().is_ok() {
            return None;
        }
        let bucket = self.background.clone();
        Some(Box::pin(async move { bucket.until_ready().await }))
    }

    /// The limits these buckets enforce.
    pub fn limits(&self) -> &TenantLimits {
        &self.limits
    }
}

/// Every tenant's tokens and rates, rebuilt on each config reload ([`Tenants::update`]).
#[derive(Debug, Default)]
pub struct Tenants {
    operator: Option<Secret>,
    tokens: Vec<(Secret, TenantName)>,
    rates: BTreeMap<TenantName, Arc<Rates>>,
    granted: BTreeMap<TenantName, Vec<String>>,
}

impl Tenants {
    /// For a newly loaded config: a tenant whose limits did not change keeps its buckets (and
    /// what it has used of them).
    pub fn update(&self, config: &Config) -> Self {
        let mut rates = BTreeMap::new();
        for (t, tc) in &config.tenants {
            let kept = self.rates.get(t).filter(|r| r.limits == tc.limits).cloned();
            rates.insert(t.clone(), kept.unwrap_or_else(|| Arc::new(Rates::new(&tc.limits))));
        }
        Self {
            operator: config.admin.as_ref().map(|a| a.token.clone()),
            tokens: config
                .tenants
                .iter()
                .flat_map(|(t, tc)| tc.admin_tokens.iter().map(move |s| (s.clone(), t.clone())))
                .collect(),
            rates,
            granted: config
                .tenants
                .iter()
                .map(|(t, tc)| (t.clone(), tc.transports.iter().map(ToString::to_string).collect()))
                .collect(),
        }
    }

    /// Whose token `token` is, if anyone's. Every secret is compared, so the time taken does
    /// not say which one matched.
    pub fn principal(&self, token: &str) -> Option<Principal> {
        let presented = Secret::of(token);
        let mut found = None;
        if self.operator.as_ref().is_some_and(|s| s.is(&presented)) {
            found = Some(Principal::Operator);
        }
        for (secret, tenant) in &self.tokens {
            if secret.is(&presented) && found.is_none() {
                found = Some(Principal::Tenant(tenant.clone()));
            }
        }
        found
    }

    /// The rates of the tenant that owns `name`, if a tenant does.
    pub fn rates_of(&self, name: &str) -> Option<Arc<Rates>> {
        let t = tenant_of(name)?;
        self.rates.iter().find(|(n, _)| n.as_str() == t).map(|(_, r)| r.clone())
    }

    /// Tenants with their limits and granted transports, for the admin API.
    pub fn list(&self) -> Vec<(TenantName, TenantLimits, Vec<String>)> {
        self.rates
            .iter()
            .map(|(t, r)| (t.clone(), r.limits.clone(), self.granted.get(t).cloned().unwrap_or_default()))
            .collect()
    }

    /// Whether `transport` is granted to the principal (the operator's are every transport
    /// granted to no tenant; the operator sees them all).
    pub fn transport_visible(&self, who: &Principal, transport: &str) -> bool {
        match who {
            Principal::Operator => true,
            Principal::Tenant(t) => self.granted.get(t).is_some_and(|g| g.iter().any(|x| x == transport)),
        }
    }
}
