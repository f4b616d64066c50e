//! The `vumi` command line.

mod admin_client;
mod fake_smsc;
mod plugin_build;

pub use plugin_build::build as build_plugins;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::telemetry::LogFormat;

/// vumi: a messaging platform for SMS, USSD and chat campaigns.
///
/// Transports (telnet, HTTP, SMPP ...) turn channel traffic into Vumi messages; campaign apps are
/// sandboxed WebAssembly components that answer them. Everything runs from one config file.
///
/// Quick start, from a checkout:
///
///   vumi run --build-plugins        build the example apps, then serve config/vumi.toml
///
///   telnet 127.0.0.1 9010           talk to the survey app
///
///   curl -X POST 127.0.0.1:8080/ussd -d sessionId=s1 -d serviceCode='*120#' \
///        -d phoneNumber=+27820000001 -d text=      the survey again, over USSD
#[derive(Debug, Parser)]
#[command(name = "vumi", version, propagate_version = true)]
pub struct Cli {
    /// How to write logs to stderr. The filter is read from VUMI_LOG (e.g. VUMI_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the host: every transport and app in the config, until Ctrl-C or SIGTERM.
    ///
    /// The default config (config/vumi.toml) needs nothing installed: an in-process bus and
    /// in-memory state. Plugin paths in the config are relative to the config file.
    Run {
        /// The config file.
        #[arg(long, short, default_value = "config/vumi.toml", env = "VUMI_CONFIG")]
        config: PathBuf,
        /// Build the plugin crates under ./plugins first (as `vumi plugin build` does).
        #[arg(long)]
        build_plugins: bool,
        /// Run only these components of the config, by name (a transport, app, router or
        /// channel), or a whole kind (`@transports`, `@apps`, `@routers`, `@channels`). Repeat
        /// it or separate with commas. Several hosts on one RabbitMQ split a config this way:
        /// `--role @transports` on one, `--role @apps` on two more. Overrides `[host] roles`.
        #[arg(long = "role", value_name = "NAME", env = "VUMI_ROLES", value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Build plugins, and list, deploy and reload them on a running host (through its admin API).
    #[command(subcommand, visible_alias = "plugin")]
    Plugins(PluginCommand),
    /// Ask a running host to reload its config file (as `kill -HUP` does). An invalid config is
    /// rejected whole, with the reason, and the running one stays.
    Reload {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
    },
    /// List a running host's transports and their status.
    Transports {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
    },
    /// Show a running host's most recent failures (messages a handler could not handle, and
    /// why), or replay them after a fix (`vumi failures replay`). A tenant's token sees and
    /// replays only that tenant's.
    Failures {
        #[command(subcommand)]
        action: Option<FailuresAction>,
        /// How many to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        filter: admin_client::FailureArgs,
        #[command(flatten)]
        admin: admin_client::AdminArgs,
    },
    /// Bearer tokens: hash one for the config (`sha256:<hex>`), so the file never holds it.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a stand-in SMS aggregator for development: it prints every SMS POSTed to it and
    /// answers `200` with an id, as a real aggregator would. Point an `sms_http` transport's
    /// `outbound_url` at it (the default config uses http://127.0.0.1:9099/sms).
    FakeAggregator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9099")]
        bind: std::net::SocketAddr,
    },
    /// Run a stand-in SMSC for development and tests (SMPP 3.4, with an HTTP control API).
    ///
    /// It accepts binds, answers submit_sm, sends receipts, and can be made to misbehave as
    /// real SMSCs do (see the flags). Bind an SMPP transport to it as `smppclient1` /
    /// `password` on 127.0.0.1:2775. Once both listeners are up it prints
    /// `vumi: fake SMSC listening on <smpp addr> (SMPP), http on <http addr>`.
    ///
    /// What it received is reassembled (UDH, SAR, message_payload), decoded and listed with
    /// warnings (a part ending inside a surrogate or escape pair, mixed codings, undecodable
    /// octets, parts out of order or twice). Its HTTP API (JSON in and out):
    ///
    ///   POST /mo        inject an inbound SMS to the bound receivers, e.g.
    ///                   {"from": "27820000001", "to": "1234", "content": "hi",
    ///                    "coding": "ucs2", "split": "sar", "ussd": {"op": 1, "session": 7}}
    ///                   (coding, split and ussd are optional); answers {"parts": n} once the
    ///                   ESME acknowledged each part, 409 if no receiver is bound
    ///
    ///   GET /mt         what was submitted, oldest first (?since=N skips N); DELETE /mt clears
    ///
    ///   GET /stats      binds, submits, throttled, drops, deliver_sm_resp by status, ...
    ///
    ///   POST /settings  change any of delay_ms, error_rate, throttle_rate, queue_full_rate,
    ///                   drop_after, receipt, receipt_as, receipt_delay_ms, id_format,
    ///                   receipt_id_format while it runs, e.g. {"throttle_rate": 1.0}
    ///
    ///   POST /raw       {"hex": "..."}: write octets as they are to every receiver
    ///
    ///   POST /drop      close every connection at once, without unbind
    ///
    ///   GET /responses  the last 1,000 responses the ESME sent
    ///
    /// Try: curl -XPOST 127.0.0.1:2776/mo -d '{"from":"27820000001","to":"1234","content":"hi"}'
    #[command(verbatim_doc_comment)]
    FakeSmsc {
        #[command(flatten)]
        args: fake_smsc::Args,
    },
}

