//! A test harness for plugin authors: load a `.wasm` on in-memory back ends and feed it messages,
//! with the same engine, limits and instance policies the host uses, but no bus or transport.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vumi_host::harness::PluginHarness;
//!
//! let app = PluginHarness::builder("plugins/dist/survey.wasm").load().await?;
//! let user = app.user("+27831234567");
//! let replies = user.start().await?;          // session_event "new"
//! assert!(replies[0].content.as_deref().unwrap_or("").contains("1."));
//! let replies = user.say("2").await?;         // session_event "resume"
//! # let _ = replies;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::message::{Event, SessionEvent, UserMessage};
use crate::plugins::{
    AppPlugin, Engine, EngineSettings, HandlerFailure, InstancePolicy, Limits, LoadError, Settings,
};
use crate::state::{KvStore, MemoryStore, Namespace, Namespaced};

/// Builds a [`PluginHarness`].
#[derive(Debug, Clone)]
pub struct HarnessBuilder {
    path: PathBuf,
    policy: InstancePolicy,
    limits: Limits,
    config: serde_json::Map<String, serde_json::Value>,
    transport_type: String,
}

impl HarnessBuilder {
    /// Use a fresh instance per message (default: pooled).
    pub fn fresh(mut self) -> Self {
        self.policy = InstancePolicy::Fresh;
        self
    }
    /// CPU deadline per message (default 500 ms).
    pub fn deadline(mut self, d: Duration) -> Self {
        self.limits.deadline = d;
        self
    }
    /// Memory cap per instance (default 64 MiB).
    pub fn memory_limit_mb(mut self, mb: u32) -> Self {
        self.limits.max_memory_bytes = (mb as usize) << 20;
        self
    }
    /// Hosts the plugin may call through `http` (what `http_allow` would list, e.g.
    /// `127.0.0.1:8080` for a test server), with the default tenant limits; default: none.
    ///
    /// # Panics
    /// On an entry `http_allow` would refuse, with its reason.
    pub fn http_allow(self, hosts: &[&str]) -> Self {
        self.http_limits(hosts, &crate::config::TenantLimits::default())
    }
    /// As [`HarnessBuilder::http_allow`], with `limits`' `http_*` settings.
    ///
    /// # Panics
    /// On an entry `http_allow` would refuse, with its reason.
    pub fn http_limits(mut self, hosts: &[&str], limits: &crate::config::TenantLimits) -> Self {
        let allow = hosts
            .iter()
            .map(|h| crate::config::AllowedHost::parse(h).unwrap_or_else(|e| panic!("http_allow: {e}")))
            .collect();
        let rates = std::sync::Arc::new(crate::tenants::Rates::for_limits(limits));
        self.limits.http = Some(std::sync::Arc::new(crate::egress::HttpGrant::new(
            allow,
            "http_allow".into(),
            limits,
            Some(rates),
        )));
        self
    }
    /// The app's config table, as JSON (what `[apps.<name>.config]` would hold).
    pub fn config(mut self, config: serde_json::Value) -> Self {
        if let serde_json::Value::Object(m) = config {
            self.config = m;
        }
        self
    }
    /// The `transport_type` of messages the harness makes (default `telnet`).
    pub fn transport_type(mut self, t: &str) -> Self {
        self.transport_type = t.to_owned();
        self
    }

    /// Compile and start the plugin.
    pub async fn load(self) -> Result<PluginHarness, LoadError> {
        let engine = Engine::new(&EngineSettings {
            max_memory_bytes: self.limits.max_memory_bytes.max(64 << 20),
            max_instances: 100,
            max_stacks: 100,
            cache_dir: None,
        })?;
        let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let kv = Namespaced::new(store, Namespace::plugin("app", "harness"));
        let settings = Settings {
            name: self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".into()),
            policy: self.policy,
            limits: self.limits,
            kv: kv.clone(),
            config: self.config,
            endpoints: vec!["default".to_owned()],
        };
        let plugin = AppPlugin::load(&engine, &self.path, settings).await?;
        Ok(PluginHarness { plugin, kv, transport_type: self.transport_type })
    }
}

/// A loaded plugin with in-memory state.
pub struct PluginHarness {
    plugin: AppPlugin,
    kv: Namespaced,
    transport_type: String,
}

impl std::fmt::Debug for PluginHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHarness").field("plugin", &self.plugin).finish_non_exhaustive()
    }
}

impl PluginHarness {
    /// Start building a harness for the component at `path`.
    pub fn builder(path: impl AsRef<Path>) -> HarnessBuilder {
        HarnessBuilder {
            path: path.as_ref().to_owned(),
            policy: InstancePolicy::Pooled { max_messages: 10_000, max_age: Duration::from_secs(300) },
            limits: Limits {
                deadline: Duration::from_millis(500),
                max_memory_bytes: 64 << 20,
                max_sends: 16,
                http: Some(std::sync::Arc::new(crate::egress::HttpGrant::new(
                    Vec::new(),
                    "http_allow".into(),
                    &crate::config::TenantLimits::default(),
                    None,
                ))),
                ..Limits::default()
            },
            config: Default::default(),
            transport_type: "telnet".to_owned(),
        }
    }

    /// Handle `msg`; returns what the plugin sent.
    pub async fn send(&self, msg: UserMessage) -> Result<Vec<UserMessage>, HandlerFailure> {
        self.plugin.handle_user_message(Arc::new(msg)).await
    }

    /// Handle `event`; returns what the plugin sent.
    pub async fn event(&self, event: Event) -> Result<Vec<UserMessage>, HandlerFailure> {
        self.plugin.handle_event(Arc::new(event)).await
    }

    /// The app's state, as the plugin sees it through `kv`.
    pub fn kv(&self) -> &dyn KvStore {
        &self.kv
    }

    /// The loaded plugin (its stats, for example).
    pub fn plugin(&self) -> &AppPlugin {
        &self.plugin
    }

    /// A simulated end user with address `from_addr`.
    pub fn user(&self, from_addr: &str) -> SimulatedUser<'_> {
        SimulatedUser { harness: self, from_addr: from_addr.to_owned() }
    }
}

/// One end user talking to the plugin in a session, as a telnet or USSD transport would.
#[derive(Debug)]
pub struct SimulatedUser<'a> {
    harness: &'a PluginHarness,
    from_addr: String,
}

impl SimulatedUser<'_> {
    fn message(&self, content: Option<&str>, session: SessionEvent) -> UserMessage {
        UserMessage::inbound(
            "harness",
            &self.harness.transport_type,
            self.from_addr.clone(),
            "harness-app",
            content.map(str::to_owned),
            Some(session),
        )
    }
    /// Open a session (`new`, no content).
    pub async fn start(&self) -> Result<Vec<UserMessage>, HandlerFailure> {
        self.harness.send(self.message(None, SessionEvent::New)).await
    }
    /// Send a line within the session (`resume`).
    pub async fn say(&self, text: &str) -> Result<Vec<UserMessage>, HandlerFailure> {
        self.harness.send(self.message(Some(text), SessionEvent::Resume)).await
    }
    /// Hang up (`close`).
    pub async fn hang_up(&self) -> Result<Vec<UserMessage>, HandlerFailure> {
        self.harness.send(self.message(None, SessionEvent::Close)).await
    }
}
