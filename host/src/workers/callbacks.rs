//! Callbacks: POSTing messages and events to URLs outside the host (`mo_url`, `event_url`).
//!
//! A callback server is someone else's machine: it may be slow, down, or failing. So callbacks
//! never run on the message path: they are queued (bounded), sent by a few tasks, retried with
//! the host's jittered exponential backoff (`[host.retry]`, or `[callbacks] retry`), and after
//! the last try recorded on the failure path with the reason.
//! When the queue is full the channel waits for room, and takes no more messages meanwhile: its
//! connector's queue fills, and the transport answers `503` with `Retry-After` rather than accept
//! a message it would then drop. (A callback queued in memory is lost if the process dies; the
//! failure path and the `GET` API are where a client finds what it missed.)

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::FailureLog;
use crate::config::CallbacksConfig;
use crate::message::Message;
use crate::retry::{Again, GaveUp, Retry, RetryPolicy};

/// One POST to make.
pub struct Callback {
    /// Where to.
    pub url: String,
    /// The message or event, POSTed as Vumi JSON.
    pub message: Message,
}

/// A channel's callback sender.
#[derive(Clone)]
pub struct Callbacks {
    tx: mpsc::Sender<Callback>,
    component: Arc<str>,
    connector: crate::names::ConnectorName,
    failures: Arc<FailureLog>,
    retry: Arc<Retry>,
}

impl Callbacks {
    /// Start sending callbacks for `component` (on `connector`, for failure records) until
    /// `shutdown`, each tried by `retry`.
    pub fn start(
        config: &CallbacksConfig,
        retry: &RetryPolicy,
        component: &str,
        connector: &crate::names::ConnectorName,
        failures: Arc<FailureLog>,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .user_agent(concat!("vumi/", env!("CARGO_PKG_VERSION")))
            // A redirected POST would silently become a GET elsewhere: a 3xx is a failure.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let retry = Arc::new(Retry::new(retry, format!("callbacks:{component}")));
        let this = Self { tx, component: component.into(), connector: connector.clone(), failures, retry };
        tokio::spawn(this.clone().run(rx, client, config.clone(), shutdown));
        this
    }

    /// Queue `callback`, waiting while the queue is full (the backpressure described above).
    /// Only a sender that has stopped (the host shutting down) sends it to the failure path.
    pub async fn send(&self, callback: Callback) {
        if let Err(mpsc::error::SendError(cb)) = self.tx.send(callback).await {
            self.fail(&cb, "the callback sender stopped (the host is shutting down)".into()).await;
        }
    }

    async fn fail(&self, cb: &Callback, reason: String) {
        let reason = format!("callback to {} failed: {reason}", cb.url);
        self.failures
            .record(
                &self.component,
                &super::failures::input_queue(&self.connector, &cb.message),
                "callback",
                &reason,
                &cb.message,
            )
            .await;
    }

    async fn run(
        self,
        mut rx: mpsc::Receiver<Callback>,
        client: reqwest::Client,
        config: CallbacksConfig,
        shutdown: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(usize::from(config.concurrency)));
        loop {
            let cb = tokio::select! {
                () = shutdown.cancelled() => break,
                cb = rx.recv() => match cb { Some(cb) => cb, None => break },
            };
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let (this, client, stop) = (self.clone(), client.clone(), shutdown.clone());
            tokio::spawn(async move {
                this.deliver(&client, cb, stop).await;
                drop(permit);
            });
        }
    }

    async fn deliver(&self, client: &reqwest::Client, cb: Callback, stop: CancellationToken) {
        let body = cb.message.to_json();
        let post = || async {
            let sent = client
                .post(&cb.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    // Read to the end, so the connection goes back to the pool for the next.
                    let _ = resp.bytes().await;
                    Ok(())
                }
                Ok(resp) => Err(Again("unavailable", format!("the server answered {}", resp.status()))),
                Err(e) => Err(Again("unavailable", crate::web::error_chain(&e))),
            }
        };
        let why = match self.retry.run(&format!("deliver a callback to {}", cb.url), &stop, post).await {
            Ok(()) => {
                tracing::debug!(url = cb.url, id = cb.message.id(), "callback delivered");
                return;
            }
            Err(GaveUp::Stopped) => "the host is shutting down".to_owned(),
            Err(GaveUp::Failed(e)) => e.to_string(),
            Err(GaveUp::Spent { last, attempts }) => format!("{last} (after {attempts} attempts)"),
        };
        self.fail(&cb, why).await;
    }
}
