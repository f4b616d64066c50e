//! Logging setup. Logs are `tracing` events; the filter comes from `VUMI_LOG` (or `RUST_LOG`),
//! in `tracing-subscriber`'s `EnvFilter` syntax. Metrics: [`metrics`].

pub mod metrics;
pub mod throttle;

use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Default filter: our own info, and only warnings from the compiler and runtime crates, which
/// are chatty at info.
const DEFAULT_FILTER: &str = "info,cranelift_codegen=warn,wasmtime=warn,wasmtime_cranelift=warn";

/// Install the global subscriber. Calling it twice is harmless (the second call does nothing).
pub fn init(format: LogFormat) {
    let filter = std::env::var("VUMI_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    // Colours only for a person at a terminal: a log piped to a file or a collector stays plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
