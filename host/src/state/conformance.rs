//! The behaviour every [`KvStore`] back end must show, written once against `&dyn KvStore` and run
//! by each back end's tests. A back end that needs a service (Redis) runs this against the real
//! service; it never skips.

// A behaviour suite: a panic is how it reports a back end that misbehaves.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use super::{KvStore, Namespaced, Quota, StateError, Usage};

/// Run every check. Keys are prefixed with a random run id so that checks against a shared
/// networked store never see each other's data; it is returned so that such a test can delete
/// what is left.
pub async fn run_all(store: &dyn KvStore) -> String {
    let run = crate::message::test_run(32);
    get_of_missing_key_is_none(store, &run).await;
    set_then_get_round_trips_bytes(store, &run).await;
    set_replaces_value_and_expiry(store, &run).await;
    delete_reports_existence(store, &run).await;
    ttl_expires_keys(store, &run).await;
    incr_counts_from_zero_and_keeps_text_form(store, &run).await;
    incr_of_non_integer_is_a_typed_error(store, &run).await;
    concurrent_incr_loses_no_update(store, &run).await;
    append_extends_only_what_exists_and_keeps_its_expiry(store, &run).await;
    quota_counts_keys_and_bytes_and_frees_what_expires(store, &run).await;
    run
}

async fn quota_counts_keys_and_bytes_and_frees_what_expires(s: &dyn KvStore, run: &str) {
    let q = Quota {
        account: format!("{{tenant:{run}}}:quota:"),
        owner: format!("tenant `{run}`"),
        max_keys: 3,
        max_bytes: 20,
    };
    let k = |n: &str| format!("{run}:q:{n}");
    let is_limit = |r: Result<(), StateError>, needle: &str| match r {
        Err(StateError::Limit(m)) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected a limit naming {needle:?}, got {other:?}"),
    };
    s.set_counted(&k("a"), b"12345", None, &q).await.unwrap();
    s.set_counted(&k("b"), b"12345", None, &q).await.unwrap();
    assert_eq!(s.incr_counted(&k("n"), 7, &q).await.unwrap(), 7, "a new key by incr counts too");
    assert_eq!(s.usage(&q).await.unwrap(), Usage { keys: 3, bytes: 11 });
    is_limit(
        s.set_counted(&k("c"), b"x", None, &q).await,
        "holds 3 kv keys, its limit (`limits.kv_max_keys` is 3)",
    );
    assert!(matches!(s.incr_counted(&k("m"), 1, &q).await, Err(StateError::Limit(_))), "nor by incr");
    assert_eq!(s.get(&k("c")).await.unwrap(), None, "a refused write writes nothing");
    // Replacing counts the difference; a value that would pass the bytes is refused.
    s.set_counted(&k("a"), b"1234567890", None, &q).await.unwrap();
    assert_eq!(s.usage(&q).await.unwrap(), Usage { keys: 3, bytes: 16 });
    is_limit(
        s.set_counted(&k("b"), b"1234567890", None, &q).await,
        "holds 11 bytes of kv values (besides this key); 10 more would pass its limit (`limits.kv_max_bytes` is 20)",
    );
    assert_eq!(s.get(&k("b")).await.unwrap().as_deref(), Some(&b"12345"[..]), "the old value stays");
    assert_eq!(s.incr_counted(&k("n"), 5, &q).await.unwrap(), 12, "incr of a counted key");
    assert_eq!(s.usage(&q).await.unwrap(), Usage { keys: 3, bytes: 17 });
    // A deleted key frees its room.
    assert!(s.delete_counted(&k("b"), &q).await.unwrap());
    assert_eq!(s.usage(&q).await.unwrap(), Usage { keys: 2, bytes: 12 });
    // A key with a TTL stops counting once it expires, without anyone deleting it.
    s.set_counted(&k("t"), b"abc", Some(Duration::from_millis(200)), &q).await.unwrap();
    is_limit(s.set_counted(&k("d"), b"x", None, &q).await, "holds 3 kv keys");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.usage(&q).await.unwrap().keys == 3 {
        assert!(std::time::Instant::now() < deadline, "an expired key still counts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.usage(&q).await.unwrap(), Usage { keys: 2, bytes: 12 });
    s.set_counted(&k("d"), b"x", None, &q).await.unwrap();
    // Setting a key again without a TTL keeps it counted past the old expiry.
    s.set_counted(&k("d"), b"y", Some(Duration::from_millis(100)), &q).await.unwrap();
    s.set_counted(&k("d"), b"z", None, &q).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.usage(&q).await.unwrap(), Usage { keys: 3, bytes: 13 });
    for n in ["a", "n", "d"] {
        s.delete_counted(&k(n), &q).await.unwrap();
    }
    assert_eq!(s.usage(&q).await.unwrap(), Usage::default());
}

async fn append_extends_only_what_exists_and_keeps_its_expiry(s: &dyn KvStore, run: &str) {
    let key = format!("{run}:append");
    assert!(!s.append(&key, b"x").await.unwrap(), "an absent key is not appended to");
    assert_eq!(s.get(&key).await.unwrap(), None, "nor created");
    s.set(&key, b"head", Some(Duration::from_millis(300))).await.unwrap();
    assert!(s.append(&key, b"\none").await.unwrap());
    assert!(s.append(&key, b"\ntwo").await.unwrap());
    assert_eq!(s.get(&key).await.unwrap().as_deref(), Some(&b"head\none\ntwo"[..]));
    // The expiry set with the value still holds after appends.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.get(&key).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "an appended key kept no expiry");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!s.append(&key, b"late").await.unwrap(), "an expired key is not appended to");
    assert_eq!(s.get(&key).await.unwrap(), None, "nor brought back");
}

async fn get_of_missing_key_is_none(s: &dyn KvStore, run: &str) {
    assert_eq!(s.get(&format!("{run}:missing")).await.expect("get"), None);
}

async fn set_then_get_round_trips_bytes(s: &dyn KvStore, run: &str) {
    let k = format!("{run}:bytes");
    let value = [0u8, 159, 146, 150, b'\n', 255];
    s.set(&k, &value, None).await.expect("set");
    assert_eq!(s.get(&k).await.expect("get").as_deref(), Some(&value[..]));
}

async fn set_replaces_value_and_expiry(s: &dyn KvStore, run: &str) {
    let k = format!("{run}:replace");
    s.set(&k, b"one", Some(Duration::from_millis(200))).await.expect("set");
    s.set(&k, b"two", None).await.expect("set");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        s.get(&k).await.expect("get").as_deref(),
        Some(&b"two"[..]),
        "a plain set must clear the old TTL"
    );
}

