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

/// A `vumi run` process, killed on drop: started and read up to its ready line, with every
/// transport's address it announced and the time it took to be ready. Its stdout is drained on
/// a thread afterwards, so it never blocks on a full pipe.
#[allow(dead_code)] // not every bench starts a host process
pub struct HostProc {
    pub child: std::process::Child,
    pub ready_after: std::time::Duration,
    pub listening: std::collections::HashMap<String, std::net::SocketAddr>,
}

#[allow(dead_code)]
impl HostProc {
    /// Start `vumi run --config <config>` with `VUMI_LOG=<log>`, its stderr going to `stderr`.
    pub fn start(config: &Path, log: &str, stderr: std::process::Stdio) -> HostProc {
        use std::io::BufRead;
        let started = std::time::Instant::now();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vumi"))
            .args(["run", "--config"])
            .arg(config)
            .env("VUMI_LOG", log)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn vumi");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut listening = std::collections::HashMap::new();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("vumi: ready") => break,
                Some(Ok(l)) => {
                    if let Some((name, addr)) =
                        l.strip_prefix("vumi: transport `").and_then(|r| r.split_once("` listening on "))
                    {
                        listening.insert(name.to_owned(), addr.trim().parse().expect("address"));
                    }
                }
                _ => panic!("vumi exited before it was ready: {:?}", child.wait()),
            }
        }
        let ready_after = started.elapsed();
        std::thread::spawn(move || for _ in lines {});
        HostProc { child, ready_after, listening }
    }

    /// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for HostProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
