//! `vumi plugins ...`, `vumi reload`, `vumi transports`, `vumi failures`: the admin API from a
//! shell.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::admin::PluginView;
use crate::config::Config;

/// Where the admin API is and how to get in.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The admin API's base URL. Default: from the config file's `[admin] bind`.
    #[arg(long, env = "VUMI_ADMIN_URL", global = true)]
    pub admin_url: Option<String>,
    /// The admin token. Default: from the config file's `[admin] token`.
    #[arg(long, env = "VUMI_ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The config file to read the admin address and token from.
    #[arg(long, short, default_value = "config/vumi.toml", env = "VUMI_CONFIG", global = true)]
    pub config: PathBuf,
    /// Print the API's JSON answer instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Which failures (`vumi failures`, `vumi failures replay`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FailureArgs {
    /// Only this tenant's.
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// Only those at or after this time (`2026-12-07`, `2026-12-07 10:00:00`, RFC 3339).
    #[arg(long, global = true)]
    pub since: Option<String>,
    /// Only those of this kind (`trap`, `deadline`, `over_quota`, ...) or whose reason contains it.
    #[arg(long, global = true)]
    pub reason: Option<String>,
    /// Only these failure ids (repeat the flag).
    #[arg(long = "id", global = true)]
    pub ids: Vec<String>,
}

/// A connected client.
struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
    json: bool,
}

impl Client {
    fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let (mut base, mut token) = (args.admin_url.clone(), args.token.clone());
        if base.is_none() || token.is_none() {
            let config = Config::load(&args.config).with_context(|| {
                "the admin URL and token come from --admin-url/--token (or VUMI_ADMIN_URL/VUMI_ADMIN_TOKEN), else from the config file"
            })?;
            let Some(admin) = config.admin else {
                bail!(
                    "`{}` has no [admin] section: the host it configures runs no admin API",
                    args.config.display()
                );
            };
            base.get_or_insert_with(|| format!("http://{}", admin.bind));
            if token.is_none() {
                // The running config holds only the token's hash; the file may hold the token.
                let raw: toml::Table = std::fs::read_to_string(&args.config)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_default();
                match raw.get("admin").and_then(|a| a.get("token")).and_then(toml::Value::as_str) {
                    Some(t) if !t.starts_with("sha256:") => token = Some(t.to_owned()),
                    _ => bail!(
                        "`{}` holds only the admin token's hash: give the token with --token or VUMI_ADMIN_TOKEN",
                        args.config.display()
                    ),
                }
            }
        }
        let base = base.unwrap_or_default().trim_end_matches('/').to_owned();
        Ok(Self { base, token: token.unwrap_or_default(), http: reqwest::Client::new(), json: args.json })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Value> {
        self.call_typed(method, path, body.map(|b| ("application/wasm", b))).await
    }

    async fn call_typed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some((content_type, b)) = body {
            req = req.header("content-type", content_type).body(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {url} (is the host running?)"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let why = v
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            bail!("{status}: {why}");
        }
        Ok(v)
    }
}

/// `vumi plugins list`.
pub async fn list(args: &AdminArgs) -> anyhow::Result<()> {
    let c = Client::new(args)?;
    let v = c.call(reqwest::Method::GET, "/plugins", None).await?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v["result"])?);
        return Ok(());
    }
    let plugins: Vec<PluginView> = serde_json::from_value(v["result"]["plugins"].clone())?;
    println!(
        "{:<16} {:<12} {:<14} {:>9} {:>8} {:>7}  {:<26} LAST ERROR",
        "NAME", "WORLD", "HASH", "HANDLED", "FAILED", "SWAPS", "LOADED AT"
    );
    for p in plugins {
        let world = p.world.trim_start_matches("vumi:plugin/").split('@').next().unwrap_or("").to_owned();
        let mut note = p.last_error.unwrap_or_default();
        if let Some(r) = p.rejected {
            note = format!("last reload rejected: {}", r.reason);
        }
        if p.file_missing {
            note = format!("file removed, loaded version serving. {note}");
        }
        println!(
            "{:<16} {:<12} {:<14} {:>9} {:>8} {:>7}  {:<26} {}",
            p.name,
            world,
            &p.hash[..12.min(p.hash.len())],
            p.handled,
            p.failures,
            p.reloads,
            p.loaded_at,
            note
        );
    }
    Ok(())
}

