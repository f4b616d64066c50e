//! Starting `vumi run` for a test or a benchmark: the one way the end-to-end tests, the chaos
//! suite and the benchmarks start the real binary (each includes this file with `#[path]`).
//!
//! The child's stdout is read on a thread of its own up to its `vumi: ready` line, with a
//! deadline, so a host that never gets ready fails the caller instead of hanging it; the
//! addresses it announces on the way are kept, and the rest of its stdout is drained so it never
//! blocks on a full pipe. The child is killed when this is dropped.

#![allow(dead_code)] // not every includer uses every field

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `vumi run`, killed on drop.
pub struct VumiProc {
    pub child: Child,
    /// Every socket transport's address, by transport name.
    pub listening: HashMap<String, SocketAddr>,
    /// The shared HTTP listener, if the config serves HTTP.
    pub http: Option<SocketAddr>,
    /// The admin API, if the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    /// From spawn to the ready line.
    pub ready_after: Duration,
}

impl VumiProc {
    /// Spawn `cmd` (a `vumi run ...`, its stdout is taken over here) and wait up to `within`
    /// for it to say it is ready. On failure the child is killed and the error says why; the
    /// caller adds what it kept of the child's log.
    pub fn spawn(cmd: Command, within: Duration) -> Result<VumiProc, String> {
        Self::spawn_with(cmd, within, |_| {})
    }

    /// [`VumiProc::spawn`], with `started` given the child as soon as it runs (to read its
    /// stderr from the start, say: a host that logs a lot before it is ready must not block on
    /// a full pipe).
    pub fn spawn_with(
        mut cmd: Command,
        within: Duration,
        started_with: impl FnOnce(&mut Child),
    ) -> Result<VumiProc, String> {
        let started = Instant::now();
        let mut child = cmd.stdout(Stdio::piped()).spawn().map_err(|e| format!("cannot spawn vumi: {e}"))?;
        started_with(&mut child);
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // After the ready line nobody listens; reading on drains the pipe.
                let _ = tx.send(line);
            }
        });
        let (mut listening, mut http, mut admin) = (HashMap::new(), None, None);
        let deadline = started + within;
        let failed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("vumi: ready") => break None,
                Ok(line) => {
                    if let Err(why) = announced(&line, &mut listening, &mut http, &mut admin) {
                        break Some(why);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    break Some(format!("not ready within {within:?}"));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Some("it exited".to_owned()),
            }
        };
        if let Some(why) = failed {
            // Never leave the child running behind an error.
            let _ = child.kill();
            let status = child.wait().ok();
            return Err(format!("vumi did not become ready: {why} (exit: {status:?})"));
        }
        Ok(VumiProc { child, listening, http, admin, ready_after: started.elapsed() })
    }
}

/// Keep an address the host announces on its stdout before it is ready.
fn announced(
    line: &str,
    listening: &mut HashMap<String, SocketAddr>,
    http: &mut Option<SocketAddr>,
    admin: &mut Option<SocketAddr>,
) -> Result<(), String> {
    let parse = |addr: &str| addr.trim().parse::<SocketAddr>().map_err(|e| format!("{line}: {e}"));
    if let Some((name, addr)) =
        line.strip_prefix("vumi: transport `").and_then(|r| r.split_once("` listening on "))
    {
        listening.insert(name.to_owned(), parse(addr)?);
    }
    if let Some(rest) = line.strip_prefix("vumi: http listening on ") {
        *http = Some(parse(rest)?);
    }
    if let Some(rest) = line.strip_prefix("vumi: admin API listening on http://") {
        *admin = Some(parse(rest.split_whitespace().next().unwrap_or_default())?);
    }
    Ok(())
}

impl Drop for VumiProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
