//! Mix records on the bus (docs/protocol.md §6.7): how every node becomes reachable as a mix
//! without a Namecoin name. Each node publishes a small signed record of its mix key as an
//! ordinary BuMP message under one well-known tag; the flood carries it to every node, and
//! each node keeps the valid records it holds in a [`MixBook`]. Routes of sends (when the
//! node has no Namecoin directory), cover and loops draw from the book. The Namecoin
//! directory stays the source for mixes that charge postage.
//!
//! Record (109 bytes, the data of a one-part message): `"bumpmix1"` ‖ key (33, compressed)
//! ‖ created (u32 BE, unix s) ‖ BIP340 signature (64) by the key's x-only form over
//! SHA-256("bump/mixrecord/1" ‖ key ‖ created). Valid from `created − 600` to
//! `created + RECORD_LIFE`. A node re-publishes its own record every [`REPUBLISH`].

use crate::node::Node;
use crate::tag::Tag;
use bitcoin::hashes::{sha256, Hash, HashEngine};
use secp256k1::{Keypair, Message, PublicKey, SecretKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const MAGIC: &[u8; 8] = b"bumpmix1";
pub const RECORD_LEN: usize = 8 + 33 + 4 + 64;
/// How long a record is believed after it was made.
pub const RECORD_LIFE: u32 = 36 * 3600;
/// How often a node publishes its record again.
pub const REPUBLISH: Duration = Duration::from_secs(12 * 3600);
/// TTL of a record's packet.
pub const RECORD_TTL: u32 = 24 * 3600;
/// Most mixes a book keeps (the most recently made records win).
pub const MAX_MIXES: usize = 10_000;

/// The tag every mix record is published under.
pub fn record_tag() -> Tag {
    Tag::from_human("bump/mixes/1")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixRecord {
    pub key: PublicKey,
    pub created: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("a mix record is {RECORD_LEN} bytes starting \"bumpmix1\"")]
    Format,
    #[error("the mix record's key is not a valid secp256k1 point")]
    Key,
    #[error("the mix record's signature does not verify")]
    Signature,
    #[error("the mix record is out of date or from the future")]
    Stale,
}

fn digest(key: &PublicKey, created: u32) -> Message {
    let mut e = sha256::Hash::engine();
    e.input(b"bump/mixrecord/1");
    e.input(&key.serialize());
    e.input(&created.to_be_bytes());
    Message::from_digest(sha256::Hash::from_engine(e).to_byte_array())
}

impl MixRecord {
    /// Encode and sign the record of `secret`'s key made at `created`.
    pub fn sign(secret: &SecretKey, created: u32) -> Vec<u8> {
        let kp = Keypair::from_secret_key(secp256k1::SECP256K1, secret);
        let key = PublicKey::from_secret_key(secp256k1::SECP256K1, secret);
        let sig = secp256k1::SECP256K1.sign_schnorr(&digest(&key, created), &kp);
        let mut out = Vec::with_capacity(RECORD_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key.serialize());
        out.extend_from_slice(&created.to_be_bytes());
        out.extend_from_slice(sig.as_ref());
        out
    }

    /// Decode and verify a record; `now` decides whether it is still believed.
    pub fn verify(bytes: &[u8], now: u32) -> Result<MixRecord, RecordError> {
        if bytes.len() != RECORD_LEN || &bytes[..8] != MAGIC {
            return Err(RecordError::Format);
        }
        let key = PublicKey::from_slice(&bytes[8..41]).map_err(|_| RecordError::Key)?;
        let created = u32::from_be_bytes([bytes[41], bytes[42], bytes[43], bytes[44]]);
        let sig = secp256k1::schnorr::Signature::from_slice(&bytes[45..])
            .map_err(|_| RecordError::Signature)?;
        secp256k1::SECP256K1
            .verify_schnorr(&sig, &digest(&key, created), &key.x_only_public_key().0)
            .map_err(|_| RecordError::Signature)?;
        if created > now.saturating_add(600) || created.saturating_add(RECORD_LIFE) <= now {
            return Err(RecordError::Stale);
        }
        Ok(MixRecord { key, created })
    }
}

/// The mixes this node knows from records on the bus, newest record per key.
pub struct MixBook {
    node: Arc<Node>,
    own: PublicKey,
    secret: SecretKey,
    known: Mutex<HashMap<PublicKey, u32>>,
}

impl MixBook {
    pub fn new(node: Arc<Node>, secret: SecretKey) -> Arc<MixBook> {
        Arc::new(MixBook {
            own: PublicKey::from_secret_key(secp256k1::SECP256K1, &secret),
            node,
            secret,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// Mixes other than ours with a record believed now.
    pub fn mixes(&self, now: u32) -> Vec<PublicKey> {
        use crate::sync::Locked;
        let mut v: Vec<PublicKey> = self
            .known
            .locked()
            .iter()
            .filter(|(k, created)| **k != self.own && created.saturating_add(RECORD_LIFE) > now)
            .map(|(k, _)| *k)
            .collect();
        v.sort_by_key(|k| k.serialize());
        v
    }

    /// When our own newest stored record was made, if one is stored.
    pub fn own_created(&self) -> Option<u32> {
        use crate::sync::Locked;
        self.known.locked().get(&self.own).copied()
    }

    /// Read every record stored under the tag; returns how many mixes are known.
    pub async fn refresh(&self, now: u32) -> usize {
        use crate::sync::Locked;
        let msgs = match self.node.messages(record_tag()).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("mix records unreadable: {e}");
                return self.known.locked().len();
            }
        };
        let mut bad = 0usize;
        let mut k = self.known.locked();
        for m in msgs.done {
            match MixRecord::verify(&m.data, now) {
                Ok(r) => {
                    let e = k.entry(r.key).or_insert(r.created);
                    *e = (*e).max(r.created);
                }
                Err(_) => bad += 1,
            }
        }
        k.retain(|_, created| created.saturating_add(RECORD_LIFE) > now);
        if k.len() > MAX_MIXES {
            let mut by_age: Vec<(u32, PublicKey)> = k.iter().map(|(k, c)| (*c, *k)).collect();
            by_age.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
            *k = by_age
                .into_iter()
                .take(MAX_MIXES)
                .map(|(c, k)| (k, c))
                .collect();
        }
        if bad > 0 {
            tracing::debug!(bad, "mix records that do not verify were ignored");
        }
        k.len()
    }

    /// Publish our own record now.
    pub async fn publish_own(&self, now: u32) -> Result<(), crate::node::NodeError> {
        let rec = MixRecord::sign(&self.secret, now);
        self.node
            .send_message(
                record_tag(),
                &rec,
                Some(RECORD_TTL.min(self.node.limits().max_ttl)),
                now,
            )
            .await?;
        Ok(())
    }

    /// Publish our record at start and every [`REPUBLISH`]; re-read the records every
    /// `every` and whenever one arrives.
    pub async fn run(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut rx = self.node.subscribe();
        // A restart does not publish again while our last record is young.
        self.refresh(crate::unix_now()).await;
        let young = self
            .own_created()
            .is_some_and(|c| c.saturating_add(REPUBLISH.as_secs() as u32) > crate::unix_now());
        if !young {
            if let Err(e) = self.publish_own(crate::unix_now()).await {
                tracing::warn!("could not publish this node's mix record: {e}");
            }
            self.refresh(crate::unix_now()).await;
        }
        let mut republish = tokio::time::interval(REPUBLISH);
        republish.tick().await;
        let mut reread = tokio::time::interval(every);
        let tag = record_tag();
        let mut dirty = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = republish.tick() => {
                    if let Err(e) = self.publish_own(crate::unix_now()).await {
                        tracing::warn!("could not publish this node's mix record: {e}");
                    }
                }
                ev = rx.recv() => match ev {
                    Ok(batch) => dirty |= batch.iter().any(|ev| ev.packet.tag == tag),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => dirty = true,
                    Err(_) => return,
                },
                _ = reread.tick() => {
                    let before = self.mixes(crate::unix_now()).len();
                    if dirty || before == 0 {
                        let n = self.refresh(crate::unix_now()).await;
                        if n != before {
                            tracing::info!(mixes = self.mixes(crate::unix_now()).len(), "mixes known from records on the bus");
                        }
                        dirty = false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_verifies_and_every_change_breaks_it() {
        let sk = SecretKey::from_slice(&[9; 32]).unwrap();
        let now = 1_800_000_000;
        let rec = MixRecord::sign(&sk, now);
        assert_eq!(rec.len(), RECORD_LEN);
        let r = MixRecord::verify(&rec, now + 60).unwrap();
        assert_eq!(r.key, PublicKey::from_secret_key(secp256k1::SECP256K1, &sk));
        assert_eq!(r.created, now);
        for i in 0..RECORD_LEN {
            let mut bad = rec.clone();
            bad[i] ^= 1;
            assert!(MixRecord::verify(&bad, now).is_err(), "byte {i}");
        }
        assert_eq!(
            MixRecord::verify(&rec, now + RECORD_LIFE),
            Err(RecordError::Stale)
        );
        assert_eq!(MixRecord::verify(&rec, now - 3600), Err(RecordError::Stale));
        assert_eq!(
            MixRecord::verify(&rec[..100], now),
            Err(RecordError::Format)
        );
    }

    #[tokio::test]
    async fn a_restart_does_not_publish_a_young_record_again() {
        use crate::node::{Limits, NodeInfo};
        use crate::store::{Store, StoreConfig};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), &StoreConfig::default()).unwrap());
        let node = Arc::new(Node::new(
            store,
            Limits::default(),
            NodeInfo {
                network: namecoin::Network::Regtest,
                netdir: dir.path().to_path_buf(),
            },
            CancellationToken::new(),
        ));
        let sk = SecretKey::from_slice(&[5; 32]).unwrap();
        let records = || async { node.messages(record_tag()).await.unwrap().done.len() };
        for round in 0..2 {
            let book = MixBook::new(node.clone(), sk);
            let stop = CancellationToken::new();
            let task = tokio::spawn(book.clone().run(Duration::from_millis(50), stop.clone()));
            for _ in 0..100 {
                if book.own_created().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.cancel();
            task.await.unwrap();
            assert!(book.own_created().is_some(), "round {round}");
            assert_eq!(
                records().await,
                1,
                "round {round}: one record, not one per start"
            );
        }
    }

    proptest! {
        #[test]
        fn garbage_never_verifies_nor_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(MixRecord::verify(&bytes, 1_800_000_000).is_err());
        }
    }
}
