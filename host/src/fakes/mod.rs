//! Stand-ins for the far ends of the transports, for development, the end-to-end tests and the
//! benchmarks: nobody needs an operator's test account to try the host.
//!
//! - `smsc`: `vumi fake-smsc`, an SMSC on SMPP 3.4 with an HTTP control API, which can be told
//!   to misbehave as real SMSCs do;
//! - `aggregator`: `vumi fake-aggregator`, an SMS aggregator's HTTP API for `sms_http`.
//!
//! They sit beside the transports and use their codecs (`transports::smpp::wire`, `text`), never
//! the host's bus, workers or plugins.

pub mod aggregator;
pub mod smsc;
