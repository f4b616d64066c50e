//! The survey app over telnet, end to end: the walking skeleton's promise to a new user.

use std::thread;

use crate::common::{Host, plugin, telnet_app_config};

pub const QUESTIONS: &str = r#"
[apps.app.config]
title = "Test survey"
[[apps.app.config.questions]]
prompt = "Favourite colour?"
options = ["Red", "Green", "Blue"]
[[apps.app.config.questions]]
prompt = "Favourite season?"
options = ["Summer", "Winter"]
"#;

fn survey_host(policy: &str) -> Host {
    Host::start(&telnet_app_config(&plugin("survey"), &format!("instances = \"{policy}\"\n{QUESTIONS}")))
}

fn whole_dialogue(host: &Host, first: &str, second: &str, colour: &str, season: &str) {
    let mut t = host.connect();
    let q1 = t.until("3. Blue");
    assert!(q1.contains("Favourite colour?"), "first question on connect, got:\n{q1}");
    t.send(first);
    let q2 = t.until("2. Winter");
    assert!(q2.contains("Favourite season?"), "an answer advances to question 2, got:\n{q2}");
    t.send(second);
    let summary = t.until(season);
    assert!(summary.contains(colour), "the summary lists every answer, got:\n{summary}");
    assert!(t.closed_by_server(), "the last answer ends the session and closes the connection");
}

#[test]
fn a_whole_survey_over_telnet_pooled() {
    let host = survey_host("pooled");
    whole_dialogue(&host, "3", "1", "Blue", "Summer");
}

#[test]
fn a_whole_survey_over_telnet_fresh_instances() {
    let host = survey_host("fresh");
    whole_dialogue(&host, "1", "2", "Red", "Winter");
}

#[test]
fn an_invalid_answer_is_asked_again() {
    let host = survey_host("pooled");
    let mut t = host.connect();
    t.until("3. Blue");
    for bad in ["7", "blue", "", "0"] {
        t.send(bad);
        let again = t.until("3. Blue");
        assert!(
            again.contains("Favourite colour?"),
            "after {bad:?} the same question is asked again, got:\n{again}"
        );
        assert!(
            again.contains("1") && again.contains("3"),
            "the re-ask says what a valid answer is, got:\n{again}"
        );
    }
    t.send(" 2 ");
    let q2 = t.until("2. Winter");
    assert!(q2.contains("Favourite season?"), "a valid answer after invalid ones advances, got:\n{q2}");
}

#[test]
fn hanging_up_mid_survey_starts_over_next_time() {
    let host = survey_host("pooled");
    let mut t = host.connect();
    t.until("3. Blue");
    t.send("2");
    t.until("2. Winter");
    drop(t);
    // The hang-up is a `close` session event, and the survey forgets the abandoned dialogue: it
    // says so when it deletes the user's progress (which it does only if there was some).
    host.wait_for_log("left the survey before finishing");
    // A new connection is a new user (telnet's from_addr is the peer address): question 1.
    let mut again = host.connect();
    let q = again.until("3. Blue");
    assert!(q.contains("Favourite colour?"), "got:\n{q}");
    again.send("/quit");
    assert!(again.closed_by_server(), "/quit closes the connection");
}

#[test]
fn concurrent_connections_keep_separate_state() {
    let host = survey_host("pooled");
    let mut a = host.connect();
    let mut b = host.connect();
    a.until("3. Blue");
    b.until("3. Blue");
    // Interleave: a answers question 1; b must still be on question 1.
    a.send("1");
    a.until("2. Winter");
    b.send("3");
    let bq2 = b.until("2. Winter");
    assert!(bq2.contains("Favourite season?"), "got:\n{bq2}");
    b.send("2");
    let b_summary = b.until("Winter");
    assert!(
        b_summary.contains("Blue") && !b_summary.contains("Red"),
        "b's summary has b's answers, got:\n{b_summary}"
    );
    a.send("1");
    let a_summary = a.until("Summer");
    assert!(
        a_summary.contains("Red") && !a_summary.contains("Blue"),
        "a's summary has a's answers, got:\n{a_summary}"
    );
}

#[test]
fn many_users_at_once_all_finish() {
    let host = survey_host("pooled");
    let addr = host.telnet;
    let users: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let mut t = crate::common::Telnet::connect(addr);
                t.until("3. Blue");
                t.send(&format!("{}", i % 3 + 1));
                t.until("2. Winter");
                t.send("1");
                let s = t.until("Summer");
                assert!(s.contains(["Red", "Green", "Blue"][i % 3]), "user {i} got:\n{s}");
            })
        })
        .collect();
    for u in users {
        u.join().expect("user thread");
    }
}
