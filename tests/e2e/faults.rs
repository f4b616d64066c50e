//! Plugins that trap, loop forever or eat memory lose only their own message; the host and every
//! other session keep going, and each failure is recorded with its reason.

use crate::common::{Host, TempDir, plugin, telnet_app_config};

fn faulty_host(extra: &str) -> Host {
    Host::start(&telnet_app_config(
        &plugin("faulty"),
        &format!("deadline_ms = 200\nmemory_limit_mb = 32\n{extra}"),
    ))
}

fn check_fault(policy: &str, command: &str, reason: &str) {
    let mut host = faulty_host(&format!("instances = \"{policy}\""));
    let mut healthy = host.connect();
    assert_eq!(healthy.line(), "faulty: ready");
    let mut victim = host.connect();
    assert_eq!(victim.line(), "faulty: ready");

    victim.send(command);
    // While the victim's message fails, another session is answered.
    healthy.send("ping");
    assert_eq!(healthy.line(), "ok: ping");

    let log = host.wait_for_log(reason);
    assert!(log.contains("message sent to the failure path"), "log:\n{log}");
    // Only that message was lost: the same session goes on being answered.
    victim.send("after");
    assert_eq!(victim.line(), "ok: after", "the session that sent `{command}` is still served");
    healthy.send("still there?");
    assert_eq!(healthy.line(), "ok: still there?");
    assert!(host.alive(), "the host survives `{command}`");
}

#[test]
fn a_trap_loses_only_its_message() {
    // The reason carries the guest's panic message, so the plugin's author can see why.
    check_fault(
        "pooled",
        "trap",
        "plugin trapped: wasm trap: wasm `unreachable` instruction executed; the plugin wrote to stderr: ",
    );
    check_fault("fresh", "trap", "asked to trap");
}

#[test]
fn an_endless_loop_is_stopped_at_its_deadline() {
    check_fault("pooled", "loop", "ran past its CPU deadline of 200 ms");
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_cap() {
    check_fault("pooled", "hog", "over its memory cap of 32 MiB");
}

#[test]
fn faults_with_fresh_instances_too() {
    check_fault("fresh", "loop", "ran past its CPU deadline");
    check_fault("fresh", "hog", "memory cap");
}

#[test]
fn a_handler_error_is_recorded_and_the_instance_kept() {
    check_fault("pooled", "error", "handler returned an error: asked to fail");
}

#[test]
fn a_handler_that_sends_then_traps_publishes_nothing() {
    let host = faulty_host("");
    let mut t = host.connect();
    assert_eq!(t.line(), "faulty: ready");
    t.send("send-then-trap");
    host.wait_for_log("plugin trapped");
    t.send("next");
    // The reply sent before the trap must never appear: the next line is the next answer.
    assert_eq!(t.line(), "ok: next");
}

#[test]
fn failures_are_written_to_the_failures_file() {
    let dir = TempDir::new();
    let file = dir.path().join("failures.jsonl");
    let config = telnet_app_config(&plugin("faulty"), "deadline_ms = 200\n")
        + &format!("\n[failures]\npath = \"{}\"\n", file.display());
    let host = Host::start(&config);
    let mut t = host.connect();
    assert_eq!(t.line(), "faulty: ready");
    t.send("trap");
    t.send("loop");
    t.send("ping");
    assert_eq!(t.line(), "ok: ping");
    let records: Vec<serde_json::Value> =
        crate::common::eventually("two records in the failures file", || {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let recs: Vec<serde_json::Value> =
                text.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
            if recs.len() >= 2 { Ok(recs) } else { Err(format!("{} records:\n{text}", recs.len())) }
        });
    assert_eq!(records[0]["kind"], "trap");
    assert_eq!(records[0]["message"]["content"], "trap", "the failed message is kept whole");
    assert_eq!(records[0]["message"]["message_version"], "20110921");
    assert_eq!(records[1]["kind"], "deadline");
    assert_eq!(records[1]["component"], "app");
    assert_eq!(records[1]["connector"], "telnet");
}
