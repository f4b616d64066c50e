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

#[path = "../../../tests/support/vumi_proc.rs"]
mod vumi_proc;

/// A `vumi run` process, killed on drop: started through the tests' one way to start it
/// (`tests/support/vumi_proc.rs`), with every transport's address it announced and the time it
/// took to be ready.
#[allow(dead_code)] // not every bench starts a host process
pub struct HostProc {
    proc: vumi_proc::VumiProc,
    pub child_id: u32,
    pub ready_after: std::time::Duration,
    pub listening: std::collections::HashMap<String, std::net::SocketAddr>,
}

#[allow(dead_code)]
impl HostProc {
    /// Start `vumi run --config <config>` with `VUMI_LOG=<log>`, its stderr going to `stderr`.
    pub fn start(config: &Path, log: &str, stderr: std::process::Stdio) -> HostProc {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vumi"));
        cmd.args(["run", "--config"]).arg(config).env("VUMI_LOG", log).stderr(stderr);
        // Generous: 10,000 tenants take seconds to start.
        let proc =
            vumi_proc::VumiProc::spawn(cmd, std::time::Duration::from_secs(300)).expect("vumi started");
        HostProc {
            child_id: proc.child.id(),
            ready_after: proc.ready_after,
            listening: proc.listening.clone(),
            proc,
        }
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child_id)).expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }
}
