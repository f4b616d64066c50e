//! The `vumi` command line.

mod fake_aggregator;
mod plugin_build;

pub use plugin_build::build as build_plugins;

use std::path::PathBuf;
use std::time::Duration;

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
    },
    /// Work with plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
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
}

/// `vumi plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
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

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, build_plugins } => {
            if build_plugins {
                plugin_build::build(&PathBuf::from("."), None)?;
            }
            run_host(&config).await
        }
        Command::Plugin(PluginCommand::Build { workspace, out }) => {
            plugin_build::build(&workspace, out.as_deref())?;
            Ok(())
        }
        Command::Config(ConfigCommand::Check { config }) => {
            let c = Config::load(&config)?;
            println!("{}: valid", config.display());
            for (name, t) in &c.transports {
                println!("  transport {name}: {t:?}");
            }
            for (name, a) in &c.apps {
                println!("  app {name}: {} on connector {} ({:?})", c.resolve(&a.plugin).display(), a.connector, a.instances);
            }
            for (name, ch) in &c.channels {
                let mo = ch.mo_url.as_deref().unwrap_or("none");
                println!("  channel {name}: sends through {}; inbound to mo_url {mo}", ch.connector);
            }
            for (name, r) in &c.routers {
                let list = |cs: &[crate::names::ConnectorName]| cs.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
                println!(
                    "  router {name}: {} between transports [{}] and app connectors [{}]",
                    c.resolve(&r.plugin).display(),
                    list(&r.transports),
                    list(&r.apps)
                );
            }
            for (connector, chain) in &c.chains {
                for (direction, steps) in [("inbound", &chain.inbound), ("outbound", &chain.outbound), ("event", &chain.event)] {
                    if !steps.is_empty() {
                        let steps: Vec<_> = steps.iter().map(|s| s.to_string()).collect();
                        println!("  middleware on {connector}.{direction}: {}", steps.join(" -> "));
                    }
                }
            }
            Ok(())
        }
        Command::FakeAggregator { bind } => fake_aggregator::run(bind).await,
    }
}

async fn run_host(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let host = crate::supervisor::start(&config).await.with_context(|| format!("cannot start from `{}`", path.display()))?;
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
    println!(
        "vumi: ready ({} apps, {} routers, {} transports); Ctrl-C stops",
        host.apps.len(),
        config.routers.len(),
        config.transports.len()
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    host.shutdown(Duration::from_secs(5)).await;
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
