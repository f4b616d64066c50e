//! `vumi:plugin/log`: plugin log lines join the host's `tracing` output, tagged with the app.

use crate::plugins::bindings::log::{Host, Level};

use super::HostState;

/// A plugin could flood the host's log; longer lines are cut.
const MAX_LINE: usize = 4096;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = self.ctx.plugin.as_str();
        let mut message = message;
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        match level {
            Level::Trace => tracing::trace!(target: "vumi::plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "vumi::plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "vumi::plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "vumi::plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "vumi::plugin", plugin, "{message}"),
        }
        Ok(())
    }
}
