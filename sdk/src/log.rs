//! Logging into the host's structured log, each line tagged with the plugin's name. The host's
//! log filter decides what is shown, so debug lines cost little when they are filtered out.

use crate::wit::vumi::plugin::log::{Level, log};

/// Very detailed tracing.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}
/// Debugging detail.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}
/// Something worth knowing.
pub fn info(message: &str) {
    log(Level::Info, message);
}
/// Something wrong, but handled.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
/// Something failed.
pub fn error(message: &str) {
    log(Level::Error, message);
}
