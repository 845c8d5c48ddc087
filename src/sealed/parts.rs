//! Sealed parts (docs/protocol.md §8.4): how a sealed message's envelope is split into packets
//! whose message frame is inside the ciphertext. Without the key nobody can tell which packets
//! under a group's or an inbox's tag belong to one message, which is a first part, or how long
//! a message is; every part looks like random bytes.
//!
//! ```text
//! unit    = nonce (24) ‖ XChaCha20-Poly1305(K_f, nonce, aad = the packet's tag (20),
//!                                           frame header (23, §3) ‖ data)
//! group:  every part = unit; K_f = HKDF(K, "bump/frame/1")
//! direct: part 0 = head ‖ unit, head = the envelope's E ‖ slots (416 bytes);
//!         part i > 0 = unit, its nonce drawn again until the part's first 32 bytes are an
//!         x coordinate on the curve (as part 0's E is), so a first part does not stand out;
//!         K_f = HKDF(content key, "bump/frame/1"); the parts carry the envelope without its
//!         head (the reader puts it back after byte 26).
//! ```
//!
//! A reader decrypts a unit's first 23 bytes with the XChaCha20 keystream (block 1, as the
//! AEAD does) to learn the data length, then authenticates the whole unit; the rest of the
//! packet body is padding.

use super::envelope::{self, HEAD_AT, HEAD_LEN};
use super::keys::{hkdf32, GroupKey, Identity};
use crate::message::{Assembler, Framer, MessageError, MessageId, PartHeader, FRAME_HEADER_LEN};
use crate::packet::Packet;
use crate::tag::Tag;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use rand::RngCore;
use std::collections::{HashMap, VecDeque};

pub const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a unit adds to its data.
pub const UNIT_OVERHEAD: usize = NONCE_LEN + FRAME_HEADER_LEN + TAG_LEN;
/// Direct parts not yet opened (their first part not seen) a reader keeps at most.
pub const MAX_PENDING: usize = 65_536;

/// The frame key of a group's sealed parts.
pub fn group_frame_key(g: &GroupKey) -> [u8; 32] {
    hkdf32(&g.0, b"bump/frame/1")
}

/// The frame key of a direct envelope's parts, from its content key.
pub fn direct_frame_key(content_key: &[u8; 32]) -> [u8; 32] {
    hkdf32(content_key, b"bump/frame/1")
}

/// Frames the parts of one sealed message under one tag.
#[derive(Clone)]
pub struct SealedFramer {
    key: [u8; 32],
    tag: Tag,
    /// Direct messages: the envelope's head, carried by part 0.
    head: Option<Vec<u8>>,
}

impl std::fmt::Debug for SealedFramer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("SealedFramer")
            .field("tag", &self.tag)
            .field("direct", &self.head.is_some())
            .finish()
    }
}

/// What to send for one sealed envelope: the bytes the parts carry and how to frame them.
#[derive(Debug, Clone)]
pub struct SealedSend {
    pub tag: Tag,
    pub carried: Vec<u8>,
    pub framer: SealedFramer,
}

impl SealedSend {
    /// A group envelope.
    pub fn group(g: &GroupKey, tag: Tag, envelope: Vec<u8>) -> SealedSend {
        SealedSend {
            tag,
            carried: envelope,
            framer: SealedFramer {
                key: group_frame_key(g),
                tag,
                head: None,
            },
        }
    }

    /// A direct envelope sealed with `content_key`.
    pub fn direct(
        content_key: &[u8; 32],
        tag: Tag,
        envelope: &[u8],
    ) -> Result<SealedSend, MessageError> {
        if envelope.len() < HEAD_AT + HEAD_LEN {
            return Err(MessageError::Seal);
        }
        let head = envelope[HEAD_AT..HEAD_AT + HEAD_LEN].to_vec();
        let mut carried = envelope[..HEAD_AT].to_vec();
        carried.extend_from_slice(&envelope[HEAD_AT + HEAD_LEN..]);
        Ok(SealedSend {
            tag,
            carried,
            framer: SealedFramer {
                key: direct_frame_key(content_key),
                tag,
                head: Some(head),
            },
        })
    }
}

impl SealedFramer {
    /// A framer from its wire form (`bump_sendframed`): the frame key, the tag, and for a
    /// direct envelope its head. The frame key opens frame headers only; the envelope inside
    /// stays sealed under its own key.
    pub fn from_parts(
        key: [u8; 32],
        tag: Tag,
        head: Option<Vec<u8>>,
    ) -> Result<SealedFramer, MessageError> {
        if head.as_ref().is_some_and(|h| h.len() != HEAD_LEN) {
            return Err(MessageError::Seal);
        }
        Ok(SealedFramer { key, tag, head })
    }

