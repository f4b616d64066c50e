//! Long inbound messages put back together in the state store, so that the parts of one
//! message may arrive on different binds, on different hosts, in any order.
//!
//! A part is stored under its message's key (sender, recipient, reference, part count) and its
//! number, kept twice the TTL. When every part is there, whoever claims the set first (deleting
//! part 1 is the claim: one delete of a key succeeds) takes the parts, removes them and leaves a
//! done marker for as long, so a redelivered copy of a part is known as taken rather than
//! starting a set that never completes. A set still incomplete when its TTL has passed since its first part here is
//! reported by [`Reassembler::expired`] with what did arrive, and removed, so the operator can
//! see it instead of the text silently vanishing.
//!
//! The parts' octets are joined before they are decoded, so a pair split across parts by a
//! sender less careful than ours (a GSM escape, a UTF-16 surrogate pair) still reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::text::Concat;
use crate::state::{KvStore, StateError};

/// Whose message a part belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartKey {
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The message's reference.
    pub reference: u16,
    /// How many parts it has.
    pub total: u8,
}

impl PartKey {
    fn base(&self) -> String {
        format!("mp:{}|{}|{}|{}", self.from, self.to, self.reference, self.total)
    }
}

/// What adding a part did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Parts are still missing: `have` of the message's parts are stored.
    Waiting {
        /// Parts stored so far.
        have: u8,
    },
    /// That was the last one: the message's octets, every part's in order.
    Complete(Vec<u8>),
    /// The set was complete and someone else (another host, or this part's earlier copy)
    /// took it.
    Taken,
}

/// Why a part cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// Its numbering makes no sense (part 0, or beyond the count).
    #[error("part {seq} of {total} cannot be: parts are numbered from 1 to their count")]
    Numbering {
        /// Its number.
        seq: u8,
        /// The count it gave.
        total: u8,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// A message whose parts did not all arrive in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    /// Which message.
    pub key: PartKey,
    /// The parts that did arrive, by number, with their octets.
    pub parts: Vec<(u8, Vec<u8>)>,
}

/// Reassembly on a state store.
pub struct Reassembler {
    kv: Arc<dyn KvStore>,
    ttl: Duration,
    /// Sets with a part added here and not yet complete: when their first part came.
    open: Mutex<HashMap<PartKey, Instant>>,
}

