//! `vumi fake-aggregator`: the far end of an `sms_http` transport, for trying things out. It
//! prints each SMS it is asked to send and answers with an id of its own, as an aggregator's
//! HTTP API does.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::HeaderMap;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Serve on `listener` until `shutdown`: print each SMS, answer `{"message_id": "fake-<n>"}`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(receive);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn receive(headers: HeaderMap, body: Bytes) -> axum::Json<serde_json::Value> {
    let id = format!("fake-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let fields: serde_json::Value = if crate::web::is_json(&headers) {
        serde_json::from_slice(&body).unwrap_or_default()
    } else {
        crate::web::parse_form(&body).map(|f| serde_json::json!(f)).unwrap_or_default()
    };
    let get = |k: &str| fields.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_owned();
    println!("SMS {id} to {} from {}: {}", get("to"), get("from"), get("content"));
    axum::Json(serde_json::json!({ "message_id": id }))
}