/// `vumi plugins ...`
///
/// The commands that talk to a running host find its admin API and token in the config file's
/// `[admin]` section (or take --admin-url and --token).
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List the running plugins.
    ///
    /// For each: world, content hash, messages handled, failures, swaps, last error, and the
    /// reason the latest reload was rejected, if it was.
    List {
        #[command(flatten)]
        admin: admin_client::AdminArgs,
    },
    /// Upload FILE as the new version of plugin NAME.
    ///
    /// The host checks it (a valid component of the plugin's world that starts), writes it over
    /// the plugin's file and swaps it in:
    /// messages in flight finish on the old version, every later one uses the new. A bad file is
    /// refused with the reason and the old version keeps serving.
    Deploy {
        /// The plugin's name in the config (e.g. `survey`).
        name: String,
        /// The new `.wasm` component.
        file: PathBuf,
        #[command(flatten)]
        admin: admin_client::AdminArgs,
    },
    /// Reload plugin NAME from its file now.
    ///
    /// The host also does this by itself when the file changes, unless `plugins.watch = false`.
    Reload {
        /// The plugin's name in the config.
        name: String,
        #[command(flatten)]
        admin: admin_client::AdminArgs,
    },
    /// Build every plugin crate under <workspace>/plugins for wasm32-wasip2 and copy the
    /// components to the output directory (installing the wasm32-wasip2 target with rustup if
    /// it is missing).
    ///
    /// A plugin crate is any directory under plugins/ (one or two levels deep) with a
    /// Cargo.toml; each becomes <out>/<package-name>.wasm.
    Build {
        /// The cargo workspace that holds plugins/.
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// Where to put the .wasm files (default: <workspace>/plugins/dist).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `vumi config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate a config file, report what it would start, and exit. Exits non-zero
    /// with the file, key and problem if it is invalid.
    Check {
        /// The config file.
        #[arg(long, short, default_value = "config/vumi.toml", env = "VUMI_CONFIG")]
        config: PathBuf,
    },
}

/// `vumi failures ...`.
#[derive(Debug, Subcommand)]
pub enum FailuresAction {
    /// Put the matching failures (not replayed before) back on the queue each failed from,
    /// once each, and print each outcome. Filter with --tenant, --since, --reason, --id.
    Replay,
}

