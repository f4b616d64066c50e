//! `vumi plugin build`: cargo, for the wasm32-wasip2 target, then copy the components out.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

const TARGET: &str = "wasm32-wasip2";

/// Build every plugin crate under `<workspace>/plugins`; returns the component files written.
pub fn build(workspace: &Path, out: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    let plugins_dir = workspace.join("plugins");
    let crates = find_crates(&plugins_dir)?;
    if crates.is_empty() {
        bail!(
            "no plugin crates under `{}` (a plugin crate is a directory with a Cargo.toml)",
            plugins_dir.display()
        );
    }
    ensure_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "--message-format=json-render-diagnostics"])
        // A target dir of their own: the host's build may hold target/'s lock (e.g. under
        // `cargo test`), and wasm builds share nothing with it anyway.
        .arg("--target-dir")
        .arg(workspace.join("target").join("plugins"))
        // Components ship to hosts: no debug info (the workspace profile keeps line tables for
        // the host's backtraces), symbols stripped.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for name in &crates {
        cmd.args(["-p", name]);
    }
    eprintln!("vumi: building plugins {} for {TARGET}", crates.join(", "));
    let output = cmd.output().with_context(|| format!("cannot run `{cargo}`: is Rust installed?"))?;
    if !output.status.success() {
        bail!("building the plugins failed (cargo's errors are above)");
    }
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| plugins_dir.join("dist"));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let mut written = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(name) = msg["package_id"].as_str().and_then(package_name) else { continue };
        if !crates.contains(&name) {
            continue;
        }
        for file in msg["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
            if !file.ends_with(".wasm") {
                continue;
            }
            let dest = out.join(format!("{name}.wasm"));
            // Copy then rename, so a watcher never sees a half-written component.
            let tmp = out.join(format!(".{name}.wasm.tmp"));
            std::fs::copy(file, &tmp).with_context(|| format!("cannot copy `{file}`"))?;
            std::fs::rename(&tmp, &dest).with_context(|| format!("cannot write `{}`", dest.display()))?;
            let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
            eprintln!("vumi: built {} ({} KiB)", dest.display(), size / 1024);
            written.push(dest);
        }
    }
    Ok(written)
}

/// `path+file:///…/plugins/echo#0.1.0` or `registry+…#name@0.1.0` → the package name.
fn package_name(id: &str) -> Option<String> {
    let tail = id.rsplit_once('#')?.1;
    match tail.split_once('@') {
        Some((name, _)) => Some(name.to_owned()),
        // Path packages whose name equals their directory: `…/echo#0.1.0`.
        None => id.rsplit_once('#')?.0.rsplit('/').next().map(str::to_owned),
    }
}

fn find_crates(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut visit = |d: &Path| -> anyhow::Result<bool> {
        let manifest = d.join("Cargo.toml");
        if !manifest.is_file() {
            return Ok(false);
        }
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("cannot read `{}`", manifest.display()))?;
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("invalid `{}`", manifest.display()))?;
        if let Some(name) = doc.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()) {
            names.push(name.to_owned());
        }
        Ok(true)
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read `{}`", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for d in entries {
        if !visit(&d)? {
            // One level further down (plugins/testing/<crate>).
            let mut inner: Vec<_> = std::fs::read_dir(&d)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            inner.sort();
            for i in inner {
                visit(&i)?;
            }
        }
    }
    Ok(names)
}

fn ensure_target() -> anyhow::Result<()> {
    let Ok(out) = Command::new("rustup").args(["target", "list", "--installed"]).output() else {
        // No rustup: assume the toolchain has the target; cargo will say so if not.
        return Ok(());
    };
    if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    eprintln!("vumi: installing the {TARGET} target with rustup");
    let status =
        Command::new("rustup").args(["target", "add", TARGET]).status().context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed; install the target and run this again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn package_names_from_cargo_package_ids() {
        assert_eq!(super::package_name("path+file:///w/plugins/echo#0.1.0").as_deref(), Some("echo"));
        assert_eq!(
            super::package_name("path+file:///w/plugins/testing/wrong-world#wrong-world@0.1.0").as_deref(),
            Some("wrong-world")
        );
        assert_eq!(super::package_name("path+file:///w/plugins/x#faulty@0.1.0").as_deref(), Some("faulty"));
    }
}
