//! SMPP 3.4, towards the mobile networks' SMSCs.
//!
//! In layers, each its own module, lowest first:
//! - `wire`: PDUs framed by `command_length` around the `rusmpp` codec (the only module that
//!   imports it); a PDU that does not decode is answered and the link kept.
//! - `text`: codings (GSM 03.38, IA5, Latin-1, UCS-2 with surrogates), splitting and the user
//!   data header, pure and tested with vectors.
//! - `receipt`: delivery receipts read from TLVs or text; ids normalised per bind.
//! - `parts`: long inbound messages reassembled on the state store, across binds and hosts.
//! - `correlate`: SMSC ids → messages on the state store, and which part decides a long
//!   message's status.
//! - `link`: one bind (connect, bind, enquire_link, unbind, reconnection with back-off) and its
//!   flow control (window in PDUs, rate, throttle pause with the refused PDUs first).
//! - `transport`: the [`Transport`](super::Transport) joining links to the bus.
//!
//! `vumi fake-smsc`, the SMSC the tests and benchmarks bind to, is in `crate::fakes::smsc`.

pub mod correlate;
pub mod link;
pub mod parts;
pub mod receipt;
pub mod text;
pub mod transport;
pub mod wire;

pub use transport::SmppTransport;
