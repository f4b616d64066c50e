//! `vumi:plugin/config`: the app's own `[apps.<name>.config]` table.

use crate::plugins::bindings::config::Host;

use super::HostState;

impl Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.ctx.config.get(&key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    fn get_json(&mut self) -> String {
        self.ctx.config_json.clone()
    }
}