/// `vumi token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print `sha256:<hex>` for TOKEN: write that in the config (`[admin] token`,
    /// `tenants.<t>.admin_tokens`, `channels.<c>.token`) instead of the token itself.
    Hash {
        /// The token (at least 8 characters; use a long random one).
        token: String,
    },
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, build_plugins, roles } => {
            if build_plugins {
                plugin_build::build(&PathBuf::from("."), None)?;
            }
            run_host(&config, roles).await
        }
        Command::Plugins(PluginCommand::Build { workspace, out }) => {
            plugin_build::build(&workspace, out.as_deref())?;
            Ok(())
        }
        Command::Plugins(PluginCommand::List { admin }) => admin_client::list(&admin).await,
        Command::Plugins(PluginCommand::Deploy { name, file, admin }) => {
            admin_client::deploy(&admin, &name, &file).await
        }
        Command::Plugins(PluginCommand::Reload { name, admin }) => {
            admin_client::reload_plugin(&admin, &name).await
        }
        Command::Reload { admin } => admin_client::reload_config(&admin).await,
        Command::Transports { admin } => admin_client::transports(&admin).await,
        Command::Failures { action: None, limit, filter, admin } => {
            admin_client::failures(&admin, &filter, limit).await
        }
        Command::Failures { action: Some(FailuresAction::Replay), filter, admin, .. } => {
            admin_client::replay(&admin, &filter).await
        }
        Command::Token(TokenCommand::Hash { token }) => {
            let secret = crate::config::Secret::parse(&token).map_err(|e| anyhow::anyhow!(e))?;
            println!("{}", secret.stored_form());
            Ok(())
        }
        Command::Config(ConfigCommand::Check { config }) => {
            let c = Config::load(&config)?;
            println!("{}: valid", config.display());
            for (name, t) in &c.transports {
                println!("  transport {name}: {t}");
            }
            for (name, a) in &c.apps {
                println!(
                    "  app {name}: {} on connector {} ({} instances)",
                    c.resolve(&a.plugin).display(),
                    a.connector,
                    match a.instances {
                        crate::config::InstancesConfig::Fresh => "fresh",
                        crate::config::InstancesConfig::Pooled => "pooled",
                    }
                );
            }
            for (name, ch) in &c.channels {
                let mo = ch.mo_url.as_deref().unwrap_or("none");
                println!("  channel {name}: sends through {}; inbound to mo_url {mo}", ch.connector);
            }
            for (name, r) in &c.routers {
                let list = |cs: &[crate::names::ConnectorName]| {
                    cs.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
                };
                println!(
                    "  router {name}: {} between transports [{}] and app connectors [{}]",
                    c.resolve(&r.plugin).display(),
                    list(&r.transports),
                    list(&r.apps)
                );
            }
            for (name, t) in &c.tenants {
                let granted: Vec<String> = t.transports.iter().map(ToString::to_string).collect();
                println!(
                    "  tenant {name}: transports [{}]; {} admin tokens; limits: {}",
                    granted.join(", "),
                    t.admin_tokens.len(),
                    t.limits
                );
            }
            if let Some(dir) = c.tenants_dir() {
                println!("  tenants directory {} (changed at run time through the admin API)", dir.display());
            }
            match &c.admin {
                Some(a) => println!("  admin API on http://{} (token from the config)", a.bind),
                None => println!("  no admin API ([admin] absent)"),
            }
            let cache = c.cache_dir().map_or_else(|| "off".to_owned(), |d| d.display().to_string());
            println!(
                "  plugins: watch {}, compiled-component cache {cache}",
                if c.plugins.watch { "on" } else { "off" }
            );
            let r = &c.host.retry;
            println!(
                "  retries: waits from {} ms doubling to {} ms, {} tries per message in place",
                r.initial_ms, r.max_ms, r.max_attempts
            );
            match r.tiers_ms.as_slice() {
                [] => println!(
                    "  retry path: none (a message still held up after its tries goes to the failure path)"
                ),
                tiers => println!(
                    "  retry path: then set aside for {}, then the failure path",
                    tiers
                        .iter()
                        .map(|ms| crate::bus::tier_label(std::time::Duration::from_millis(*ms)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
            let q = &c.host.queues;
            println!(
                "  queues: {} messages each; a publisher waits up to {} ms for room",
                q.capacity, q.publish_wait_ms
            );
            println!(
                "  on a stop: deliver what is queued for up to {} ms, taking nothing new",
                c.host.drain_timeout_ms
            );
            for (connector, chain) in &c.chains {
                for (direction, steps) in
                    [("inbound", &chain.inbound), ("outbound", &chain.outbound), ("event", &chain.event)]
                {
                    if !steps.is_empty() {
                        let steps: Vec<_> = steps.iter().map(|s| s.to_string()).collect();
                        println!("  middleware on {connector}.{direction}: {}", steps.join(" -> "));
                    }
                }
            }
            Ok(())
        }
        Command::FakeAggregator { bind } => {
            let listener = tokio::net::TcpListener::bind(bind).await?;
            println!("vumi: fake aggregator listening on {}", listener.local_addr()?);
            crate::fakes::aggregator::serve(listener, wait_for_signal()).await?;
            Ok(())
        }
        Command::FakeSmsc { args } => fake_smsc::run(args).await,
    }
}

async fn run_host(path: &std::path::Path, roles: Vec<String>) -> anyhow::Result<()> {
    let mut config = Config::load(path)?;
    if !roles.is_empty() {
        config = config.with_roles(roles.clone(), path)?;
    }
    let mut host = crate::supervisor::start(&config)
        .await
        .with_context(|| format!("cannot start from `{}`", path.display()))?;
    if !roles.is_empty() {
        host.keep_roles(roles);
    }
    let config = config.for_roles();
    host.reload_on_change(path);
    for (name, addr) in &host.listening {
        // A stable line on stdout: users see where to connect, tests wait for it.
        println!("vumi: transport `{name}` listening on {addr}");
    }
    if let Some(addr) = host.http {
        println!("vumi: http listening on {addr}");
        for name in config.channels.keys() {
            println!("vumi: send API for channel `{name}` at http://{addr}/api/v1/channels/{name}/messages");
        }
    }
    if let Some(addr) = host.admin {
        println!("vumi: admin API listening on http://{addr} (try `vumi plugins list`)");
    }
    println!(
        "vumi: ready ({} apps, {} routers, {} transports); Ctrl-C stops, SIGHUP reloads the config",
        config.apps.len(),
        config.routers.len(),
        config.transports.len()
    );
    host.serve(wait_for_signal()).await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
