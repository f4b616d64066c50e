//! What every benchmark needs: the plugins, built once into target/bench-plugins.

use std::path::{Path, PathBuf};

/// The built component of plugin crate `name`, building every plugin first if it is missing.
pub fn plugin_path(name: &str) -> PathBuf {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_owned();
    let out = ws.join("target").join("bench-plugins");
    let path = out.join(format!("{name}.wasm"));
    if !path.is_file() {
        vumi_host::cli::build_plugins(&ws, Some(&out)).expect("build the plugins");
    }
    path
}
