//! # vumi-host
//!
//! The vumi host: native transports, a message bus, and campaign apps as sandboxed WebAssembly
//! components, all in one process configured by one TOML file. `docs/architecture.md` explains
//! the design; this is its map of the code.
//!
//! ## Code map (dependencies point down only)
//!
//! | layer | module | owns |
//! |---|---|---|
//! | 0 | [`names`] | validated ids: connector, component, endpoint, tenant names; qualified names (`acme:echo`) |
//! | 0 | [`message`] | Vumi's user message, event and status (shared, `Arc`); the JSON codec; `reply()`; derived reply ids |
//! | 0 | [`telemetry`] | logging setup; Prometheus metrics; log throttles |
//! | 0 | [`web`] | HTTP plumbing: error envelope, body limits, form/JSON parsing, bearer tokens |
//! | 1 | [`config`] | the typed config, validated once at load |
//! | 1 | [`tenants`] | who a token belongs to (operator or tenant) and what it sees; each tenant's rate and CPU buckets |
//! | 1 | [`status`] | what the running host reports about itself (transports' states, config reloads, rejected plugin reloads), written by the supervisor, the plugin registry and `workers::statuses`, read by the admin API |
//! | 1 | [`egress`] | outbound HTTP for plugins: the allow-list, addresses a plugin may not reach, one bounded call |
//! | 1 | [`retry`] | trying again: the one stoppable retry loop (jittered exponential waits from `RetryPolicy`, metrics, a warning per 10 s), for workers, transports and connections alike |
//! | 2 | [`bus`] | trait `Bus` (plain queues: publish, consume, ack/nack, the retry path's delay tiers); the `Publish` handle components are given; the embedded bus and the RabbitMQ bus (legacy Vumi's topology, confirms, host-owned reconnection); its conformance suite |
//! | 2 | [`state`] | trait `KvStore` (get, set+TTL, delete, incr, append to what exists, counted writes); `Namespace`, the one place keys are partitioned; in-memory and Redis stores; conformance suite; trait `Sequencer` (per-user turns across hosts, on Redis) |
//! | 3 | [`transports`] | trait `Transport`; native transports: `telnet`, `ussd_at` (USSD over HTTP), `sms_http`, `smpp` (SMPP 3.4), `sink`; `Sent`, the copies a transport drops |
//! | 3 | [`fakes`] | the far ends, for development and tests: `vumi fake-smsc` (SMPP, on the transports' codecs) and `vumi fake-aggregator` |
//! | 3 | [`plugins`] | the only wasmtime user: engine, bindings, one file per WIT import, loader, compiled-component cache; the plugin core and its three typed faces (application, router, middleware); fair CPU between tenants; the registry of hot-swappable slots, deployed versions and the file watcher |
//! | 4 | [`workers`] | the message path (`flow`: chains, dispatch at publish, enqueue), app worker (consume → plugin → publish → settle), dispatcher (the routing decision), middleware chain steps, `settle` (what becomes of a taken message), the failure path, send-API channels and their callbacks, event routing, transports' status events |
//! | 5 | [`admin`] | the operators' API: plugins, deploy, reload, transports, tenants, failures, `/metrics`, `/health` |
//! | 6 | [`supervisor`] | builds a running host from a `Config`: the one place naming concrete back ends; applies config reloads |
//! | 6 | [`harness`] | a plugin on in-memory back ends, for plugin authors' tests |
//! | 7 | [`cli`] | the `vumi` command line |
//!
//! ## Invariants (checked by `.ci/layering`)
//!
//! The script greps for `crate::<module>` paths and crate names anywhere in a file (doc
//! comments and test modules included) and fails naming each file that crosses a line:
//! - Only `plugins` uses `wasmtime` (or `wasmtime_wasi`); only `bus::amqp` uses `lapin`; only
//!   `state::redis` uses `redis`; only `transports/smpp/wire.rs` uses `rusmpp`.
//! - `transports` does not use `plugins` or `workers`.
//! - `plugins` does not use `transports`, `workers` or `bus`.
//! - `bus` and `state` do not use `plugins`, `workers`, `transports`, `supervisor`, `admin` or
//!   `config`.
//! - `config`, `tenants` and `egress` do not use `bus`, `state`, `plugins`, `workers`,
//!   `transports`, `supervisor` or `admin`.
//! - No module but `workers`, `admin`, `supervisor`, `harness` and `cli` uses both `bus` and
//!   `plugins`.
//! - `fakes` does not use `plugins`, `workers`, `bus`, `state`, `supervisor` or `admin`.
//!
//! The rest of the layer table (for example that layer 0 uses nothing above it) is kept by
//! review, not by the script.
//!
//! ## Promises (each pinned by a test)
//!
//! - Transports never run plugin code except through the flow: what they publish goes through
//!   the `Publish` handle the supervisor gives them (`workers::flow::Flow`), and they hold
//!   neither the bus nor a plugin, so the operator's chains and routers run on everything they
//!   publish. The imports are checked above; the behaviour is pinned by the e2e tests
//!   `middleware::an_opted_out_user_gets_nothing_and_the_sender_hears_why` (a transport's
//!   messages pass the chain) and `flow::a_message_for_a_dispatcher_is_routed_inside_publish_and_its_events_find_home`.
//! - A plugin handler **returns** what it sent; the worker publishes it only if the handler
//!   returned `ok`. So a handler that errs, traps, or runs out of time or memory sends nothing
//!   (`faults::a_handler_that_sends_then_traps_publishes_nothing`).
//! - Every message a worker takes (an app lane, a dispatcher's queue consumer, the events
//!   router) is settled one way, through `workers::settle`: acked once handled; left unsettled
//!   (back on its queue) if a stop comes during a wait; after its tries in place, set aside on
//!   the retry path's next delay tier, or past the last one recorded as a temporary failure;
//!   recorded on the failure path and acked if no retry mends it. None is dropped silently; a
//!   middleware's deliberate drop is logged, and an outbound one is answered with a nack.
//!   Pinned by the e2e tests `plugins::retry_later_waits_with_backoff_keeps_the_users_order_and_then_succeeds`,
//!   `plugins::after_its_tries_in_place_a_message_waits_out_delay_tiers_off_its_queue_while_the_user_goes_on`,
//!   `plugins::without_delay_tiers_a_message_still_asking_to_retry_after_the_last_try_goes_to_the_failure_path`,
//!   `plugins::a_stop_does_not_wait_out_a_backoff_and_the_message_goes_back_on_its_queue`, and
//!   the chaos suite's `chaos_no_confirmed_input_is_lost_and_copies_stay_within_bounds`.
//! - Keys in the state store are namespaced only through `state::Namespace`, whose prefixes
//!   cannot overlap. That the prefixes cannot meet is pinned by the state suite's
//!   `namespaces_are_isolated` (run by `namespaced_memory_store_passes_the_conformance_suite`
//!   and `namespaced_redis_store_passes_the_conformance_suite`) and the e2e tests
//!   `flow::a_router_writing_origin_keys_cannot_misdirect_events` and
//!   `tenants::two_tenants_running_the_same_plugin_under_the_same_name_never_share_kv`; that no
//!   caller builds a prefix of its own is kept by review.

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
