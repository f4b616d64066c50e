//! The plugin test harness, as a plugin author would use it.

use vumi_host::harness::PluginHarness;
use vumi_host::message::SessionEvent;

use crate::common::plugin;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

#[test]
fn the_survey_runs_in_the_harness_and_keeps_state_in_kv() {
    rt().block_on(async {
        let app = PluginHarness::builder(plugin("survey"))
            .config(serde_json::json!({"questions": [{"prompt": "Tea or coffee?", "options": ["Tea", "Coffee"]}]}))
            .load()
            .await
            .expect("load survey");
        let user = app.user("+27831234567");
        let r = user.start().await.expect("new session");
        assert_eq!(r.len(), 1);
        let q = r[0].content.as_deref().unwrap_or_default();
        assert!(q.contains("Tea or coffee?") && q.contains("2. Coffee"), "{q}");
        assert_eq!(r[0].to_addr.as_deref(), Some("+27831234567"), "a reply goes back to the user");
        assert_eq!(r[0].session_event, None, "the session continues");

        let r = user.say("2").await.expect("answer");
        let summary = r[0].content.as_deref().unwrap_or_default();
        assert!(summary.contains("Coffee"), "{summary}");
        assert_eq!(r[0].session_event, Some(SessionEvent::Close), "the last answer ends the session");
        assert_eq!(app.kv().get("completed").await.expect("kv").as_deref(), Some(&b"1"[..]));
    });
}

#[test]
fn the_harness_reports_failures_as_values() {
    rt().block_on(async {
        let app = PluginHarness::builder(plugin("faulty"))
            .deadline(std::time::Duration::from_millis(100))
            .load()
            .await
            .expect("load");
        let user = app.user("u1");
        let e = user.say("loop").await.expect_err("a loop must fail");
        assert_eq!(e.kind(), "deadline");
        let e = user.say("trap").await.expect_err("a trap must fail");
        assert_eq!(e.kind(), "trap");
        let r = user.say("kv").await.expect("kv");
        assert_eq!(r[0].content.as_deref(), Some("1"));
        assert_eq!(app.plugin().stats().failed.load(std::sync::atomic::Ordering::Relaxed), 2);
    });
}

#[test]
fn after_a_hang_up_the_same_users_next_message_starts_the_survey_over() {
    rt().block_on(async {
        let app = PluginHarness::builder(plugin("survey"))
            .config(serde_json::json!({"questions": [
                {"prompt": "Tea or coffee?", "options": ["Tea", "Coffee"]},
                {"prompt": "Milk?", "options": ["Yes", "No"]},
            ]}))
            .load()
            .await
            .expect("load survey");
        let user = app.user("+27831234567");
        user.start().await.expect("new session");
        let r = user.say("2").await.expect("answer 1");
        assert!(r[0].content.as_deref().unwrap_or_default().contains("Milk?"));
        user.hang_up().await.expect("close");
        // Had the close not forgotten the dialogue, "1" would answer "Milk?" and finish.
        let r = user.say("1").await.expect("after the hang-up");
        let text = r[0].content.as_deref().unwrap_or_default();
        assert!(text.contains("Tea or coffee?"), "starts over: {text}");
        assert_eq!(r[0].session_event, None, "and does not finish");
    });
}
