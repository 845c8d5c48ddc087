//! Sealed sending and reading with a keyring: which envelopes to send under which tags, and
//! what the envelopes under a group's or an identity's tags say. Used by the node's RPC
//! (`bump_sealedsend`, `bump_sealedget`), which reads the keyring of its datadir.

use super::envelope::{self, OpenError, Opened, Opener, Plain, Seal, SealError};
use super::keyring::{Keyring, KeyringError};
use super::keys::{GroupKey, Identity, KeyError, PublicId};
use super::parts::SealedSend;
use super::tags;
use crate::tag::Tag;
use bitcoin::hashes::Hash as _;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("{what}: {err}")]
    Key { what: String, err: KeyError },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("give a group or at least one recipient")]
    NoAddress,
    #[error("framing the sealed parts: {0}")]
    Parts(#[from] crate::message::MessageError),
}

/// Who a sealed send goes to.
#[derive(Debug, Clone, Default)]
pub struct SealTo {
    pub group: Option<String>,
    pub to: Vec<String>,
    pub from: Option<String>,
}

/// The envelopes that carry `data` as asked, each with its tag and sealed framing (§8.4):
/// one for a group; for direct messages one per inbox bucket of the recipients (8 recipients
/// per envelope).
pub fn seal_for(
    k: &Keyring,
    how: &SealTo,
    data: Vec<u8>,
    now: u32,
) -> Result<Vec<SealedSend>, BookError> {
    let signer = how.from.as_deref().map(|n| k.identity(n)).transpose()?;
    let plain = Plain {
        timestamp: now as u64,
        content_type: 0,
        body: data,
    };
    let slot = tags::slot(now);
    if let Some(g) = &how.group {
        let key = k.group(g)?;
        let env = envelope::seal(&Seal::Group(&key), &plain, signer.as_ref())?;
        return Ok(vec![SealedSend::group(
            &key,
            tags::group_tag(&key, slot),
            env,
        )]);
    }
    if how.to.is_empty() {
        return Err(BookError::NoAddress);
    }
    let mut by_bucket: BTreeMap<u8, Vec<PublicId>> = BTreeMap::new();
    for s in &how.to {
        let id = PublicId::parse(s).map_err(|err| BookError::Key {
            what: format!("recipient {s}"),
            err,
        })?;
        by_bucket.entry(tags::bucket(&id)).or_default().push(id);
    }
    let mut out = Vec::new();
    for (bucket, ids) in by_bucket {
        for chunk in ids.chunks(envelope::SLOTS) {
            let r = envelope::SealRandom::fresh();
            let env = envelope::seal_with(&Seal::Direct(chunk), &plain, signer.as_ref(), &r)?;
            out.push(SealedSend::direct(
                &r.content_key,
                tags::inbox_tag(bucket, slot),
                &env,
            )?);
        }
    }
    Ok(out)
}

/// The tags to read for a group at `now`.
pub fn group_tags(key: &GroupKey, now: u32, max_ttl: u32) -> Vec<Tag> {
    tags::read_slots(now, max_ttl)
        .map(|s| tags::group_tag(key, s))
        .collect()
}

/// The tags to read for an identity's inbox at `now`.
pub fn inbox_tags(id: &Identity, now: u32, max_ttl: u32) -> Vec<Tag> {
    let b = tags::bucket(&id.public());
    tags::read_slots(now, max_ttl)
        .map(|s| tags::inbox_tag(b, s))
        .collect()
}

/// One opened message.
#[derive(Debug, Clone)]
pub struct Read {
    /// The identity (keyring name) it was addressed to; `None` for a group message.
    pub to: Option<String>,
    pub opened: Opened,
}

/// Envelopes read so far: opened ones in order, skipped ones by reason, replays once.
#[derive(Debug, Default)]
pub struct Reading {
    pub read: Vec<Read>,
    pub skipped: BTreeMap<OpenError, usize>,
    seen: HashSet<[u8; 32]>,
}

impl Reading {
    pub fn take(&mut self, bytes: &[u8], opener: &Opener, to: Option<&str>) {
        // A replayed envelope (the same bytes sent again) is shown once.
        let h = bitcoin::hashes::sha256::Hash::hash(bytes).to_byte_array();
        if !self.seen.insert(h) {
            return;
        }
        match envelope::open(bytes, opener) {
            Ok(opened) => self.read.push(Read {
                to: to.map(str::to_string),
                opened,
            }),
            Err(e) => *self.skipped.entry(e).or_default() += 1,
        }
    }

    /// Packets of the tags read that did not open as parts of a sealed message (§8.4):
    /// not for this key, or tampered; they look alike.
    pub fn unopened(&mut self, n: usize) {
        if n > 0 {
            *self.skipped.entry(OpenError::NotForUs).or_default() += n;
        }
    }

    /// The next identity's inbox: envelopes of the bucket that were for the previous one
    /// are not skipped "for a reason", merely not ours.
    pub fn next_identity(&mut self) {
        self.skipped.remove(&OpenError::NotForUs);
        self.seen.clear();
    }

    /// Messages oldest first (by their sealed timestamp).
    pub fn sorted(mut self) -> (Vec<Read>, BTreeMap<OpenError, usize>) {
        self.read.sort_by_key(|r| r.opened.plain.timestamp);
        (self.read, self.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_offline_for_two_slots_reads_every_unexpired_message_across_boundaries() {
        let d = tempfile::tempdir().unwrap();
        let mut k = Keyring::load(d.path()).unwrap();
        let g = GroupKey::generate();
        k.add_group("g", &g, "random").unwrap();
        let how = SealTo {
            group: Some("g".into()),
            ..SealTo::default()
        };
        let day = tags::SLOT_SECS;
        let t0 = 20_000 * day;
        // Sent just before a midnight, just after it, and a day later (48 h TTL).
        let sends: Vec<(u32, Tag, Vec<u8>)> = [t0 - 5, t0 + 5, t0 + day + 100]
            .into_iter()
            .map(|t| {
                let s = seal_for(&k, &how, format!("at {t}").into_bytes(), t)
                    .unwrap()
                    .remove(0);
                (t, s.tag, s.carried)
            })
            .collect();
        assert_ne!(sends[0].1, sends[1].1, "the tag rotates at midnight");
        assert_ne!(sends[1].1, sends[2].1);
        // Back online two slots later, before the first message expires.
        let reader_now = t0 - 5 + 2 * day - 60;
        let read = group_tags(&g, reader_now, 2 * day);
        let mut r = Reading::default();
        for (_, tag, env) in &sends {
            assert!(read.contains(tag), "a live message's tag is not read");
            r.take(env, &Opener::Group(&g), None);
            r.take(env, &Opener::Group(&g), None); // a replay: shown once
        }
        let (msgs, skipped) = r.sorted();
        assert_eq!(msgs.len(), 3);
        assert!(skipped.is_empty());
        assert_eq!(
            msgs[0].opened.plain.body,
            format!("at {}", t0 - 5).into_bytes()
        );
    }
}
