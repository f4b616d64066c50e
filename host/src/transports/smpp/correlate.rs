//! Delivery-report correlation: which message a receipt is about, kept in the state store so
//! that a receipt arriving on another bind, another host, or after a restart still finds it.
//!
//! Each part a message was sent as is remembered under its SMSC id (normalised per bind, see
//! `receipt::normalise`), with a TTL: a receipt can name any part. **Which part sets the
//! status of a long message:** the first part to fail fails the whole message at once; the
//! message is delivered only when every part has been reported delivered; pending reports of a
//! long message are not passed on (of a single-part message they are). Each message's outcome
//! is passed on once, whichever host decides it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::receipt::Outcome;
use crate::state::{KvStore, StateError};

/// What was sent under one SMSC id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Our message's id (the `user_message_id` of its events).
    pub message_id: String,
    /// Which part this id is, from 1.
    pub part: u8,
    /// How many parts the message went as.
    pub total: u8,
}

/// The SMSC id → message records of one transport.
pub struct Correlator {
    kv: Arc<dyn KvStore>,
    ttl: Duration,
}

impl Correlator {
    /// Records on `kv` (the transport's own namespace), kept `ttl` (how late a receipt may
    /// come: SMSCs keep trying for a day or more).
    pub fn new(kv: Arc<dyn KvStore>, ttl: Duration) -> Self {
        Self { kv, ttl }
    }

    /// Remember that `smsc_id` names `sent`, and that its message awaits an outcome.
    ///
    /// The message is marked open *before* the id is written: a receipt can arrive (on another
    /// task, bind or host) the moment the id is readable, and one that found the id but not yet
    /// the open mark would take the message as decided already and pass nothing on.
    pub async fn remember(&self, smsc_id: &str, sent: &Sent) -> Result<(), StateError> {
        let value = serde_json::to_vec(sent).unwrap_or_default();
        self.kv.set(&Self::open(&sent.message_id), b"1", Some(self.ttl)).await?;
        self.kv.set(&format!("id:{smsc_id}"), &value, Some(self.ttl)).await
    }

    /// Give back the claim [`Correlator::settle`] made for `sent`'s message when its outcome
    /// could not be passed on (the bus refused the event): the SMSC is answered with a
    /// temporary error, and its next try of the receipt decides it again.
    pub async fn reopen(&self, sent: &Sent) -> Result<(), StateError> {
        self.kv.set(&Self::open(&sent.message_id), b"1", Some(self.ttl)).await
    }

