//! Transports: each built from its table behind the [`Transport`] trait (one arm per kind, here
//! only), handed its outbound queue and the flow's publish handle, and kept across a config
//! reload unless its own table changed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::RoutingKey;
use crate::config::{Config, TransportConfig};
use crate::message::Timestamp;
use crate::names::ConnectorName;
use crate::state::{KvStore, Namespace, Namespaced};
use crate::status::TransportStatus;
use crate::transports::sink::SinkTransport;
use crate::transports::sms_http::SmsHttpTransport;
use crate::transports::telnet::TelnetTransport;
use crate::transports::ussd_at::UssdAtTransport;
use crate::transports::{Transport, TransportContext};

use super::{RunningHost, StartError};

/// A transport and how to stop it.
pub(super) struct RunningTransport {
    pub(super) config: TransportConfig,
    pub(super) stop: CancellationToken,
    pub(super) task: JoinHandle<()>,
    pub(super) routes: Option<axum::Router>,
    pub(super) listening: Option<SocketAddr>,
    pub(super) status: Arc<Mutex<TransportStatus>>,
}

impl RunningHost {
    pub(super) async fn start_transport(
        &self,
        config: &Config,
        name: &ConnectorName,
        t: &TransportConfig,
    ) -> Result<RunningTransport, StartError> {
        let sent = Arc::new(crate::transports::Sent::new(name, 100_000));
        let stop = self.shutdown.child_token();
        let ctx = TransportContext {
            publish: self.intake.clone(),
            connector: name.clone(),
            sent: sent.clone(),
            retry: Arc::new(crate::retry::Retry::new(&config.host.retry, format!("transport:{name}"))),
            event_retry: Arc::new(TransportContext::event_retry(name)),
            stop: stop.clone(),
        };
        let kv = || -> Arc<dyn KvStore> {
            Arc::new(Namespaced::new(self.state.clone(), Namespace::Transport(name.as_str())))
        };
        let mut listening = None;
        let transport: Box<dyn Transport> = match t {
            TransportConfig::UssdAt(uc) => {
                Box::new(UssdAtTransport::new(ctx, kv(), uc, config.http.max_body_bytes))
            }
            TransportConfig::SmsHttp(sc) => {
                let retry = sc.retry.as_ref().unwrap_or(&config.host.retry);
                Box::new(SmsHttpTransport::new(ctx, kv(), sc, retry, config.http.max_body_bytes))
            }
            TransportConfig::Sink(_) => Box::new(SinkTransport::new(ctx)),
            TransportConfig::Smpp(sc) => Box::new(crate::transports::smpp::SmppTransport::new(ctx, kv(), sc)),
            TransportConfig::Telnet(tc) => {
                let bind_err = |source| StartError::Bind { name: name.to_string(), addr: tc.bind, source };
                let listener = tokio::net::TcpListener::bind(tc.bind).await.map_err(bind_err)?;
                listening = Some(listener.local_addr().map_err(bind_err)?);
                Box::new(TelnetTransport::new(ctx, listener, tc).map_err(bind_err)?)
            }
        };
        let key = RoutingKey::outbound(name);
        let outbound = self
            .bus
            .consume(&key, transport.prefetch())
            .await
            .map_err(|source| StartError::Bus { key: key.to_string(), source })?;
        // A copy of a message this transport sent already (a redelivery, or an app's retry with
        // its derived reply id) is dropped here, before it reaches the user again.
        let outbound = sent.dedupe(outbound);
        let status = Arc::new(Mutex::new(TransportStatus {
            name: name.to_string(),
            kind: t.transport_type().to_owned(),
            listening: listening.map(|a| a.to_string()),
            state: "running".into(),
            since: Timestamp::now().to_string(),
            status_events: Default::default(),
        }));
        // Its Vumi status events are read back into what the admin API shows (and so never
        // pile up on a queue nobody reads).
        let key = RoutingKey::status(name);
        let statuses = self
            .bus
            .consume(&key, 16)
            .await
            .map_err(|source| StartError::Bus { key: key.to_string(), source })?;
        tokio::spawn(crate::workers::statuses::record(statuses, status.clone(), stop.clone()));
        let routes = transport.routes();
        let task = {
            let (status, tname, token) = (status.clone(), name.to_string(), stop.clone());
            tokio::spawn(async move {
                let r = transport.run(outbound, token).await;
                let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
                s.since = Timestamp::now().to_string();
                match r {
                    Ok(()) => s.state = "stopped".into(),
                    Err(e) => {
                        tracing::error!(transport = tname, error = %e, "transport stopped");
                        s.state = format!("failed: {e}");
                    }
                }
            })
        };
        Ok(RunningTransport { config: t.clone(), stop, task, routes, listening, status })
    }
}
