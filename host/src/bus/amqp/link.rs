//! The two links to the broker (publishing and consuming), each keeping one live connection and reconnecting with jittered, doubling waits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::{Connection, ConnectionProperties};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::BusError;
use crate::telemetry::metrics::metrics;
use crate::telemetry::throttle::Throttle;

use super::*;

/// Waits between attempts to reach the broker: doubling, jittered (so hosts restarted together
/// do not reconnect in step), from `reconnect_initial` to `reconnect_max`.
pub(super) fn reconnect_schedule(opts: &AmqpOptions) -> crate::retry::Retry {
    crate::retry::Retry::forever(opts.reconnect_initial, opts.reconnect_max, "bus")
}

/// One live connection.
pub(super) struct Conn {
    pub(super) connection: Connection,
    /// Set by anyone who sees this connection fail: its supervisor then replaces it.
    pub(super) broken: CancellationToken,
}

impl Conn {
    pub(super) fn alive(&self) -> bool {
        !self.broken.is_cancelled() && self.connection.status().connected()
    }
}

/// A supervised connection: one task keeps it up; users wait on `current` for a live one.
pub(super) struct Link {
    pub(super) role: &'static str,
    pub(super) opts: Arc<AmqpOptions>,
    pub(super) current: watch::Sender<Option<Arc<Conn>>>,
    pub(super) closed: CancellationToken,
    pub(super) reconnects: Counter,
    /// When the link went down (`None` while up), and the last error seen.
    pub(super) down: Mutex<(Option<Instant>, String)>,
}

impl Link {
    pub(super) fn new(role: &'static str, opts: Arc<AmqpOptions>, closed: CancellationToken) -> Arc<Self> {
        let (current, _) = watch::channel(None);
        Arc::new(Self {
            role,
            opts,
            current,
            closed,
            reconnects: metrics().bus_reconnects(role),
            down: Mutex::new((Some(Instant::now()), "not connected yet".into())),
        })
    }

    pub(super) fn lock_down(&self) -> std::sync::MutexGuard<'_, (Option<Instant>, String)> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) async fn open(&self) -> Result<Connection, lapin::Error> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("{} ({})", self.opts.connection_name, self.role).into());
        Connection::connect_uri(self.opts.uri(), props).await
    }

    /// Connect, wait for the connection to fail, drop it, wait, connect again: until closed.
    /// `on_up` runs after each connection that follows a failure.
    pub(super) async fn supervise(
        self: Arc<Self>,
        first: Connection,
        on_up: Arc<dyn Fn(Duration) + Send + Sync>,
    ) {
        let mut next = Some(first);
        let schedule = reconnect_schedule(&self.opts);
        let mut delays = schedule.delays();
        let mut generation = 0u64;
        let warned = Throttle::new(Duration::from_secs(10));
        loop {
            let connection = match next.take() {
                Some(c) => Ok(c),
                None => tokio::select! {
                    c = self.open() => c,
                    () = self.closed.cancelled() => return,
                },
            };
            match connection {
                Ok(connection) => {
                    generation += 1;
                    let mut events = connection.events_listener();
                    let conn = Arc::new(Conn { connection, broken: CancellationToken::new() });
                    let was_down = self.lock_down().0.take();
                    if generation > 1 {
                        self.reconnects.inc();
                        let after = was_down.map(|t| t.elapsed()).unwrap_or_default();
                        tracing::info!(link = self.role, broker = %self.opts.display(), down_ms = after.as_millis() as u64, "reconnected to the broker");
                        on_up(after);
                    }
                    self.current.send_replace(Some(conn.clone()));
                    delays = schedule.delays();
                    // Errors arrive as events; the status poll is a backstop for a failure
                    // that sends none.
                    let mut poll = tokio::time::interval(Duration::from_millis(500));
                    let why = loop {
                        tokio::select! {
                            ev = events.next() => match ev {
                                Some(lapin::Event::Error(e)) => break e.to_string(),
                                Some(_) => {}
                                None => break "the connection ended".to_owned(),
                            },
                            _ = poll.tick() => if !conn.connection.status().connected() {
                                break "the connection is no longer connected".to_owned();
                            },
                            () = conn.broken.cancelled() => break "an operation on it failed".to_owned(),
                            () = self.closed.cancelled() => {
                                self.current.send_replace(None);
                                let _ = tokio::time::timeout(Duration::from_secs(2), conn.connection.close(200, "host stopping".into())).await;
                                return;
                            }
                        }
                    };
                    conn.broken.cancel();
                    self.current.send_replace(None);
                    *self.lock_down() = (Some(Instant::now()), why.clone());
                    tracing::warn!(link = self.role, broker = %self.opts.display(), reason = why, "lost the broker connection; what was in flight is redelivered by the broker; reconnecting");
                    // Best effort: the socket is likely gone already.
                    let stale = conn.clone();
                    tokio::spawn(async move {
                        if !matches!(
                            tokio::time::timeout(
                                Duration::from_secs(5),
                                stale.connection.close(320, "replaced".into())
                            )
                            .await,
                            Ok(Ok(()))
                        ) {
                            tracing::debug!(
                                "a replaced connection did not close cleanly (likely gone already)"
                            );
                        }
                    });
                }
                Err(e) => {
                    let since = {
                        let mut d = self.lock_down();
                        d.1 = e.to_string();
                        d.0.map(|t| t.elapsed()).unwrap_or_default()
                    };
                    if let Some(more) = warned.hit() {
                        tracing::warn!(link = self.role, broker = %self.opts.display(), error = %e, down_ms = since.as_millis() as u64, more, "cannot reach the broker; retrying");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delays.next().unwrap_or(self.opts.reconnect_max)) => {}
                () = self.closed.cancelled() => return,
            }
        }
    }

    /// A live connection, waiting for one until `deadline` (forever: `None`).
    pub(super) async fn connected(
        &self,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Arc<Conn>, BusError> {
        let mut rx = self.current.subscribe();
        loop {
            if self.closed.is_cancelled() {
                return Err(BusError::Closed);
            }
            if let Some(c) = rx.borrow_and_update().clone()
                && c.alive()
            {
                return Ok(c);
            }
            let until = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Err(BusError::Closed) },
                () = self.closed.cancelled() => return Err(BusError::Closed),
                () = until => return Err(BusError::Unavailable(self.down_reason())),
                // A connection may fail without a change of `current` yet: look again soon.
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    pub(super) fn down_reason(&self) -> String {
        let d = self.lock_down();
        match d.0 {
            Some(t) => format!(
                "the {} connection to {} is down ({} ms): {}",
                self.role,
                self.opts.display(),
                t.elapsed().as_millis(),
                d.1
            ),
            None => format!("the {} connection to {} is up", self.role, self.opts.display()),
        }
    }

    pub(super) fn health(&self) -> Result<(), String> {
        if self.lock_down().0.is_some() { Err(self.down_reason()) } else { Ok(()) }
    }
}