/// `vumi plugins deploy NAME FILE`.
pub async fn deploy(args: &AdminArgs, name: &str, file: &Path) -> anyhow::Result<()> {
    let c = Client::new(args)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?;
    let v = c.call(reqwest::Method::PUT, &format!("/plugins/{name}"), Some(bytes)).await?;
    print_outcome(&c, name, &v)
}

/// `vumi plugins reload NAME`.
pub async fn reload_plugin(args: &AdminArgs, name: &str) -> anyhow::Result<()> {
    let c = Client::new(args)?;
    let v = c.call(reqwest::Method::POST, &format!("/plugins/{name}/reload"), None).await?;
    print_outcome(&c, name, &v)
}

fn print_outcome(c: &Client, name: &str, v: &Value) -> anyhow::Result<()> {
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v["result"])?);
    } else if v["result"]["outcome"] == "swapped" {
        let short = |k: &str| v["result"][k].as_str().unwrap_or("").chars().take(12).collect::<String>();
        println!("{name}: {} -> {} now serving", short("from"), short("to"));
    } else {
        println!("{name}: unchanged (this version is already serving)");
    }
    Ok(())
}

/// `vumi reload`.
pub async fn reload_config(args: &AdminArgs) -> anyhow::Result<()> {
    let c = Client::new(args)?;
    let v = c.call(reqwest::Method::POST, "/reload", None).await?;
    println!("{}", v["description"].as_str().unwrap_or("reloaded"));
    Ok(())
}

/// `vumi transports`.
pub async fn transports(args: &AdminArgs) -> anyhow::Result<()> {
    let c = Client::new(args)?;
    let v = c.call(reqwest::Method::GET, "/transports", None).await?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v["result"])?);
        return Ok(());
    }
    println!("{:<16} {:<10} {:<22} {:<26} STATE", "NAME", "KIND", "LISTENING", "SINCE");
    for t in v["result"]["transports"].as_array().into_iter().flatten() {
        let s = |k: &str| t[k].as_str().unwrap_or("-").to_owned();
        println!(
            "{:<16} {:<10} {:<22} {:<26} {}",
            s("name"),
            s("kind"),
            s("listening"),
            s("since"),
            s("state")
        );
    }
    Ok(())
}

/// `vumi failures`.
pub async fn failures(args: &AdminArgs, filter: &FailureArgs, limit: usize) -> anyhow::Result<()> {
    let c = Client::new(args)?;
    let mut query = format!("/failures?limit={limit}");
    for (k, v) in [("tenant", &filter.tenant), ("since", &filter.since), ("reason", &filter.reason)] {
        if let Some(v) = v {
            query.push_str(&format!(
                "&{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
    }
    let v = c.call(reqwest::Method::GET, &query, None).await?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v["result"])?);
        return Ok(());
    }
    println!("{} matching; the latest {limit}, newest last:", v["result"]["matching"]);
    for f in v["result"]["failures"].as_array().into_iter().flatten() {
        let s = |k: &str| f[k].as_str().unwrap_or("-").to_owned();
        let replay = f["replay"]["outcome"].as_str().map(|o| format!(" (replayed: {o})")).unwrap_or_default();
        println!(
            "{} {} {} on {} [{}, {}] {}{replay}",
            s("id"),
            s("timestamp"),
            s("component"),
            s("queue"),
            s("kind"),
            s("failure_code"),
            s("reason")
        );
    }
    Ok(())
}

/// `vumi failures replay`.
pub async fn replay(args: &AdminArgs, filter: &FailureArgs) -> anyhow::Result<()> {
    let c = Client::new(args)?;
    let body = serde_json::json!({ "tenant": filter.tenant, "since": filter.since, "reason": filter.reason, "ids": filter.ids });
    let v = c
        .call_typed(
            reqwest::Method::POST,
            "/failures/replay",
            Some(("application/json", serde_json::to_vec(&body)?)),
        )
        .await?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v["result"])?);
        return Ok(());
    }
    let replayed = v["result"]["replayed"].as_array().cloned().unwrap_or_default();
    println!("{} replayed", replayed.len());
    for r in replayed {
        println!(
            "{} {}: {}",
            r["id"].as_str().unwrap_or("-"),
            r["message_id"].as_str().unwrap_or("-"),
            r["outcome"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}
