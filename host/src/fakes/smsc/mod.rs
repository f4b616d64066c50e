//! A fake SMSC (`vumi fake-smsc`): the far end of an SMPP bind, for development, the end-to-end
//! tests and the benchmarks, so none of them needs an operator's test account or a Java
//! simulator.
//!
//! It answers binds, `enquire_link`, `unbind` and `submit_sm` as an SMSC does, and can be told to
//! misbehave as real ones do (slow responses, throttling, full queues, failures, dropped
//! connections, ids written differently in responses and receipts), with a seeded PRNG so a
//! failing run can be repeated. What it was sent is put back together (long messages by UDH,
//! SAR or `message_payload`) and decoded, with warnings for what a handset would render wrong,
//! so a test asserts on text rather than octets. An HTTP API injects inbound messages
//! (`deliver_sm`), shows what was received, and changes the behaviour mid-run.
//!
//! Speed matters as much as fidelity: benchmarks pipeline tens of thousands of `submit_sm` a
//! second at it, so responses go out through a buffered sink that is flushed only when the
//! socket has nothing more to read, and the work per submit does not grow with what is stored.

mod http;
mod receipts;
mod received;
mod session;
mod settings;
mod state;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::transports::smpp::wire::status;

use http::*;
use receipts::*;
use received::*;
use session::*;
use settings::*;
pub use settings::{IdFormat, ReceiptAs, ReceiptIdFormat, ReceiptStat, Settings, SettingsError};
use state::*;

/// What the fake answers in `bind_*_resp`.
const SMSC_SYSTEM_ID: &str = "vumi-fake";
/// Large enough for a `message_payload` of 64 KiB.
const MAX_PDU: usize = 70_000;
/// Messages kept for `GET /mt`; older ones are forgotten first.
const MAX_MT: usize = 100_000;
/// Responses kept for `GET /responses`.
const MAX_RESPONSES: usize = 1_000;
/// Receipts kept while no receiver is bound, delivered when one binds (as an SMSC stores them).
const MAX_HELD: usize = 100_000;
/// How long parts of a long message may wait for the rest before the set is listed incomplete.
const ASSEMBLY_WAIT: Duration = Duration::from_secs(10);
/// How long `POST /mo` waits for the ESME's `deliver_sm_resp`s.
const MO_WAIT: Duration = Duration::from_secs(10);
/// A `deliver_sm` answered with a temporary error is tried again after this, up to
/// [`MAX_RETRIES`] times, as a real SMSC does.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// See [`RETRY_AFTER`].
const MAX_RETRIES: u32 = 5;
/// Frames handled between flushes: responses to a long pipelined burst still go out promptly.
const DRAIN_BUDGET: usize = 256;

/// The ESME's answers to a `deliver_sm` that mean "later", not "never".
fn temporary(code: u32) -> bool {
    matches!(code, status::RX_T_APPN | status::RTHROTTLED | status::RMSGQFUL)
}

/// `command_status` 0x45: not in `wire::status`, which holds what the host itself reacts to.
const RSUBMITFAIL: u32 = 0x45;

/// Why the fake stopped.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// The settings were refused.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The HTTP server failed.
    #[error("the fake SMSC's HTTP server failed: {0}")]
    Http(#[source] io::Error),
}

/// Serve SMPP on `smpp` and the control API on `http` until `shutdown` completes; then every
/// connection is closed. Listeners come bound so a caller can use port 0 and learn the port.
pub async fn serve(
    smpp: TcpListener,
    http: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FakeError> {
    settings.validate()?;
    let shared = Arc::new(Shared::new(settings));
    let stop = CancellationToken::new();
    let app = router(shared.clone());
    let http_server = async {
        let result = axum::serve(http, app).with_graceful_shutdown(stop.clone().cancelled_owned()).await;
        stop.cancel();
        result
    };
    let stopper = async {
        tokio::select! {
            () = shutdown => {}
            () = stop.cancelled() => {}
        }
        stop.cancel();
    };
    let (result, (), ()) = tokio::join!(http_server, accept(smpp, shared, stop.clone()), stopper);
    result.map_err(FakeError::Http)
}
