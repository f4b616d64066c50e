//! What the connections and the HTTP API share: bound connections, receipts held for a receiver, counters, recorded responses.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::transports::smpp::wire::{self, BindKind, Sm};

use super::*;

/// What a connection is told from outside its task.
pub(super) enum Cmd {
    /// Send this `deliver_sm`.
    Deliver(Outbound),
    /// Write these octets as they are (`POST /raw`).
    Raw(Vec<u8>),
    /// Close now, without unbinding (`POST /drop`).
    Close,
}

/// A `deliver_sm` on its way to the ESME.
pub(super) struct Outbound {
    pub(super) sm: Box<Sm>,
    /// Times it was answered with a temporary error and sent again.
    pub(super) attempts: u32,
    /// A receipt: kept while no receiver is bound, where an MO is refused instead.
    pub(super) receipt: bool,
    /// Who waits for the ESME's final answer (`POST /mo`): its status, or why there is none.
    pub(super) reply: Option<oneshot::Sender<Result<u32, String>>>,
}

impl Outbound {
    pub(super) fn give_up(self, why: &str) {
        if let Some(reply) = self.reply {
            let _ = reply.send(Err(why.to_owned()));
        }
    }
}

pub(super) struct ConnEntry {
    pub(super) id: u64,
    pub(super) kind: Option<BindKind>,
    pub(super) tx: mpsc::UnboundedSender<Cmd>,
}

#[derive(Default)]
pub(super) struct Registry {
    pub(super) conns: Vec<ConnEntry>,
    pub(super) held: VecDeque<Outbound>,
}

impl Registry {
    pub(super) fn receivers(&self) -> usize {
        self.conns.iter().filter(|c| c.kind.is_some_and(BindKind::receives)).count()
    }

    /// Hand `out` to the next receiver-capable connection, round robin; back if there is none.
    pub(super) fn route(&mut self, rr: &AtomicUsize, mut out: Outbound) -> Result<(), Outbound> {
        let n = self.receivers();
        if n == 0 {
            return Err(out);
        }
        let start = rr.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let k = (start + i) % n;
            let Some(conn) = self.conns.iter().filter(|c| c.kind.is_some_and(BindKind::receives)).nth(k)
            else {
                break;
            };
            match conn.tx.send(Cmd::Deliver(out)) {
                Ok(()) => return Ok(()),
                // That connection is closing: try the next.
                Err(mpsc::error::SendError(Cmd::Deliver(back))) => out = back,
                Err(_) => return Ok(()),
            }
        }
        Err(out)
    }
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) binds: AtomicI64,
    pub(super) binds_total: AtomicU64,
    pub(super) submits: AtomicU64,
    pub(super) throttled: AtomicU64,
    pub(super) queue_full: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) drops: AtomicU64,
    pub(super) deliver_sm_sent: AtomicU64,
    pub(super) generic_nacks: AtomicU64,
    pub(super) bad_frames: AtomicU64,
    pub(super) deliver_sm_resp: Mutex<BTreeMap<u32, u64>>,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Serialize)]
pub(super) struct ResponseRecord {
    pub(super) command: &'static str,
    pub(super) status: u32,
    pub(super) status_name: String,
    pub(super) sequence: u32,
    pub(super) bind: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) bad: Option<String>,
}

pub(super) struct Shared {
    pub(super) settings: ArcSwap<Settings>,
    /// Serialises `POST /settings` (read, change, validate, store).
    pub(super) settings_update: Mutex<()>,
    pub(super) next_id: AtomicU64,
    pub(super) next_conn: AtomicU64,
    pub(super) next_ref: AtomicU32,
    pub(super) rr: AtomicUsize,
    pub(super) registry: Mutex<Registry>,
    pub(super) stats: Stats,
    pub(super) mt: Mutex<MtStore>,
    pub(super) responses: Mutex<VecDeque<ResponseRecord>>,
}

impl Shared {
    pub(super) fn new(settings: Settings) -> Self {
        Self {
            settings: ArcSwap::from_pointee(settings),
            settings_update: Mutex::new(()),
            next_id: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            next_ref: AtomicU32::new(1),
            rr: AtomicUsize::new(0),
            registry: Mutex::new(Registry::default()),
            stats: Stats::default(),
            mt: Mutex::new(MtStore::new()),
            responses: Mutex::new(VecDeque::new()),
        }
    }

    /// Send `out` to a receiver; a receipt with none bound waits for one, an MO is given up.
    pub(super) fn deliver(&self, out: Outbound) {
        let mut reg = lock(&self.registry);
        if let Err(out) = reg.route(&self.rr, out) {
            if out.receipt {
                if reg.held.len() >= MAX_HELD {
                    reg.held.pop_front();
                }
                reg.held.push_back(out);
            } else {
                drop(reg);
                out.give_up("no receiver bound");
            }
        }
    }

    pub(super) fn schedule_receipt(self: &Arc<Self>, sm: Box<Sm>, delay_ms: u64) {
        let out = Outbound { sm, attempts: 0, receipt: true, reply: None };
        if delay_ms == 0 {
            self.deliver(out);
        } else {
            let shared = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                shared.deliver(out);
            });
        }
    }

    pub(super) fn record_response(
        &self,
        command_id: u32,
        code: u32,
        sequence: u32,
        bind: u64,
        bad: Option<String>,
    ) {
        let rec = ResponseRecord {
            command: wire::command_name(command_id),
            status: code,
            status_name: wire::status_name(code),
            sequence,
            bind,
            bad,
        };
        let mut list = lock(&self.responses);
        if list.len() >= MAX_RESPONSES {
            list.pop_front();
        }
        list.push_back(rec);
    }
}
