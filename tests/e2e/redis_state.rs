//! The Redis state store, through the binary: a USSD session and the survey's answers outlive
//! the host that started them, because both live in Redis (`[host.state] kind = "redis"`),
//! against this machine's Redis at 127.0.0.1:6379.

use crate::common::{Host, plugin};
use crate::http_channels::ussd;
use crate::survey::QUESTIONS;

const REDIS: &str = "127.0.0.1:6379";

/// Fail, saying how to start it, if Redis is not there: never pass silently.
fn require_redis() {
    if std::net::TcpStream::connect(REDIS).is_err() {
        panic!("this test needs Redis at {REDIS}: start one with `redis-server --port 6379 --save '' --appendonly no`");
    }
}

fn ussd_on_redis() -> Host {
    Host::start(&format!(
        r#"
[host.state]
kind = "redis"
url = "redis://{REDIS}"

[http]
bind = "127.0.0.1:0"

[transports.ussd]
kind = "ussd_at"
path = "/ussd"
response_deadline_ms = 10000

[apps.app]
plugin = "{}"
connector = "ussd"
{QUESTIONS}
"#,
        plugin("survey").display()
    ))
}

/// Delete what the run left in the shared Redis: every key naming its session or its user.
fn clean(session: &str, phone: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = redis::Client::open(format!("redis://{REDIS}")).expect("url");
        let mut conn = client.get_multiplexed_async_connection().await.expect("connect to Redis");
        for pattern in [format!("*{session}*"), format!("*{phone}*")] {
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await.expect("KEYS");
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("DEL");
            }
        }
    });
}

#[test]
fn a_ussd_survey_continues_on_a_new_host_when_state_is_in_redis() {
    require_redis();
    let run = &vumi_host::message::new_id()[..12];
    let session = format!("session-{run}");
    // A phone number unique to the run, so no earlier run's answers are found.
    let digits: String = run.bytes().map(|b| char::from(b'0' + b % 10)).collect();
    let phone = format!("+27{digits}");

    let first = ussd_on_redis();
    let q1 = ussd(&first, &session, &phone, "");
    assert!(q1.starts_with("CON ") && q1.contains("Favourite colour?"), "{q1:?}");
    let q2 = ussd(&first, &session, &phone, "3");
    assert!(q2.contains("Favourite season?"), "{q2:?}");
    drop(first);

    // Another host process, the same Redis: the aggregator's next request for the session
    // carries every input so far. The transport finds the session (so the app is given only
    // `2`), and the survey finds its answers: the last answer ends it. On a fresh in-memory
    // store this would be a new session, and the survey would start again.
    let second = ussd_on_redis();
    let end = ussd(&second, &session, &phone, "3*2");
    clean(&session, &phone);
    assert!(end.starts_with("END "), "the survey ended on the second host: {end:?}");
    assert!(end.contains("Blue") && end.contains("Winter"), "with both answers, one from each host: {end:?}");
}
