//! End-to-end tests: they start the real `vumi` binary on free ports and talk to it over real
//! sockets, as a user would. One test binary (wasmtime is heavy to link).
//!
//! The example and test-only plugins are built once per run with `vumi plugin build`.

#![allow(clippy::unwrap_used)] // a test's unwrap is its failure report

mod amqp_bus;
mod backpressure;
mod bad_input;
mod cli;
mod common;
mod dispatch;
mod faults;
mod flow;
mod harness;
mod http_calls;
mod http_channels;
mod middleware;
mod plugins;
mod polyglot;
mod redis_state;
mod reload;
mod smpp;
mod smpp_peers;
mod survey;
mod telnet_transport;
mod tenants;