    /// The frame key and the head, for handing the framing to the local node.
    pub fn key_and_head(&self) -> (&[u8; 32], Option<&[u8]>) {
        (&self.key, self.head.as_deref())
    }
}

fn is_x_coordinate(b: &[u8]) -> bool {
    b.get(..32)
        .and_then(|x| <&[u8; 32]>::try_from(x).ok())
        .and_then(envelope::lift_x)
        .is_some()
}

fn seal_unit(
    key: &[u8; 32],
    tag: &Tag,
    header: &PartHeader,
    data: &[u8],
    rng: &mut dyn RngCore,
) -> Result<Vec<u8>, MessageError> {
    let mut msg = header.to_bytes().to_vec();
    msg.extend_from_slice(data);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(
            &nonce.into(),
            Payload {
                msg: &msg,
                aad: &tag.0,
            },
        )
        .map_err(|_| MessageError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

impl Framer for SealedFramer {
    fn overhead(&self, index: usize) -> usize {
        match (&self.head, index) {
            (Some(h), 0) => h.len() + UNIT_OVERHEAD,
            _ => UNIT_OVERHEAD,
        }
    }

    fn frame(
        &self,
        header: &PartHeader,
        data: &[u8],
        rng: &mut dyn RngCore,
    ) -> Result<Vec<u8>, MessageError> {
        match (&self.head, header.index) {
            (None, _) => seal_unit(&self.key, &self.tag, header, data, rng),
            (Some(h), 0) => {
                let mut out = h.clone();
                out.extend_from_slice(&seal_unit(&self.key, &self.tag, header, data, rng)?);
                Ok(out)
            }
            (Some(_), _) => {
                // About half of all nonces qualify; 256 misses in a row (2^-256) would be a
                // broken random source.
                for _ in 0..256 {
                    let unit = seal_unit(&self.key, &self.tag, header, data, rng)?;
                    if is_x_coordinate(&unit) {
                        return Ok(unit);
                    }
                }
                Err(MessageError::Seal)
            }
        }
    }
}

/// Open the unit at the start of `bytes` (the rest is padding): its frame header and data.
pub fn open_unit(key: &[u8; 32], tag: &Tag, bytes: &[u8]) -> Option<(PartHeader, Vec<u8>)> {
    use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    let max_data = bytes.len().checked_sub(UNIT_OVERHEAD)?;
    let nonce: [u8; NONCE_LEN] = bytes[..NONCE_LEN].try_into().ok()?;
    let mut h = [0u8; FRAME_HEADER_LEN];
    h.copy_from_slice(&bytes[NONCE_LEN..NONCE_LEN + FRAME_HEADER_LEN]);
    let mut stream = chacha20::XChaCha20::new(key.into(), &nonce.into());
    stream.seek(64u64);
    stream.apply_keystream(&mut h);
    let header = PartHeader::from_bytes(&h, max_data).ok()?;
    let end = NONCE_LEN + FRAME_HEADER_LEN + header.len as usize + TAG_LEN;
    let plain = XChaCha20Poly1305::new(key.into())
        .decrypt(
            &nonce.into(),
            Payload {
                msg: &bytes[NONCE_LEN..end],
                aad: &tag.0,
            },
        )
        .ok()?;
    Some((header, plain[FRAME_HEADER_LEN..].to_vec()))
}

enum Mode {
    Group,
    Direct(Box<Identity>),
}

/// Collects the packets of one tag (any order) and yields the envelopes they complete.
pub struct PartReader {
    mode: Mode,
    /// Frame keys known so far, each with its own reassembly.
    asm: HashMap<[u8; 32], Assembler>,
    /// Direct messages: the head each first part carried.
    heads: HashMap<([u8; 32], MessageId), Vec<u8>>,
    /// Direct parts that opened with no key known yet (their first part may come later).
    pending: VecDeque<(u64, Packet)>,
    /// Packets that did not open, and pending ones dropped for room.
    unopened: usize,
}

impl PartReader {
    /// Read a group's tags.
    pub fn group(g: &GroupKey) -> PartReader {
        let k = group_frame_key(g);
        PartReader {
            mode: Mode::Group,
            asm: HashMap::from([(k, Assembler::new())]),
            heads: HashMap::new(),
            pending: VecDeque::new(),
            unopened: 0,
        }
    }

    /// Read an identity's inbox tags.
    pub fn identity(me: &Identity) -> PartReader {
        PartReader {
            mode: Mode::Direct(Box::new(me.clone())),
            asm: HashMap::new(),
            heads: HashMap::new(),
            pending: VecDeque::new(),
            unopened: 0,
        }
    }

    /// Feed one packet; returns the envelopes it completed.
    pub fn push(&mut self, seq: u64, packet: &Packet) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self.try_known(seq, packet, &mut out) {
            return out;
        }
        let key = match &self.mode {
            Mode::Group => None,
            Mode::Direct(me) => {
                envelope::content_key(&packet.body[..HEAD_LEN], me).map(|ck| direct_frame_key(&ck))
            }
        };
        let Some(key) = key else {
            self.hold(seq, packet);
            return out;
        };
        let Some((h, data)) = open_unit(&key, &packet.tag, &packet.body[HEAD_LEN..]) else {
            self.unopened += 1;
            return out;
        };
        if h.index != 0 {
            // A slot opened, so the sender is real, but the head sits only in part 0.
            self.unopened += 1;
            return out;
        }
        self.heads
            .insert((key, h.msg_id), packet.body[..HEAD_LEN].to_vec());
        self.asm.entry(key).or_default();
        self.add(key, seq, h, &data, &mut out);
        // Parts that came before their first part.
        for (s, p) in std::mem::take(&mut self.pending) {
            if !self.try_known(s, &p, &mut out) {
                self.pending.push_back((s, p));
            }
        }
        out
    }

    fn hold(&mut self, seq: u64, packet: &Packet) {
        match self.mode {
            Mode::Group => self.unopened += 1,
            Mode::Direct(_) => {
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                    self.unopened += 1;
                }
                self.pending.push_back((seq, packet.clone()));
            }
        }
    }

    /// Open `packet` as a part under a key already known; false if none opens it.
    fn try_known(&mut self, seq: u64, packet: &Packet, out: &mut Vec<Vec<u8>>) -> bool {
        let keys: Vec<[u8; 32]> = self.asm.keys().copied().collect();
        for key in keys {
            if let Some((h, data)) = open_unit(&key, &packet.tag, &packet.body[..]) {
                self.add(key, seq, h, &data, out);
                return true;
            }
        }
        false
    }

    fn add(&mut self, key: [u8; 32], seq: u64, h: PartHeader, data: &[u8], out: &mut Vec<Vec<u8>>) {
        let Some(asm) = self.asm.get_mut(&key) else {
            return;
        };
        let Some(done) = asm.push_part(seq, h, data) else {
            return;
        };
        let carried = &done.data;
        match self.mode {
            Mode::Group => out.push(carried.clone()),
            Mode::Direct(_) => {
                let Some(head) = self.heads.remove(&(key, h.msg_id)) else {
                    return;
                };
                if carried.len() < HEAD_AT {
                    self.unopened += 1;
                    return;
                }
                let mut env = carried[..HEAD_AT].to_vec();
                env.extend_from_slice(&head);
                env.extend_from_slice(&carried[HEAD_AT..]);
                out.push(env);
            }
        }
    }

    /// Packets that did not open as parts (not for this key, or tampered), counting parts
    /// still waiting for a first part that never came.
    pub fn unopened(&self) -> usize {
        self.unopened + self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::split_framed;
    use crate::sealed::envelope::{open, seal, seal_with, Opener, Plain, Seal, SealRandom};
    use crate::sealed::keys::PublicId;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    fn plain(n: usize) -> Plain {
        Plain {
            timestamp: 1_700_000_000,
            content_type: 0,
            body: (0..n).map(|i| (i * 31 % 251) as u8).collect(),
        }
    }

    fn packets(send: &SealedSend, rng: &mut rand::rngs::StdRng) -> Vec<Packet> {
        split_framed(
            &send.carried,
            &send.framer,
            send.tag,
            1_000_000,
            1 << 21,
            rng,
        )
        .unwrap()
        .1
    }

    #[test]
    fn header_keystream_is_the_aeads() {
        // open_unit reads the length with the raw XChaCha20 keystream at block 1: it must be
        // the AEAD's own, or no unit would open.
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let h = PartHeader {
            msg_id: MessageId([7; 16]),
            index: 2,
            count: 3,
            len: 5,
        };
        let unit = seal_unit(&[3; 32], &Tag([1; 20]), &h, b"hello", &mut rng).unwrap();
        assert_eq!(unit.len(), UNIT_OVERHEAD + 5);
        let mut body = unit.clone();
        body.extend_from_slice(&[0xAA; 100]);
        let (got, data) = open_unit(&[3; 32], &Tag([1; 20]), &body).unwrap();
        assert_eq!((got, data.as_slice()), (h, &b"hello"[..]));
        // Another tag or key: nothing.
        assert!(open_unit(&[3; 32], &Tag([2; 20]), &body).is_none());
        assert!(open_unit(&[4; 32], &Tag([1; 20]), &body).is_none());
    }

    #[test]
    fn group_parts_in_any_order_rebuild_the_envelope_and_show_no_frame() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let g = GroupKey([5; 32]);
        let tag = Tag([9; 20]);
        let env = seal(&Seal::Group(&g), &plain(5000), None).unwrap();
        let send = SealedSend::group(&g, tag, env.clone());
        let mut ps = packets(&send, &mut rng);
        assert_eq!(ps.len(), 6, "5 KB in 937-byte parts");
        // No clear frame: no two parts share a 16-byte window at the message id's place,
        // and no part starts with the clear frame's version and the envelope's.
        for w in ps.windows(2) {
            assert_ne!(w[0].body[1..17], w[1].body[1..17]);
        }
        ps.shuffle(&mut rng);
        let mut r = PartReader::group(&g);
        let mut got = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            got.extend(r.push(i as u64, p));
        }
        assert_eq!(got, vec![env.clone()]);
        assert_eq!(
            open(&got[0], &Opener::Group(&g)).unwrap().plain,
            plain(5000)
        );
        // Another group's reader opens nothing and says so.
        let mut other = PartReader::group(&GroupKey([6; 32]));
        for (i, p) in ps.iter().enumerate() {
            assert!(other.push(i as u64, p).is_empty());
        }
        assert_eq!(other.unopened(), 6);
    }

    #[test]
    fn direct_parts_before_their_first_part_wait_and_then_open() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let bob = Identity::from_secret_bytes(&[11; 32]).unwrap();
        let carol = Identity::from_secret_bytes(&[12; 32]).unwrap();
        let to: Vec<PublicId> = vec![bob.public(), carol.public()];
        let r = SealRandom::fresh();
        let env = seal_with(&Seal::Direct(&to), &plain(3000), None, &r).unwrap();
        let tag = Tag([4; 20]);
        let send = SealedSend::direct(&r.content_key, tag, &env).unwrap();
        let mut ps = packets(&send, &mut rng);
        assert!(ps.len() >= 4, "{}", ps.len());
        // Every part starts with an x coordinate, as the first part's ephemeral key does.
        assert!(ps.iter().all(|p| is_x_coordinate(&p.body[..32])));
        ps.reverse(); // the first part last
        for me in [&bob, &carol] {
            let mut reader = PartReader::identity(me);
            let mut got = Vec::new();
            for (i, p) in ps.iter().enumerate() {
                got.extend(reader.push(i as u64, p));
            }
            assert_eq!(got, vec![env.clone()]);
            assert_eq!(reader.unopened(), 0);
            let o = open(&got[0], &Opener::Identity(me)).unwrap();
            assert_eq!(o.plain, plain(3000));
        }
        // Someone else: nothing opens, every packet counted.
        let eve = Identity::from_secret_bytes(&[13; 32]).unwrap();
        let mut reader = PartReader::identity(&eve);
        for (i, p) in ps.iter().enumerate() {
            assert!(reader.push(i as u64, p).is_empty());
        }
        assert_eq!(reader.unopened(), ps.len());
    }

    #[test]
    fn a_flipped_bit_kills_only_its_part() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let g = GroupKey([8; 32]);
        let tag = Tag([3; 20]);
        let a = SealedSend::group(&g, tag, seal(&Seal::Group(&g), &plain(2000), None).unwrap());
        let b = SealedSend::group(&g, tag, seal(&Seal::Group(&g), &plain(100), None).unwrap());
        let mut pa = packets(&a, &mut rng);
        let pb = packets(&b, &mut rng);
        pa[1].body[200] ^= 1;
        let mut r = PartReader::group(&g);
        let mut got = Vec::new();
        for (i, p) in pa.iter().chain(&pb).enumerate() {
            got.extend(r.push(i as u64, p));
        }
        assert_eq!(got, vec![b.carried.clone()]);
        assert_eq!(r.unopened(), 1);
    }
}
