//! Multi-tenant hosting: the example config's two tenants, what each token may see and do, what a
//! tenant's config may name, the failure store and its replay, and hostile plugins that cost only
//! their own tenant's message.

use serde_json::Value;

use crate::common::{Host, TempDir, eventually, http, plugin, vumi, workspace};

const ACME: &str = "acme-admin-token";
const GLOBEX: &str = "globex-admin-token";
pub(crate) const OPERATOR: &str = "ops-admin-token";

/// `config/tenants.toml` as shipped, on free ports, its plugin paths and failures file made
/// absolute (the test host runs it from a temp dir).
fn example_config(failures: &std::path::Path) -> String {
    crate::common::plugins();
    let text = std::fs::read_to_string(workspace().join("config/tenants.toml")).expect("config/tenants.toml");
    text.replace("127.0.0.1:9011", "127.0.0.1:0")
        .replace("127.0.0.1:9012", "127.0.0.1:0")
        .replace("127.0.0.1:8082", "127.0.0.1:0")
        .replace("../plugins/dist/echo.wasm", &plugin("echo").display().to_string())
        .replace("../target/tenants-failures.jsonl", &failures.display().to_string())
}

fn admin(host: &Host, method: &str, path: &str, token: &str, body: Option<Vec<u8>>) -> (u16, Value) {
    let mut req = http().request(method.parse().expect("method"), host.admin_url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().expect("admin API");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// An admin API call with a raw body (a tenant's TOML, a plugin file).
fn raw(host: &Host, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Value) {
    let resp = http()
        .request(method.parse().expect("method"), host.admin_url(path))
        .bearer_auth(token)
        .body(body.to_vec())
        .send()
        .expect("admin API");
    (resp.status().as_u16(), resp.json::<Value>().unwrap_or(Value::Null))
}

fn names(v: &Value, list: &str) -> Vec<String> {
    v["result"][list]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_example_serves_each_tenant_on_its_own_port_and_each_token_sees_its_own_tenant_only() {
    let dir = TempDir::new();
    let host = Host::start(&example_config(&dir.path().join("failures.jsonl")));
    let mut acme = host.connect_to("acme-telnet");
    let mut globex = host.connect_to("globex-telnet");
    assert_eq!((acme.line(), globex.line()), ("echo: ready".to_owned(), "echo: ready".to_owned()));
    acme.send("hello from acme");
    assert_eq!(acme.line(), "hello from acme");
    globex.send("hello from globex");
    assert_eq!(globex.line(), "hello from globex");

    // Listing: each tenant its own plugin, the operator both.
    let (status, v) = admin(&host, "GET", "/plugins", ACME, None);
    assert_eq!((status, names(&v, "plugins")), (200, vec!["acme:echo".to_owned()]), "{v}");
    assert_eq!(v["result"]["plugins"][0]["tenant"], "acme");
    let (_, v) = admin(&host, "GET", "/plugins", GLOBEX, None);
    assert_eq!(names(&v, "plugins"), vec!["globex:echo".to_owned()], "{v}");
    let (_, v) = admin(&host, "GET", "/plugins", OPERATOR, None);
    assert_eq!(names(&v, "plugins"), vec!["acme:echo".to_owned(), "globex:echo".to_owned()], "{v}");
    // A tenant names its own plugin as it wrote it, or qualified.
    assert_eq!(admin(&host, "GET", "/plugins/echo", ACME, None).1["result"]["name"], "acme:echo");
    assert_eq!(admin(&host, "GET", "/plugins/acme:echo", ACME, None).0, 200);

    // Another tenant's plugin does not exist for acme: not readable, not deployable, not reloadable.
    let (status, v) = admin(&host, "GET", "/plugins/globex:echo", ACME, None);
    assert_eq!(status, 404, "{v}");
    assert!(!v["description"].as_str().unwrap_or_default().contains("globex:echo,"), "{v}");
    let wasm = std::fs::read(plugin("echo")).expect("echo.wasm");
    let resp = http()
        .put(host.admin_url("/plugins/globex:echo"))
        .bearer_auth(ACME)
        .body(wasm)
        .send()
        .expect("deploy");
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(admin(&host, "POST", "/plugins/globex:echo/reload", ACME, None).0, 404);

    // Host-wide routes are the operator's, refused with the reason.
    let (status, v) = admin(&host, "POST", "/reload", ACME, None);
    assert_eq!(status, 403, "{v}");
    assert!(v["description"].as_str().unwrap_or_default().contains("the operator's"), "{v}");
    assert_eq!(admin(&host, "GET", "/metrics", GLOBEX, None).0, 403);
    // Transports and tenants: its own only.
    let (_, v) = admin(&host, "GET", "/transports", ACME, None);
    assert_eq!(names(&v, "transports"), vec!["acme-telnet".to_owned()], "{v}");
    let (_, v) = admin(&host, "GET", "/tenants", ACME, None);
    assert_eq!(names(&v, "tenants"), vec!["acme".to_owned()], "{v}");
    assert_eq!(v["result"]["tenants"][0]["limits"]["outbound_per_sec"], 500, "{v}");
    // Usage so far: acme's app sent two messages (its greeting and one echo), both seen by the
    // client; it took at least the two that caused them (and the acks, as they come).
    let usage = &v["result"]["tenants"][0]["usage"];
    assert_eq!(usage["messages_out"].as_u64(), Some(2), "{v}");
    assert!(usage["messages_in"].as_u64().is_some_and(|n| n >= 2), "{v}");
    let (_, v) = admin(&host, "GET", "/tenants", OPERATOR, None);
    assert_eq!(names(&v, "tenants"), vec!["acme".to_owned(), "globex".to_owned()], "{v}");
    // Another tenant's failures: refused, with why.
    let (status, v) = admin(&host, "GET", "/failures?tenant=globex", ACME, None);
    assert_eq!(status, 403, "{v}");
    // A token nobody was given.
    assert_eq!(admin(&host, "GET", "/plugins", "acme-admin-tokeN", None).0, 403);

    // Both tenants are still served.
    acme.send("still here");
    assert_eq!(acme.line(), "still here");
    globex.send("and here");
    assert_eq!(globex.line(), "and here");
}

/// `vumi config check` on `config`: its error text (it must fail).
fn refused(config: &str) -> String {
    let dir = TempDir::new();
    let path = dir.path().join("vumi.toml");
    std::fs::write(&path, config).expect("write");
    let out = vumi().args(["config", "check", "--config"]).arg(&path).output().expect("run");
    assert!(!out.status.success(), "accepted:\n{config}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_tenant_cannot_name_what_it_was_not_granted() {
    let echo = plugin("echo").display().to_string();
    let base = r#"
[transports.a-telnet]
kind = "telnet"
bind = "127.0.0.1:0"
[transports.b-telnet]
kind = "telnet"
bind = "127.0.0.1:0"
[tenants.a]
transports = ["a-telnet"]
[tenants.b]
transports = ["b-telnet"]
"#;
    // Sending through (consuming) another tenant's transport.
    let e = refused(&format!("{base}[tenants.a.apps.x]\nplugin = \"{echo}\"\nconnector = \"b-telnet\"\n"));
    assert!(e.contains("`tenants.a.apps.x.connector`: transport `b-telnet` is not granted to tenant `a` (granted: `a-telnet`)"), "{e}");
    // A router of a's routing to b's transport.
    let e = refused(&format!(
        "{base}[tenants.a.routers.r]\nplugin = \"{echo}\"\ntransports = [\"b-telnet\"]\napps = [\"x\"]\n"
    ));
    assert!(
        e.contains("`tenants.a.routers.r.transports`: `b-telnet` is not a transport granted to tenant `a`"),
        "{e}"
    );
    // One transport for two tenants.
    let e = refused(&base.replace("transports = [\"b-telnet\"]", "transports = [\"a-telnet\"]"));
    assert!(
        e.contains("`tenants.b.transports`: transport `a-telnet` is already granted to tenant `a`"),
        "{e}"
    );
    // The operator's own app on a tenant's transport.
    let e = refused(&format!("{base}[apps.ops]\nplugin = \"{echo}\"\nconnector = \"a-telnet\"\n"));
    assert!(e.contains("`apps.ops.connector`: transport `a-telnet` is granted to tenant `a`"), "{e}");
    // More than the tenant's limits.
    let e = refused(&format!(
        "{base}[tenants.a.limits]\nmemory_limit_mb = 32\n[tenants.a.apps.x]\nplugin = \"{echo}\"\nconnector = \"a-telnet\"\nmemory_limit_mb = 64\n"
    ));
    assert!(e.contains("`tenants.a.apps.x.memory_limit_mb`: 64 is over the tenant's limit of 32"), "{e}");
    let e = refused(&format!(
        "{base}[tenants.a.limits]\nmax_instances = 3\n[tenants.a.apps.x]\nplugin = \"{echo}\"\nconnector = \"a-telnet\"\nconcurrency = 4\n"
    ));
    assert!(
        e.contains("`tenants.a.limits.max_instances`: tenant `a`'s plugins may run 4 instances at once"),
        "{e}"
    );
    // A qualified name written outside its tenant, and a token too short to be one.
    let e = refused(&format!("{base}[apps.\"a:x\"]\nplugin = \"{echo}\"\nconnector = \"a-telnet\"\n"));
    assert!(
        e.contains("`apps`: `a:x`: `:` separates a tenant from a name; write it as [tenants.a.apps.x]"),
        "{e}"
    );
    let e = refused(&format!("{base}[tenants.c]\nadmin_tokens = [\"short\"]\n"));
    assert!(e.contains("a token must be at least 8 characters"), "{e}");
}

/// Tenants `acme` (the faulty plugin, copied into `dir`: a test may deploy over it) and `globex`
/// (echo), with admin tokens, failures kept in `dir`, on free ports.
fn hostile_config(dir: &std::path::Path, acme_extra: &str) -> String {
    hostile_config_with(dir, "", "", acme_extra)
}

/// [`hostile_config`] with `acme_keys` under `[tenants.acme]` itself (grants such as
/// `http_allow`) and `acme_limits` under `[tenants.acme.limits]`.
pub(crate) fn hostile_config_with(
    dir: &std::path::Path,
    acme_keys: &str,
    acme_limits: &str,
    acme_extra: &str,
) -> String {
    let faulty = dir.join("faulty.wasm");
    std::fs::copy(plugin("faulty"), &faulty).expect("copy faulty.wasm");
    let failures = dir.join("failures.jsonl");
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"
token = "{OPERATOR}"
[failures]
path = "{failures}"
[transports.acme-telnet]
kind = "telnet"
bind = "127.0.0.1:0"
[transports.globex-telnet]
kind = "telnet"
bind = "127.0.0.1:0"
[tenants.acme]
transports = ["acme-telnet"]
admin_tokens = ["{ACME}"]
{acme_keys}
[tenants.acme.limits]
memory_limit_mb = 32
deadline_ms = 200
kv_max_value_bytes = 1024
{acme_limits}
[tenants.acme.apps.app]
plugin = "{faulty}"
connector = "acme-telnet"
deadline_ms = 200
memory_limit_mb = 32
{acme_extra}
[tenants.globex]
transports = ["globex-telnet"]
admin_tokens = ["{GLOBEX}"]
[tenants.globex.apps.app]
plugin = "{echo}"
connector = "globex-telnet"
"#,
        failures = failures.display(),
        faulty = faulty.display(),
        echo = plugin("echo").display(),
    )
}

/// The newest failure of acme's as the admin API shows it, once one with `kind` is there.
pub(crate) fn failure_of(host: &Host, kind: &str) -> Value {
    eventually(&format!("a `{kind}` failure recorded"), || {
        let (_, v) = admin(host, "GET", &format!("/failures?reason={kind}"), ACME, None);
        v["result"]["failures"].as_array().and_then(|a| a.last()).cloned().ok_or_else(|| host.log())
    })
}

#[test]
fn hostile_plugins_cost_only_their_message_and_each_is_reported_with_its_reason() {
    let dir = TempDir::new();
    let mut host = Host::start(&hostile_config(dir.path(), ""));
    let mut victim = host.connect_to("acme-telnet");
    assert_eq!(victim.line(), "faulty: ready");
    let mut neighbour = host.connect_to("globex-telnet");
    assert_eq!(neighbour.line(), "echo: ready");
    // A socket that would answer if the plugin could reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let cases: [(&str, &str, &str); 8] = [
        ("loop", "deadline", "ran past its CPU deadline of 200 ms"),
        ("hog", "memory", "over its memory cap of 32 MiB"),
        ("recurse", "trap", "recursion too deep"),
        ("big-reply", "memory", "over its memory cap of 32 MiB"),
        ("read-file /etc/passwd", "handler_error", "read-file: "),
        (&format!("connect {}", listener.local_addr().expect("addr")), "handler_error", "connect: "),
        ("kv-big 4096", "handler_error", "kv-big: kv limit: value must be at most 1024 bytes, got 4096"),
        ("storm", "handler_error", "storm: send refused: at most 16 sends per message"),
    ]
    .map(|(c, k, r)| (Box::leak(c.to_owned().into_boxed_str()) as &str, k, r));
    for (i, (command, kind, reason)) in cases.into_iter().enumerate() {
        victim.send(command);
        // Meanwhile the other tenant is served.
        neighbour.send(&format!("ping {i}"));
        assert_eq!(neighbour.line(), format!("ping {i}"));
        // The victim's next message is answered, and nothing the hostile one sent came first.
        victim.send(&format!("after {i}"));
        assert_eq!(
            victim.line(),
            format!("ok: after {i}"),
            "`{command}` sent nothing and the session goes on"
        );
        let f = failure_of(&host, kind);
        let got = f["reason"].as_str().unwrap_or_default();
        assert!(got.contains(reason), "`{command}`: reason {got:?} should contain {reason:?}");
        assert_eq!((f["tenant"].as_str(), f["component"].as_str()), (Some("acme"), Some("acme:app")), "{f}");
        assert_eq!(f["message"]["content"], *command, "{f}");
    }
    // The filesystem and the network were never reached.
    assert!(listener.accept().is_err(), "the plugin opened a socket");
    let passwd = failure_of(&host, "read-file");
    assert!(!passwd["reason"].as_str().unwrap_or_default().contains("root:"), "{passwd}");
    assert!(host.alive());
}

#[test]
fn failures_are_replayed_once_after_a_fix_and_only_by_their_tenant() {
    let dir = TempDir::new();
    let failures = dir.path().join("failures.jsonl");
    let host = Host::start(&hostile_config(dir.path(), ""));
    let mut t = host.connect_to("acme-telnet");
    assert_eq!(t.line(), "faulty: ready");
    t.send("error");
    let f = failure_of(&host, "handler_error");
    assert_eq!(
        (f["queue"].as_str(), f["failure_code"].as_str()),
        (Some("acme-telnet.inbound"), Some("permanent")),
        "{f}"
    );

    // globex cannot see or replay it.
    let (status, _) =
        admin(&host, "POST", "/failures/replay", GLOBEX, Some(br#"{"tenant": "acme"}"#.to_vec()));
    assert_eq!(status, 403);
    let (_, v) = admin(&host, "POST", "/failures/replay", GLOBEX, Some(b"{}".to_vec()));
    assert_eq!(v["result"]["replayed"], serde_json::json!([]), "scoped to globex: nothing: {v}");

    // The fix: acme deploys echo over its app; then replays, with the CLI and acme's token.
    let wasm = std::fs::read(plugin("echo")).expect("echo.wasm");
    let resp =
        http().put(host.admin_url("/plugins/app")).bearer_auth(ACME).body(wasm).send().expect("deploy");
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap_or_default());
    let replay = |token: &str| {
        vumi()
            .args(["failures", "replay", "--reason", "handler_error", "--admin-url"])
            .arg(host.admin_url(""))
            .args(["--token", token])
            .output()
            .expect("vumi failures replay")
    };
    let out = replay(ACME);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains("1 replayed")
            && text.contains("republished to acme-telnet.inbound"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The replayed message reaches the fixed app, on the same session.
    assert_eq!(t.line(), "error");
    // Exactly once: a second replay finds nothing to do, and the outcome is on the record.
    let out = replay(ACME);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 replayed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let f = failure_of(&host, "handler_error");
    assert_eq!(f["replay"]["outcome"], "republished to acme-telnet.inbound", "{f}");
    t.send("marker");
    assert_eq!(t.line(), "marker", "no second copy of the replayed message came first");
    // The file keeps the replay, so a restarted host would not replay it again.
    let kept = std::fs::read_to_string(&failures).expect("failures file");
    assert!(kept.lines().any(|l| l.contains("\"replayed\"")), "{kept}");
}

#[test]
fn over_its_outbound_rate_a_tenant_app_is_nacked_with_the_reason() {
    let dir = TempDir::new();
    let config = hostile_config(dir.path(), "")
        .replace("kv_max_value_bytes = 1024", "kv_max_value_bytes = 1024\noutbound_per_sec = 1");
    let host = Host::start(&config);
    let mut t = host.connect_to("acme-telnet");
    // The session's greeting took the one send of this second; the next reply is over the rate.
    assert_eq!(t.line(), "faulty: ready");
    t.send("one");
    let f = failure_of(&host, "over_quota");
    let reason = f["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(
            "tenant `acme` is over its outbound rate of 1 messages/s (`tenants.acme.limits.outbound_per_sec`)"
        ),
        "{f}"
    );
    assert_eq!(f["queue"], "acme-telnet.outbound", "{f}");
    assert_eq!(f["message"]["content"], "ok: one", "{f}");
}

#[test]
fn a_tenant_over_its_cpu_budget_is_paused_not_counted() {
    // 80 ms of guest CPU per second: a loop with a 100 ms deadline gets its first 80 ms at once
    // (the bucket's burst), then waits about 250 ms for the rest, and still ends at its CPU
    // deadline (the pause is not CPU time), well inside its 2 s wall-clock bound. Without the
    // budget it would end after ~100 ms.
    let dir = TempDir::new();
    let config = hostile_config(dir.path(), "")
        .replace(
            "deadline_ms = 200\nkv_max_value_bytes = 1024",
            "deadline_ms = 100\nkv_max_value_bytes = 1024\ncpu_ms_per_sec = 80",
        )
        .replace(
            "connector = \"acme-telnet\"\ndeadline_ms = 200",
            "connector = \"acme-telnet\"\ndeadline_ms = 100",
        );
    assert!(config.contains("cpu_ms_per_sec = 80"), "{config}");
    let host = Host::start(&config);
    let mut t = host.connect_to("acme-telnet");
    assert_eq!(t.line(), "faulty: ready");
    let started = std::time::Instant::now();
    t.send("loop");
    t.send("marker");
    assert_eq!(t.line(), "ok: marker");
    let took = started.elapsed();
    let f = failure_of(&host, "deadline");
    assert!(f["reason"].as_str().unwrap_or_default().contains("ran past its CPU deadline of 100 ms"), "{f}");
    assert!(
        took >= std::time::Duration::from_millis(200),
        "the loop was not paused over its tenant's budget: done in {took:?}"
    );
}

#[test]
fn tenants_are_changed_at_run_time_through_the_admin_api_and_kept_across_a_restart() {
    let dir = TempDir::new();
    let tenants = dir.path().join("tenants");
    let config = format!(
        r#"
[host]
tenants_dir = "{tenants}"
[admin]
bind = "127.0.0.1:0"
token = "{OPERATOR}"
[transports.acme-telnet]
kind = "telnet"
bind = "127.0.0.1:0"
[transports.new-telnet]
kind = "telnet"
bind = "127.0.0.1:0"
[tenants.acme]
transports = ["acme-telnet"]
admin_tokens = ["{ACME}"]
"#,
        tenants = tenants.display()
    );
    let host = Host::start(&config);
    let call = |method: &str, path: &str, token: &str, body: &[u8]| raw(&host, method, path, token, body);
    // The operator adds tenant newco, granted new-telnet; its token is written hashed.
    let (status, v) = call(
        "PUT",
        "/tenants/newco",
        OPERATOR,
        b"transports = [\"new-telnet\"]\nadmin_tokens = [\"newco-admin-token\"]\n",
    );
    assert_eq!(status, 200, "{v}");
    let file = std::fs::read_to_string(tenants.join("newco.toml")).expect("newco.toml");
    assert!(!file.contains("newco-admin-token") && file.contains("sha256:"), "{file}");
    const NEWCO: &str = "newco-admin-token";
    // A tenant cannot change its grants, nor touch another tenant, nor a tenant from the config file.
    assert_eq!(call("PUT", "/tenants/newco", NEWCO, b"transports = [\"acme-telnet\"]\n").0, 403);
    assert_eq!(
        call("PUT", "/tenants/acme/apps/x", NEWCO, b"plugin = \"x\"\nconnector = \"acme-telnet\"\n").0,
        404
    );
    assert_eq!(call("PUT", "/tenants/acme", OPERATOR, b"transports = []\n").0, 409);

    // newco uploads its plugin and adds an app running it.
    let (status, v) = call(
        "PUT",
        "/tenants/newco/files/echo.wasm",
        NEWCO,
        &std::fs::read(plugin("echo")).expect("echo.wasm"),
    );
    assert_eq!(status, 200, "{v}");
    let wasm = v["result"]["path"].as_str().expect("path").to_owned();
    // Not another tenant's file, and not a transport it was not granted: refused, nothing changed.
    let (status, v) = call(
        "PUT",
        "/tenants/newco/apps/echo",
        NEWCO,
        format!("plugin = \"{}\"\nconnector = \"new-telnet\"\n", plugin("echo").display()).as_bytes(),
    );
    assert_eq!(status, 403, "{v}");
    let (status, v) = call(
        "PUT",
        "/tenants/newco/apps/echo",
        NEWCO,
        format!("plugin = \"{wasm}\"\nconnector = \"acme-telnet\"\n").as_bytes(),
    );
    assert_eq!(status, 422, "{v}");
    assert!(
        v["description"]
            .as_str()
            .unwrap_or_default()
            .contains("transport `acme-telnet` is not granted to tenant `newco`"),
        "{v}"
    );
    assert_eq!(
        std::fs::read_to_string(tenants.join("newco.toml")).expect("file"),
        file,
        "a rejected change is undone"
    );
    let (status, v) = call(
        "PUT",
        "/tenants/newco/apps/echo",
        NEWCO,
        format!("plugin = \"{wasm}\"\nconnector = \"new-telnet\"\n").as_bytes(),
    );
    assert_eq!(status, 200, "{v}");
    let mut t = host.connect_to("new-telnet");
    assert_eq!(t.line(), "echo: ready");
    t.send("hello newco");
    assert_eq!(t.line(), "hello newco");
    let (_, v) = call("GET", "/plugins", NEWCO, b"");
    assert_eq!(names(&v, "plugins"), vec!["newco:echo".to_owned()], "{v}");

    // A new token, shown once; revoked, it no longer opens anything.
    let (status, v) = call("POST", "/tenants/newco/tokens", NEWCO, b"");
    assert_eq!(status, 201, "{v}");
    let (token, id) = (
        v["result"]["token"].as_str().expect("token").to_owned(),
        v["result"]["id"].as_str().expect("id").to_owned(),
    );
    assert_eq!(call("GET", "/plugins", &token, b"").0, 200);
    assert_eq!(call("DELETE", &format!("/tenants/newco/tokens/{id}"), NEWCO, b"").0, 200);
    assert_eq!(call("GET", "/plugins", &token, b"").0, 403);
    drop(t);
    drop(host);

    // A restart on the same config keeps newco and its app.
    let host = Host::start(&config);
    let mut t = host.connect_to("new-telnet");
    assert_eq!(t.line(), "echo: ready");
    let resp =
        http().delete(host.admin_url("/tenants/newco/apps/echo")).bearer_auth(NEWCO).send().expect("delete");
    assert_eq!(resp.status().as_u16(), 200);
    let plugins: Value = http()
        .get(host.admin_url("/plugins"))
        .bearer_auth(OPERATOR)
        .send()
        .expect("list")
        .json()
        .expect("json");
    assert_eq!(names(&plugins, "plugins"), Vec::<String>::new(), "{plugins}");
}

#[test]
fn two_tenants_running_the_same_plugin_under_the_same_name_never_share_kv() {
    // Both tenants run `faulty` as `app`; its `kv` command increments the key `count`. Each
    // tenant counts on its own: same plugin, same app name, same key, two namespaces.
    let dir = TempDir::new();
    let config = hostile_config(dir.path(), "").replace(
        &format!("[tenants.globex.apps.app]\nplugin = \"{}\"", plugin("echo").display()),
        &format!("[tenants.globex.apps.app]\nplugin = \"{}\"", dir.path().join("faulty.wasm").display()),
    );
    assert_eq!(config.matches("faulty.wasm").count(), 2, "{config}");
    let host = Host::start(&config);
    let mut acme = host.connect_to("acme-telnet");
    let mut globex = host.connect_to("globex-telnet");
    assert_eq!((acme.line(), globex.line()), ("faulty: ready".to_owned(), "faulty: ready".to_owned()));
    for n in 1..=3 {
        acme.send("kv");
        assert_eq!(acme.line(), n.to_string());
    }
    globex.send("kv");
    assert_eq!(globex.line(), "1", "globex's `count` is not acme's");
    acme.send("kv");
    assert_eq!(acme.line(), "4");
}

#[test]
fn over_its_inbound_rate_a_tenants_messages_wait_and_none_is_lost() {
    // Four messages a second (acks count too): the burst goes on the session start, the
    // greeting's ack and the first messages; the rest wait on the queue. All six are answered.
    let dir = TempDir::new();
    let config = hostile_config(dir.path(), "")
        .replace("kv_max_value_bytes = 1024", "kv_max_value_bytes = 1024\ninbound_per_sec = 4");
    assert!(config.contains("inbound_per_sec = 4"), "{config}");
    let host = Host::start(&config);
    let mut t = host.connect_to("acme-telnet");
    assert_eq!(t.line(), "faulty: ready");
    let started = std::time::Instant::now();
    for i in 0..6 {
        t.send(&format!("m{i}"));
    }
    for i in 0..6 {
        assert_eq!(t.line(), format!("ok: m{i}"));
    }
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(750),
        "six messages at 4/s were not held back: {took:?}"
    );
    let (_, v) = admin(&host, "GET", "/tenants", ACME, None);
    assert!(
        v["result"]["tenants"][0]["usage"]["waited_for_inbound_rate"].as_u64().is_some_and(|n| n > 0),
        "{v}"
    );
}

#[test]
fn a_kv_flood_stops_at_the_tenants_key_quota_and_costs_no_one_else() {
    let dir = TempDir::new();
    let host =
        Host::start(&hostile_config_with(dir.path(), "", "kv_max_keys = 50\nkv_max_bytes = 100000", ""));
    let mut acme = host.connect_to("acme-telnet");
    assert_eq!(acme.line(), "faulty: ready");
    let mut globex = host.connect_to("globex-telnet");
    assert_eq!(globex.line(), "echo: ready");
    acme.send("kv-flood 100");
    let f = failure_of(&host, "handler_error");
    let reason = f["reason"].as_str().unwrap();
    assert!(reason.contains("kv-flood: key 50: kv limit: tenant `acme` holds 50 kv keys, its limit (`limits.kv_max_keys` is 50)"), "{f}");
    // The tenant's usage, as its own token sees it.
    let (_, v) = admin(&host, "GET", "/tenants", ACME, None);
    assert_eq!(
        v["result"]["tenants"][0]["usage"]["kv"],
        serde_json::json!({"keys": 50, "bytes": 5000}),
        "{v}"
    );
    // Full is full for every plugin of acme's, and for no one else; acme's messages still run.
    globex.send("still here");
    assert_eq!(globex.line(), "still here");
    acme.send("after the flood");
    assert_eq!(acme.line(), "ok: after the flood");
}

/// The plugin `name` as the operator sees it in the admin API.
fn plugin_view(host: &Host, name: &str) -> Value {
    let (status, v) = admin(host, "GET", &format!("/plugins/{name}"), OPERATOR, None);
    assert_eq!(status, 200, "{v}");
    v["result"].clone()
}

/// Replace `path` as an operator's build would: write beside it, rename over it.
fn replace_file(path: &std::path::Path, bytes: &[u8]) {
    let tmp = path.with_extension("wasm.new");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The hostile tenant of issue 27: on `config/tenants.toml` as shipped, acme's and globex's
/// apps load one file. acme deploys other code over its own app with only its own token: its
/// app changes, and nothing else does — not the shared file, not globex's app, not after a
/// restart. The absence of a reload of globex is asserted behind a barrier: the operator then
/// replaces the shared file, and globex must reload exactly once, to the operator's build.
#[test]
fn a_tenants_deploy_never_changes_the_code_another_tenant_runs() {
    let dir = TempDir::new();
    let shared = dir.path().join("shared").join("echo.wasm");
    std::fs::create_dir_all(shared.parent().expect("parent")).expect("mkdir");
    let echo = std::fs::read(plugin("echo")).expect("echo.wasm");
    std::fs::write(&shared, &echo).expect("shared echo");
    let config = example_config(&dir.path().join("failures.jsonl"))
        .replace(&plugin("echo").display().to_string(), &shared.display().to_string())
        .replace("[host]\n", &format!("[host]\ndata_dir = \"{}\"\n", dir.path().join("data").display()));
    assert_eq!(config.matches(&*shared.display().to_string()).count(), 2, "{config}");
    let host = Host::start(&config);

    // The attack: acme, with its own token only, deploys other code (faulty) over `echo`.
    let faulty = std::fs::read(plugin("faulty")).expect("faulty.wasm");
    let resp = http()
        .put(host.admin_url("/plugins/echo"))
        .bearer_auth(ACME)
        .body(faulty.clone())
        .send()
        .expect("deploy");
    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().unwrap_or_default());
    // acme's own app runs it, from a stored copy in acme's own directory...
    assert_eq!(host.connect_to("acme-telnet").line(), "faulty: ready");
    let acme = plugin_view(&host, "acme:echo");
    let deployed = std::path::PathBuf::from(acme["path"].as_str().expect("path"));
    assert!(deployed.starts_with(dir.path().join("data/tenants/acme/deployed")), "{acme}");
    assert_eq!(std::fs::read(&deployed).expect("stored version"), faulty);
    assert_eq!(acme["configured"].as_str(), Some(&*shared.display().to_string()), "{acme}");
    // ...while the shared file, and globex, are untouched.
    assert_eq!(std::fs::read(&shared).expect("shared"), echo, "the shared file was rewritten");
    let mut g = host.connect_to("globex-telnet");
    assert_eq!(g.line(), "echo: ready");
    g.send("still globex's echo");
    assert_eq!(g.line(), "still globex's echo");

    // An invalid deploy is refused before anything is written anywhere.
    let resp = http()
        .put(host.admin_url("/plugins/echo"))
        .bearer_auth(ACME)
        .body(b"\0asm junk".to_vec())
        .send()
        .expect("deploy");
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(std::fs::read(&shared).expect("shared"), echo);
    let stored: Vec<_> = std::fs::read_dir(deployed.parent().expect("dir")).expect("ls").collect();
    assert_eq!(stored.len(), 1, "only the one sound version is stored: {stored:?}");
    assert_eq!(host.connect_to("acme-telnet").line(), "faulty: ready");

    // The barrier: the operator's own build of the shared file reaches globex, which reloads
    // exactly once (a reload caused by the attack would make it two), and not acme, which runs
    // its deployed version.
    let survey = std::fs::read(plugin("survey")).expect("survey.wasm");
    replace_file(&shared, &survey);
    let globex = eventually("globex to reload the operator's build", || {
        let v = plugin_view(&host, "globex:echo");
        if v["reloads"] == 1 { Ok(v) } else { Err(v.to_string()) }
    });
    assert!(globex["rejected"].is_null(), "globex's watcher never saw another version: {globex}");
    assert_eq!(plugin_view(&host, "acme:echo")["reloads"], 1, "acme's one swap is its deploy");
    assert_eq!(host.connect_to("acme-telnet").line(), "faulty: ready");
    drop(g);
    drop(host);

    // A restart keeps acme's deploy, and globex on the shared file.
    let host = Host::start(&config);
    assert_eq!(host.connect_to("acme-telnet").line(), "faulty: ready");
    assert_eq!(plugin_view(&host, "acme:echo")["path"].as_str(), Some(&*deployed.display().to_string()));
    assert_eq!(plugin_view(&host, "globex:echo")["path"].as_str(), Some(&*shared.display().to_string()));
}

/// With a tenants directory, a tenant writes only into its own directory, and points its apps
/// only at files there: uploads are stored by content (never over a file, so nobody's watcher
/// sees one change), and path tricks in names and links are refused.
#[test]
fn a_tenant_writes_and_points_only_inside_its_own_directory() {
    let dir = TempDir::new();
    let tenants = dir.path().join("tenants");
    let newco_dir = tenants.join("newco");
    std::fs::create_dir_all(&newco_dir).expect("mkdir");
    // A file of the operator's in newco's directory, which globex's app (the operator's
    // choice) also runs: newco's uploads must not change it.
    let watched = newco_dir.join("echo.wasm");
    let echo = std::fs::read(plugin("echo")).expect("echo.wasm");
    std::fs::write(&watched, &echo).expect("echo");
    // The operator's build elsewhere, and a link to it planted in newco's directory.
    let elsewhere = dir.path().join("operator");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::fs::write(elsewhere.join("echo.wasm"), &echo).expect("echo");
    std::os::unix::fs::symlink(elsewhere.join("echo.wasm"), newco_dir.join("link.wasm")).expect("link");
    let config = format!(
        r#"
[host]
tenants_dir = "{tenants}"
data_dir = "{data}"
[admin]
bind = "127.0.0.1:0"
token = "{OPERATOR}"
[transports.new-telnet]
kind = "telnet"
bind = "127.0.0.1:0"
[transports.globex-telnet]
kind = "telnet"
bind = "127.0.0.1:0"
[tenants.globex]
transports = ["globex-telnet"]
[tenants.globex.apps.echo]
plugin = "{watched}"
connector = "globex-telnet"
"#,
        tenants = tenants.display(),
        data = dir.path().join("data").display(),
        watched = watched.display(),
    );
    let host = Host::start(&config);
    let call = |method: &str, path: &str, token: &str, body: &[u8]| raw(&host, method, path, token, body);
    const NEWCO: &str = "newco-admin-token";
    let (status, v) = call(
        "PUT",
        "/tenants/newco",
        OPERATOR,
        b"transports = [\"new-telnet\"]\nadmin_tokens = [\"newco-admin-token\"]\n",
    );
    assert_eq!(status, 200, "{v}");

    // An upload named like the watched file is stored beside it, by content.
    let faulty = std::fs::read(plugin("faulty")).expect("faulty.wasm");
    let (status, v) = call("PUT", "/tenants/newco/files/echo.wasm", NEWCO, &faulty);
    assert_eq!(status, 200, "{v}");
    let stored = std::path::PathBuf::from(v["result"]["path"].as_str().expect("path"));
    assert_eq!(stored.parent(), Some(&*newco_dir));
    assert_ne!(stored, watched);
    assert_eq!(std::fs::read(&stored).expect("stored"), faulty);
    assert_eq!(std::fs::read(&watched).expect("watched"), echo, "the watched file was written");
    // Junk is refused before anything is stored.
    let before = std::fs::read_dir(&newco_dir).expect("ls").count();
    let (status, v) = call("PUT", "/tenants/newco/files/junk.wasm", NEWCO, b"\0asm junk");
    assert_eq!(status, 422, "{v}");
    assert_eq!(std::fs::read_dir(&newco_dir).expect("ls").count(), before, "nothing stored");

    // Names that try to leave the directory.
    for name in ["..%2F..%2Foperator%2Fecho.wasm", "..%2Fecho.wasm", "%2Ftmp%2Fx.wasm", ".wasm", "a.b.wasm"] {
        let (status, v) = call("PUT", &format!("/tenants/newco/files/{name}"), NEWCO, &faulty);
        assert!(status == 400 || status == 404, "{name}: {status} {v}");
    }
    let (status, v) = call("PUT", "/tenants/newco%2F..%2Fglobex/files/x.wasm", OPERATOR, &faulty);
    assert!(status == 400 || status == 404, "{status} {v}");
    assert_eq!(std::fs::read(elsewhere.join("echo.wasm")).expect("operator's"), echo);

    // Apps pointed outside: absolute, `..`, a planted link, another tenant's path.
    let app =
        |plugin: &std::path::Path| format!("plugin = \"{}\"\nconnector = \"new-telnet\"\n", plugin.display());
    for outside in [
        elsewhere.join("echo.wasm"),
        newco_dir.join("../newco/echo.wasm"),
        newco_dir.join("link.wasm"),
        tenants.join("globex").join("echo.wasm"),
        std::path::PathBuf::from("../../operator/echo.wasm"),
    ] {
        let (status, v) = call("PUT", "/tenants/newco/apps/echo", NEWCO, app(&outside).as_bytes());
        assert_eq!(status, 403, "{}: {v}", outside.display());
        assert!(v["description"].as_str().unwrap_or_default().contains("its own directory"), "{v}");
    }
    let (status, v) = call("PUT", "/tenants/newco/apps/echo", NEWCO, app(&stored).as_bytes());
    assert_eq!(status, 200, "{v}");
    assert_eq!(host.connect_to("new-telnet").line(), "faulty: ready");

    // A deploy through a planted directory link is refused, and writes nothing there.
    std::os::unix::fs::symlink(&elsewhere, newco_dir.join("deployed")).expect("dir link");
    let resp = http()
        .put(host.admin_url("/plugins/echo"))
        .bearer_auth(NEWCO)
        .body(echo.clone())
        .send()
        .expect("deploy");
    assert_eq!(resp.status().as_u16(), 422);
    let why = resp.json::<Value>().expect("json")["description"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("leads outside"), "{why}");
    assert_eq!(std::fs::read_dir(&elsewhere).expect("ls").count(), 1, "nothing written through the link");
    assert_eq!(host.connect_to("new-telnet").line(), "faulty: ready");

    // Barrier: the operator replaces the watched file; globex reloads once, to it. Had an
    // upload written the file, that would be a second reload, or newco's code.
    replace_file(&watched, &std::fs::read(plugin("survey")).expect("survey"));
    let globex = eventually("globex to reload the operator's file", || {
        let v = plugin_view(&host, "globex:echo");
        if v["reloads"] == 1 { Ok(v) } else { Err(v.to_string()) }
    });
    assert!(globex["rejected"].is_null(), "{globex}");
}
