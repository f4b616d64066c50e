//! # vumi-host
//!
//! The vumi host: native transports, a message bus, and campaign apps as sandboxed WebAssembly
//! components, all in one process configured by one TOML file.
//!
//! ## Code map (dependencies point down only)
//!
//! | layer | module | owns |
//! |---|---|---|
//! | 0 | [`names`] | validated ids: connector, app, endpoint, tenant names; qualified names (`acme:echo`) |
//! | 0 | [`message`] | Vumi's user message, event and status (shared, `Arc`); the JSON codec; `reply()` |
//! | 0 | [`telemetry`] | logging setup; Prometheus metrics |
//! | 0 | [`web`] | HTTP plumbing: error envelope, body limits, form/JSON parsing, bearer tokens |
//! | 1 | [`config`] | the typed config, validated once at load |
//! | 1 | [`tenants`] | who a token belongs to (operator or tenant) and what it sees; each tenant's rate buckets |
//! | 1 | [`status`] | what the running host reports about itself (transports' states, config reloads), written by the supervisor and transports, read by the admin API |
//! | 1 | [`egress`] | outbound HTTP for plugins: the allow-list, addresses a plugin may not reach, one bounded call |
//! | 1 | [`retry`] | trying again: the one stoppable retry loop (jittered exponential waits from `RetryPolicy`, metrics, a warning per 10 s), for workers, transports and connections alike |
//! | 2 | [`bus`] | trait `Bus` (plain queues: publish, consume, ack/nack); the `Publish` handle components are given; the embedded bus and the RabbitMQ bus (legacy Vumi's topology, confirms, host-owned reconnection); its conformance suite |
//! | 2 | [`state`] | trait `KvStore` (get, set+TTL, delete, incr, append to what exists); `Namespace`, the one place keys are partitioned; in-memory and Redis stores; conformance suite; trait `Sequencer` (per-user turns across hosts, on Redis) |
//! | 3 | [`transports`] | trait `Transport`; native transports: `telnet`, `ussd_at` (USSD over HTTP), `sms_http`, `smpp` (SMPP 3.4), `sink` |
//! | 3 | [`fakes`] | the far ends, for development and tests: `vumi fake-smsc` (SMPP, on the transports' codecs) and `vumi fake-aggregator` |
//! | 3 | [`plugins`] | the only wasmtime user: engine, bindings, one file per WIT import, loader, compiled-component cache; the plugin core and its three typed faces (application, router, middleware); the registry of hot-swappable slots and the file watcher |
//! | 4 | [`workers`] | the message path (`flow`: chains, dispatch at publish, enqueue), app worker (consume → plugin → publish → ack), dispatcher (the routing decision), middleware chain steps, retries with backoff, the failure path, send-API channels and their callbacks, event routing |
//! | 5 | [`admin`] | the operators' API: plugins, deploy, reload, transports, failures, `/metrics`, `/health` |
//! | 6 | [`supervisor`] | builds a running host from a `Config`: the one place naming concrete back ends; applies config reloads |
//! | 6 | [`harness`] | a plugin on in-memory back ends, for plugin authors' tests |
//! | 7 | [`cli`] | the `vumi` command line |
//!
//! ## Invariants (`.ci/layering` checks the `use` lines)
//! - Only `plugins` imports wasmtime, only `state::redis` imports redis, only `bus::amqp`
//!   imports lapin, only `transports::smpp::wire` imports rusmpp. No module in `transports` imports `plugins` or `workers`; `plugins` does
//!   not import `transports`, `workers` or `bus`; `workers` is the only module that sees both
//!   the bus and the plugins.
//! - Transports never run plugin code directly, on any path: what they publish goes through the
//!   `Publish` handle the supervisor gives them (the flow), and they hold neither the bus nor a
//!   plugin. The flow is the one place chains and routers run on published messages.
//! - A plugin handler **returns** what it sent; the worker publishes it only if the handler
//!   returned `ok`. So a handler that errs, traps, or runs out of time or memory sends nothing.
//! - Every message a worker takes is either published-then-acked, retried in place with a
//!   backoff, or recorded on the failure path: none is dropped silently. A middleware's
//!   deliberate drop is logged, and an outbound one is answered with a nack to its sender.
//! - Keys in the state store are namespaced only through `state::Namespace`, whose prefixes
//!   cannot overlap.

/// mimalloc for every binary built on this crate (`vumi`, the tests, the benchmarks): messages
/// cross threads (a transport's task makes one, an app lane frees it), and glibc's malloc
/// serialises such frees on its arena locks. Measured in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turn transparent huge pages off for this process (Linux; elsewhere nothing). mimalloc asks
/// for huge pages on its arenas, but the host's memory grows in small pieces (messages, stored
/// records), so each fresh 2 MiB page is zeroed whole, and again after a purge: `clear_page`
/// was 8–10% of the send API's CPU in a profile, and turning it off gave the send API 5–10%
/// more messages per second in alternating runs (BENCHMARKS.md, issue 17). Redis gives the
/// same advice for the same reason. The `vumi` binary calls it first thing.
pub fn disable_transparent_huge_pages() {
    // Failure (an old kernel) leaves THP as it was, which is harmless.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}

pub mod admin;
pub mod bus;
pub mod cli;
pub mod config;
pub mod egress;
pub mod fakes;
pub mod harness;
pub mod message;
pub mod names;
pub mod plugins;
pub mod retry;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod telemetry;
pub mod tenants;
pub mod transports;
pub mod web;
pub mod workers;
