//! # vumi-host
//!
//! The vumi host: native transports, a message bus, and campaign apps as sandboxed WebAssembly
//! components, all in one process configured by one TOML file.
//!
//! ## Code map (dependencies point down only)
//!
//! | layer | module | owns |
//! |---|---|---|
//! | 0 | [`names`] | validated ids: connector, app, endpoint names |
//! | 0 | [`message`] | Vumi's user message, event and status; the JSON codec; `reply()` |
//! | 0 | [`telemetry`] | logging setup; Prometheus metrics |
//! | 0 | [`web`] | HTTP plumbing: error envelope, body limits, form/JSON parsing, bearer tokens |
//! | 1 | [`config`] | the typed config, validated once at load |
//! | 2 | [`bus`] | trait `Bus` (publish, consume, ack/nack); the embedded bus; its conformance suite |
//! | 2 | [`state`] | trait `KvStore` (get, set+TTL, delete, incr; namespaced); in-memory store; conformance suite |
//! | 3 | [`transports`] | native transports: `telnet`, `ussd_at` (USSD over HTTP), `sms_http`, `sink` |
//! | 3 | [`plugins`] | the only wasmtime user: engine, bindings, imports, loader, compiled-component cache, instance policies; apps, routers and middleware; the registry of hot-swappable slots and the file watcher |
//! | 4 | [`workers`] | app worker (consume → plugin → publish → ack), dispatcher (router plugins), middleware chains (a `Bus` wrapper), the failure path, send-API channels and their callbacks, event routing |
//! | 5 | [`admin`] | the operators' API: plugins, deploy, reload, transports, failures, `/metrics`, `/health` |
//! | 6 | [`supervisor`] | builds a running host from a `Config`: the one place naming concrete back ends; applies config reloads |
//! | 6 | [`harness`] | a plugin on in-memory back ends, for plugin authors' tests |
//! | 7 | [`cli`] | the `vumi` command line |
//!
//! ## Invariants
//! - Only `plugins` imports wasmtime; `transports` and `plugins` never import each other;
//!   `workers` is the only module that sees both the bus and the plugins.
//! - A plugin handler **returns** what it sent; the worker publishes it only if the handler
//!   returned `ok`. So a handler that errs, traps, or runs out of time or memory sends nothing.
//! - Every message a worker takes is either published-then-acked or recorded on the failure path:
//!   none is dropped silently. A middleware's deliberate drop is logged, and an outbound one is
//!   answered with a nack to its sender.

pub mod admin;
pub mod bus;
pub mod cli;
pub mod config;
pub mod harness;
pub mod message;
pub mod names;
pub mod plugins;
pub mod state;
pub mod supervisor;
pub mod telemetry;
pub mod transports;
pub mod web;
pub mod workers;
