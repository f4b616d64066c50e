//! SMPP 3.4, towards the mobile networks' SMSCs (issue 19, under way).
//!
//! Built in layers, each its own module: `text` (codings, splitting and the user data header,
//! pure and tested with vectors), `receipt` (delivery receipts read from TLVs or text, ids
//! normalised per bind), `parts` (long inbound messages reassembled on the state store,
//! across binds and hosts) and `correlate` (SMSC ids → messages on the state store, and which
//! part's receipt decides a long message); then the wire (framing around the `rusmpp` codec, the only
//! module that imports it), the session (bind, enquire_link, unbind, reconnection), flow
//! control (window, rate, throttling), and the transport that joins them to the bus. Only
//! `text`, `receipt`, `parts` and `correlate` are here so far.

pub mod correlate;
pub mod parts;
pub mod receipt;
pub mod text;