    /// What `smsc_id` names, if it is known (not yet, or no longer).
    pub async fn lookup(&self, smsc_id: &str) -> Result<Option<Sent>, StateError> {
        Ok(self.kv.get(&format!("id:{smsc_id}")).await?.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The key that says a message's outcome is still to be passed on. Deleting it is the
    /// claim: one delete of a key succeeds, so of every host deciding at once, one passes the
    /// outcome on.
    fn open(message_id: &str) -> String {
        format!("dr:{message_id}:open")
    }

    /// A receipt said `outcome` of the part `sent`: the message's outcome if that decides it
    /// (and no one passed it on before), else `None`.
    pub async fn settle(&self, sent: &Sent, outcome: Outcome) -> Result<Option<Outcome>, StateError> {
        let open = Self::open(&sent.message_id);
        let claim = || async { Ok::<_, StateError>(self.kv.delete(&open).await?.then_some(outcome)) };
        match outcome {
            Outcome::Pending if sent.total <= 1 => Ok(self.kv.get(&open).await?.map(|_| Outcome::Pending)),
            Outcome::Pending => Ok(None),
            Outcome::Failed => claim().await,
            Outcome::Delivered if sent.total <= 1 => claim().await,
            Outcome::Delivered => {
                self.kv.set(&format!("dr:{}:{}", sent.message_id, sent.part), b"1", Some(self.ttl)).await?;
                for part in 1..=sent.total {
                    if self.kv.get(&format!("dr:{}:{part}", sent.message_id)).await?.is_none() {
                        return Ok(None);
                    }
                }
                claim().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    fn sent(part: u8, total: u8) -> Sent {
        Sent { message_id: "m1".into(), part, total }
    }

    #[tokio::test]
    async fn an_id_remembered_is_found_until_its_ttl() {
        let c = Correlator::new(Arc::new(MemoryStore::new()), Duration::from_millis(50));
        c.remember("abc", &sent(1, 1)).await.unwrap();
        assert_eq!(c.lookup("abc").await.unwrap(), Some(sent(1, 1)));
        assert_eq!(c.lookup("other").await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(70)).await;
        assert_eq!(c.lookup("abc").await.unwrap(), None, "gone after its TTL");
    }

    #[tokio::test]
    async fn a_single_part_message_passes_every_report_on_and_its_final_one_once() {
        let c = Correlator::new(Arc::new(MemoryStore::new()), Duration::from_secs(60));
        c.remember("abc", &sent(1, 1)).await.unwrap();
        assert_eq!(c.settle(&sent(1, 1), Outcome::Pending).await.unwrap(), Some(Outcome::Pending));
        assert_eq!(c.settle(&sent(1, 1), Outcome::Delivered).await.unwrap(), Some(Outcome::Delivered));
        assert_eq!(
            c.settle(&sent(1, 1), Outcome::Delivered).await.unwrap(),
            None,
            "a repeated receipt is not passed on twice"
        );
        assert_eq!(c.settle(&sent(1, 1), Outcome::Pending).await.unwrap(), None, "nor a late pending one");
    }

    /// A store that checks, at each write of an id, what a receipt reading it at that moment
    /// would find: the message still open.
    struct OpenBeforeId(MemoryStore, std::sync::atomic::AtomicBool);

    #[async_trait::async_trait]
    impl KvStore for OpenBeforeId {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
            self.0.get(key).await
        }
        async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
            if key.starts_with("id:") && self.0.get(&Correlator::open("m1")).await?.is_none() {
                self.1.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            self.0.set(key, value, ttl).await
        }
        async fn delete(&self, key: &str) -> Result<bool, StateError> {
            self.0.delete(key).await
        }
        async fn incr(&self, key: &str, by: i64) -> Result<i64, StateError> {
            self.0.incr(key, by).await
        }
        async fn append(&self, key: &str, value: &[u8]) -> Result<bool, StateError> {
            self.0.append(key, value).await
        }
        async fn set_counted(
            &self,
            key: &str,
            value: &[u8],
            ttl: Option<Duration>,
            quota: &crate::state::Quota,
        ) -> Result<(), StateError> {
            self.0.set_counted(key, value, ttl, quota).await
        }
        async fn delete_counted(&self, key: &str, quota: &crate::state::Quota) -> Result<bool, StateError> {
            self.0.delete_counted(key, quota).await
        }
        async fn incr_counted(
            &self,
            key: &str,
            by: i64,
            quota: &crate::state::Quota,
        ) -> Result<i64, StateError> {
            self.0.incr_counted(key, by, quota).await
        }
        async fn usage(&self, quota: &crate::state::Quota) -> Result<crate::state::Usage, StateError> {
            self.0.usage(quota).await
        }
    }

    #[tokio::test]
    async fn a_receipt_that_finds_the_id_finds_its_message_still_open() {
        // A receipt racing its submit_sm_resp (an SMSC that reports at once) may read the id
        // between the two writes of `remember`: it must find the message open, or its outcome
        // is never passed on (seen as a missing delivery report under load).
        let store = Arc::new(OpenBeforeId(MemoryStore::new(), Default::default()));
        let c = Correlator::new(store.clone(), Duration::from_secs(60));
        c.remember("abc", &sent(1, 1)).await.unwrap();
        assert!(
            !store.1.load(std::sync::atomic::Ordering::SeqCst),
            "the id was readable while its message was not open"
        );
        assert_eq!(c.settle(&sent(1, 1), Outcome::Delivered).await.unwrap(), Some(Outcome::Delivered));
    }

    #[tokio::test]
    async fn an_outcome_given_back_is_decided_again_once() {
        let c = Correlator::new(Arc::new(MemoryStore::new()), Duration::from_secs(60));
        c.remember("abc", &sent(1, 1)).await.unwrap();
        assert_eq!(c.settle(&sent(1, 1), Outcome::Delivered).await.unwrap(), Some(Outcome::Delivered));
        // The bus refused the report: the claim is given back, and the SMSC's next try decides.
        c.reopen(&sent(1, 1)).await.unwrap();
        assert_eq!(c.settle(&sent(1, 1), Outcome::Delivered).await.unwrap(), Some(Outcome::Delivered));
        assert_eq!(c.settle(&sent(1, 1), Outcome::Delivered).await.unwrap(), None, "then decided");
    }

    #[tokio::test]
    async fn a_long_message_is_delivered_when_every_part_is_and_failed_by_its_first_failure() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let c = Correlator::new(kv.clone(), Duration::from_secs(60));
        for part in 1..=3 {
            c.remember(&format!("id{part}"), &sent(part, 3)).await.unwrap();
        }
        assert_eq!(c.lookup("id2").await.unwrap(), Some(sent(2, 3)), "every part's id names the message");
        assert_eq!(c.settle(&sent(2, 3), Outcome::Delivered).await.unwrap(), None);
        assert_eq!(
            c.settle(&sent(1, 3), Outcome::Pending).await.unwrap(),
            None,
            "pending parts are not passed on"
        );
        assert_eq!(c.settle(&sent(1, 3), Outcome::Delivered).await.unwrap(), None);
        // Another host (sharing the store) takes the last part's receipt.
        let other = Correlator::new(kv, Duration::from_secs(60));
        assert_eq!(other.settle(&sent(3, 3), Outcome::Delivered).await.unwrap(), Some(Outcome::Delivered));
        assert_eq!(c.settle(&sent(3, 3), Outcome::Delivered).await.unwrap(), None, "decided once");

        let failing = Sent { message_id: "m2".into(), part: 2, total: 2 };
        c.remember("f2", &failing).await.unwrap();
        assert_eq!(c.settle(&failing, Outcome::Failed).await.unwrap(), Some(Outcome::Failed));
        let first = Sent { part: 1, ..failing };
        assert_eq!(c.settle(&first, Outcome::Delivered).await.unwrap(), None, "already failed");
    }
}
