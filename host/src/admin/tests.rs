use super::*;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::http::{StatusCode, header};
use tokio::sync::mpsc;

use crate::plugins::Registry;
use crate::status::HostStatus;
use crate::tenants::Tenants;
use crate::workers::FailureLog;
use axum::http::Request;
use tower::ServiceExt;

fn state() -> (AdminState, mpsc::Receiver<Control>) {
    let (control, rx) = mpsc::channel(1);
    let failures = Arc::new(FailureLog::new(10, None).expect("log"));
    let config = crate::config::Config::from_toml(
        "[admin]\ntoken = \"secret-token\"\n",
        std::path::Path::new("t.toml"),
    )
    .expect("config");
    let bus = Arc::new(crate::bus::EmbeddedBus::new());
    let state = AdminState {
        tenants: Arc::new(ArcSwap::from_pointee(Tenants::default().update(&config))),
        registry: Arc::new(Registry::new()),
        failures,
        publish: bus.clone(),
        dirs: config.own_dirs(),
        deployments: Arc::new(crate::plugins::versions::Deployments::open(None).expect("in memory")),
        engine: crate::plugins::Engine::new(&crate::plugins::EngineSettings {
            max_instances: 4,
            max_stacks: 4,
            ..Default::default()
        })
        .expect("engine"),
        edits: Arc::default(),
        status: Arc::new(HostStatus::default()),
        control,
        max_upload_bytes: 1024,
        state: Arc::new(crate::state::MemoryStore::new()),
        bus,
    };
    (state, rx)
}

async fn call(
    state: &AdminState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Body,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = router(state.clone()).oneshot(req.body(body).expect("request")).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn health_is_open_and_everything_else_wants_the_token() {
    let (s, _rx) = state();
    let (status, body) = call(&s, "GET", "/health", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["plugins"], 0);
    for uri in ["/plugins", "/transports", "/failures", "/metrics"] {
        assert_eq!(call(&s, "GET", uri, None, Body::empty()).await.0, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(
            call(&s, "GET", uri, Some("wrong"), Body::empty()).await.0,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    let (status, body) = call(&s, "GET", "/plugins", Some("secret-token"), Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"]["plugins"], serde_json::json!([]));
}

#[tokio::test]
async fn an_unknown_plugin_or_route_is_a_404_in_the_error_envelope() {
    let (s, _rx) = state();
    let (status, body) = call(&s, "GET", "/plugins/nope", Some("secret-token"), Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["description"].as_str().unwrap_or_default().contains("nope"), "{body}");
    let (status, _) = call(&s, "PUT", "/plugins/nope", Some("secret-token"), Body::from("x")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        call(&s, "GET", "/nowhere", Some("secret-token"), Body::empty()).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_config_reload_is_asked_of_the_supervisor_and_its_answer_returned() {
    let (s, mut rx) = state();
    let supervisor = tokio::spawn(async move {
        let Some(Control::ReloadConfig(reply)) = rx.recv().await else { panic!("a reload request") };
        let _ = reply.send(Err("`apps.x`: bad".into()));
    });
    let (status, body) = call(&s, "POST", "/reload", Some("secret-token"), Body::empty()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["description"].as_str().unwrap_or_default().contains("`apps.x`: bad"), "{body}");
    supervisor.await.expect("supervisor");
}
