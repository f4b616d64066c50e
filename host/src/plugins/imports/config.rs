//! `vumi:plugin/config`: the plugin's own `config` table from the host's config.

use crate::plugins::bindings::config::Host;

use super::HostState;

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.ctx.config.get(&key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }))
    }

    fn get_json(&mut self) -> wasmtime::Result<String> {
        Ok(self.ctx.config_json.clone())
    }
}