impl Reassembler {
    /// Reassemble on `kv` (a transport's own namespace), giving a message's parts `ttl` to
    /// arrive.
    pub fn new(kv: Arc<dyn KvStore>, ttl: Duration) -> Self {
        Self { kv, ttl, open: Mutex::default() }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<PartKey, Instant>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add part `concat.seq` of the message (`from`, `to`, `concat`), whose text octets (after
    /// any header) are `body`.
    pub async fn add(&self, from: &str, to: &str, concat: Concat, body: &[u8]) -> Result<Added, PartError> {
        if concat.seq == 0 || concat.seq > concat.total {
            return Err(PartError::Numbering { seq: concat.seq, total: concat.total });
        }
        let key = PartKey {
            from: from.to_owned(),
            to: to.to_owned(),
            reference: concat.reference,
            total: concat.total,
        };
        let base = key.base();
        let done = format!("{base}:done");
        // Kept past the TTL, so that `expired` still finds what arrived when it reports.
        let keep = self.ttl * 2;
        // A set given back by `unclaim`: any of its parts, sent again, completes it again.
        let held = format!("{base}:held");
        if let Some(octets) = self.kv.get(&held).await? {
            if !self.kv.delete(&held).await? {
                return Ok(Added::Taken);
            }
            self.kv.set(&done, b"1", Some(keep)).await?;
            return Ok(Added::Complete(octets));
        }
        if self.kv.get(&done).await?.is_some() {
            return Ok(Added::Taken);
        }
        self.kv.set(&format!("{base}:{}", concat.seq), body, Some(keep)).await?;
        let mut parts = Vec::with_capacity(usize::from(concat.total));
        for seq in 1..=concat.total {
            parts.push(self.kv.get(&format!("{base}:{seq}")).await?);
        }
        let have = parts.iter().filter(|p| p.is_some()).count() as u8;
        if have < concat.total {
            self.open().entry(key).or_insert_with(Instant::now);
            return Ok(Added::Waiting { have });
        }
        self.open().remove(&key);
        // The claim: of every host that saw the set complete, one deletes part 1.
        if !self.kv.delete(&format!("{base}:1")).await? {
            return Ok(Added::Taken);
        }
        self.kv.set(&done, b"1", Some(keep)).await?;
        for seq in 2..=concat.total {
            self.kv.delete(&format!("{base}:{seq}")).await?;
        }
        Ok(Added::Complete(parts.into_iter().flatten().flatten().collect()))
    }

    /// Give back a set whose message could not be passed on after [`Reassembler::add`] said
    /// `Complete` (the bus refused it): it is kept whole, so the sender's retry of any of its
    /// parts completes it again, instead of meeting the done marker and being lost.
    pub async fn unclaim(
        &self,
        from: &str,
        to: &str,
        concat: Concat,
        octets: &[u8],
    ) -> Result<(), StateError> {
        let key = PartKey {
            from: from.to_owned(),
            to: to.to_owned(),
            reference: concat.reference,
            total: concat.total,
        };
        let base = key.base();
        self.kv.set(&format!("{base}:held"), octets, Some(self.ttl * 2)).await?;
        self.kv.delete(&format!("{base}:done")).await?;
        Ok(())
    }

    /// The sets begun here whose TTL has passed without them completing, with the parts that
    /// did arrive (those are removed). A set another host completed meanwhile is not reported.
    pub async fn expired(&self) -> Result<Vec<Incomplete>, StateError> {
        let due: Vec<PartKey> = {
            let open = self.open();
            open.iter().filter(|(_, since)| since.elapsed() >= self.ttl).map(|(k, _)| k.clone()).collect()
        };
        let mut out = Vec::new();
        for key in due {
            let base = key.base();
            let mut parts = Vec::new();
            for seq in 1..=key.total {
                let k = format!("{base}:{seq}");
                if let Some(v) = self.kv.get(&k).await? {
                    self.kv.delete(&k).await?;
                    parts.push((seq, v));
                }
            }
            self.open().remove(&key);
            if !parts.is_empty() {
                out.push(Incomplete { key, parts });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    fn part(reference: u16, total: u8, seq: u8) -> Concat {
        Concat { reference, total, seq }
    }

    #[tokio::test]
    async fn a_set_given_back_completes_again_on_the_retry_of_any_part() {
        let r = Reassembler::new(Arc::new(MemoryStore::new()), Duration::from_secs(60));
        r.add("a", "b", part(9, 2, 1), b"he").await.unwrap();
        assert_eq!(r.add("a", "b", part(9, 2, 2), b"y").await.unwrap(), Added::Complete(b"hey".to_vec()));
        // The bus refused it: the SMSC will send the last part again.
        r.unclaim("a", "b", part(9, 2, 2), b"hey").await.unwrap();
        assert_eq!(r.add("a", "b", part(9, 2, 2), b"y").await.unwrap(), Added::Complete(b"hey".to_vec()));
        assert_eq!(r.add("a", "b", part(9, 2, 2), b"y").await.unwrap(), Added::Taken, "once");
    }

    #[tokio::test]
    async fn parts_in_any_order_come_out_whole_and_in_order() {
        let r = Reassembler::new(Arc::new(MemoryStore::new()), Duration::from_secs(60));
        assert_eq!(r.add("a", "b", part(7, 3, 3), b"lo!").await.unwrap(), Added::Waiting { have: 1 });
        assert_eq!(r.add("a", "b", part(7, 3, 1), b"hel").await.unwrap(), Added::Waiting { have: 2 });
        // Another message with the same reference from someone else is kept apart.
        assert_eq!(r.add("c", "b", part(7, 3, 2), b"XXX").await.unwrap(), Added::Waiting { have: 1 });
        assert_eq!(
            r.add("a", "b", part(7, 3, 2), b"lo, wor").await.unwrap(),
            Added::Complete(b"hello, worlo!".to_vec())
        );
        // A redelivered copy of a part after completion is known as taken.
        assert_eq!(r.add("a", "b", part(7, 3, 2), b"lo, wor").await.unwrap(), Added::Taken);
        assert!(r.expired().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn two_hosts_sharing_a_store_emit_the_message_once() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let (h1, h2) = (
            Reassembler::new(kv.clone(), Duration::from_secs(60)),
            Reassembler::new(kv, Duration::from_secs(60)),
        );
        assert_eq!(h1.add("a", "b", part(1, 2, 1), b"x").await.unwrap(), Added::Waiting { have: 1 });
        assert_eq!(h2.add("a", "b", part(1, 2, 2), b"y").await.unwrap(), Added::Complete(b"xy".to_vec()));
        // h1's own copy of the complete set is already taken.
        assert_eq!(h1.add("a", "b", part(1, 2, 1), b"x").await.unwrap(), Added::Taken);
        assert!(h2.expired().await.unwrap().is_empty(), "h2 began nothing still open");
    }

    #[tokio::test]
    async fn a_set_that_never_completes_is_reported_with_what_arrived() {
        let r = Reassembler::new(Arc::new(MemoryStore::new()), Duration::from_millis(30));
        r.add("a", "b", part(9, 3, 1), b"one").await.unwrap();
        r.add("a", "b", part(9, 3, 3), b"three").await.unwrap();
        assert!(r.expired().await.unwrap().is_empty(), "not yet due");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let gone = r.expired().await.unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].key.reference, gone[0].key.total), (9, 3));
        assert_eq!(gone[0].parts, [(1, b"one".to_vec()), (3, b"three".to_vec())]);
        assert!(r.expired().await.unwrap().is_empty(), "reported once");
    }

    #[tokio::test]
    async fn nonsense_numbering_is_refused() {
        let r = Reassembler::new(Arc::new(MemoryStore::new()), Duration::from_secs(1));
        let e = r.add("a", "b", part(1, 2, 3), b"x").await.unwrap_err();
        assert_eq!(e.to_string(), "part 3 of 2 cannot be: parts are numbered from 1 to their count");
        assert!(r.add("a", "b", part(1, 2, 0), b"x").await.is_err());
    }
}
