//! SMPP 3.4, towards the mobile networks' SMSCs (issue 19, under way).
//!
//! Built in layers, each its own module: `text` (codings, splitting and the user data header,
//! pure and tested with vectors), `receipt` (delivery receipts read from TLVs or text, ids
//! normalised per bind) and `parts` (long inbound messages reassembled on the state store,
//! across binds and hosts); then the wire (framing around the `rusmpp` codec, the only
//! module that imports it), the session (bind, enquire_link, unbind, reconnection), flow
//! control (window, rate, throttling), delivery-report correlation on the state store, and the
//! transport that joins them to the bus. Only `text`, `receipt` and `parts` are here so far.

pub mod parts;
pub mod receipt;
pub mod text;