async fn delete_reports_existence(s: &dyn KvStore, run: &str) {
    let k = format!("{run}:del");
    assert!(!s.delete(&k).await.expect("delete"), "deleting a missing key reports false");
    s.set(&k, b"x", None).await.expect("set");
    assert!(s.delete(&k).await.expect("delete"), "deleting a present key reports true");
    assert_eq!(s.get(&k).await.expect("get"), None);
}

async fn ttl_expires_keys(s: &dyn KvStore, run: &str) {
    let k = format!("{run}:ttl");
    s.set(&k, b"short-lived", Some(Duration::from_secs(1))).await.expect("set");
    assert!(s.get(&k).await.expect("get").is_some(), "visible before its TTL");
    // Poll rather than sleep a fixed time: Redis expiry has 1 ms resolution but is not instant.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if s.get(&k).await.expect("get").is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "key with a 1 s TTL still present after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn incr_counts_from_zero_and_keeps_text_form(s: &dyn KvStore, run: &str) {
    let k = format!("{run}:counter");
    assert_eq!(s.incr(&k, 1).await.expect("incr"), 1);
    assert_eq!(s.incr(&k, 41).await.expect("incr"), 42);
    assert_eq!(s.incr(&k, -50).await.expect("incr"), -8);
    assert_eq!(
        s.get(&k).await.expect("get").as_deref(),
        Some(&b"-8"[..]),
        "integers are stored as decimal text"
    );
    s.set(&k, b"100", None).await.expect("set");
    assert_eq!(s.incr(&k, 1).await.expect("incr"), 101, "text written by set counts");
}

async fn incr_of_non_integer_is_a_typed_error(s: &dyn KvStore, run: &str) {
    let k = format!("{run}:text");
    s.set(&k, b"hello", None).await.expect("set");
    let err = s.incr(&k, 1).await.expect_err("incr of text must fail");
    assert!(matches!(err, StateError::NotAnInteger { .. }), "got {err:?}");
    assert!(!err.is_retryable());
    assert_eq!(
        s.get(&k).await.expect("get").as_deref(),
        Some(&b"hello"[..]),
        "a failed incr changes nothing"
    );
}

async fn concurrent_incr_loses_no_update(s: &dyn KvStore, run: &str) {
    let k = format!("{run}:concurrent");
    // Polled together, so a networked back end sees truly concurrent requests.
    for r in futures::future::join_all((0..200).map(|_| s.incr(&k, 1))).await {
        r.expect("incr");
    }
    assert_eq!(s.get(&k).await.expect("get").as_deref(), Some(&b"200"[..]));
}

/// Namespaced views of one store must not see each other's keys. Returns the run id in their
/// names, as [`run_all`] does.
pub async fn namespaces_are_isolated(inner: Arc<dyn KvStore>) -> String {
    let run = crate::message::test_run(32);
    let a = Namespaced::new(inner.clone(), crate::state::Namespace::Channel(&format!("{run}-a")));
    let b = Namespaced::new(inner, crate::state::Namespace::Channel(&format!("{run}-b")));
    a.set("k", b"for a", None).await.expect("set");
    assert_eq!(b.get("k").await.expect("get"), None);
    assert_eq!(a.get("k").await.expect("get").as_deref(), Some(&b"for a"[..]));
    run
}
